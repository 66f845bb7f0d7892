"""Peer token-reduction methods, one module each, registered on import (docs/methods.md): EVS, VidCom2 and
DivPrune select among the connector's output tokens (stage "visual"); FastV prunes inside the LLM (stage
"llm", carried out by a family with the "llm_prune" capability). Imported in the order the CLI, the app
and the reports list them, after STTS's own methods (whichever package is imported first)."""

# isort: off
from stts_core.methods import builtin  # noqa: F401 - learned, heuristic, random, frames stay first in the lists
from stts_core.methods.peers import evs, vidcom2, divprune, fastv  # noqa: F401 - each registers its method
# isort: on
