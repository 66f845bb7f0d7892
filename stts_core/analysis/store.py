"""An analysis output folder: results.jsonl streamed as rows arrive (resumable; torchrun ranks write
their own part files, merged by rank 0), the manifest that says which rows can be reused, and the
thumbnails of examples worth a look."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stts_core.analysis.records import THUMB_SIDE, Setting, Thumb
from stts_core.data.tables import DatasetError
from stts_core.models.base import PreparedInputs

RESULTS, SUMMARY, REPORT, MANIFEST = "results.jsonl", "summary.csv", "report.html", "analysis.json"


def make_thumb(frames: np.ndarray, inputs: PreparedInputs) -> Thumb:
    """Frames (T, H, W, 3) shrunk to THUMB_SIDE, with the group geometry of the model inputs."""
    import cv2

    h, w = frames.shape[1:3]
    scale = min(1.0, THUMB_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return Thumb(frames=small, groups=inputs.groups.cpu().numpy(), patch_grid=tuple(inputs.patch_grid))


def thumb_path(out_dir: Path, example_id: str) -> Path:
    return Path(out_dir) / "thumbs" / f"{hashlib.sha1(example_id.encode('utf-8', 'replace')).hexdigest()[:16]}.npz"


def save_thumb(out_dir: Path, example_id: str, thumb: Thumb) -> None:
    path = thumb_path(out_dir, example_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, frames=thumb.frames, groups=thumb.groups, patch_grid=np.asarray(thumb.patch_grid))


def load_thumb(out_dir: Path, example_id: str) -> Thumb | None:
    path = thumb_path(out_dir, example_id)
    if not path.exists():
        return None
    with np.load(path) as data:
        grid = tuple(int(x) for x in data["patch_grid"])
        return Thumb(frames=data["frames"], groups=data["groups"], patch_grid=(grid[0], grid[1]))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a line cut short by an interrupted run is skipped (it is redone)."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row and "setting" in row:
            rows.append(row)
    return rows


def dedupe(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """One row per (example id, setting): a successful row wins over a failed one, a later over an earlier."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (str(row["id"]), str(row["setting"]))
        if key not in best or best[key].get("error") or not row.get("error"):
            best[key] = row
    return best


def ordered(rows: Iterable[dict[str, Any]], plan: Sequence[Setting]) -> list[dict[str, Any]]:
    """Dataset order, then the settings' order (the baseline first)."""
    rank = {s.key: i for i, s in enumerate(plan)}
    return sorted(rows, key=lambda r: (int(r.get("index", 0)), rank.get(r["setting"], len(rank)), r["setting"]))


class Store:
    """An output folder: the manifest, this rank's streamed part file, and the merge into results.jsonl."""

    def __init__(self, out_dir: Path, rank: int, world: int) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part = self.dir / (RESULTS if world == 1 else f"results.rank{rank}.jsonl")
        self.rank = rank
        self._fh: io.TextIOWrapper | None = None

    def check_manifest(self, manifest: dict[str, Any]) -> None:
        path = self.dir / MANIFEST
        if path.exists():
            old = json.loads(path.read_text())
            diff = [f"{k} {old.get(k)!r} (now {v!r})" for k, v in manifest.items() if old.get(k) != v]
            if diff:
                raise DatasetError(f"'{self.dir}' holds results made with {'; '.join(diff)}; use another "
                                   "output folder or remove it.")
        elif self.rank == 0:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, path)  # atomic: the other ranks may be reading it

    def files(self) -> list[Path]:
        return [self.dir / RESULTS, *sorted(self.dir.glob("results.rank*.jsonl"))]

    def done(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Rows already computed successfully (a failed row is retried)."""
        rows = dedupe(r for f in self.files() for r in read_rows(f))
        return {k: r for k, r in rows.items() if not r.get("error")}

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            if self.part.exists() and self.part.stat().st_size and not self.part.read_bytes().endswith(b"\n"):
                with self.part.open("a", encoding="utf-8") as fh:
                    fh.write("\n")  # close a line an interrupted run left unfinished
            self._fh = self.part.open("a", encoding="utf-8")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def merge(self, plan: Sequence[Setting]) -> list[dict[str, Any]]:
        """Every rank's rows into results.jsonl in dataset order (atomically); returns all rows kept."""
        rows = ordered(dedupe(r for f in self.files() for r in read_rows(f)).values(), plan)
        tmp = self.dir / f".{RESULTS}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        os.replace(tmp, self.dir / RESULTS)
        for part in self.dir.glob("results.rank*.jsonl"):
            part.unlink()
        return rows


