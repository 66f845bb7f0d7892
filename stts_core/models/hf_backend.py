"""What every backend built on a transformers model shares: device and precision, the tokenizer and
end-of-sequence ids, the chat prompt, the learned scorer and the checkpoint's STTS options, gradient
checkpointing and saving. A family's backend inherits it and adds its stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stts_core.models.base import PreparedInputs, ViTState


class HFBackendMixin:
    """Needs `self.model` (a transformers model owning `temporal_token_scorer` and `config.stts`) and
    `self.processor` (its processor)."""

    model: Any
    processor: Any
    gradient_checkpointing: bool

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def scorer(self) -> torch.nn.Module:
        """The STTS scorer module (`methods.scorers.TokenScorer`)."""
        return self.model.temporal_token_scorer

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def llm_hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def llm_num_layers(self) -> int:
        return int(self.model.config.text_config.num_hidden_layers)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward for every ViT and LLM block, packed ones included, so
        the baseline and STTS trade compute for memory the same way (long videos need it on one GPU).
        The LLM's KV cache is off while it is on, as transformers requires."""
        model = self.model
        if enabled and hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif enabled:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif hasattr(model, "activation_checkpointing_disable"):
            model.activation_checkpointing_disable()
        else:
            model.gradient_checkpointing_disable()
        for config in (model.config, getattr(model.config, "text_config", None)):
            if config is not None:
                config.use_cache = not enabled
        self.gradient_checkpointing = enabled

    def save(self, out_dir: str | Path) -> Path:
        """Weights (safetensors), config and processor into one directory that `load_backend` reads."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        self.processor.save_pretrained(out)
        return out

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        if ids is None:
            return set()
        return set(ids) if isinstance(ids, (list, tuple)) else {int(ids)}

    def prompt(self, question: str) -> str:
        """The text the processor expands: the model's chat template when it has one."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return f"{self.processor.video_token} {question}"

    def learned_scores(self, state: ViTState, inputs: PreparedInputs) -> torch.Tensor:
        """The scorer on block k's features. As in the reference implementation, gradient flows from
        the scores (auxiliary loss, attention bias) back into ViT blocks 0..k; the checkpoint setting
        `stts.detach_scorer_input` puts a stop-gradient there instead (docs/training-notes.md)."""
        features = state.hidden.detach() if self._stts_option("detach_scorer_input", False) else state.hidden
        return self.model.temporal_token_scorer(features, inputs.groups)

    def _stts_option(self, name: str, default: bool) -> bool:
        """A boolean STTS setting of the checkpoint (`config.stts`), read at call time so a test or a
        training run can switch it on the loaded model."""
        return bool((getattr(self.model.config, "stts", None) or {}).get(name, default))

    def answer_ids(self, answer: str) -> list[int]:
        """The tokens the model is trained to produce for `answer`: its words, then end-of-sequence."""
        ids = self.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
        return [*ids, self.tokenizer.eos_token_id]
