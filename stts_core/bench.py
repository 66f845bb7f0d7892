"""`python -m stts_core.bench` = `stts bench` (`stts_core.cli.bench`)."""

from stts_core.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
