"""`python -m stts_core.footage` = `stts footage` (`stts_core.cli.footage`)."""

from stts_core.cli.footage import main

if __name__ == "__main__":
    raise SystemExit(main())
