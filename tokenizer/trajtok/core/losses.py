"""Training losses: Hungarian-matched segmentation loss (softmax focal + Dice) and the CLIP loss.

Segmentation (the TrajTok paper, arXiv 2602.22779, its training objectives): per video, each ground-truth
trajectory is matched to one predicted query by the Hungarian algorithm on cost = -IoU(soft mask, GT mask) (no
gradient); then a softmax focal loss (gamma 2) on the per-pixel K-way classification toward the matched query, and
Dice between matched soft masks and GT masks. Unlabeled pixels (-1) are ignored. Segmenter pretraining weights
focal x1 + Dice x2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

BACKGROUND_MODES = ("trajectory", "ignore")


def hungarian_match(cost: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one matching of a cost matrix (M, K); min(M, K) pairs.

    Returns:
        (rows, cols): long tensors of equal length, rows ascending; pair i matches GT ``rows[i]`` to query
        ``cols[i]``.
    """
    c = cost.detach().float().cpu().numpy() if isinstance(cost, Tensor) else np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix (M, K), got shape {tuple(c.shape)}")
    if not np.isfinite(c).all():
        raise ValueError("cost matrix contains NaN or inf values")
    rows, cols = linear_sum_assignment(c)
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def mask_iou_matrix(pred: Tensor, target: Tensor, valid: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """(Soft) IoU between every target mask and every predicted mask.

    Args:
        pred: (K, P) predicted masks, soft in [0, 1] or hard {0, 1}.
        target: (M, P) ground-truth masks in {0, 1}.
        valid: (P,) bool, pixels that count (None = all).
    Returns:
        (M, K) IoU = sum(p * t) / (sum(p) + sum(t) - sum(p * t)).
    """
    if pred.ndim != 2 or target.ndim != 2 or pred.shape[1] != target.shape[1]:
        raise ValueError(
            f"pred must be (K, P) and target (M, P) with the same P, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    pred, target = pred.float(), target.float()
    if valid is not None:
        if valid.shape != (pred.shape[1],):
            raise ValueError(f"valid must have shape (P,) = ({pred.shape[1]},), got {tuple(valid.shape)}")
        v = valid.float()
        pred, target = pred * v, target * v
    inter = target @ pred.T  # (M, K)
    union = target.sum(dim=1, keepdim=True) + pred.sum(dim=1)[None, :] - inter
    return inter / union.clamp_min(eps)


def dice_loss(pred: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """Mean over masks of 1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth).

    Args:
        pred: (M, P) soft masks in [0, 1].
        target: (M, P) binary target masks.
    Returns:
        scalar; 0 for M = 0 (keeps the graph).
    """
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred and target must both be (M, P), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    target = target.to(pred.dtype)
    num = 2 * (pred * target).sum(dim=1) + smooth
    den = pred.sum(dim=1) + target.sum(dim=1) + smooth
    return (1 - num / den).mean()


def softmax_focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Mean over pixels of -(1 - p_t)^gamma log p_t with p = softmax(logits) over K.

    Args:
        logits: (P, K).
        target: (P,) long class in [0, K).
    Returns:
        scalar; 0 for P = 0 (keeps the graph).
    """
    if logits.ndim != 2 or target.shape != (logits.shape[0],):
        raise ValueError(f"logits must be (P, K) and target (P,), got {tuple(logits.shape)} and {tuple(target.shape)}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    logp_t = logits.float().log_softmax(dim=-1).gather(1, target[:, None].long()).squeeze(1)  # (P,)
    p_t = logp_t.exp()
    return (-((1 - p_t) ** gamma) * logp_t).mean()


def _resize_ids(target: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest (pixel-centre) resize of integer ids (B, T, H, W) -> (B, T, h, w)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target.double(), size=size, mode="nearest-exact").long()


def _video_loss(
    logits: Tensor,
    ids: Tensor,
    *,
    ignore_index: int,
    background_id: int,
    background: str,
    gamma: float,
    match: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]] | tuple[None, None, None]:
    """Focal and Dice of one video: logits (K, P), ids (P,) -> (focal, dice, match or None if no label)."""
    valid = ids != ignore_index
    if background == "ignore":
        valid &= ids != background_id
    if not bool(valid.any()):
        return None, None, None
    soft = logits.float().softmax(dim=0)  # (K, P)
    if match is None:
        gt_ids = torch.unique(ids[valid])  # (M,) ascending
        gt = (ids[None, :] == gt_ids[:, None]).float()  # (M, P)
        with torch.no_grad():
            iou = mask_iou_matrix(soft.detach(), gt, valid)  # (M, K)
        rows, cols = hungarian_match(-iou)
        match = (gt_ids, rows.to(ids.device), cols.to(ids.device))
    gt_ids, rows, cols = match
    gt = (ids[None, :] == gt_ids[:, None]).float()  # (M, P)
    # per-pixel class = matched query of its GT trajectory; pixels of unmatched GT (only when M > K) are ignored
    query_of_gt = torch.full((len(gt_ids),), -1, dtype=torch.long, device=ids.device)
    query_of_gt[rows] = cols
    gt_index = torch.searchsorted(gt_ids, ids.clamp_min(int(gt_ids.min())))  # (P,) index into gt_ids
    gt_index = gt_index.clamp_max(len(gt_ids) - 1)
    pix_target = torch.where(valid & (gt_ids[gt_index] == ids), query_of_gt[gt_index], torch.full_like(ids, -1))
    keep = pix_target >= 0
    focal = softmax_focal_loss(logits.T[keep], pix_target[keep], gamma)
    v = valid.float()
    dice = dice_loss(soft[cols] * v, gt[rows] * v)
    return focal, dice, match


def segmentation_loss(
    logits: Tensor,
    target_ids: Tensor,
    *,
    ignore_index: int = -1,
    background_id: int = 0,
    background: str = "trajectory",
    focal_weight: float = 1.0,
    dice_weight: float = 2.0,
    gamma: float = 2.0,
    multires: bool = False,
) -> dict[str, Tensor]:
    """Hungarian-matched focal + Dice loss of assignment logits against per-pixel trajectory ids.

    Args:
        logits: (B, K, T, h, w) assignment logits (``TrajectoryTokens.logits``).
        target_ids: (B, T, H', W') long: 0 = background, > 0 = trajectory id, ``ignore_index`` = unlabeled.
            Any resolution: resized by nearest to (h, w).
        background: "trajectory" (id 0 is one more GT trajectory) or "ignore" (its pixels are ignored).
        multires: also upsample the logits to the label resolution (bilinear), compute the loss there with the
            same matching, and average the two.
    Returns:
        dict with ``loss`` (focal_weight * focal + dice_weight * dice), ``focal``, ``dice`` (means over videos
        that have labeled pixels) and ``num_matched`` (long, total matched trajectories).
    """
    if logits.ndim != 5:
        raise ValueError(f"logits must be (B, K, T, h, w), got shape {tuple(logits.shape)}")
    b, k, t, h, w = logits.shape
    if target_ids.ndim != 4 or target_ids.shape[0] != b or target_ids.shape[1] != t:
        raise ValueError(f"target_ids must be (B, T, H', W') = ({b}, {t}, H', W'), got shape {tuple(target_ids.shape)}")
    if target_ids.is_floating_point():
        raise ValueError(f"target_ids must be an integer tensor, got dtype {target_ids.dtype}")
    if background not in BACKGROUND_MODES:
        raise ValueError(f"background must be one of {BACKGROUND_MODES}, got {background!r}")
    target_ids = target_ids.to(logits.device).long()
    kwargs: dict[str, Any] = dict(
        ignore_index=ignore_index, background_id=background_id, background=background, gamma=gamma
    )
    low = _resize_ids(target_ids, (h, w))  # (B, T, h, w)
    high_res = multires and tuple(target_ids.shape[-2:]) != (h, w)
    focals, dices, matched = [], [], 0
    for i in range(b):
        focal, dice, match = _video_loss(logits[i].reshape(k, -1), low[i].reshape(-1), **kwargs)
        if focal is None or dice is None or match is None:  # no labelled pixel (all three are None then)
            continue
        matched += len(match[1])
        if high_res:
            up = F.interpolate(logits[i], size=tuple(target_ids.shape[-2:]), mode="bilinear", align_corners=False)
            focal_hi, dice_hi, _ = _video_loss(up.reshape(k, -1), target_ids[i].reshape(-1), match=match, **kwargs)
            if focal_hi is not None and dice_hi is not None:
                focal, dice = (focal + focal_hi) / 2, (dice + dice_hi) / 2
        focals.append(focal)
        dices.append(dice)
    if not focals:
        zero = logits.sum() * 0.0
        return {"loss": zero, "focal": zero, "dice": zero, "num_matched": torch.zeros((), dtype=torch.long)}
    focal = torch.stack(focals).mean()
    dice = torch.stack(dices).mean()
    return {
        "loss": focal_weight * focal + dice_weight * dice,
        "focal": focal,
        "dice": dice,
        "num_matched": torch.tensor(matched, dtype=torch.long),
    }


def clip_loss(video_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE of paired embeddings (B, E) (L2-normalised here); logit_scale multiplies cosines."""
    if video_emb.ndim != 2 or video_emb.shape != text_emb.shape:
        raise ValueError(
            f"video_emb and text_emb must both be (B, E), got {tuple(video_emb.shape)} and {tuple(text_emb.shape)}"
        )
    v = F.normalize(video_emb.float(), dim=-1)
    t = F.normalize(text_emb.float(), dim=-1)
    logits = logit_scale * v @ t.T  # (B, B)
    labels = torch.arange(len(v), device=v.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class LearnableTemperature(nn.Module):
    """CLIP logit scale exp(s), s initialised at log(1 / init) (init temperature 0.07), clamped at max_scale."""

    def __init__(self, init: float = 0.07, max_scale: float = 100.0):
        super().__init__()
        if not 0 < init:
            raise ValueError(f"init temperature must be > 0, got {init}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init)))
        self.max_log = math.log(max_scale)

    def forward(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()
