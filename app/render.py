"""Pictures and charts of one STTS run, as pure functions of arrays (no Gradio here).

The keep-mask grid is split in two steps so the keep-ratio slider stays fast: `build_canvas` does
the per-run work once (downscaling, group maps, labels, the dimmed copy), and `draw_masks` only
selects between the bright and dimmed pixels for a new keep mask and tiles the result.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go

DIM = 0.3  # brightness of a pruned group
OUTLINE = np.array([0, 230, 118], dtype=np.uint8)  # kept-group outline (RGB)
BACKGROUND = np.array([24, 24, 27], dtype=np.uint8)
HEADER_H = 16
PAD = 4
KEPT_COLOR = "#00c853"
PRUNED_COLOR = "#9e9e9e"
BASELINE_COLOR = "#607d8b"
STTS_COLOR = "#00897b"


def _viridis_lut() -> np.ndarray:
    """(256, 3) RGB viridis, the same map as the plotly heatmap's colour scale."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_VIRIDIS)
    return np.ascontiguousarray(bgr[:, 0, ::-1])


VIRIDIS = _viridis_lut()


# ------------------------------------------------------------------------------------------- geometry


def tile_side(num_frames: int) -> int:
    """Longest side of one frame tile: smaller tiles for more frames keep the grid near 1000 px."""
    for limit, side in ((4, 256), (16, 192), (36, 144), (64, 128), (144, 96)):
        if num_frames <= limit:
            return side
    return 72


def tile_shape(height: int, width: int, side: int) -> tuple[int, int]:
    scale = side / max(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


def downscale_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) uint8 with area averaging (no aliasing on thin edges)."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(frames)
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def patch_owner(groups: np.ndarray, patch_grid: tuple[int, int]) -> np.ndarray:
    """(pr * pc,) group index of every patch of a frame, -1 for a patch no group covers."""
    owner = np.full(patch_grid[0] * patch_grid[1], -1, dtype=np.int64)
    gi, slot = np.nonzero(groups >= 0)
    owner[groups[gi, slot]] = gi
    return owner


def pixel_groups(groups: np.ndarray, patch_grid: tuple[int, int], height: int, width: int) -> np.ndarray:
    """(height, width) group index per pixel of a frame (-1: uncovered).

    The processor squashes a frame onto pr x pc patches, so pixel row y lies in patch row
    floor(y * pr / height), and likewise for columns.
    """
    pr, pc = patch_grid
    rows = (np.arange(height) * pr) // height
    cols = (np.arange(width) * pc) // width
    return patch_owner(groups, patch_grid)[rows[:, None] * pc + cols[None, :]]


def group_boxes(groups: np.ndarray, patch_grid: tuple[int, int], height: int, width: int) -> np.ndarray:
    """(G, 4) pixel box [y0, y1, x0, x1) of each group: the bounding box of its valid patches.

    Edges are ceil(r * height / pr), matching the pixel-to-patch rule of `pixel_groups`.
    """
    pr, pc = patch_grid
    boxes = np.zeros((groups.shape[0], 4), dtype=np.int64)
    for g, row in enumerate(groups):
        valid = row[row >= 0]
        if valid.size == 0:
            continue
        r, c = np.divmod(valid, pc)
        boxes[g] = (-(-r.min() * height // pr), -(-(r.max() + 1) * height // pr),
                    -(-c.min() * width // pc), -(-(c.max() + 1) * width // pc))
    return boxes


def box_edges(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) group index of pixels on the inner edge of their group's box, else -1."""
    edge = np.full((height, width), -1, dtype=np.int64)
    for g, (y0, y1, x0, x1) in enumerate(boxes):
        if y1 <= y0 or x1 <= x0:
            continue
        edge[y0, x0:x1] = g
        edge[y1 - 1, x0:x1] = g
        edge[y0:y1, x0] = g
        edge[y0:y1, x1 - 1] = g
    return edge


def grid_columns(num_frames: int, tile_h: int, tile_w: int) -> int:
    """Columns that make the tiled grid roughly square."""
    cols = round(math.sqrt(num_frames * (tile_h + HEADER_H + PAD) / (tile_w + PAD)))
    return int(min(max(cols, 1), num_frames))


def tile_grid(tiles: np.ndarray, cols: int, fill: np.ndarray | int) -> np.ndarray:
    """(T, h, w, ...) -> one (rows * h + gaps, cols * w + gaps, ...) array, PAD cells of `fill` between tiles."""
    t, h, w = tiles.shape[:3]
    rest = tiles.shape[3:]
    rows = -(-t // cols)
    padded = np.empty((rows * cols, h + PAD, w + PAD, *rest), dtype=tiles.dtype)
    padded[:] = fill
    padded[:t, :h, :w] = tiles
    grid = padded.reshape(rows, cols, h + PAD, w + PAD, *rest).swapaxes(1, 2)
    grid = grid.reshape(rows * (h + PAD), cols * (w + PAD), *rest)
    return np.ascontiguousarray(grid[: rows * (h + PAD) - PAD, : cols * (w + PAD) - PAD])


def tile_origin(t: int, cols: int, tile_h: int, tile_w: int) -> tuple[int, int]:
    """Top-left pixel (y, x) of frame t's picture (below its label) in a grid from `draw_masks`."""
    row, col = divmod(t, cols)
    return row * (tile_h + HEADER_H + PAD) + HEADER_H, col * (tile_w + PAD)


def frame_label(t: int, timestamp: float | np.ndarray) -> str:
    """"#t  1.50s"; a row that covers several frames (a Qwen-VL temporal patch) shows each frame's time."""
    return f"#{t}  " + "+".join(f"{x:.2f}s" for x in np.atleast_1d(np.asarray(timestamp, dtype=np.float64)))


def _headers(timestamps: np.ndarray, width: int, first: int = 0) -> np.ndarray:
    out = np.empty((len(timestamps), HEADER_H, width, 3), dtype=np.uint8)
    out[:] = BACKGROUND
    for t, ts in enumerate(timestamps):
        cv2.putText(out[t], frame_label(first + t, ts), (2, HEADER_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------------------- keep masks


PAGE_FRAMES = 64  # frames per contact-sheet page: at most 8 x 8 tiles, so labels stay readable at 256 frames
DIM_LUT = (np.arange(256, dtype=np.float32) * DIM + 0.5).astype(np.uint8)


TILE_QUALITY = 92  # JPEG quality of the stored tiles (the page itself is sent as JPEG too)


def encode_jpeg(picture: np.ndarray, quality: int = TILE_QUALITY) -> bytes:
    """RGB uint8 picture -> JPEG bytes."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("Could not encode a picture as JPEG.")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class JpegFile(Sequence):
    """JPEG pictures in one file on disk, read back one or a run at a time: what a session keeps in
    memory is the byte offsets only (8 bytes a picture). Indexing gives bytes, slicing a list of them
    (one read for a contiguous run, e.g. a contact-sheet page)."""

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        self.path = path
        self.offsets = offsets  # (n + 1,) int64: picture i is bytes offsets[i]:offsets[i + 1]

    @classmethod
    def write(cls, path: Path, pictures: Iterable[bytes]) -> JpegFile:
        offsets = [0]
        with Path(path).open("wb") as fh:
            for data in pictures:
                fh.write(data)
                offsets.append(offsets[-1] + len(data))
        return cls(Path(path), np.asarray(offsets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _read(self, start: int, stop: int) -> list[bytes]:
        if stop <= start:
            return []
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        try:
            with self.path.open("rb") as fh:
                fh.seek(lo)
                data = fh.read(hi - lo)
        except FileNotFoundError as err:
            raise ValueError("This run's pictures were cleaned up; run the video again.") from err
        cut = self.offsets[start:stop + 1] - lo
        return [data[int(a):int(b)] for a, b in zip(cut[:-1], cut[1:], strict=True)]

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._read(start, stop)
            return [self._read(i, i + 1)[0] for i in range(start, stop, step)]
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(index)
        return self._read(i, i + 1)[0]

    @property
    def nbytes(self) -> int:
        """Memory held (the offsets), not the size of the file."""
        return int(self.offsets.nbytes)

    @property
    def stored_bytes(self) -> int:
        return int(self.offsets[-1])


def held_bytes(pictures: Sequence[bytes]) -> int:
    """Memory a sequence of JPEGs holds: their bytes in memory, or a `JpegFile`'s offsets."""
    return pictures.nbytes if isinstance(pictures, JpegFile) else sum(len(b) for b in pictures)


@dataclass
class MaskCanvas:
    """One run's frame tiles with everything that does not depend on the keep ratio.

    The tiles are JPEG (a few kB each), in memory or (the app) in a `JpegFile` under the run's folder,
    decoded one page at a time, plus one per-pixel group map shared by every tile, so a session's cache
    stays well under 1 MB at 256 frames.
    """

    tiles: Sequence[bytes]  # one JPEG per frame, (h, w) pixels
    timestamps: np.ndarray  # (T,) seconds, for the labels
    owner: np.ndarray  # (h, w) group of every tile pixel; G (one past the last group) = no group
    edge: np.ndarray  # (h, w) group whose box's inner edge passes through the pixel; G = none
    boxes: np.ndarray  # (G, 4) group boxes [y0, y1, x0, x1) inside one tile
    tile_size: tuple[int, int]  # (h, w) of one frame picture
    cols: int
    shape: tuple[int, int]  # (frames, groups) of the keep masks it draws
    page_frames: int = PAGE_FRAMES

    @property
    def pages(self) -> int:
        return max(1, -(-self.shape[0] // self.page_frames))

    def page_range(self, page: int) -> tuple[int, int]:
        """First and one-past-last frame of a page (pages count from 0; out-of-range pages are clamped)."""
        p = min(max(int(page), 0), self.pages - 1)
        return p * self.page_frames, min(self.shape[0], (p + 1) * self.page_frames)

    def page_tiles(self, t0: int, t1: int) -> np.ndarray:
        """(t1 - t0, h, w, 3) uint8 tiles of frames t0..t1-1, decoded (a fresh array the caller may change)."""
        return np.stack([decode_jpeg(b) for b in self.tiles[t0:t1]])

    @property
    def nbytes(self) -> int:
        return held_bytes(self.tiles) + sum(a.nbytes for a in (self.timestamps, self.owner, self.edge, self.boxes))


def build_canvas(frames: np.ndarray, timestamps: np.ndarray, groups: np.ndarray,
                 patch_grid: tuple[int, int], side: int | None = None, page_frames: int = PAGE_FRAMES,
                 store: Path | None = None) -> MaskCanvas:
    """Per-run precomputation for `draw_masks` and `draw_scores`; with `store`, the tiles go to that file."""
    t, height, width = frames.shape[:3]
    g = groups.shape[0]
    per_page = min(t, page_frames)
    h, w = tile_shape(height, width, side or tile_side(per_page))
    boxes = group_boxes(groups, patch_grid, h, w)
    owner = pixel_groups(groups, patch_grid, h, w)
    edge = box_edges(boxes, h, w)
    encoded = (encode_jpeg(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) if f.shape[:2] != (h, w) else f)
               for f in frames)
    tiles: Sequence[bytes] = JpegFile.write(store, encoded) if store is not None else list(encoded)
    return MaskCanvas(tiles=tiles, timestamps=np.array(timestamps, dtype=np.float64),
                      owner=np.where(owner >= 0, owner, g).astype(np.int32),
                      edge=np.where(edge >= 0, edge, g).astype(np.int32), boxes=boxes, tile_size=(h, w),
                      cols=grid_columns(per_page, h, w), shape=(t, g), page_frames=page_frames)


def _check_shape(canvas: MaskCanvas, array: np.ndarray) -> None:
    if tuple(np.shape(array)) != canvas.shape:
        raise ValueError(f"Array of shape {np.shape(array)} does not fit a canvas of {canvas.shape}.")


def _grid(canvas: MaskCanvas, tiles: np.ndarray, t0: int) -> np.ndarray:
    headers = _headers(canvas.timestamps[t0:t0 + len(tiles)], tiles.shape[2], first=t0)
    return tile_grid(np.concatenate([headers, tiles], axis=1), canvas.cols, BACKGROUND)


def draw_masks(canvas: MaskCanvas, keep: np.ndarray, page: int = 0) -> np.ndarray:
    """One page of the frame grid with pruned groups dimmed to DIM and kept groups outlined; (H, W, 3) uint8."""
    _check_shape(canvas, keep)
    t0, t1 = canvas.page_range(page)
    k = np.asarray(keep, dtype=bool)[t0:t1]
    kept_px = np.concatenate([k, np.ones((len(k), 1), dtype=bool)], axis=1)[:, canvas.owner]
    outlined = np.concatenate([k, np.zeros((len(k), 1), dtype=bool)], axis=1)[:, canvas.edge]
    tiles = canvas.page_tiles(t0, t1)
    pruned = ~kept_px
    tiles[pruned] = DIM_LUT[tiles[pruned]]
    tiles[outlined] = OUTLINE
    return _grid(canvas, tiles, t0)


# ------------------------------------------------------------------------------------------- scores


def score_range(scores: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(scores)), float(np.max(scores))
    return (lo, hi) if hi - lo > 1e-6 else (lo, lo + 1e-6)


def colorbar(width: int, lo: float, hi: float, height: int = 40) -> np.ndarray:
    """A horizontal viridis bar from lo to hi with its values written under it; (height, width, 3)."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = BACKGROUND
    x0, x1 = 8, max(width - 8, 9)
    ramp = np.linspace(0, 255, x1 - x0).round().astype(np.uint8)
    out[6:20, x0:x1] = VIRIDIS[ramp][None]
    font, scale, color = cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235)
    decimals = min(8, max(2, math.ceil(-math.log10(hi - lo)) + 1))
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = int(x0 + frac * (x1 - x0 - 1))
        out[20:24, x] = color
        text = f"{lo + frac * (hi - lo):.{decimals}f}"
        (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
        cv2.putText(out, text, (min(max(x - tw // 2, 0), width - tw), 36), font, scale, color, 1, cv2.LINE_AA)
    return out


def draw_scores(canvas: MaskCanvas, scores: np.ndarray, alpha: float = 0.55, page: int = 0) -> np.ndarray:
    """One page of frames tinted by their groups' scores (viridis over the video's range) plus a colour bar."""
    _check_shape(canvas, scores)
    lo, hi = score_range(scores)
    t0, t1 = canvas.page_range(page)
    level = np.clip((np.asarray(scores, dtype=np.float32)[t0:t1] - lo) / (hi - lo) * 255.0 + 0.5, 0, 255)
    level = np.concatenate([level.astype(np.int16), np.full((t1 - t0, 1), -1, dtype=np.int16)], axis=1)
    px = level[:, canvas.owner]
    inside = px >= 0
    tiles = canvas.page_tiles(t0, t1)
    tint = VIRIDIS[px[inside]].astype(np.float32)
    tiles[inside] = (tiles[inside].astype(np.float32) * (1 - alpha) + tint * alpha + 0.5).astype(np.uint8)
    out = _grid(canvas, tiles, t0)
    return np.concatenate([out, colorbar(out.shape[1], lo, hi)], axis=0)


# ------------------------------------------------------------------------------------------- charts


def _frame_ticks(timestamps: np.ndarray) -> list[str]:
    return [frame_label(t, ts) for t, ts in enumerate(timestamps)]


def _layout(title: str, height: int, **extra: object) -> dict:
    """Shared chart style. The "none" template keeps figures cheap to build and serialise (the slider
    redraws two of them on every move)."""
    axis = {"gridcolor": "#e5e7eb", "zeroline": False, "automargin": True}
    layout = {"template": "none", "title": {"text": title, "x": 0.01, "font": {"size": 14}}, "height": height,
              "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "paper_bgcolor": "white", "plot_bgcolor": "white",
              "font": {"size": 11}, "xaxis": dict(axis), "yaxis": dict(axis),
              "legend": {"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"}}
    for key, value in extra.items():
        if key in ("xaxis", "yaxis"):
            layout[key].update(value)  # type: ignore[union-attr]
        else:
            layout[key] = value
    return layout


def scores_heatmap(scores: np.ndarray, keep: np.ndarray, timestamps: np.ndarray) -> go.Figure:
    """Frames (rows, first at the top) x groups (columns) of scores; pruned cells marked with a cross."""
    t, g = scores.shape
    labels = _frame_ticks(timestamps)
    pt, pg = np.nonzero(~np.asarray(keep, dtype=bool))
    heat = {"type": "heatmap", "z": np.asarray(scores, dtype=np.float64).round(4).tolist(), "x": list(range(g)),
            "y": labels, "colorscale": "Viridis", "colorbar": {"title": {"text": "score"}, "thickness": 12},
            "hovertemplate": "%{y}<br>group %{x}<br>score %{z:.3f}<extra></extra>"}
    marks = {"type": "scatter", "x": pg.tolist(), "y": [labels[i] for i in pt], "mode": "markers", "name": "pruned",
             "hoverinfo": "skip", "marker": {"symbol": "x-thin", "size": max(4, min(9, 420 // max(t, g))),
                                            "line": {"width": 1.5, "color": "rgba(255,255,255,0.9)"}}}
    layout = _layout(f"Scores per group, {len(pt)} of {t * g} pruned (x)", min(240 + 14 * t, 1400),
                     showlegend=False, xaxis={"title": {"text": "group (row-major in the frame)"}, "tick0": 0,
                                              "dtick": max(1, math.ceil(g / 16))},
                     yaxis={"autorange": "reversed", "type": "category", "title": {"text": "frame"}})
    return go.Figure(data=[heat, marks], layout=layout)


def kept_bars(keep: np.ndarray, timestamps: np.ndarray) -> go.Figure:
    """Kept and pruned groups per frame, stacked; the kept trace's y sums to keep.sum()."""
    keep = np.asarray(keep, dtype=bool)
    kept = keep.sum(axis=1)
    frames = [f"#{t}" for t in range(len(kept))]
    times = _frame_ticks(timestamps)
    hover = "%{text}<br>%{y} groups %{fullData.name}<extra></extra>"
    data = [
        {"type": "bar", "x": frames, "y": kept.tolist(), "name": "kept", "marker": {"color": KEPT_COLOR},
         "text": times, "textposition": "none", "hovertemplate": hover},
        {"type": "bar", "x": frames, "y": (keep.shape[1] - kept).tolist(), "name": "pruned",
         "marker": {"color": PRUNED_COLOR}, "text": times, "textposition": "none", "hovertemplate": hover},
    ]
    layout = _layout(f"Kept groups per frame ({int(kept.sum())} of {keep.size})", 320, barmode="stack",
                     bargap=0.1, xaxis={"type": "category", "title": {"text": "frame"}},
                     yaxis={"title": {"text": "groups"}})
    return go.Figure(data=data, layout=layout)


STAGE_COLORS = ("#90a4ae", "#b0bec5", "#5c6bc0", "#ffb300", "#26a69a", "#ab47bc", "#ef5350", "#8d6e63")


def stage_chart(stages: list[str], runs: dict[str, list[float]], title: str) -> go.Figure:
    """One horizontal bar per run, stacked by stage (ms), so small model stages stay visible beside big ones."""
    names = list(runs)
    data = [{"type": "bar", "orientation": "h", "y": names, "x": [runs[n][i] for n in names], "name": stage,
             "marker": {"color": STAGE_COLORS[i % len(STAGE_COLORS)]},
             "hovertemplate": f"{stage}: %{{x:.1f}} ms<extra>%{{y}}</extra>"}
            for i, stage in enumerate(stages)]
    return go.Figure(data=data, layout=_layout(title, 220 + 40 * len(names), barmode="stack",
                                               xaxis={"title": {"text": "ms"}},
                                               yaxis={"autorange": "reversed", "type": "category"},
                                               legend={"orientation": "h", "y": -0.5, "x": 0, "yanchor": "top"}))


# ---------------------------------------------------------------------------------- frames you can watch


def masked_frame(frame: np.ndarray, keep_t: np.ndarray, owner: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """One frame with its pruned groups dimmed and kept groups outlined. `owner`/`edge` are the frame-sized
    maps of `pixel_groups` / `box_edges` with -1 replaced by G (no group)."""
    k = np.asarray(keep_t, dtype=bool)
    out = frame.copy()
    pruned = ~np.append(k, True)[owner]
    out[pruned] = DIM_LUT[out[pruned]]
    out[np.append(k, False)[edge]] = OUTLINE
    return out


def side_by_side(frames: np.ndarray, keep: np.ndarray, groups: np.ndarray, patch_grid: tuple[int, int],
                 timestamps: np.ndarray, height: int = 240) -> Iterator[np.ndarray]:
    """Pictures of the masks video, one per frame: original | masked, labelled; each
    (height + HEADER_H, 2 * w + PAD, 3) uint8, made one at a time so a long clip needs no big buffer."""
    fh, fw = frames.shape[1:3]
    w = max(8, round(fw * height / fh))
    g = groups.shape[0]
    owner = pixel_groups(groups, patch_grid, height, w)
    owner = np.where(owner >= 0, owner, g)
    edge = box_edges(group_boxes(groups, patch_grid, height, w), height, w)
    edge = np.where(edge >= 0, edge, g)
    for i, frame in enumerate(frames):
        small = cv2.resize(frame, (w, height), interpolation=cv2.INTER_AREA)
        out = np.empty((height + HEADER_H, 2 * w + PAD, 3), dtype=np.uint8)
        out[:] = BACKGROUND
        out[HEADER_H:, :w] = small
        out[HEADER_H:, w + PAD:] = masked_frame(small, keep[i], owner, edge)
        label = f"{frame_label(i, timestamps[i])}   original | STTS keeps {int(np.sum(keep[i]))} of {g} groups"
        cv2.putText(out, label, (4, HEADER_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (235, 235, 235), 1, cv2.LINE_AA)
        yield out


def frame_figure(image: np.ndarray, t: int, scores: np.ndarray, keep: np.ndarray, groups: np.ndarray,
                 patch_grid: tuple[int, int], timestamp: float | np.ndarray) -> go.Figure:
    """Frame t large, pruned groups shaded; hovering a patch names its group, score, rank and kept state."""
    h, w = image.shape[:2]
    pr, pc = patch_grid
    total = scores.size
    order = np.argsort(-np.asarray(scores, dtype=np.float64).ravel(), kind="stable")
    ranks = np.empty(total, dtype=np.int64)
    ranks[order] = np.arange(1, total + 1)
    ranks = ranks.reshape(scores.shape)[t]
    owner = patch_owner(groups, patch_grid).reshape(pr, pc)
    kept = np.where(owner >= 0, np.asarray(keep[t], dtype=float)[np.maximum(owner, 0)], 1.0)
    text = [[("no group" if owner[r, c] < 0 else
              f"group {owner[r, c]}<br>score {scores[t, owner[r, c]]:.4f}<br>rank {ranks[owner[r, c]]} of {total}"
              f"<br>{'kept' if keep[t, owner[r, c]] else 'pruned'}") for c in range(pc)] for r in range(pr)]
    source = "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(image, 85)).decode("ascii")
    shade = {"type": "heatmap", "z": kept.tolist(), "x0": w / pc / 2, "dx": w / pc, "y0": h / pr / 2, "dy": h / pr,
             "zmin": 0, "zmax": 1, "showscale": False, "text": text, "hoverinfo": "text",
             "colorscale": [[0, "rgba(0,0,0,0.6)"], [1, "rgba(0,0,0,0)"]]}
    n_kept = int(np.sum(keep[t]))
    layout = _layout(f"{frame_label(t, timestamp)}: {n_kept} of {keep.shape[1]} groups kept (pruned shaded; hover "
                     "for scores)", max(320, min(720, round(h * 900 / max(w, 1)) + 60)),
                     xaxis={"visible": False, "range": [0, w]},
                     yaxis={"visible": False, "range": [h, 0], "scaleanchor": "x"})
    return go.Figure(data=[{"type": "image", "source": source, "hoverinfo": "skip"}, shade], layout=layout)
