"""`python -m stts_core.analyze`: kept so the documented commands still run; the CLI lives in `stts_core.analysis.runner`."""

from stts_core.analysis.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
