"""`python -m stts_core.ask`: kept so the documented commands still run; the CLI lives in `stts_core.cli.ask`."""

from stts_core.cli.ask import main

if __name__ == "__main__":
    raise SystemExit(main())
