"""`python -m stts_core.ood`: kept so the documented commands still run; the CLI lives in `stts_core.analysis.ood`."""

from stts_core.analysis.ood import main

if __name__ == "__main__":
    raise SystemExit(main())
