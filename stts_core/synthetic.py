"""`python -m stts_core.synthetic` = `stts synthetic` (`stts_core.cli.synthetic`)."""

from stts_core.cli.synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())
