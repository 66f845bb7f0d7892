"""`python -m stts_core.scorer_fit` = `stts fit-scorer` (`stts_core.cli.fit_scorer`)."""

from stts_core.cli.fit_scorer import main

if __name__ == "__main__":
    raise SystemExit(main())
