"""Build Molmo2 checkpoints from a config: word-level tokenizers, processors, size presets.

Used for the built-in model (trained from scratch), for tests (tiny random checkpoints saved
and loaded back through the normal loader) and for benchmarks (full-size architectures with
random weights: timing does not depend on weight values).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Molmo2Config,
    Molmo2ImageProcessor,
    Molmo2Processor,
    Molmo2VideoProcessor,
    PreTrainedTokenizerFast,
)

from stts_core.models.molmo2.backend import Molmo2ForSTTS

SPECIAL_TOKENS = [
    "<pad>",
    "<unk>",
    "<|endoftext|>",
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
    "<|image|>",
    "<|video|>",
]
# Timestamps ("1.5") and the prompt frame need these beside the task's own words.
BASE_WORDS = [str(d) for d in range(10)] + [".", ":", "?", ",", "answer", "question"]

# A plain prompt: the video, the question, then "answer :" after which the model replies.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|video|>{% elif part['type'] == 'text' %} question : {{ part['text'] }}{% endif %}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %} answer :{% endif %}"
)

_TINY: dict[str, Any] = {
    "image_size": 126,
    # Trained from scratch: at Molmo2's 0.02 the visual tokens leave the adapter at ~1e-7 (five small
    # linear maps in a row) against word embeddings of 0.02, and the LLM cannot see the video at first.
    "initializer_range": 0.065,
    # At that scale the ViT's position embedding is ~20x smaller than the patch embeddings, so a
    # from-scratch ViT is a bag of patches: it can tell neither where an object is nor its shape.
    "vit_position_init": "sincos",
    "stts_layer": 1,
    "vision": dict(hidden_size=96, intermediate_size=256, num_hidden_layers=5, num_attention_heads=4,
                   num_key_value_heads=4, head_dim=24),
    "adapter": dict(vision_feature_layer=[-1, -3], num_attention_heads=4, num_key_value_heads=4, head_dim=24,
                    intermediate_size=256),
    "text": dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_hidden_layers=3,
                 intermediate_size=384),
}

# Architecture presets. Vision/adapter/text kwargs follow Molmo2Config's sub-configs.
PRESETS: dict[str, dict[str, Any]] = {
    # For unit tests: runs forward + generate in milliseconds.
    "micro": {
        "image_size": 84,
        "initializer_range": 0.065,
        "stts_layer": 0,
        # Unit tests count the patches the packed blocks run on; refill is tested on its own.
        "refill_lonely_frames": False,
        "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                       num_key_value_heads=2, head_dim=16),
        "adapter": dict(vision_feature_layer=[-1, -3], num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                        intermediate_size=64),
        "text": dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_hidden_layers=2,
                     intermediate_size=64),
    },
    # The built-in model: trained from scratch on the synthetic world on a 2-core CPU.
    "tiny": _TINY,
    # The built-in model's architecture at finer masks: 168 px = 12 x 12 patches = 4 x 4 groups per frame.
    "tiny-168": {**_TINY, "image_size": 168},
    # 252 px = 18 x 18 patches = 6 x 6 groups per frame (about 4x the tiny preset's ViT work).
    "tiny-252": {**_TINY, "image_size": 252},
    # Molmo2's shape at a size where a 32-frame run takes a few seconds on a 2-core CPU.
    "cpu-mid": {
        "image_size": 378,
        "stts_layer": 3,
        "vision": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=12, num_attention_heads=4,
                       num_key_value_heads=4, head_dim=64),
        "adapter": dict(vision_feature_layer=[-1, -4], num_attention_heads=4, num_key_value_heads=4, head_dim=64,
                        intermediate_size=1024),
        "text": dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=4, head_dim=64, num_hidden_layers=8,
                     intermediate_size=1536),
    },
    # The real Molmo2-4B architecture (SigLIP-so400m ViT trimmed to 25 blocks, Qwen3-4B).
    "molmo2-4b": {
        "image_size": 378,
        "stts_layer": 3,
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=25, num_attention_heads=16,
                       num_key_value_heads=16, head_dim=72),
        "adapter": dict(vision_feature_layer=[24, 18], num_attention_heads=16, num_key_value_heads=16, head_dim=72,
                        intermediate_size=9728),
        "text": dict(hidden_size=2560, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     num_hidden_layers=36, intermediate_size=9728, vocab_size=151936, additional_vocab_size=128,
                     rope_parameters={"rope_type": "default", "rope_theta": 5000000.0}),
    },
}


def build_tokenizer(words: list[str] | tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer holding Molmo2's special tokens plus the given words."""
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *BASE_WORDS, *words]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )


def build_processor(tokenizer: PreTrainedTokenizerFast, image_size: int, patch_size: int = 14) -> Molmo2Processor:
    video = Molmo2VideoProcessor(
        size={"height": image_size, "width": image_size},
        patch_size=patch_size,
        pooling_size=[3, 3],
        do_rescale=True,
        do_normalize=True,
        do_sample_frames=False,
    )
    image = Molmo2ImageProcessor()
    return Molmo2Processor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                           chat_template=CHAT_TEMPLATE)


def build_config(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, keep_ratio: float = 0.5) -> Molmo2Config:
    """A Molmo2Config for a preset; with a tokenizer, the vocabulary and special ids are the tokenizer's."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    spec = copy.deepcopy(PRESETS[preset])
    size = spec["image_size"]
    vision = dict(spec["vision"], image_size=[size, size], patch_size=14)
    text = dict(spec["text"], max_position_embeddings=36864)
    adapter = dict(spec["adapter"], hidden_size=vision["hidden_size"], text_hidden_size=text["hidden_size"])
    ids: dict[str, int] = {}
    if tokenizer is not None:
        vocab = tokenizer.get_vocab()
        # A preset may fix a larger vocabulary (the real LM head size, for timing); else the tokenizer's.
        if text.get("vocab_size", 0) < len(vocab):
            text.update(vocab_size=len(vocab), additional_vocab_size=0)
        ids = dict(
            image_patch_id=vocab["<im_patch>"],
            image_start_token_id=vocab["<im_start>"],
            low_res_image_start_token_id=vocab["<low_res_im_start>"],
            image_end_token_id=vocab["<im_end>"],
            frame_start_token_id=vocab["<frame_start>"],
            frame_end_token_id=vocab["<frame_end>"],
        )
    init = spec.get("initializer_range", 0.02)
    for sub in (vision, adapter, text):
        sub["initializer_range"] = init
    # The reference scorer's MLP is as wide as the ViT's MLP; refill and no stop-gradient as the reference.
    stts = {"layer": spec["stts_layer"], "keep_ratio": keep_ratio, "scorer_hidden": vision["intermediate_size"],
            "refill_lonely_frames": spec.get("refill_lonely_frames", True), "detach_scorer_input": False}
    config = Molmo2Config(vision_config=vision, adapter_config=adapter, text_config=text, initializer_range=init,
                          stts=stts, **ids)
    if tokenizer is not None:
        config.text_config.eos_token_id = tokenizer.eos_token_id
        config.text_config.pad_token_id = tokenizer.pad_token_id
    return config


def sincos_positions(rows: int, cols: int, dim: int) -> torch.Tensor:
    """(rows * cols, dim) row-major 2-D sine-cosine position table with unit RMS.

    Half the channels encode the row and half the column, at periods from 2 patches to 4 grid
    sides, so near patches get similar vectors and every patch of the grid a distinct one."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    periods = torch.logspace(math.log10(2.0), math.log10(4.0 * max(rows, cols)), dim // 4)
    freqs = 2 * math.pi / periods
    y, x = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                          indexing="ij")
    parts = [f(v.reshape(-1, 1) * freqs) for v in (y, x) for f in (torch.sin, torch.cos)]
    table = torch.cat(parts, dim=1)
    return table / table.pow(2).mean().sqrt()


def build_model(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Molmo2ForSTTS:
    """A randomly initialised Molmo2ForSTTS of the preset's architecture."""
    config = build_config(preset, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Molmo2ForSTTS(config)
    if PRESETS[preset].get("vit_position_init") == "sincos":
        table = model.model.vision_tower.positional_embedding
        side = math.isqrt(table.shape[0])
        with torch.no_grad():
            table.copy_(sincos_positions(side, table.shape[0] // side, table.shape[1]))
    model = model.to(dtype=dtype).eval()
    if tokenizer is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_checkpoint(model: Molmo2ForSTTS, processor: Molmo2Processor, out_dir: str | Path) -> Path:
    """save_pretrained for weights (safetensors), config and processor into one directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_random_checkpoint(out_dir: str | Path, preset: str = "micro", words: list[str] | tuple[str, ...] = (),
                            seed: int = 0) -> Path:
    """Write a random-weight checkpoint of a preset that `load_molmo2` reads back."""
    tokenizer = build_tokenizer(words)
    model = build_model(preset, tokenizer, seed=seed)
    processor = build_processor(tokenizer, PRESETS[preset]["image_size"])
    return save_checkpoint(model, processor, out_dir)


def resize_position_table(table: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A trained (r * c, D) row-major ViT position table resampled (bicubic) to (rows * cols, D)."""
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise ValueError(f"Expected a square position table, got {table.shape[0]} positions.")
    grid = table.detach().float().reshape(side, side, -1).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
    return out[0].permute(1, 2, 0).reshape(rows * cols, -1).to(table.dtype)


def warm_start(source: str | Path, preset: str, out_dir: str | Path, seed: int = 0) -> Path:
    """A preset's model initialised from a trained checkpoint of the same widths (e.g. the built-in
    model at a finer input size): every weight of matching shape is copied, the ViT position table is
    resampled to the new patch grid, and the scorer starts fresh (reference initialisation, the
    preset's width). Written with a processor for the preset's input size; `load_backend` reads it."""
    from stts_core.data.synthetic import VOCABULARY
    from stts_core.models.molmo2.checkpoint import load_molmo2

    tokenizer = build_tokenizer(VOCABULARY)
    source_vocab = PreTrainedTokenizerFast.from_pretrained(str(source)).get_vocab()
    if source_vocab != tokenizer.get_vocab():
        raise ValueError(f"{source} uses another vocabulary than the synthetic world's; cannot warm-start from it.")
    model = build_model(preset, tokenizer, seed=seed)
    weights = load_molmo2(str(source), device="cpu", dtype=torch.float32).model.state_dict()
    own = model.state_dict()
    table_key = "model.vision_tower.positional_embedding"
    copied = {}
    for key, value in weights.items():
        if key.startswith("temporal_token_scorer.") or key not in own:
            continue
        if key == table_key and value.shape != own[key].shape:
            side = math.isqrt(own[key].shape[0])
            value = resize_position_table(value, side, own[key].shape[0] // side)
        if value.shape == own[key].shape:
            copied[key] = value
    missing = [k for k in own if k not in copied and not k.startswith("temporal_token_scorer.")]
    if missing:
        raise ValueError(f"{source} does not fit preset {preset!r}: no weights for {missing[:3]}...")
    model.load_state_dict(copied, strict=False)
    return save_checkpoint(model, build_processor(tokenizer, PRESETS[preset]["image_size"]), out_dir)


def main(argv: list[str] | None = None) -> int:
    """`python -m stts_core.models.molmo2.build --from DIR --preset P --out DIR`: write a warm start."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m stts_core.models.molmo2.build", description=warm_start.__doc__)
    p.add_argument("--from", dest="source", required=True, help="trained checkpoint directory")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(warm_start(args.source, args.preset, args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
