"""STTS inside transformers' native Molmo2 (`Molmo2ForConditionalGeneration`, transformers >= 5.23).

Integration is by small overrides, not a fork of the modeling file:
- `Molmo2ForSTTS` subclasses the stock model only to own the scorer, so `save_pretrained` /
  `from_pretrained` round-trip its weights (safetensors) and the STTS settings (`config.stts`);
  stock transformers still loads such a checkpoint (it ignores the scorer).
- `Molmo2Backend` runs the model's own modules stage by stage: patch embedding and ViT blocks
  0..k on all frames, the scorer, block k+1 with the log-score key bias through the layer's own
  forward, then blocks k+2..L on packed kept patches (the block's own projections, norms and MLP
  around `packed_attention`), the stock adapter on the kept groups only, and the stock LLM on an
  input whose pruned `<im_patch>` placeholders were removed, fed the shortened visual features via
  `mm_encoder_outputs`.
With nothing pruned the stages reduce to exactly the stock computations.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import BaseModelOutputWithPooling

from stts_core.methods.budget import groups_to_patch_mask
from stts_core.methods.packing import (
    PackedLayout,
    PaddedFrames,
    padded_slot_pairs,
    refill_lonely_frames,
    resolve_backend,
)
from stts_core.models.base import Generation, LLMPrune, PreparedInputs, SuffixGeometry, ViTState
from stts_core.models.decoding import greedy_continue
from stts_core.models.hf_backend import HFBackendMixin
from stts_core.models.molmo2.llm_prune import generate_pruned
from stts_core.models.molmo2.modeling import Molmo2ForSTTS, STTSSettings
from stts_core.models.molmo2.packed_vit import (
    PackedViTState,
    packed_block,
    padded_block,
    padded_scored_block,
    scored_block,
)
from stts_core.models.molmo2.video_patches import install_fast_video_patches
from stts_core.timing import synchronize


def _absolute_layer(layer: int, num_layers: int) -> int:
    return layer if layer >= 0 else num_layers + layer


class Molmo2Backend(HFBackendMixin):
    """Runs one Molmo2 model stage by stage so STTS can prune between the stages."""

    name = "molmo2"
    capabilities: frozenset[str] = frozenset({"llm_prune"})  # llm-stage methods: molmo2/llm_prune.py
    frame_unit = "frame"

    def __init__(
        self,
        model: Molmo2ForSTTS,
        processor: Any,
        source: str = "",
        has_learned_scorer: bool = True,
        attention_impl: str = "auto",
    ) -> None:
        self.model = model
        install_fast_video_patches(processor)  # the stock bytes with fewer passes over the frames
        self.processor = processor
        self.source = source
        self.has_learned_scorer = has_learned_scorer
        self.attention_impl = attention_impl
        settings = STTSSettings.from_config(model.config)
        self.scoring_layer = settings.layer
        self.default_keep_ratio = settings.keep_ratio
        vision = model.model.vision_tower
        n = len(vision.layers)
        self.feature_layers = [_absolute_layer(x, n) for x in model.config.adapter_config.vision_feature_layer]
        self.last_layer = max(self.feature_layers)
        if self.scoring_layer + 1 > self.last_layer:
            raise ValueError(
                f"STTS scoring layer {self.scoring_layer} leaves no block before the connector's last feature layer."
            )
        self.image_token_id = model.config.image_patch_id
        self.eos_token_ids = self._eos_ids()
        self.warm = False
        self.gradient_checkpointing = False
        self.serving: Any = None  # molmo2_serving.Molmo2Serving: static-cache / compiled decoding, flex prefill
        # Resize and normalise where the model runs: on a GPU the uint8 frames go up (a quarter of the
        # float32 bytes) and the resize runs there. False keeps the processor on the CPU.
        self.preprocess_on_device = True

    # ----------------------------------------------------------------- basics
    @property
    def suffix_geometry(self) -> SuffixGeometry:
        k1 = self.scoring_layer + 1
        attn = self.model.model.vision_tower.layers[k1].self_attn
        return SuffixGeometry(packed_blocks=self.last_layer - k1,
                              unpacked_reads=sum(1 for i in self.feature_layers if i > k1),
                              heads=int(attn.config.num_attention_heads), head_dim=int(attn.head_dim))

    # ----------------------------------------------------------------- stages
    def prepare(self, frames: np.ndarray, question: str, metadata: dict | None = None) -> PreparedInputs:
        """Frames (T, H, W, 3) uint8 and a question -> processor outputs on the device + group geometry."""
        num = int(frames.shape[0])
        meta = dict(metadata or {})
        meta.setdefault("fps", 1.0)
        meta.setdefault("total_num_frames", num)
        meta.setdefault("frames_indices", list(range(num)))
        meta.setdefault("duration", num / meta["fps"])
        enc = self.processor(
            text=self.prompt(question),
            videos=[frames],
            video_metadata=[meta],
            do_sample_frames=False,
            return_tensors="pt",
            **self._preprocess_device(),
        )
        tensors = {k: v.to(self.device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
        tensors["pixel_values_videos"] = tensors["pixel_values_videos"].to(self.dtype)
        pooling = tensors["video_token_pooling"]
        t, n = tensors["pixel_values_videos"].shape[:2]
        g = pooling.shape[0] // t
        groups = pooling[:g].clone()
        offsets = (torch.arange(t, device=pooling.device) * n).view(t, 1, 1)
        expected = torch.where(groups[None] >= 0, groups[None] + offsets, groups[None]).reshape(-1, groups.shape[1])
        if not torch.equal(expected, pooling):
            raise ValueError("The processor's pooling table is not the same in every frame; STTS needs it to be.")
        grid_rows, grid_cols = (int(x) for x in tensors["video_grids"][0, 1:].tolist())
        side = int(math.isqrt(n))
        return PreparedInputs(tensors=tensors, groups=groups, num_frames=t, patches_per_frame=n,
                              grid=(grid_rows, grid_cols), patch_grid=(side, n // side))

    def _preprocess_device(self) -> dict[str, str]:
        """The processor's `device` argument: the model's accelerator when `preprocess_on_device`."""
        if self.preprocess_on_device and self.device.type != "cpu":
            return {"device": str(self.device)}
        return {}

    def prepare_questions(self, frames: np.ndarray, questions: list[str],
                          metadata: dict | None = None) -> list[PreparedInputs]:
        """`prepare` for several questions about one video, processing the video once.

        The prompts differ only in the text after the video, so the first question's processed
        prompt keeps its expanded video part and each other question's tokens replace the text after
        it. A prompt whose text before the video differs falls back to `prepare`.
        """
        first = self.prepare(frames, questions[0], metadata)
        if len(questions) == 1:
            return [first]

        video_token = self.tokenizer.convert_tokens_to_ids(getattr(self.processor, "video_token", None) or "")

        def split(question: str) -> tuple[list[int], list[int]] | None:
            ids = self.tokenizer(self.prompt(question), add_special_tokens=False)["input_ids"]
            if not isinstance(video_token, int) or ids.count(video_token) != 1:
                return None
            at = ids.index(video_token)
            return ids[:at], ids[at + 1:]

        parts = split(questions[0])
        full = first.tensors["input_ids"][0]
        if parts is None or not parts[1] or full[-len(parts[1]):].tolist() != parts[1]:
            return [first, *(self.prepare(frames, q, metadata) for q in questions[1:])]
        video_end = full.shape[0] - len(parts[1])
        out = [first]
        for question in questions[1:]:
            mine = split(question)
            if mine is None or mine[0] != parts[0]:
                out.append(self.prepare(frames, question, metadata))
                continue
            tail = torch.tensor(mine[1], dtype=full.dtype, device=full.device)[None]
            tensors = dict(first.tensors)
            tensors["input_ids"] = torch.cat([first.tensors["input_ids"][:, :video_end], tail], 1)
            tensors["attention_mask"] = torch.ones_like(tensors["input_ids"])
            if "mm_token_type_ids" in tensors:
                types = first.tensors["mm_token_type_ids"]
                tensors["mm_token_type_ids"] = torch.cat([types[:, :video_end], torch.zeros_like(tail)], 1)
            out.append(dataclasses.replace(first, tensors=tensors))
        return out

    def vit_prefix(self, inputs: PreparedInputs) -> ViTState:
        """Patch embedding + position embedding, then blocks 0..k on every frame."""
        vision = self.model.model.vision_tower
        pixels = inputs.tensors["pixel_values_videos"]
        x = vision.patch_embedding(pixels.to(vision.dtype)) + vision.positional_embedding[None].to(pixels.dtype)
        saved: dict[int, torch.Tensor] = {}
        for i in range(self.scoring_layer + 1):
            x = vision.layers[i](x, None)
            if i in self.feature_layers:
                saved[i] = x
        return ViTState(hidden=x, saved=saved)

    def _packed_block(self, index: int, tokens: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        """One ViT block on packed tokens: the block's own modules, attention within each frame."""
        return packed_block(self.model.model.vision_tower.layers[index], tokens, layout, self.attention_impl)

    def _scored_block(self, index: int, x: torch.Tensor, layout: PackedLayout, bias: torch.Tensor | None
                      ) -> torch.Tensor:
        """Block k+1 with the key bias, evaluated at the layout's tokens (`packed_vit.scored_block`)."""
        return scored_block(self.model.model.vision_tower.layers[index], x, layout, bias)

    def _padded_scored_block(self, index: int, x: torch.Tensor, padded: PaddedFrames, bias: torch.Tensor | None
                             ) -> torch.Tensor:
        return padded_scored_block(self.model.model.vision_tower.layers[index], x, padded, bias)

    def _padded_block(self, index: int, tokens: torch.Tensor, padded: PaddedFrames) -> torch.Tensor:
        return padded_block(self.model.model.vision_tower.layers[index], tokens, padded)

    def _checkpointed(self, fn: Any, *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and self.model.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def vit_suffix(
        self,
        state: ViTState,
        inputs: PreparedInputs,
        keep_mask: torch.Tensor | None,
        bias: torch.Tensor | None,
        counter: list[int] | None = None,
    ) -> ViTState:
        """Block k+1 with the key bias when given, then the later blocks on kept patches only, packed.

        Unpruned, block k+1 runs on every patch. Pruned, every patch is still a key of block k+1 (with
        the bias), but its outputs are computed only where the later blocks run (`packed_vit`), and
        the features stay packed for the connector (`PackedViTState`). A frame that packing leaves
        alone in a row runs whole in those blocks (`packing.refill_lonely_frames`, as the reference
        does; off when the checkpoint sets `stts.refill_lonely_frames` false), its refilled patches
        dropped afterwards. `counter`, when given, collects the token count each later block ran on,
        refilled patches included."""
        vision = self.model.model.vision_tower
        k1 = self.scoring_layer + 1
        if keep_mask is None:
            mask = None if bias is None else bias[:, None, None, :].to(state.hidden.dtype)
            x = vision.layers[k1](state.hidden, mask)
            saved = dict(state.saved)
            if k1 in self.feature_layers:
                saved[k1] = x
            for i in range(k1 + 1, self.last_layer + 1):
                x = vision.layers[i](x, None)
                if counter is not None:
                    counter.append(x.shape[0] * x.shape[1])
                if i in self.feature_layers:
                    saved[i] = x
            return ViTState(hidden=x, saved=saved)
        kept = groups_to_patch_mask(keep_mask, inputs.groups, inputs.patches_per_frame)
        ran = refill_lonely_frames(kept) if self._stts_option("refill_lonely_frames", True) else kept
        layout = PackedLayout.from_mask(ran)
        if resolve_backend(self.attention_impl, state.hidden.device) == "frames":
            vision = self.model.config.vision_config
            padded = PaddedFrames.from_layout(layout, padded_slot_pairs(vision.hidden_size, vision.intermediate_size))
            stored = self._suffix_blocks(self._padded_scored_block, (state.hidden, padded, bias),
                                         self._padded_block, (padded,), layout.total, counter)
            return PackedViTState(state.saved, stored, layout, kept, self.last_layer, padded)
        stored = self._suffix_blocks(self._scored_block, (state.hidden, layout, bias), self._packed_block, (layout,),
                                     layout.total, counter)
        return PackedViTState(state.saved, stored, layout, kept, self.last_layer)

    def _suffix_blocks(self, scored: Any, scored_args: tuple, later: Any, later_args: tuple, ran: int,
                       counter: list[int] | None) -> dict[int, torch.Tensor]:
        """Block k+1 (`scored`), then blocks k+2..L (`later`), each called with its block index, the tokens
        and its layout arguments -> the feature layers' tokens in the layout's order (packed, or the padded
        batch order of `PaddedFrames`, which the "frames" back end runs in so no block gathers)."""
        k1 = self.scoring_layer + 1
        tokens = self._checkpointed(scored, k1, *scored_args)
        stored = {k1: tokens} if k1 in self.feature_layers else {}
        for i in range(k1 + 1, self.last_layer + 1):
            tokens = self._checkpointed(later, i, tokens, *later_args)
            if counter is not None:
                counter.append(ran)
            if i in self.feature_layers:
                stored[i] = tokens
        return stored

    def connect(self, state: ViTState, inputs: PreparedInputs, keep_mask: torch.Tensor | None) -> torch.Tensor:
        """The stock adapter on the kept groups only -> (kept groups, LLM width), in original order.
        Packed suffix features are pooled where they are, with the pooling table re-pointed to them."""
        pooling = inputs.tensors["video_token_pooling"]
        if keep_mask is not None:
            pooling = pooling[keep_mask.reshape(-1).to(pooling.device)]
        if isinstance(state, PackedViTState):
            features, pooling = state.pooled_inputs(self.feature_layers, pooling)
        else:
            features = torch.cat([state.saved[i] for i in self.feature_layers], dim=-1)
        return self.model.model.multi_modal_projector(features, pooling).last_hidden_state

    def llm_inputs(self, inputs: PreparedInputs, keep_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """input_ids / attention_mask / mm_token_type_ids with the pruned placeholders removed in step."""
        names = ("input_ids", "attention_mask", "mm_token_type_ids")
        out = {k: inputs.tensors[k] for k in names if k in inputs.tensors}
        if keep_mask is None:
            return out
        ids = out["input_ids"][0]
        placeholder = (ids == self.image_token_id).nonzero().squeeze(1)
        flat_keep = keep_mask.reshape(-1).to(ids.device)
        if placeholder.numel() != flat_keep.numel():
            raise ValueError(f"The prompt has {placeholder.numel()} visual placeholders for {flat_keep.numel()} groups.")
        stay = torch.ones_like(ids, dtype=torch.bool)
        stay[placeholder[~flat_keep]] = False
        return {k: v[:, stay] for k, v in out.items()}

    @staticmethod
    def encoder_outputs(visual: torch.Tensor) -> dict[str, BaseModelOutputWithPooling]:
        return {"video": BaseModelOutputWithPooling(pooler_output=(visual,))}

    @torch.no_grad()
    def generate(
        self,
        inputs: PreparedInputs,
        visual: torch.Tensor,
        keep_mask: torch.Tensor | None,
        max_new_tokens: int = 16,
        stop_at_eos: bool = True,
        llm: dict[str, torch.Tensor] | None = None,
        llm_prune: LLMPrune | None = None,
    ) -> Generation:
        """Greedy decoding with the KV cache, timing prefill (first token) and decoding apart. With
        ``llm_prune`` an llm-stage method prunes inside the LLM at prefill (`llm_prune.generate_pruned`;
        the opt-in serving paths do not apply to it)."""
        if llm_prune is not None:
            return generate_pruned(self, inputs, visual, llm_prune, max_new_tokens, stop_at_eos, llm)
        if self.serving is not None:
            return self.serving.generate(self, inputs, visual, keep_mask, max_new_tokens, stop_at_eos, llm)
        llm = llm if llm is not None else self.llm_inputs(inputs, keep_mask)
        attention_mask = llm["attention_mask"]
        synchronize(self.device)
        start = time.perf_counter()
        out = self.model(**llm, mm_encoder_outputs=self.encoder_outputs(visual), use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1)
        synchronize(self.device)
        prefill_s = time.perf_counter() - start
        state = {"cache": out.cache, "mask": attention_mask}

        def next_token(token: torch.Tensor, _step: int) -> torch.Tensor:
            state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(1, 1)], dim=1)
            step_out = self.model(input_ids=token[:, None], attention_mask=state["mask"], cache=state["cache"],
                                  use_cache=True)
            state["cache"] = step_out.cache
            return step_out.logits[:, -1].argmax(-1)

        tokens, decode_s = greedy_continue(token, max_new_tokens, stop_at_eos, self.eos_token_ids, next_token,
                                           self.device)
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Generation(token_ids=tokens, text=text, prefill_s=prefill_s, decode_s=decode_s,
                          prompt_tokens=int(llm["input_ids"].shape[1]))

    # ----------------------------------------------------------------- training
    def answer_pass(self, prompts: list[dict[str, torch.Tensor]], answers: list[str], visual: torch.Tensor,
                    hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean over questions of the next-token loss on each answer, and, with `hidden_layer`, the
        LLM's hidden states after that many layers at the visual tokens (visual tokens, LLM width).

        The prompts of one clip share everything up to the end of the video (`prepare_questions`), so
        that prefix, the bulk of the tokens, runs through the LLM once and each question's text and
        answer run on its KV cache. Prompts that differ before the end of the video, and training with
        gradient checkpointing (which turns the cache off), take `_padded_answer_pass` instead.
        """
        if self.gradient_checkpointing and self.model.training:
            return self._padded_answer_pass(prompts, answers, visual, hidden_layer)
        ids = [p["input_ids"][0] for p in prompts]
        shared = _shared_prefix_length(ids)
        if bool((ids[0][shared:] == self.image_token_id).any()):
            return self._padded_answer_pass(prompts, answers, visual, hidden_layer)
        types = prompts[0]["mm_token_type_ids"][:, :shared]
        prefix = self.model(input_ids=ids[0][None, :shared], attention_mask=torch.ones_like(types),
                            mm_token_type_ids=types, mm_encoder_outputs=self.encoder_outputs(visual),
                            use_cache=True, logits_to_keep=1, output_hidden_states=hidden_layer is not None)
        cache = prefix.cache
        if len(prompts) > 1:
            cache.batch_repeat_interleave(len(prompts))
        targets = [torch.tensor(self.answer_ids(a), device=self.device) for a in answers]
        tails = [torch.cat([x[shared:], t]) for x, t in zip(ids, targets, strict=True)]
        tail_ids, tail_mask = _right_padded(tails, self.tokenizer.pad_token_id)
        out = self.model(input_ids=tail_ids, attention_mask=torch.cat([tail_mask.new_ones(len(tails), shared),
                                                                       tail_mask], 1),
                         mm_token_type_ids=torch.zeros_like(tail_ids), cache=cache, use_cache=True)
        losses = []
        for i, (x, t) in enumerate(zip(ids, targets, strict=True)):
            start = len(x) - shared - 1  # the last prompt token's logits predict the first answer token
            losses.append(torch.nn.functional.cross_entropy(out.logits[i, start:start + len(t)].float(), t))
        hidden = None
        if hidden_layer is not None:
            hidden = _visual_hidden(prefix.hidden_states, hidden_layer, ids[0][:shared] == self.image_token_id, visual)
        return torch.stack(losses).mean(), hidden

    def _padded_answer_pass(self, prompts: list[dict[str, torch.Tensor]], answers: list[str], visual: torch.Tensor,
                            hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`answer_pass` for prompts without a shared video prefix: all questions in one batched pass.

        Rows are left-padded (pads masked out), so every answer ends the row and only the last few
        positions need logits; RoPE is relative, so the shift changes nothing for the real tokens.
        Every row holds the same visual placeholders, so the clip's visual features are repeated per row.
        """
        targets = [torch.tensor(self.answer_ids(a), device=self.device) for a in answers]
        rows = [torch.cat([p["input_ids"][0], t]) for p, t in zip(prompts, targets, strict=True)]
        types = [torch.cat([p["mm_token_type_ids"][0], torch.zeros_like(t)]) for p, t in zip(prompts, targets, strict=True)]
        input_ids = _left_padded(rows, self.tokenizer.pad_token_id)
        attention_mask = _left_padded([torch.ones_like(r) for r in rows], 0)
        keep = max(len(t) for t in targets) + 1
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=_left_padded(types, 0),
                         mm_encoder_outputs=self.encoder_outputs(visual.repeat(len(rows), 1)),
                         logits_to_keep=keep, output_hidden_states=hidden_layer is not None)
        losses = []
        for i, t in enumerate(targets):
            losses.append(torch.nn.functional.cross_entropy(out.logits[i, keep - 1 - len(t): keep - 1].float(), t))
        hidden = None
        if hidden_layer is not None:
            hidden = _visual_hidden(out.hidden_states, hidden_layer, input_ids[0] == self.image_token_id, visual)
        return torch.stack(losses).mean(), hidden


def _shared_prefix_length(ids: list[torch.Tensor]) -> int:
    """Tokens every prompt starts with, leaving each at least one own token (whose logits give the
    first answer token)."""
    shared = min(len(x) for x in ids) - 1
    for x in ids[1:]:
        differ = (x[:shared] != ids[0][:shared]).nonzero()
        if len(differ):
            shared = int(differ[0])
    return shared


def _right_padded(rows: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded at the end into one (rows, width) tensor, and the mask of real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([r, r.new_full((width - len(r),), pad)]) for r in rows])
    mask = torch.stack([torch.arange(width, device=ids.device) < len(r) for r in rows]).long()
    return ids, mask


def _left_padded(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.stack([torch.cat([r.new_full((width - len(r),), value), r]) for r in rows])


def _visual_hidden(hidden_states: tuple[torch.Tensor, ...], layer: int, placeholders: torch.Tensor,
                   visual: torch.Tensor) -> torch.Tensor:
    """Row 0's hidden states after `layer` layers at the visual placeholders."""
    if not 0 <= layer < len(hidden_states):
        raise ValueError(f"hidden_layer must be in 0..{len(hidden_states) - 1}, got {layer}.")
    hidden = hidden_states[layer][0, placeholders]
    if hidden.shape[0] != visual.shape[0]:
        raise ValueError(f"{hidden.shape[0]} visual placeholders for {visual.shape[0]} visual tokens.")
    return hidden
