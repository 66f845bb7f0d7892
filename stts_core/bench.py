"""`python -m stts_core.bench`: kept so the documented commands still run; the CLI lives in `stts_core.analysis.bench`."""

from stts_core.analysis.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
