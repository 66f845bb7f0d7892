"""Building Qwen-VL checkpoints offline: a word-level tokenizer with Qwen's special tokens, the text
config's M-RoPE settings, and saving model + processor into one folder `load_backend` reads.

Used for tests (tiny random checkpoints saved and loaded back through the normal loader), for the
app and CLI checks, and for timing (the published architectures with random weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = [
    "<pad>",
    "<unk>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
]
# Timestamps ("<1.5 seconds>", Qwen3-VL) and the prompt frame need these beside the task's own words.
BASE_WORDS = [str(d) for d in range(10)] + [".", ":", "?", ",", "<", ">", "seconds", "answer", "question"]
EOS = "<|im_end|>"


def chat_template(video: str) -> str:
    """A plain prompt: the video (as `video` spells it), the question, then "answer :" after which the
    model replies."""
    return (
        "{% for message in messages %}{% for part in message['content'] %}"
        "{% if part['type'] == 'video' %}" + video + "{% elif part['type'] == 'text' %} question : "
        "{{ part['text'] }}{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %} answer :{% endif %}"
    )


def build_tokenizer(words: list[str] | tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer holding Qwen-VL's special tokens plus the given words."""
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *BASE_WORDS, *words]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token=EOS,
                                   bos_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS[3:])


def token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The config's special token ids, from the tokenizer."""
    vocab = tokenizer.get_vocab()
    return {"image_token_id": vocab["<|image_pad|>"], "video_token_id": vocab["<|video_pad|>"],
            "vision_start_token_id": vocab["<|vision_start|>"], "vision_end_token_id": vocab["<|vision_end|>"]}


def text_vocab(preset_text: dict[str, Any], tokenizer: PreTrainedTokenizerFast | None) -> dict[str, Any]:
    """The text config with a vocabulary that holds the tokenizer (a preset may fix a larger one: the real
    LM head size, for timing) and the tokenizer's special ids."""
    text = dict(preset_text)
    if tokenizer is not None:
        text["vocab_size"] = max(int(text.get("vocab_size", 0)), len(tokenizer.get_vocab()))
        text.update(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                    bos_token_id=tokenizer.bos_token_id)
    return text


def rope(theta: float, section: list[int], interleaved: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"rope_type": "default", "rope_theta": theta, "mrope_section": list(section)}
    if interleaved is not None:
        out["mrope_interleaved"] = interleaved
    return out


def finish_model(model: Any, tokenizer: PreTrainedTokenizerFast | None) -> Any:
    """Generation settings from the tokenizer; eval mode."""
    if tokenizer is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_checkpoint(model: Any, processor: Any, out_dir: str | Path) -> Path:
    """save_pretrained for weights (safetensors), config and processor into one directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
