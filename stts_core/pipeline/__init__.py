"""One request end to end (see `request`)."""

from stts_core.pipeline.request import RunResult, RunSettings, run

__all__ = ["RunResult", "RunSettings", "run"]
