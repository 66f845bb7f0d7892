"""The registry of token-reduction methods: one entry per method, read by the pipeline, the analysis,
the CLIs, the app and the tests (a registered method is tested by being registered).

A method acts at one *stage* of the data flow (docs/method.md):

- ``frames``: choose which frames to sample (nothing is pruned inside the model);
- ``vit``: score patch groups at ViT block k and prune them for every later ViT block and the LLM (STTS);
- ``visual``: prune the ViT's output tokens (after the connector) before the LLM;
- ``llm``: prune visual tokens inside the LLM, after one of its layers (needs a family capability).

The pipeline branches on the stage, never on a method's name. The unpruned baseline is not a method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch

from stts_core.methods.budget import select_groups, validate_keep_ratio

Stage = Literal["frames", "vit", "visual", "llm"]
STAGES: tuple[str, ...] = ("frames", "vit", "visual", "llm")

# score(features (T, N, D), groups (G, P), seed, **options) -> (T, G) scores, high = keep.
ScoreFn = Callable[..., torch.Tensor]
# select(features (T, G, D), keep_ratio, seed, **options) -> (T, G) bool keep mask.
SelectFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Method:
    """One token-reduction method.

    A method either scores groups (``score``; the selection is then STTS's per-video budget with the
    first frame whole, ``budget.select_groups``) or selects them itself (``select``), or it is scored by
    trained weights that live in the model (``needs_weights``: the backend's ``learned_scores``).
    ``frames`` and ``llm`` methods are carried out by the pipeline and the backend, respectively.
    """

    name: str
    stage: Stage
    summary: str  # what it scores, in one line (CLI help, app radio info, docs/methods.md)
    needs_weights: bool = False  # trained weights (a checkpoint's STTS scorer)
    key_bias: bool = False  # the log-score key bias at ViT block k+1 (vit stage; the scorer was trained with it)
    keeps_first_frame: bool = True  # the first frame (temporal patch) is always kept whole
    source: str = ""  # where its rule comes from (paper, file)
    color: str = "#9e9e9e"  # its colour in reports and charts
    score: ScoreFn | None = None
    select: SelectFn | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # defaults passed to score / select

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def training_free(self) -> bool:
        return not self.needs_weights

    def check(self) -> None:
        """The contract, checked at registration: a wrong entry fails at import, not in a run."""
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"A method name must be lower-case letters, digits, '-' or '_', got {self.name!r}.")
        if self.name in RESERVED_NAMES:
            raise ValueError(f"{self.name!r} is reserved (it means the unpruned model).")
        if self.stage not in STAGES:
            raise ValueError(f"Method {self.name!r}: stage must be one of {', '.join(STAGES)}, got {self.stage!r}.")
        if self.stage in ("vit", "visual") and not (self.needs_weights or self.score or self.select):
            raise ValueError(f"Method {self.name!r} ({self.stage} stage) needs a score or a select function.")
        if self.key_bias and self.stage != "vit":
            raise ValueError(f"Method {self.name!r}: the key bias exists only at the vit stage.")

    def scores(self, features: torch.Tensor, groups: torch.Tensor, seed: int = 0, **options: Any) -> torch.Tensor:
        """(T, G) scores from the method's own rule (not for methods with trained weights)."""
        if self.score is None:
            raise ValueError(f"The method {self.name!r} does not produce scores from features alone.")
        return self.score(features, groups, seed=seed, **{**self.options, **options})

    def keep_mask(self, features: torch.Tensor, groups: torch.Tensor, keep_ratio: float, seed: int = 0,
                  **options: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(T, G) keep mask and the scores behind it (None for a method that selects without scores).

        ``features`` are (T, N, D) patch features with a (G, P) group table; a method with its own
        ``select`` works on group features, (T, G, D), which it gets when every group is one patch."""
        if self.select is not None:
            if groups.shape[1] != 1:
                raise ValueError(f"The method {self.name!r} selects among group features (T, G, D); "
                                 "give one feature per group.")
            grouped = features[:, groups[:, 0].clamp(min=0).to(features.device)]
            return self.select(grouped, keep_ratio, seed=seed, **{**self.options, **options}), None
        scores = self.scores(features, groups, seed, **options)
        return select_groups(scores, keep_ratio), scores


RESERVED_NAMES = ("baseline", "none", "unpruned")
_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method (its contract is checked now); a second entry under the same name is refused."""
    method.check()
    if method.name in _METHODS and _METHODS[method.name] != method:
        raise ValueError(f"A method named {method.name!r} is already registered.")
    _METHODS[method.name] = method
    return method


def _load_builtin() -> None:
    import stts_core.methods.builtin  # noqa: F401 - registers learned, heuristic, random, frames
    import stts_core.methods.peers  # noqa: F401 - registers the peer methods


def list_methods(stage: str | None = None) -> list[Method]:
    """Every registered method (or one stage's), in registration order."""
    _load_builtin()
    return [m for m in _METHODS.values() if stage is None or m.stage == stage]


def method_names(stage: str | None = None) -> tuple[str, ...]:
    return tuple(m.name for m in list_methods(stage))


def get_method(name: str) -> Method:
    """The method of that name, or a ValueError naming the registered ones."""
    _load_builtin()
    if isinstance(name, Method):
        return name
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown method {name!r}; choose one of {', '.join(_METHODS)}.") from None


def select_tokens(method: str | Method, features: torch.Tensor, keep_ratio: float, seed: int = 0,
                  **options: Any) -> torch.Tensor:
    """Keep mask of a training-free method over any model's visual features, no backend needed.

    ``features``: (T, G, D), T frames (temporal patches) x G token groups (the tokens that reach the
    LLM, or a ViT layer's features pooled per group) x D channels. Returns a (T, G) bool mask; for
    every method here exactly ``budget.kept_group_count(T, G, keep_ratio)`` entries are True, and the
    first frame is whole where the method promises it (``Method.keeps_first_frame``).
    """
    m = get_method(method)
    validate_keep_ratio(keep_ratio)
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"select_tokens needs features of shape (frames, groups, channels), got {shape}.")
    if min(features.shape) < 1:
        raise ValueError(f"select_tokens needs at least one frame, group and channel, got {tuple(features.shape)}.")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("The features contain NaN or infinite values, so no method can rank them.")
    if m.needs_weights:
        raise ValueError(f"The method {m.name!r} needs trained weights; run it through a model backend "
                         "(stts_core.load_backend).")
    if m.stage == "llm":
        raise ValueError(f"The method {m.name!r} prunes inside the LLM from its attention; run it through a "
                         "model backend (stts_core.load_backend).")
    if m.stage == "frames":
        from stts_core.methods.frames import frame_keep_mask

        return frame_keep_mask(features.shape[0], features.shape[1], keep_ratio).to(features.device)
    groups = torch.arange(features.shape[1], device=features.device)[:, None]
    return m.keep_mask(features, groups, keep_ratio, seed=seed, **options)[0]
