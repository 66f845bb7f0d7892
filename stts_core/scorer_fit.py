"""`python -m stts_core.scorer_fit`: kept so the documented commands still run; the CLI lives in `stts_core.train.scorer_fit`."""

from stts_core.train.scorer_fit import main

if __name__ == "__main__":
    raise SystemExit(main())
