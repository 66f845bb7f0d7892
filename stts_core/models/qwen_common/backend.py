"""STTS inside transformers' native Qwen-VL classes: what Qwen3-VL and Qwen2.5-VL share.

`QwenBackend` runs the stock model's own modules stage by stage (models/base.py's contract):
- prepare: the stock processor (odd frame counts get the last frame repeated, as the processor pads a
  temporal patch), the raster/model-order layout (`QwenLayout`) and the prompt's M-RoPE positions by
  the reference rule (`positions`);
- vit_prefix: patch embedding (+ the family's position embedding) and the stock blocks 0..k on every
  patch; `hidden` is block k's output on the raster grid for the scorers;
- vit_suffix: block k+1 with the key bias (`vit.biased_block`), then the stock blocks on the kept
  patches only, with the kept rows of the rotary tables and `cu_seqlens` rebuilt per segment;
- connect: the stock merger (and the family's extra mergers) on the kept groups, in placeholder order;
- llm_inputs / generate: the stock LLM on a prompt without the pruned placeholders, the positions of
  the unpruned prompt's surviving columns passed explicitly at prefill and at every decoding step.
With nothing pruned every stage is the stock computation (same blocks, same segments, same positions
wherever transformers' own positions follow the reference rule), so keep 1.0 gives the stock tokens.

A family subclass supplies: `_embed` (patch + position embedding and rotary tables), `block_kind`,
`_layout` (window order, if any), `_vision_grids` (the vision blocks of the prompt), `_video_kwargs`
(the processor's size settings), `extra_mergers` and `encoder_outputs`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from stts_core.models.base import Generation, LLMPrune, SuffixGeometry
from stts_core.models.decoding import greedy_continue
from stts_core.models.hf_backend import HFBackendMixin
from stts_core.models.qwen_common.layout import FULL, QwenLayout, max_length, token_mask
from stts_core.models.qwen_common.llm_prune import generate_pruned
from stts_core.models.qwen_common.modeling import QwenSTTSSettings
from stts_core.models.qwen_common.positions import decode_positions, kept_positions, mrope_positions, next_position
from stts_core.models.qwen_common.vit import (
    QwenInputs,
    QwenViTState,
    Rotary,
    RotateFn,
    bias_in_model_order,
    biased_block,
    merge_kept,
    to_raster,
)
from stts_core.timing import synchronize


def padded_video(frames: np.ndarray, metadata: dict | None, temporal: int = 2) -> tuple[np.ndarray, dict, bool]:
    """Frames padded to a whole number of temporal patches by repeating the last frame (what the stock
    processor does to an odd count; done here so that one frame works too), and metadata with defaults.
    The metadata keeps the sampled frames' own indices and rate: the processor averages the timestamps
    of a temporal patch over its (repeated) last index itself."""
    num = int(frames.shape[0])
    if num < 1:
        raise ValueError("A video needs at least one frame.")
    meta = dict(metadata or {})
    meta.setdefault("fps", 1.0)
    meta.setdefault("total_num_frames", num)
    meta.setdefault("frames_indices", list(range(num)))
    meta.setdefault("duration", num / meta["fps"])
    pad = -num % temporal
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)], axis=0)
    return frames, meta, bool(pad)


class QwenBackend(HFBackendMixin):
    """Runs one Qwen-VL model stage by stage so STTS can prune between the stages."""

    name = ""
    capabilities: frozenset[str] = frozenset({"llm_prune"})  # llm-stage methods: qwen_common/llm_prune.py
    frame_unit = "temporal patch"
    frames_per_unit = 2
    rotate: RotateFn  # the family's apply_rotary_pos_emb_vision

    def __init__(self, model: Any, processor: Any, source: str = "", has_learned_scorer: bool = True,
                 attention_impl: str = "auto") -> None:
        self.model = model
        self.processor = processor
        self.source = source
        self.has_learned_scorer = has_learned_scorer
        self.attention_impl = attention_impl
        settings = QwenSTTSSettings.from_config(model.config, self.default_layer, self.check_layer)
        self.scoring_layer = settings.layer
        self.default_keep_ratio = settings.keep_ratio
        self.frame_pixels = settings.frame_pixels
        self.last_layer = len(self.vision.blocks) - 1
        self.video_token_id = int(model.config.video_token_id)
        self.eos_token_ids = self._eos_ids()
        self.warm = False
        self.gradient_checkpointing = False
        self.serving: Any = None
        # Resize and normalise where the model runs (uint8 frames go to the GPU); no effect on a CPU.
        self.preprocess_on_device = True

    # ------------------------------------------------------------------ family hooks
    @staticmethod
    def default_layer(config: Any) -> int:
        raise NotImplementedError

    @staticmethod
    def check_layer(config: Any, layer: int) -> None:
        raise NotImplementedError

    def block_kind(self, index: int) -> str:
        return FULL

    def _embed(self, inputs: QwenInputs) -> tuple[torch.Tensor, Rotary]:
        raise NotImplementedError

    def _layout(self, grid: tuple[int, int, int]) -> QwenLayout:
        raise NotImplementedError

    def _vision_grids(self, tensors: dict[str, torch.Tensor], layout: QwenLayout) -> tuple[list, list[float]]:
        raise NotImplementedError

    def _video_kwargs(self, num_frames: int) -> dict[str, Any]:
        return {}

    @property
    def extra_mergers(self) -> dict[int, torch.nn.Module]:
        """ViT block -> merger of the extra features the LLM receives (DeepStack); none by default."""
        return {}

    def encoder_outputs(self, visual: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ basics
    @property
    def vision(self) -> Any:
        return self.model.model.visual

    @property
    def suffix_geometry(self) -> SuffixGeometry:
        k1 = self.scoring_layer + 1
        attn = self.vision.blocks[k1].attn
        return SuffixGeometry(packed_blocks=self.last_layer - k1, unpacked_reads=0,
                              heads=int(attn.num_heads), head_dim=int(attn.head_dim))

    # ------------------------------------------------------------------ prepare
    def prepare(self, frames: np.ndarray, question: str, metadata: dict | None = None) -> QwenInputs:
        """Frames (T, H, W, 3) uint8 and a question -> processor outputs on the device + the layout."""
        video, meta, padded = padded_video(frames, metadata)
        device = {"device": str(self.device)} if self.preprocess_on_device and self.device.type != "cpu" else {}
        enc = self.processor(text=self.prompt(question), videos=[video], video_metadata=[meta], do_sample_frames=False,
                             return_tensors="pt", **self._video_kwargs(int(video.shape[0])), **device)
        tensors = {k: v.to(self.device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
        tensors["pixel_values_videos"] = tensors["pixel_values_videos"].to(self.dtype)
        t, h, w = (int(x) for x in tensors["video_grid_thw"][0].tolist())
        layout = self._layout((t, h, w))
        layout = dataclasses.replace(layout, group_ids=layout.group_ids.to(self.device),
                                     window_ids=None if layout.window_ids is None else layout.window_ids.to(self.device))
        return QwenInputs(tensors=tensors, groups=layout.group_table().to(self.device), num_frames=t,
                          patches_per_frame=h * w, grid=(layout.group_rows, layout.group_cols), patch_grid=(h, w),
                          layout=layout, positions=self._positions(tensors, layout), padded=padded)

    def _positions(self, tensors: dict[str, torch.Tensor], layout: QwenLayout) -> torch.Tensor:
        grids, intervals = self._vision_grids(tensors, layout)
        return mrope_positions(tensors["mm_token_type_ids"][0].cpu(), grids, intervals).to(self.device)

    def prepare_questions(self, frames: np.ndarray, questions: list[str],
                          metadata: dict | None = None) -> list[QwenInputs]:
        """`prepare` for several questions about one video, processing the video once: the prompts differ
        only after the video, so each other question's text replaces the first one's after the video
        (a prompt whose text before the video differs falls back to `prepare`)."""
        first = self.prepare(frames, questions[0], metadata)
        out = [first]
        parts = self._split_prompt(questions[0])
        full = first.tensors["input_ids"][0]
        if parts is None or not parts[1] or full[-len(parts[1]):].tolist() != parts[1]:
            return out + [self.prepare(frames, q, metadata) for q in questions[1:]]
        video_end = full.shape[0] - len(parts[1])
        for question in questions[1:]:
            mine = self._split_prompt(question)
            if mine is None or mine[0] != parts[0]:
                out.append(self.prepare(frames, question, metadata))
                continue
            tail = torch.tensor(mine[1], dtype=full.dtype, device=full.device)[None]
            tensors = dict(first.tensors)
            tensors["input_ids"] = torch.cat([first.tensors["input_ids"][:, :video_end], tail], 1)
            tensors["attention_mask"] = torch.ones_like(tensors["input_ids"])
            types = first.tensors["mm_token_type_ids"]
            tensors["mm_token_type_ids"] = torch.cat([types[:, :video_end], torch.zeros_like(tail)], 1)
            out.append(dataclasses.replace(first, tensors=tensors, positions=self._positions(tensors, first.geometry)))
        return out

    def _split_prompt(self, question: str) -> tuple[list[int], list[int]] | None:
        """A prompt's token ids before and after its one video placeholder (None: not exactly one)."""
        ids = self.tokenizer(self.prompt(question), add_special_tokens=False)["input_ids"]
        if ids.count(self.video_token_id) != 1:
            return None
        at = ids.index(self.video_token_id)
        return ids[:at], ids[at + 1:]

    # ------------------------------------------------------------------ vision
    def _block(self, index: int, tokens: torch.Tensor, rotary: Rotary, segments: dict[str, torch.Tensor]) -> torch.Tensor:
        """One stock vision block on model-order tokens, attending within the segments of its kind."""
        cu = segments[self.block_kind(index)]
        return self.vision.blocks[index](tokens, cu_seqlens=cu, max_seqlen=max_length(cu), position_embeddings=rotary)

    def _segments(self, layout: QwenLayout, kept: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        kinds = {self.block_kind(i) for i in range(self.last_layer + 1)}
        return {kind: layout.cu_seqlens(kind, kept).to(self.device) for kind in kinds}

    def vit_prefix(self, inputs: QwenInputs) -> QwenViTState:
        """Patch and position embedding, then the stock blocks 0..k on every patch."""
        layout = inputs.geometry
        tokens, rotary = self._embed(inputs)
        segments = self._segments(layout)
        taps: dict[int, torch.Tensor] = {}
        for i in range(self.scoring_layer + 1):
            tokens = self._block(i, tokens, rotary, segments)
            if i in self.extra_mergers:
                taps[i] = tokens
        return QwenViTState(hidden=to_raster(tokens, layout), tokens=tokens, taps=taps, rotary=rotary)

    def vit_suffix(self, state: QwenViTState, inputs: QwenInputs, keep_mask: torch.Tensor | None,
                   bias: torch.Tensor | None, counter: list[int] | None = None) -> QwenViTState:
        """Block k+1 on every patch (with the key bias when given), then the stock blocks on the kept patches
        only. `counter`, when given, collects the token count each later block ran on."""
        layout = inputs.geometry
        k1 = self.scoring_layer + 1
        tokens, rotary = state.tokens, state.rotary
        assert tokens is not None and rotary is not None
        taps = dict(state.taps)
        kept = layout.kept_groups(keep_mask)
        rows = None if kept is None else token_mask(kept, layout.patches_per_group)
        if bias is None:
            tokens = self._block(k1, tokens, rotary, self._segments(layout))
            tokens = tokens if rows is None else tokens[rows]
        else:  # every patch a key, outputs only where later blocks and mergers read them
            recompute = self.gradient_checkpointing and self.model.training and torch.is_grad_enabled()
            tokens = biased_block(self.vision.blocks[k1], tokens, rotary, bias_in_model_order(bias, layout),
                                  self.rotate, recompute, rows)
        if k1 in self.extra_mergers:
            taps[k1] = tokens
        segments = self._segments(layout, kept)
        if rows is not None:
            rotary = (rotary[0][rows], rotary[1][rows])
        for i in range(k1 + 1, self.last_layer + 1):
            tokens = self._block(i, tokens, rotary, segments)
            if counter is not None:
                counter.append(int(tokens.shape[0]))
            if i in self.extra_mergers:
                taps[i] = tokens
        return QwenViTState(hidden=state.hidden, tokens=tokens, taps=taps, rotary=state.rotary)

    def connect(self, state: QwenViTState, inputs: QwenInputs, keep_mask: torch.Tensor | None) -> torch.Tensor:
        """The stock merger on the kept groups -> (kept groups, LLM width), in placeholder order; the
        family's extra merged features (DeepStack) ride along as further columns of the same rows."""
        layout = inputs.geometry
        kept = layout.kept_groups(keep_mask)
        assert state.tokens is not None
        parts = [merge_kept(self.vision.merger, state.tokens, layout, kept)]
        parts += [merge_kept(merger, state.taps[i], layout, kept) for i, merger in self.extra_mergers.items()]
        return torch.cat(parts, dim=-1)

    # ------------------------------------------------------------------ LLM
    def llm_inputs(self, inputs: QwenInputs, keep_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """input_ids / attention_mask / mm_token_type_ids without the pruned placeholders, the surviving
        columns of the unpruned prompt's positions, and where decoding goes on (`next_position`)."""
        ids = inputs.tensors["input_ids"]
        positions = inputs.positions
        assert positions is not None
        stay = torch.ones(ids.shape[1], dtype=torch.bool, device=ids.device)
        if keep_mask is not None:
            placeholder = (ids[0] == self.video_token_id).nonzero().squeeze(1)
            flat = keep_mask.reshape(-1).to(ids.device)
            if placeholder.numel() != flat.numel():
                raise ValueError(f"The prompt has {placeholder.numel()} visual placeholders for {flat.numel()} groups.")
            stay[placeholder[~flat]] = False
        names = ("input_ids", "attention_mask", "mm_token_type_ids")
        out = {k: inputs.tensors[k][:, stay] for k in names if k in inputs.tensors}
        out["position_ids"] = kept_positions(positions, stay)
        out["next_position"] = torch.tensor(next_position(positions), device=ids.device)
        return out

    @torch.no_grad()
    def generate(self, inputs: QwenInputs, visual: torch.Tensor, keep_mask: torch.Tensor | None,
                 max_new_tokens: int = 16, stop_at_eos: bool = True, llm: dict[str, torch.Tensor] | None = None,
                 llm_prune: LLMPrune | None = None) -> Generation:
        """Greedy decoding with the KV cache and explicit M-RoPE positions, prefill and decoding timed apart.
        With ``llm_prune`` an llm-stage method prunes inside the LLM at prefill (`llm_prune.generate_pruned`)."""
        if llm_prune is not None:
            return generate_pruned(self, inputs, visual, llm_prune, max_new_tokens, stop_at_eos, llm)
        llm = llm if llm is not None else self.llm_inputs(inputs, keep_mask)
        start_at = int(llm["next_position"])
        mask = llm["attention_mask"]
        synchronize(self.device)
        start = time.perf_counter()
        out = self.model(input_ids=llm["input_ids"], attention_mask=mask, position_ids=llm["position_ids"],
                         mm_encoder_outputs=self.encoder_outputs(visual), use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1)
        synchronize(self.device)
        prefill_s = time.perf_counter() - start
        state = {"cache": out.cache, "mask": mask}

        def next_token(token: torch.Tensor, step: int) -> torch.Tensor:
            state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(1, 1)], dim=1)
            step_out = self.model(input_ids=token[:, None], attention_mask=state["mask"], cache=state["cache"],
                                  use_cache=True, position_ids=decode_positions(start_at + step, 1, self.device))
            state["cache"] = step_out.cache
            return step_out.logits[:, -1].argmax(-1)

        tokens, decode_s = greedy_continue(token, max_new_tokens, stop_at_eos, self.eos_token_ids, next_token,
                                           self.device)
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Generation(token_ids=tokens, text=text, prefill_s=prefill_s, decode_s=decode_s,
                          prompt_tokens=int(llm["input_ids"].shape[1]))

    # ------------------------------------------------------------------ training
    def answer_pass(self, prompts: list[dict[str, torch.Tensor]], answers: list[str], visual: torch.Tensor,
                    hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean over questions of the next-token loss on each answer given its prompt, all questions in one
        right-padded batch (causal attention: the padding after a row's tokens changes nothing for them);
        with `hidden_layer`, row 0's LLM hidden states after that many layers at the visual tokens. The
        answer's positions go on from its prompt's `next_position`; logits only where answers are."""
        targets = [torch.tensor(self.answer_ids(a), device=self.device) for a in answers]
        rows, positions = [], []
        for p, t in zip(prompts, targets, strict=True):
            rows.append(torch.cat([p["input_ids"][0], t]))
            after = decode_positions(int(p["next_position"]), len(t), self.device)[:, 0]
            positions.append(torch.cat([p["position_ids"][:, 0], after], dim=1))
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.stack([torch.cat([r, r.new_full((width - len(r),), pad)]) for r in rows])
        mask = torch.stack([torch.arange(width, device=ids.device) < len(r) for r in rows]).long()
        pos = torch.stack([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in positions], dim=1)
        out = self.model.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                               mm_encoder_outputs=self.encoder_outputs(visual.repeat(len(rows), 1)),
                               output_hidden_states=hidden_layer is not None)
        losses = []
        for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
            start = p["input_ids"].shape[1] - 1  # the last prompt token's logits predict the first answer token
            logits = self.model.lm_head(out.last_hidden_state[i, start:start + len(t)])
            losses.append(torch.nn.functional.cross_entropy(logits.float(), t))
        hidden = None
        if hidden_layer is not None:
            if not 0 <= hidden_layer < len(out.hidden_states):
                raise ValueError(f"hidden_layer must be in 0..{len(out.hidden_states) - 1}, got {hidden_layer}.")
            hidden = out.hidden_states[hidden_layer][0, ids[0] == self.video_token_id]
        return torch.stack(losses).mean(), hidden
