"""Draw trajectory ids over video: stable colours per id, overlays with boundaries, contact sheets, animations.

    trajtok viz --video clip.mp4 --labels clip.npz --out sheet.png      # PNG contact sheet
    trajtok viz --video clip.mp4 --labels clip.npz --out anim.gif       # or anim.mp4

Frames are (T, H, W, 3) uint8 numpy arrays or (T, C, H, W) torch tensors; ids are (T, H, W) integers with
0 = no trajectory. An id keeps its colour across frames, calls and runs (the colour is a hash of the id).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from trajtok.io.writer import write_video

logger = logging.getLogger(__name__)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor: no torch import needed here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_frames(frames: Any) -> np.ndarray:
    """(T, H, W, 3) uint8 from (T, H, W, 3) / (T, 3, H, W) arrays or tensors, uint8 or float in [0, 1]."""
    f = _to_numpy(frames)
    if f.ndim != 4 or 3 not in (f.shape[1], f.shape[-1]):
        raise ValueError(f"frames must be (T, H, W, 3) or (T, 3, H, W), got shape {tuple(f.shape)}")
    if f.shape[-1] != 3:
        f = f.transpose(0, 2, 3, 1)  # (T, H, W, 3)
    if f.dtype != np.uint8:
        if np.issubdtype(f.dtype, np.floating) and f.size and float(f.max()) <= 1.0:
            f = f * 255.0
        f = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(f)


def as_ids(ids: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """(T, H, W) int64 ids; resized with nearest neighbour to ``size`` (H, W) when given and different."""
    a = _to_numpy(ids)
    if a.ndim != 3 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids must be an integer (T, H, W) array, got {a.dtype} {tuple(a.shape)}")
    a = a.astype(np.int64)
    if size is not None and a.shape[1:] != tuple(size):
        H, W = size
        rows = (np.arange(H) * a.shape[1]) // H
        cols = (np.arange(W) * a.shape[2]) // W
        a = a[:, rows[:, None], cols[None, :]]  # (T, H, W)
    if a.size and a.min() < 0:
        raise ValueError(f"ids must be >= 0 (0 = no trajectory), got minimum {a.min()}")
    return a


def id_colours(ids: np.ndarray) -> np.ndarray:
    """Stable RGB (..., 3) uint8 per id: a hash picks a bright hue; id 0 is black."""
    ids = np.asarray(ids, dtype=np.uint64)
    h = ids * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads consecutive ids over the hue circle
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    hue = (h % np.uint64(3600)).astype(np.float64) / 3600.0
    sat = 0.65 + 0.3 * ((h >> np.uint64(12)) % np.uint64(100)).astype(np.float64) / 100.0
    val = 0.8 + 0.2 * ((h >> np.uint64(24)) % np.uint64(100)).astype(np.float64) / 100.0
    k = np.stack([(5 + hue * 6) % 6, (3 + hue * 6) % 6, (1 + hue * 6) % 6], axis=-1)
    rgb = val[..., None] - val[..., None] * sat[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    out = np.rint(rgb * 255).astype(np.uint8)
    out[ids == 0] = 0
    return out


def colorize(ids: Any) -> np.ndarray:
    """(T, H, W) ids -> (T, H, W, 3) uint8 with a stable colour per id and black for 0."""
    a = as_ids(ids)
    if a.size == 0:
        return np.zeros((*a.shape, 3), dtype=np.uint8)
    lut = id_colours(np.arange(int(a.max()) + 1))
    return lut[a]


def boundaries(ids: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: pixels of a trajectory whose right or lower neighbour has another id."""
    edge = np.zeros(ids.shape, dtype=bool)
    dy = ids[:, 1:, :] != ids[:, :-1, :]
    dx = ids[:, :, 1:] != ids[:, :, :-1]
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    return edge & (ids > 0)


def overlay(frames: Any, ids: Any, alpha: float = 0.5, draw_boundaries: bool = True) -> np.ndarray:
    """Blend id colours over frames (T, H, W, 3) uint8; boundaries are drawn at full opacity."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    f = as_frames(frames)
    a = as_ids(ids, size=f.shape[1:3])
    if a.shape[0] != f.shape[0]:
        raise ValueError(f"frames and ids must have the same T, got frames: {f.shape[0]}, ids: {a.shape[0]}")
    colour = colorize(a)
    out = f.astype(np.float32)
    inside = (a > 0)[..., None]
    out = np.where(inside, (1 - alpha) * out + alpha * colour, out)
    if draw_boundaries:
        edge = boundaries(a)
        out[edge] = colour[edge]
    return np.rint(out).astype(np.uint8)


def pick_frames(T: int, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced indices in [0, T), first and last included."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    return np.unique(np.linspace(0, T - 1, min(T, max_frames)).round().astype(np.int64))


def contact_sheet(
    frames: Any,
    ids: Any,
    path: str | os.PathLike,
    max_frames: int = 16,
    cols: int = 8,
    alpha: float = 0.5,
    pad: int = 2,
    label: bool = True,
) -> Path:
    """PNG grid of overlays of up to ``max_frames`` evenly spaced frames, ``cols`` per row.

    Image size: width = c * W + (c + 1) * pad, height = r * H + (r + 1) * pad with c = min(cols, n) tiles per row
    and r = ceil(n / c) rows for n drawn frames. Each tile is labelled with its frame index when ``label``.
    """
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    f = as_frames(frames)
    idx = pick_frames(f.shape[0], max_frames)
    tiles = overlay(f[idx], as_ids(ids)[idx], alpha=alpha)  # (n, H, W, 3)
    n, H, W, _ = tiles.shape
    c = min(cols, n)
    r = math.ceil(n / c)
    sheet = np.full((r * H + (r + 1) * pad, c * W + (c + 1) * pad, 3), 255, dtype=np.uint8)
    for k in range(n):
        y, x = pad + (k // c) * (H + pad), pad + (k % c) * (W + pad)
        sheet[y : y + H, x : x + W] = tiles[k]
    img = Image.fromarray(sheet)
    if label and min(H, W) >= 32:
        draw = ImageDraw.Draw(img)
        for k, t in enumerate(idx):
            y, x = pad + (k // c) * (H + pad), pad + (k % c) * (W + pad)
            draw.text((x + 2, y + 1), f"t={int(t)}", fill=(255, 255, 255))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def animate(frames: Any, ids: Any, path: str | os.PathLike, fps: float = 10.0, alpha: float = 0.5) -> Path:
    """Overlay animation: ``.gif`` (PIL, loops) or ``.mp4`` / other video containers (H.264 via write_video)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    frames_out = overlay(frames, ids, alpha=alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(fr) for fr in frames_out]
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    if path.suffix.lower() in (".mp4", ".mkv", ".mov", ".avi"):
        return write_video(path, frames_out, fps=fps)
    raise ValueError(f"cannot tell the animation format from {path.name!r}: use .gif or .mp4")
