"""Token reduction, model-agnostic: the method registry, the per-video budget and key bias, packed
attention, the scorers and the auxiliary loss. Imports no model family and no app code."""

from stts_core.methods.registry import (
    STAGES,
    Method,
    get_method,
    list_methods,
    method_names,
    register_method,
    select_tokens,
)

__all__ = ["STAGES", "Method", "get_method", "list_methods", "method_names", "register_method", "select_tokens"]
