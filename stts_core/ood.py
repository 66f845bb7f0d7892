"""`python -m stts_core.ood` = `stts ood` (`stts_core.cli.ood`)."""

from stts_core.cli.ood import main

if __name__ == "__main__":
    raise SystemExit(main())
