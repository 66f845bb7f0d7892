"""`python -m stts_core.synthetic`: kept so the documented commands still run; the CLI lives in `stts_core.data.synthetic`."""

from stts_core.data.synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())
