"""The server's warm-up at start: both paths run untimed, and a result calls itself a warm-up run only
when it was the first one after the model loaded."""

from __future__ import annotations

from pathlib import Path

from stts_core.data.synthetic import make_clip
from stts_core.data.video import frames_from_array
from stts_core.models.molmo2.checkpoint import load_molmo2
from stts_core.pipeline import RunSettings, run, warm_up


def test_a_fresh_model_says_its_first_run_is_a_warm_up_and_only_that_one(micro_checkpoint: Path) -> None:
    backend = load_molmo2(str(micro_checkpoint), device="cpu")
    video = frames_from_array(make_clip(2, num_frames=6).frames)
    settings = RunSettings(num_frames=6, max_new_tokens=2)
    first, second = run(backend, video, "what moves ?", settings), run(backend, video, "what moves ?", settings)
    assert first.warmup and any("warm-up" in n for n in first.notes)
    assert not second.warmup and not any("warm-up" in n for n in second.notes)


def test_warm_up_runs_both_paths_untimed_and_marks_the_model_warm(micro_checkpoint: Path, monkeypatch) -> None:
    from stts_core.pipeline import request

    backend = load_molmo2(str(micro_checkpoint), device="cpu")
    seen: list[tuple[float, str | None]] = []
    real = request.run_model

    def recording(backend, video, question, keep_ratio, method, settings, *args, **kwargs):
        seen.append((keep_ratio, None if method is None else str(method)))
        return real(backend, video, question, keep_ratio, method, settings, *args, **kwargs)

    monkeypatch.setattr(request, "run_model", recording)
    seconds = warm_up(backend, num_frames=4, rounds=2)
    assert seconds > 0 and backend.warm
    keep = backend.default_keep_ratio
    assert seen == [(1.0, None), (keep, "learned")] * 2
    video = frames_from_array(make_clip(2, num_frames=4).frames)
    monkeypatch.setattr(request, "run_model", real)
    result = run(backend, video, "what moves ?", RunSettings(num_frames=4, max_new_tokens=2))
    assert not result.warmup


def test_app_start_warms_the_selected_model_unless_asked_not_to(micro_checkpoint: Path, monkeypatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_entry", Path(__file__).resolve().parents[1] / "app.py")
    app_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_module)  # app.py (the package `app` shadows the module name)
    calls: list[int] = []
    monkeypatch.setattr(app_module, "warm_up", lambda backend, num_frames: calls.append(num_frames) or 0.0)
    backend = load_molmo2(str(micro_checkpoint), device="cpu")
    app_module.warm_at_start(backend, skip=True)
    assert calls == []
    app_module.warm_at_start(backend)
    assert calls == [app_module.DEFAULT_FRAMES]
    monkeypatch.setattr(app_module, "on_zero_gpu", lambda: True)
    app_module.warm_at_start(backend)
    assert calls == [app_module.DEFAULT_FRAMES]
