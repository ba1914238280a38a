"""``trajtok eval``: how well a checkpoint's trajectories match labelled ones, and how many tokens it emits.

    trajtok eval --checkpoint runs/quickstart --data data/synth --split test --json runs/quickstart/eval_test.json

Per video, the model tokenizes the whole video clip by clip with carried queries (``TrajTok.tokenize_video``), the
assignment logits are upsampled (bilinear) to the label resolution and their argmax is the predicted query of each
pixel; a pixel's predicted trajectory is the token row its query held in that frame (``TrajectoryTokens.frame_rows``:
a query released and seen again starts a new row, rows joined by ``merge_returning`` are one; ``by="queries"``
counts a query's rows as one trajectory, as these metrics did before). Metrics, all over space and time at once (a trajectory is the set of its pixels in every frame):

- ``miou``: space-time mIoU. Hungarian matching on -IoU between the ground-truth trajectories (objects; the
  background is not one of them) and all predicted trajectories; each GT trajectory scores the IoU of its match
  (0 when unmatched); the video's score is the mean over its GT trajectories.
- ``association``: STQ's association quality AQ (Weber et al., 2021) with one "object" class: for each GT
  trajectory g, sum over predicted trajectories p of |p & g| x IoU(p, g), divided by |g|, then averaged over GT
  trajectories. Only pixels of GT objects count (background and unlabeled pixels are excluded, as STQ excludes
  stuff and void), so a prediction is judged on how it groups object pixels over time, not on the background.
- ``coverage``: for each GT trajectory, the fraction of its pixels inside its single most-overlapping predicted
  trajectory (all frames), averaged; 1 means no GT trajectory is split into several predicted ones.

Videos without GT objects have no score (NaN) and are left out of the means.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from trajtok.data import TrajectoryClipDataset

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------- metrics


def overlap_matrix(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every (GT trajectory, predicted trajectory) pair over all frames.

    Args:
        gt: (T, H, W) int GT trajectory ids; 0 = background, < 0 = unlabeled (both excluded).
        pred: (T, H, W) int predicted trajectory ids (any values >= 0).
    Returns:
        (inter (M, P), gt_sizes (M,), pred_sizes (P,)) where rows are the GT ids > 0 in ascending order and
        columns the predicted ids present anywhere in ``pred``; ``pred_sizes`` count all pixels of each
        predicted trajectory (background included).
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"gt and pred must both be (T, H, W) with the same shape, got {gt.shape} and {pred.shape}")
    if pred.size and pred.min() < 0:
        raise ValueError(f"pred ids must be >= 0, got minimum {pred.min()}")
    gt_ids = np.unique(gt[gt > 0])
    pred_ids, pred_flat = np.unique(pred.reshape(-1), return_inverse=True)
    pred_sizes = np.bincount(pred_flat, minlength=len(pred_ids))
    g = gt.reshape(-1)
    on = g > 0
    gt_index = np.searchsorted(gt_ids, g[on])
    inter = np.bincount(gt_index * len(pred_ids) + pred_flat[on], minlength=len(gt_ids) * len(pred_ids))
    inter = inter.reshape(len(gt_ids), len(pred_ids))  # (M, P)
    return inter, inter.sum(axis=1), pred_sizes


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(M, P) space-time IoU |g & p| / |g | p| (all frames) of GT trajectories (ids > 0) and predicted ones."""
    inter, gt_sizes, pred_sizes = overlap_matrix(gt, pred)
    return inter / np.maximum(gt_sizes[:, None] + pred_sizes[None, :] - inter, 1)  # (M, P)


def spacetime_miou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Space-time mIoU of GT trajectories (ids > 0) after Hungarian matching to predicted trajectories.

    IoU(g, p) = |g & p| / |g | p| over all frames; unmatched GT trajectories count 0. NaN if gt has no object.
    """
    iou = iou_matrix(gt, pred)  # (M, P)
    if iou.shape[0] == 0:
        return math.nan
    rows, cols = linear_sum_assignment(-iou)
    return float(iou[rows, cols].sum() / iou.shape[0])


def association_quality(gt: np.ndarray, pred: np.ndarray) -> float:
    """STQ's AQ on GT object pixels: mean over g of sum_p |p & g| IoU(p, g) / |g| (see the module docstring)."""
    inter, gt_sizes, _ = overlap_matrix(gt, pred)
    if len(gt_sizes) == 0:
        return math.nan
    pred_on_objects = inter.sum(axis=0)  # (P,) predicted pixels restricted to GT object pixels
    iou = inter / np.maximum(gt_sizes[:, None] + pred_on_objects[None, :] - inter, 1)  # (M, P)
    return float(((inter * iou).sum(axis=1) / np.maximum(gt_sizes, 1)).mean())


def coverage(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean over GT trajectories of the fraction of their pixels in their most-overlapping predicted trajectory."""
    inter, gt_sizes, _ = overlap_matrix(gt, pred)
    if len(gt_sizes) == 0:
        return math.nan
    return float((inter.max(axis=1) / np.maximum(gt_sizes, 1)).mean())


# ------------------------------------------------------------------------------------------------- the model


@torch.no_grad()
def predict_ids(
    model: Any, frames: torch.Tensor, out_size: tuple[int, int], clip_len: int | None = None, *, by: str = "rows"
) -> tuple[np.ndarray, int, int]:
    """Predicted trajectory id per pixel of a whole video, streamed clip by clip.

    Args:
        model: a TrajTok in eval mode.
        frames: (T, C, H, W) uint8 or float in [0, 1].
        out_size: (H', W') of the returned ids (the label resolution).
        clip_len: frames per clip (default model.config.clip_len).
        by: "rows": the id of a pixel is its trajectory row, as the tokens have them (a query released and seen
            again is two trajectories; trajectories joined by ``merge_returning`` are one); "queries": its query
            index (a query's segments count as one trajectory, what these metrics measured before rows).
    Returns:
        (ids (T, H', W') int64 trajectory id per pixel, number of tokens, number of present trajectories).
    """
    if by not in ("rows", "queries"):
        raise ValueError(f"by must be 'rows' or 'queries', got {by!r}")
    out = model.tokenize_video(frames, clip_len=clip_len, return_masks=True)
    logits = out.logits[0]  # (K, T, h0, w0)
    ids = []
    for s in range(0, logits.shape[1], 16):  # upsample a few frames at a time to bound memory
        up = F.interpolate(logits[:, s : s + 16].float(), size=out_size, mode="bilinear", align_corners=False)
        ids.append(up.argmax(dim=0))  # (t, H', W') query per pixel
    pred = torch.cat(ids)
    if by == "rows" and out.frame_rows is not None:
        rows = out.frame_rows[0].to(pred.device)  # (T, K): the row of each query in each frame
        pred = rows.gather(1, pred.reshape(pred.shape[0], -1)).reshape_as(pred)
    return pred.cpu().numpy(), int(out.num_tokens[0]), int(out.present[0].sum())


def evaluate_model(
    model: Any,
    data_root: str | os.PathLike,
    split: str = "test",
    *,
    clip_len: int | None = None,
    max_videos: int | None = None,
    label_size: int | None = None,
    max_skip_fraction: float = 0.1,
    progress: bool = False,
    by: str = "rows",
) -> dict:
    """Metrics of ``model`` on the labelled videos of ``split`` (see the module docstring; ``by``: what a
    predicted trajectory is, see :func:`predict_ids`); returns the JSON dict."""
    size = model.config.image_size
    data = TrajectoryClipDataset(
        data_root,
        split,
        clip_len=1,
        size=size,
        label_size=label_size,
        train=False,
        max_videos=max_videos,
        max_skip_fraction=max_skip_fraction,
        progress=progress,
    )
    was_training = model.training
    model.eval()
    rows = []
    for v in tqdm(data.videos, desc=f"eval {split}", unit="video", disable=not progress):
        frames = torch.from_numpy(v.frames).permute(0, 3, 1, 2).to(model.device)  # (T, 3, H, W)
        pred, tokens, trajectories = predict_ids(model, frames, tuple(v.ids.shape[1:]), clip_len, by=by)
        gt = v.ids.astype(np.int64)
        rows.append(
            {
                "id": v.id,
                "num_frames": v.num_frames,
                "miou": spacetime_miou(gt, pred),
                "association": association_quality(gt, pred),
                "coverage": coverage(gt, pred),
                "tokens": tokens,
                "trajectories": trajectories,
                "gt_objects": int(len(np.unique(gt[gt > 0]))),
            }
        )
    model.train(was_training)
    return summarize(rows, skipped=data.skipped)


def _nanmean(values: list[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def summarize(rows: list[dict], skipped: list | None = None) -> dict:
    """Means over per-video rows plus ``tokens_vs_length`` (mean tokens per distinct video length)."""
    by_len: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        by_len[r["num_frames"]].append(r["tokens"])
    return {
        "miou": _nanmean([r["miou"] for r in rows]),
        "association": _nanmean([r["association"] for r in rows]),
        "coverage": _nanmean([r["coverage"] for r in rows]),
        "tokens_mean": float(np.mean([r["tokens"] for r in rows])) if rows else math.nan,
        "gt_objects_mean": float(np.mean([r["gt_objects"] for r in rows])) if rows else math.nan,
        "num_videos": len(rows),
        "skipped": [{"video": p, "error": e} for p, e in (skipped or [])],
        "tokens_vs_length": {str(n): float(np.mean(t)) for n, t in sorted(by_len.items())},
        "videos": rows,
    }


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(x: Any) -> Any:
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(clean(obj), f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def format_table(result: dict) -> str:
    """A markdown table of the summary numbers."""
    lines = ["| metric | value |", "|---|---|"]
    for key in ("miou", "association", "coverage", "tokens_mean", "gt_objects_mean", "num_videos"):
        lines.append(
            f"| {key} | {result[key]:.4g} |" if isinstance(result[key], float) else f"| {key} | {result[key]} |"
        )
    return "\n".join(lines)
