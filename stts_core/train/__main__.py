"""`python -m stts_core.train`."""

from stts_core.train.loop import main

raise SystemExit(main())
