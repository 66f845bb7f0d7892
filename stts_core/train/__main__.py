"""`python -m stts_core.train`."""

from stts_core.cli.train import main

raise SystemExit(main())
