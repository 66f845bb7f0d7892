"""`python -m stts_core.evaluate`: kept so the documented commands still run; the CLI lives in `stts_core.analysis.evaluate`."""

from stts_core.analysis.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
