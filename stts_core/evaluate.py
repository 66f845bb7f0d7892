"""`python -m stts_core.evaluate` = `stts evaluate` (`stts_core.cli.evaluate`)."""

from stts_core.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
