"""One request end to end, every stage timed: the settings it runs with (`settings`), the vision
side with the method at its stage (`visual`), the two runs (`request`), what comes back (`result`),
the timing definitions (`stages`) and the one answer-agreement rule (`agreement`)."""

from stts_core.pipeline.agreement import answers_agree, normalize_answer
from stts_core.pipeline.request import run, run_model, warm_up
from stts_core.pipeline.result import ModelRun, RunResult
from stts_core.pipeline.settings import RunSettings, validate_question
from stts_core.pipeline.stages import MODEL_STAGES, STAGES, TTFT_STAGES
from stts_core.pipeline.visual import VisualPass, resolve_scorer, visual_pass

__all__ = ["MODEL_STAGES", "STAGES", "TTFT_STAGES", "ModelRun", "RunResult", "RunSettings", "VisualPass",
           "answers_agree", "normalize_answer", "resolve_scorer", "run", "run_model", "validate_question",
           "visual_pass", "warm_up"]
