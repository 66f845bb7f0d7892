"""Pictures and charts of one STTS run, as pure functions of arrays (no Gradio here).

The keep-mask grid is split in two steps so the keep-ratio slider stays fast: `build_canvas` does
the per-run work once (downscaling, group maps, labels, the dimmed copy), and `draw_masks` only
selects between the bright and dimmed pixels for a new keep mask and tiles the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def frame_label(t: int, timestamp: float) -> str:
    return f"#{t}  {timestamp:.2f}s"


def _headers(timestamps: np.ndarray, width: int) -> np.ndarray:
    out = np.empty((len(timestamps), HEADER_H, width, 3), dtype=np.uint8)
    out[:] = BACKGROUND
    for t, ts in enumerate(timestamps):
        cv2.putText(out[t], frame_label(t, float(ts)), (2, HEADER_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------------------- keep masks


@dataclass
class MaskCanvas:
    """One run's frame grid with everything that does not depend on the keep ratio.

    `key` maps every grid pixel to its (frame, group) cell as an index into keep.ravel() (-1 for
    labels, gaps and uncovered pixels), so a new keep mask is drawn with two gathers and no loops.
    """

    bright: np.ndarray  # (H, W, 3) the frames with their labels
    dim: np.ndarray  # (H, W, 3) the same with every frame pixel dimmed
    key: np.ndarray  # (H, W) int32 index into keep.ravel(), -1 = not part of a group
    edge_pos: np.ndarray  # (E,) flat pixel positions on a group box's inner edge
    edge_key: np.ndarray  # (E,) their index into keep.ravel()
    boxes: np.ndarray  # (G, 4) group boxes [y0, y1, x0, x1) inside one tile
    tile_size: tuple[int, int]  # (h, w) of one frame picture
    cols: int
    shape: tuple[int, int]  # (frames, groups) of the keep masks it draws


def build_canvas(frames: np.ndarray, timestamps: np.ndarray, groups: np.ndarray,
                 patch_grid: tuple[int, int], side: int | None = None) -> MaskCanvas:
    """Per-run precomputation for `draw_masks` and `draw_scores`."""
    t, height, width = frames.shape[:3]
    g = groups.shape[0]
    h, w = tile_shape(height, width, side or tile_side(t))
    cols = grid_columns(t, h, w)
    base = downscale_frames(frames, (h, w))
    headers = _headers(timestamps, w)
    bright = tile_grid(np.concatenate([headers, base], axis=1), cols, BACKGROUND)
    dim_tiles = (base.astype(np.float32) * DIM + 0.5).astype(np.uint8)
    dim = tile_grid(np.concatenate([headers, dim_tiles], axis=1), cols, BACKGROUND)

    def key_grid(per_pixel: np.ndarray) -> np.ndarray:
        cell = np.where(per_pixel >= 0, np.arange(t, dtype=np.int32)[:, None, None] * g + per_pixel[None], -1)
        top = np.full((t, HEADER_H, w), -1, dtype=np.int32)
        return tile_grid(np.concatenate([top, cell.astype(np.int32)], axis=1), cols, -1)

    boxes = group_boxes(groups, patch_grid, h, w)
    key = key_grid(pixel_groups(groups, patch_grid, h, w))
    edges = key_grid(box_edges(boxes, h, w)).ravel()
    edge_pos = np.flatnonzero(edges >= 0)
    return MaskCanvas(bright=bright, dim=dim, key=key, edge_pos=edge_pos, edge_key=edges[edge_pos],
                      boxes=boxes, tile_size=(h, w), cols=cols, shape=(t, g))


def draw_masks(canvas: MaskCanvas, keep: np.ndarray) -> np.ndarray:
    """The frame grid with pruned groups dimmed to DIM and kept groups outlined; (H, W, 3) uint8."""
    flat = np.asarray(keep, dtype=bool).reshape(-1)
    if flat.size != canvas.shape[0] * canvas.shape[1]:
        raise ValueError(f"Keep mask of shape {np.shape(keep)} does not fit a canvas of {canvas.shape}.")
    pruned = np.take(np.append(~flat, False).view(np.uint8), canvas.key)
    out = canvas.bright.copy()
    cv2.copyTo(canvas.dim, pruned, out)
    out.reshape(-1, 3)[canvas.edge_pos[flat[canvas.edge_key]]] = OUTLINE
    return out


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


def draw_scores(canvas: MaskCanvas, scores: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Each frame tinted by its groups' scores (viridis over the video's score range) plus a colour bar."""
    lo, hi = score_range(scores)
    level = np.clip((np.asarray(scores, dtype=np.float32) - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.int16)
    px = np.append(level.reshape(-1), -1)[canvas.key]
    inside = px >= 0
    out = canvas.bright.copy()
    tint = VIRIDIS[px[inside]].astype(np.float32)
    out[inside] = (out[inside].astype(np.float32) * (1 - alpha) + tint * alpha + 0.5).astype(np.uint8)
    return np.concatenate([out, colorbar(out.shape[1], lo, hi)], axis=0)


# ------------------------------------------------------------------------------------------- charts


def _frame_ticks(timestamps: np.ndarray) -> list[str]:
    return [frame_label(t, float(ts)) for t, ts in enumerate(timestamps)]


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


def stage_chart(stages: list[str], baseline_ms: list[float] | None, stts_ms: list[float], warmup: bool) -> go.Figure:
    """Grouped bars of measured per-stage times (ms), baseline beside STTS."""
    data = []
    if baseline_ms is not None:
        data.append({"type": "bar", "x": stages, "y": baseline_ms, "name": "baseline (no pruning)",
                     "marker": {"color": BASELINE_COLOR}})
    data.append({"type": "bar", "x": stages, "y": stts_ms, "name": "STTS", "marker": {"color": STTS_COLOR}})
    title = "Measured time per stage (ms)" + (", warm-up run" if warmup else "")
    return go.Figure(data=data, layout=_layout(title, 360, barmode="group", yaxis={"title": {"text": "ms"}}))
