"""Multiple-choice prompts per model family: how each family's own evaluation (or lmms-eval, where the
family has none) asks a video multiple-choice question, per benchmark.

A style is a function ``(question, options, benchmark) -> prompt`` registered under a name; a family's
bundle names its style (`ModelFamily.mc_prompt`), else the style registered under the family's own name is
used, else ``lmms-eval``. Sources, read for the wording (the prompts are the benchmarks' and models'
published formats):

- ``lmms-eval``: EvolvingLMMs-Lab/lmms-eval ``lmms_eval/tasks/mvbench/utils.py`` (``mvbench_doc_to_text``,
  post prompt "Only give the best option." from the task yamls), ``videomme/utils.py``
  (``videomme_doc_to_text`` with the default post prompt of ``videomme.yaml``), ``nextqa/utils.py``
  (``nextqa_doc_to_text_mc``; ``nextqa_mc_test.yaml`` sets no pre/post prompt), ``longvideobench/utils.py``
  (``longvideobench_doc_to_text``, post prompt of ``longvideobench_val_v.yaml``).
- ``molmo2``: allenai/molmo2 ``olmo/data/academic_video_datasets.py`` (``MVBench.qa_template``,
  ``VideoMME.question_template``, ``NeXTQA.mc_qoa_template``, ``LongVideoBench.qa_template``).
- ``qwen3_vl``: lmms-eval's ``qwen3_vl`` format of ``videomme.yaml`` (``videomme_doc_to_text_qwen3vl``),
  lmms-eval's defaults elsewhere.

Deviations: subtitles are never added (lmms-eval's subtitle variants and the interleaved LongVideoBench
task are other tasks); lmms-eval's Video-MME wording mentions subtitles anyway and is kept as it is. The
style tag Molmo2's own trainer can put before a prompt (``video_multiple_choice:``, its ``data_formatter``
with ``system_prompt="style"``) is not added: the prompt goes through the checkpoint's chat template as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stts_core.data.benchmarks.choices import LETTERS

PromptStyle = Callable[[str, Sequence[str], "str | None"], str]
DEFAULT_STYLE = "lmms-eval"
LETTER_DIRECTLY = "Answer with the option's letter from the given choices directly."
VIDEOMME_SELECT = ("Select the best answer to the following multiple-choice question based on the video{}. "
                   "Respond with only the letter (A, B, C, or D) of the correct option.")


def lettered(options: Sequence[str], fmt: str = "{}. {}") -> list[str]:
    return [fmt.format(LETTERS[i], text) for i, text in enumerate(options)]


def lmms_eval_style(question: str, options: Sequence[str], benchmark: str | None) -> str:
    if benchmark == "mvbench":
        return "Question:" + question + "\nOption:\n" + "".join(o + "\n" for o in lettered(options, "({}) {}")) \
            + "Only give the best option.\n"
    if benchmark == "videomme":
        return "\n".join([VIDEOMME_SELECT.format(" and the subtitles"), question, *lettered(options),
                          "\n" + LETTER_DIRECTLY])
    if benchmark == "nextqa":
        return "\n".join([question, *lettered(options)])
    return "\n".join([question, *lettered(options), LETTER_DIRECTLY]) + ("\n" if benchmark == "longvideobench" else "")


def molmo2_style(question: str, options: Sequence[str], benchmark: str | None) -> str:
    if benchmark == "mvbench":
        return "\n".join([question, *lettered(options), "Please respond with only the letter of the correct answer."])
    if benchmark == "videomme":
        return "\n".join([VIDEOMME_SELECT.format(""), question, *lettered(options), "The best answer is:"])
    return "\n".join([question, *lettered(options), LETTER_DIRECTLY])


def qwen3_vl_style(question: str, options: Sequence[str], benchmark: str | None) -> str:
    if benchmark == "videomme":
        return "\n".join([f"Question: {question}", "Options:", *lettered(options), "Answer with the option letter only."])
    return lmms_eval_style(question, options, benchmark)


_STYLES: dict[str, PromptStyle] = {}


def register_style(name: str, style: PromptStyle) -> PromptStyle:
    """Add a prompt style (a family registers its own under its family name)."""
    _STYLES[name] = style
    return style


def style_names() -> list[str]:
    return list(_STYLES)


def style_for(family: str | None, declared: str | None = None) -> str:
    """The style a family uses: the one its bundle declares, else the one named after it, else the default."""
    if declared:
        if declared not in _STYLES:
            raise ValueError(f"Unknown multiple-choice prompt style {declared!r}; choose one of {', '.join(_STYLES)}.")
        return declared
    return family if family in _STYLES else DEFAULT_STYLE


def choice_prompt(style: str, question: str, options: Sequence[str], benchmark: str | None) -> str:
    """The prompt that asks ``question`` with its lettered ``options`` in ``style``."""
    if style not in _STYLES:
        raise ValueError(f"Unknown multiple-choice prompt style {style!r}; choose one of {', '.join(_STYLES)}.")
    return _STYLES[style](question, list(options), benchmark)


register_style(DEFAULT_STYLE, lmms_eval_style)
register_style("molmo2", molmo2_style)
register_style("qwen3_vl", qwen3_vl_style)
