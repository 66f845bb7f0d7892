"""`python -m stts_core.ask` = `stts ask` (`stts_core.cli.ask`)."""

from stts_core.cli.ask import main

if __name__ == "__main__":
    raise SystemExit(main())
