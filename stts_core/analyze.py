"""`python -m stts_core.analyze` = `stts analyze` (`stts_core.cli.analyze`)."""

from stts_core.cli.analyze import main

if __name__ == "__main__":
    raise SystemExit(main())
