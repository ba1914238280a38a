"""The TrajTok model: frames -> trajectory tokens.

Pipeline (the TrajTok paper, arXiv 2602.22779, its method section; drawn in docs/architecture.md): per-frame
backbone features F (B, T*h*w, E) -> unified segmenter (K queries, a Perceiver over the stop-gradient features,
cosine assignment logits) -> soft / hard masks -> trajectory encoder (soft-mask-mean init, n sub-latents, hard-mask
Perceiver) -> tokens (B, N, D_out) + validity (B, N).

Long video: every entry point (``forward`` on one clip, ``tokenize_video``, the VLM connector) runs the same clip
step (:meth:`TrajTok._step`) on a :class:`_VideoAccumulator`. A video is cut into ``clip_len``-frame clips and
query k stays one trajectory across clips: clip i+1's queries restart from the learned queries (``carry="restart"``,
identity from each query's spatial prior) or start from clip i's final states (``carry="gated"``: norm-matched and
gated with the learned queries, so bounded; see ``Segmenter.initial_queries``). A trajectory has a token if it is
present (enough pixels) in at least one clip; its latents are averaged over those clips and get a time encoding
of its first / last frame in the video. A query absent for ``release_after`` clips closes its trajectory (kept as
a finished token) and returns to its learned query, free to claim a new object. Memory is one clip plus the
carried state; time is linear in frames.

Shapes: B batch, T frames, C channels, H x W pixels, h x w feature grid (image_size / 4, or the external
features' grid), K queries, n tokens per trajectory, N output tokens, E width, D_out output width.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch  # called through the module: a test (or a caller) can stand in for the disk
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trajtok.core.configuration import TrajTokConfig
from trajtok.io.weights import load_strict
from trajtok.nn.backbone import FeatureBackbone, architecture_dict
from trajtok.nn.encoder import TrajectoryEncoder, extent_features, soft_mask_sums, upgrade_legacy_offsets
from trajtok.nn.positions import grid_positions
from trajtok.nn.release_segmenter import ReleaseFeatures, ReleaseSegmenter
from trajtok.nn.segmenter import Segmenter, upgrade_scalar_parameters

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
MIN_SIDE = 32
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass
class StreamState:
    """What one clip hands to the next when streaming a long video."""

    queries: Tensor  # (B, K, E) final query states of the previous clip (initialise the next clip's queries)
    frames_seen: int = 0  # frames processed so far (all clips); time stamps of the next clip start here
    absent: Tensor | None = None  # (B, K) long: consecutive clips each query has been absent (release counter)


@dataclass
class TrajectoryTokens:
    """Output of ``TrajTok.forward`` / ``tokenize_video``; masks are on the grid the encoder used."""

    tokens: Tensor  # (B, N, D_out) padded; zeros where not valid
    valid: Tensor  # (B, N) bool
    token_trajectory: Tensor  # (B, N) long: query index k each token came from (-1 = padding)
    assignment: Tensor  # (B, T, h, w) long: hard argmax over K (external grid if features were given)
    soft_masks: Tensor  # (B, K, T, h, w) float softmax over K (same grid as assignment)
    logits: Tensor  # (B, K, T, h0, w0) assignment logits on the segmenter's own grid (for the losses)
    present: Tensor  # (B, M) bool: trajectory present in >= 1 clip (M = K, plus trajectories closed by release)
    boxes: Tensor  # (B, M, 4) float normalised (y0, x0, y1, x1) union box over time (zeros if empty)
    first_last: Tensor  # (B, M, 2) long first / last frame (in the video) where it won pixels (-1 if empty)
    num_tokens: Tensor  # (B,) long valid token count
    state: StreamState | None = None  # final query states (for streaming)
    trajectory_query: Tensor | None = None  # (B, M) long: the query each trajectory row belongs to (-1 = padding)
    # (B, T, K) long: the trajectory row (index into present / first_last / trajectory_query) that holds query k's
    # pixels in frame t; with release or merge_returning, rows are not queries (see ``row_assignment``)
    frame_rows: Tensor | None = None

    def row_assignment(self) -> Tensor:
        """(B, T, h, w) long: the trajectory row of each pixel (``assignment`` holds its query)."""
        if self.frame_rows is None:
            return self.assignment
        b, t = self.assignment.shape[:2]
        return self.frame_rows.gather(2, self.assignment.reshape(b, t, -1)).reshape_as(self.assignment)


# ----------------------------------------------------------------------------------------------------------
# helpers on hard assignments
# ----------------------------------------------------------------------------------------------------------


def _extent_stats(hard: Tensor, k: int, t_offset: int = 0, *, centres: bool = False) -> dict[str, Tensor]:
    """Per-query pixel counts and coordinate extremes of a hard assignment (B, T, h, w) -> dict of (B, K).

    Extremes of empty queries hold sentinels (+big for minima, -1 for maxima), so stats of clips combine by
    sum / min / max. ``centres``: also the centre of its pixels in its first and in its last frame (the extent
    encoding's).
    """
    b, t, h, w = hard.shape
    idx = hard.reshape(b, -1)  # (B, P)
    dev = hard.device
    coords = grid_positions(t, h, w, device=dev).long()  # (P, 3) integer (t, y, x); no ref grid -> exact ints
    coords[:, 0] += t_offset
    counts = torch.zeros(b, k, dtype=torch.long, device=dev).scatter_add_(1, idx, torch.ones_like(idx))
    out = {"counts": counts}
    big = torch.iinfo(torch.long).max
    for a, name in enumerate(("t", "y", "x")):
        c = coords[:, a].expand(b, -1)
        out[name + "0"] = torch.full((b, k), big, dtype=torch.long, device=dev).scatter_reduce(
            1, idx, c, reduce="amin", include_self=True
        )
        out[name + "1"] = torch.full((b, k), -1, dtype=torch.long, device=dev).scatter_reduce(
            1, idx, c, reduce="amax", include_self=True
        )
    if not centres:
        return out
    # centre (row, column in [0, 1]) of the query's pixels in the first and in the last frame it holds pixels in:
    # where its trajectory starts and where it ends
    fidx = (coords[:, 0] - t_offset).expand(b, -1) * k + idx  # (B, P) frame-major (frame, query) slot
    per_frame = torch.zeros(b, t * k, device=dev).scatter_add_(1, fidx, torch.ones(b, idx.shape[1], device=dev))
    on = per_frame.view(b, t, k) > 0
    first = on.float().argmax(dim=1)  # (B, K) first frame with pixels (argmax takes the first maximum)
    last = t - 1 - on.flip(1).float().argmax(dim=1)
    for a, (name, size) in enumerate((("cy", h), ("cx", w)), start=1):
        sums = torch.zeros(b, t * k, device=dev).scatter_add_(1, fidx, coords[:, a].float().expand(b, -1))
        centre = (sums / per_frame.clamp_min(1.0)).view(b, t, k)  # (B, t, K) mean row / column per frame
        for suffix, frame in (("0", first), ("1", last)):
            value = (centre.gather(1, frame[:, None]).squeeze(1) + 0.5) / size
            out[name + suffix] = torch.where(on.any(dim=1), value, torch.zeros_like(value))
    return out


def _merge_stats(a: dict[str, Tensor] | None, b: dict[str, Tensor]) -> dict[str, Tensor]:
    if a is None:
        return b
    out = {"counts": a["counts"] + b["counts"]}
    for name in ("t", "y", "x"):
        out[name + "0"] = torch.minimum(a[name + "0"], b[name + "0"])
        out[name + "1"] = torch.maximum(a[name + "1"], b[name + "1"])
    if "cy0" not in a:
        return out
    starts_in_a, ends_in_b = a["t0"] <= b["t0"], b["t1"] >= a["t1"]  # (an empty side holds +big / -1)
    for name in ("cy", "cx"):
        out[name + "0"] = torch.where(starts_in_a, a[name + "0"], b[name + "0"])
        out[name + "1"] = torch.where(ends_in_b, b[name + "1"], a[name + "1"])
    return out


def _merge_returning(
    latent_sum: Tensor, clips: Tensor, stats: dict[str, Tensor], row_query: Tensor, threshold: float
) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor]:
    """Join trajectory rows that are one object seen again after an absence (``config.merge_returning``).

    Rows are visited in order of their first frame; a row joins the earlier group (a row and what joined it) that
    ended before it starts and whose first row's mean latent is the most similar to its own, if that cosine is at least
    ``threshold``. A joined row's latents and present clips are added to its group's (the token is the mean over
    both), its extent stats merged, and it is left empty (absent: no token). ``row_query`` is unchanged (a group
    keeps its first row's query). Differentiable in ``latent_sum``.

    Args: latent_sum (B, M, n, E), clips (B, M), stats (B, M) each, row_query (B, M).
    Returns: latent_sum, clips, stats of the merged rows (same shapes), and joined (B, M) long: the row each row
    now is (itself, or the first row of the group it joined).
    """
    b, m = clips.shape
    mean = (latent_sum.detach() / clips.clamp_min(1.0)[:, :, None, None]).flatten(2)  # (B, M, n*E)
    mean = F.normalize(mean.float(), dim=-1)
    t0, t1 = stats["t0"].tolist(), stats["t1"].tolist()
    target = list(range(b * m))  # flat row -> flat group row
    for i in range(b):
        rows = [r for r in range(m) if clips[i, r] > 0 and row_query[i, r] >= 0]
        rows.sort(key=lambda r: t0[i][r])
        groups: list[tuple[int, int]] = []  # (root row, last frame of the group)
        for r in rows:
            best, best_sim = -1, threshold
            for g, (root, end) in enumerate(groups):
                if end < t0[i][r]:
                    sim = float(mean[i, r] @ mean[i, root])
                    if sim >= best_sim:
                        best, best_sim = g, sim
            if best < 0:
                groups.append((r, t1[i][r]))
                continue
            root, end = groups[best]
            target[i * m + r] = i * m + root
            groups[best] = (root, max(end, t1[i][r]))
    idx = torch.tensor(target, device=clips.device)
    joined = (idx % m).reshape(b, m)
    if bool((idx == torch.arange(b * m, device=idx.device)).all()):
        return latent_sum, clips, stats, joined
    flat = latent_sum.reshape(b * m, *latent_sum.shape[2:])
    merged_latents = torch.zeros_like(flat).index_add(0, idx, flat).reshape_as(latent_sum)
    merged_clips = torch.zeros_like(clips.reshape(-1)).index_add(0, idx, clips.reshape(-1)).reshape_as(clips)
    flat_stats = {name: v.reshape(-1).clone() for name, v in stats.items()}
    for src in sorted(range(b * m), key=lambda j: t0[j // m][j % m]):  # join in time order: centres stay right
        dst = target[src]
        if dst == src:
            continue
        both = _merge_stats(
            {name: v[dst : dst + 1] for name, v in flat_stats.items()},
            {name: v[src : src + 1] for name, v in flat_stats.items()},
        )
        for name, v in flat_stats.items():
            v[dst] = both[name][0]
            v[src] = _EMPTY_STATS[name]
    return merged_latents, merged_clips, {name: v.reshape(b, m) for name, v in flat_stats.items()}, joined


def _boxes(stats: dict[str, Tensor], present: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """(boxes (B, K, 4) normalised (y0, x0, y1, x1), first_last (B, K, 2)) from extent stats."""
    boxes = torch.stack(
        [
            stats["y0"].float() / h,
            stats["x0"].float() / w,
            (stats["y1"] + 1).float() / h,
            (stats["x1"] + 1).float() / w,
        ],
        dim=-1,
    )  # (B, K, 4)
    boxes = torch.where(present[..., None], boxes, torch.zeros_like(boxes))
    first_last = torch.stack([stats["t0"], stats["t1"]], dim=-1)  # (B, K, 2)
    first_last = torch.where(present[..., None], first_last, torch.full_like(first_last, -1))
    return boxes, first_last


def _assemble(
    tokens: Tensor, present: Tensor, counts: Tensor, mode: str, max_tokens: int | None, row_query: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gather the tokens of present trajectories into a padded batch.

    Args:
        tokens: (B, K, n, D) per-trajectory tokens.
        present: (B, K) bool.
        counts: (B, K) hard-mask pixel counts (truncation in fixed mode keeps the biggest trajectories).
        mode: "adaptive" (N = most valid tokens in the batch) or "fixed" (N = max_tokens).
        row_query: (B, K) query index of each trajectory row (default: the row index).
    Returns:
        tokens (B, N, D), valid (B, N), token_trajectory (B, N), num_tokens (B,); tokens in query order.
    """
    b, k, n, d = tokens.shape
    keep = present
    if mode == "fixed":
        if max_tokens is None:
            raise ValueError("token_mode='fixed' needs max_tokens (pass max_tokens= or set config.max_tokens)")
        if max_tokens < n:
            raise ValueError(
                f"max_tokens={max_tokens} is smaller than tokens_per_trajectory={n}: not even one trajectory fits"
            )
        budget = max_tokens // n
        score = torch.where(present, counts, torch.full_like(counts, -1))
        order = torch.sort(score, dim=1, descending=True, stable=True).indices  # (B, K) biggest first
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(k, device=order.device).expand(b, -1))
        keep = present & (rank < budget)
    keep_tok = keep[:, :, None].expand(b, k, n).reshape(b, k * n)  # (B, K * n)
    num_tokens = keep_tok.sum(dim=1)  # (B,)
    size = int(max_tokens) if mode == "fixed" and max_tokens is not None else int(num_tokens.max().item()) if b else 0
    pos = keep_tok.long().cumsum(dim=1) - 1  # (B, K * n) slot of each kept token
    bi, li = keep_tok.nonzero(as_tuple=True)
    flat = tokens.reshape(b, k * n, d)  # (B, K * n, D)
    out = flat.new_zeros(b, size, d)
    out = out.index_put((bi, pos[bi, li]), flat[bi, li])  # differentiable scatter
    valid = torch.zeros(b, size, dtype=torch.bool, device=tokens.device)
    valid[bi, pos[bi, li]] = True
    traj = torch.full((b, size), -1, dtype=torch.long, device=tokens.device)
    traj[bi, pos[bi, li]] = li // n if row_query is None else row_query[bi, li // n]
    return out, valid, traj, num_tokens


_BIG = torch.iinfo(torch.long).max
# the stats of a query with no pixels (what a released query restarts from and padding rows hold)
_EMPTY_STATS: dict[str, int | float] = {"counts": 0, "t0": _BIG, "y0": _BIG, "x0": _BIG, "t1": -1, "y1": -1, "x1": -1}
_EMPTY_STATS |= {"cy0": 0.0, "cx0": 0.0, "cy1": 0.0, "cx1": 0.0}


class _VideoAccumulator:
    """Everything one video (batch of videos) carries from clip to clip; fed by ``TrajTok._step``.

    Per query k of the current trajectory segment: extent stats, soft-mask sums / mass (the encoder's running
    init), summed refined latents and the number of clips it was present in. When a query is released, its
    segment is closed into the ``finished`` lists and its accumulators restart empty.
    """

    def __init__(self, state: StreamState | None, return_masks: bool) -> None:
        self.queries = state.queries if state is not None else None
        self.absent = state.absent if state is not None else None
        self.frames_seen = state.frames_seen if state is not None else 0
        self.return_masks = return_masks
        self.stats: dict[str, Tensor] | None = None
        self.sums: Tensor | None = None
        self.mass: Tensor | None = None
        self.latent_sum: Tensor | None = None
        self.clips_on: Tensor | None = None
        self.assignment: list[Tensor] = []
        self.soft: list[Tensor] = []
        self.logits: list[Tensor] = []
        self.finished: list[dict[str, Any]] = []  # each: b (R,), k (R,), latent_sum (R, n, E), clips (R,), stats
        self.closes: Tensor | None = None  # (B, K) long: segments of each query closed so far
        self.frame_segments: list[Tensor] = []  # per clip (B, t, K): which of its query's segments a frame is in

    def released(self, release_after: int) -> Tensor | None:
        """(B, K) bool: queries that start this clip from their learned value again."""
        if self.absent is None or release_after <= 0:
            return None
        return self.absent >= release_after

    def add(self, clip_stats: dict[str, Tensor], on: Tensor, sums: Tensor, mass: Tensor, latents: Tensor) -> None:
        # The presence rule holds for the time and extent encodings too: a query absent from this clip (a few stray
        # pixels) adds nothing to its first / last frame, box, area or start / end centres.
        clip_stats = {name: v.masked_fill(~on, _EMPTY_STATS[name]) for name, v in clip_stats.items()}
        weighted = latents * on.to(latents.dtype)[:, :, None, None]  # (B, K, n, E)
        on_f = on.to(latents.dtype)
        if self.stats is None:
            self.stats, self.sums, self.mass, self.latent_sum, self.clips_on = clip_stats, sums, mass, weighted, on_f
        else:
            assert self.sums is not None and self.mass is not None  # set with stats
            assert self.latent_sum is not None and self.clips_on is not None
            self.stats = _merge_stats(self.stats, clip_stats)
            self.sums, self.mass = self.sums + sums, self.mass + mass
            self.latent_sum, self.clips_on = self.latent_sum + weighted, self.clips_on + on_f

    def update_absence(self, on: Tensor, release_after: int, frames: int) -> None:
        """Count absent clips; a query absent for exactly ``release_after`` clips closes its segment (``frames``:
        this clip's; its frames belong to the segment open during it)."""
        absent = self.absent if self.absent is not None else torch.zeros_like(on, dtype=torch.long)
        self.absent = torch.where(on, torch.zeros_like(absent), absent + 1)
        closes = self.closes if self.closes is not None else torch.zeros_like(on, dtype=torch.long)
        self.frame_segments.append(closes[:, None].expand(-1, frames, -1))  # (B, t, K): the clip is in the open one
        self.closes = closes
        if release_after <= 0:
            return
        assert self.stats is not None and self.sums is not None and self.mass is not None  # add() came first
        assert self.latent_sum is not None and self.clips_on is not None
        close = (self.absent == release_after) & (self.clips_on > 0)  # (B, K)
        if not bool(close.any()):
            return
        bi, ki = close.nonzero(as_tuple=True)
        self.closes = closes + close.long()
        self.finished.append(
            {
                "b": bi,
                "k": ki,
                "latent_sum": self.latent_sum[bi, ki],
                "clips": self.clips_on[bi, ki],
                "stats": {name: v[bi, ki] for name, v in self.stats.items()},
            }
        )
        keep = ~close
        self.sums = self.sums * keep[..., None].to(self.sums.dtype)
        self.mass = self.mass * keep.to(self.mass.dtype)
        self.latent_sum = self.latent_sum * keep[..., None, None].to(self.latent_sum.dtype)
        self.clips_on = self.clips_on * keep.to(self.clips_on.dtype)
        self.stats = {name: v.masked_fill(close, _EMPTY_STATS[name]) for name, v in self.stats.items()}

    def _closed_rows(self) -> tuple[Tensor, Tensor, Tensor, int]:
        """Closed segments in closing order: their video (R,), query (R,), row (R,; after the K active rows, in
        closing order per video) and the row count M."""
        assert self.clips_on is not None
        b, k = self.clips_on.shape
        fb = torch.cat([f["b"] for f in self.finished])
        fk = torch.cat([f["k"] for f in self.finished])
        per_video = torch.bincount(fb, minlength=b)  # (B,) closed segments per video
        slot = torch.zeros_like(fb)
        for i in range(b):  # position of each closed segment among its video's extra rows (closing order)
            sel = (fb == i).nonzero().flatten()
            slot[sel] = torch.arange(sel.numel(), device=fb.device)
        return fb, fk, k + slot, k + int(per_video.max())

    def frame_rows(self, joined: Tensor | None = None) -> Tensor:
        """(B, T, K) long: the row (numbered as :meth:`rows` numbers them) holding query k's pixels in frame t;
        ``joined`` (B, M): the row each row was merged into (``merge_returning``)."""
        seg = torch.cat(self.frame_segments, dim=1)  # (B, T, K): which of its query's segments
        b, t, k = seg.shape
        table = torch.arange(k, device=seg.device).view(1, k, 1).repeat(b, 1, int(seg.max()) + 1)  # (B, K, S)
        if self.finished:  # the e-th closed segment of a query (closing order is time order); the open one: row k
            fb, fk, rows, _ = self._closed_rows()
            seen: dict[tuple[int, int], int] = {}
            for bi, ki, row in zip(fb.tolist(), fk.tolist(), rows.tolist(), strict=True):
                e = seen.get((bi, ki), 0)
                seen[(bi, ki)] = e + 1
                table[bi, ki, e] = row
        out = table.gather(2, seg.transpose(1, 2)).transpose(1, 2)  # (B, T, K)
        if joined is not None:
            out = joined.gather(1, out.reshape(b, -1)).reshape(b, t, k)
        return out

    def rows(self) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor]:
        """Active queries then closed segments, per video: (latent_sum (B, M, n, E), clips (B, M),
        stats (B, M) each, row_query (B, M) long (-1 = padding row))."""
        assert self.stats is not None and self.latent_sum is not None and self.clips_on is not None  # add() came first
        b, k = self.clips_on.shape
        dev = self.clips_on.device
        row_query = torch.arange(k, device=dev).expand(b, -1)
        if not self.finished:
            return self.latent_sum, self.clips_on, self.stats, row_query
        fb, _, rows, m = self._closed_rows()

        def extend(active: Tensor, closed: Tensor, fill) -> Tensor:
            out = active.new_full((b, m, *active.shape[2:]), fill)
            out = torch.cat([active, out[:, k:]], dim=1)
            return out.index_put((fb, rows), closed)

        latent = extend(self.latent_sum, torch.cat([f["latent_sum"] for f in self.finished]), 0.0)
        clips = extend(self.clips_on, torch.cat([f["clips"] for f in self.finished]), 0.0)
        stats = {
            name: extend(v, torch.cat([f["stats"][name] for f in self.finished]), _EMPTY_STATS[name])
            for name, v in self.stats.items()
        }
        rq = extend(row_query, torch.cat([f["k"] for f in self.finished]), -1)
        return latent, clips, stats, rq


# ----------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------


class TrajTok(nn.Module):
    """TrajTok tokenizer: a clip (B, T, C, H, W) becomes trajectory tokens (B, N, D_out) with a validity mask.

    Build with ``TrajTok(config)`` / ``TrajTok.from_config(config)`` (random init; ``backbone_pretrained`` loads
    backbone weights) or ``TrajTok.from_pretrained(path)`` (a folder written by ``save_pretrained``).
    """

    pixel_mean: Tensor  # buffers (1, 3, 1, 1)
    pixel_std: Tensor

    def __init__(self, config: TrajTokConfig, *, load_backbone_weights: bool = True):
        super().__init__()
        if not isinstance(config, TrajTokConfig):
            raise ValueError(f"config must be a TrajTokConfig, got {type(config).__name__}")
        pretrained = config.backbone_pretrained if load_backbone_weights else None
        e = config.width
        # None for backbone "external": no image model; the features given to forward are projected
        self.features: FeatureBackbone | ReleaseFeatures | None = None
        if config.segmenter_variant == "release":  # the authors' released layout, to hold their weights exactly
            self.features = ReleaseFeatures(config)
        elif config.backbone != "external":
            self.features = FeatureBackbone(
                config.backbone, config.backbone_config, pretrained, e, config.layer_norm_eps
            )
        if pretrained is not None and self.features is not None:
            # Record the loaded architecture so save_pretrained / from_pretrained rebuild it without the weights.
            config = config.replace(backbone_config=architecture_dict(self.features.backbone))
        self.config = config
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.segmenter: Segmenter | ReleaseSegmenter = Segmenter(
            e,
            config.num_queries,
            config.seg_depth,
            config.seg_heads,
            config.seg_head_dim,
            config.resolved_assign_dim,
            config.mlp_ratio,
            config.dropout,
            config.layer_norm_eps,
            config.rope_base,
            config.init_logit_scale,
            config.max_logit_scale,
            config.seg_read_stride,
        )
        if config.segmenter_variant == "release":
            self.segmenter = ReleaseSegmenter(config)
        self.external_proj = nn.Linear(config.external_dim, e) if config.external_dim is not None else None
        self.encoder = TrajectoryEncoder(
            e,
            config.enc_depth,
            config.enc_heads,
            config.enc_head_dim,
            config.token_choices,
            config.resolved_output_dim,
            config.mlp_ratio,
            config.dropout,
            config.layer_norm_eps,
            config.rope_base,
            time_encoding=config.time_encoding,
            extent_encoding=config.extent_encoding,
            sparse_attention=config.sparse_attention,
        )

    # --- construction / persistence -------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: TrajTokConfig) -> TrajTok:
        """Random init (the backbone from ``config.backbone_pretrained`` when set)."""
        return cls(config)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``config.json`` into the folder ``path`` (each atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        fd, tmp = tempfile.mkstemp(dir=path, suffix=".safetensors.tmp")
        os.close(fd)
        try:
            safetensors.torch.save_file(state, tmp, metadata={"format": "pt", "model": "trajtok"})
            os.replace(tmp, path / WEIGHTS_NAME)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.config.save(path / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> TrajTok:
        """Load a folder written by ``save_pretrained``; ``overrides`` change config fields (e.g. token_mode).

        Loading is strict: missing, unexpected or mis-shaped weights raise ValueError listing them.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"TrajTok checkpoint folder not found: {path}")
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"TrajTok weights not found: {weights} (expected a folder from save_pretrained)")
        config = TrajTokConfig.load(path / CONFIG_NAME, **overrides)
        model = cls(config, load_backbone_weights=False)
        model.load_state_dict_strict(safetensors.torch.load_file(str(weights)), source=str(weights))
        model.eval()
        return model

    def load_state_dict_strict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        """``load_state_dict`` that names every missing, unexpected and mis-shaped key in its ValueError.

        Checkpoints saved before the nested sub-latent table and the carry gate are upgraded (logged): the largest
        per-choice offset table becomes the nested table, and the gate starts at its initial value. A checkpoint
        saved without the extent encoding loads into a config that turns it on: the projection starts at zero, its
        initial value, so the tokens are the checkpoint's own until it trains (logged).
        """
        own = self.state_dict()
        state = dict(state)
        upgrade_scalar_parameters(state, "segmenter.")  # 0-dim scale and gate of older checkpoints -> (1,)
        converted = upgrade_legacy_offsets(state)
        if converted:
            logger.warning("%s: per-choice sub-latent tables %s converted into the nested table", source, converted)
            if "segmenter.carry_gate" not in state:
                state["segmenter.carry_gate"] = own["segmenter.carry_gate"].clone()
        extent = [k for k in own if k.startswith("encoder.extent_proj.")]
        if extent and not any(k in state for k in extent):
            logger.info("%s has no extent encoding: it starts at zero (the checkpoint's tokens are unchanged)", source)
            state.update({k: torch.zeros_like(own[k]) for k in extent})
        load_strict(self, state, source, "TrajTok")

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @property
    def device(self) -> torch.device:
        return self.segmenter.queries.device

    @property
    def dtype(self) -> torch.dtype:
        return self.segmenter.queries.dtype

    # --- input checks ---------------------------------------------------------------------------------

    def _check_pixels(self, pixel_values: Tensor) -> None:
        if not isinstance(pixel_values, Tensor):
            raise ValueError(f"pixel_values must be a torch.Tensor (B, T, C, H, W), got {type(pixel_values).__name__}")
        shape = tuple(pixel_values.shape)
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values must have shape (B, T, C, H, W) (rank 5), got shape {shape} (rank {pixel_values.ndim}); "
                "use tokenize_video for (T, C, H, W) or add a frame axis for images"
            )
        if pixel_values.dtype != torch.uint8 and pixel_values.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"pixel_values must be float in [0, 1] or uint8, got dtype {pixel_values.dtype}")
        b, t, c, h, w = shape
        if b == 0 or t == 0:
            raise ValueError(f"pixel_values must have B >= 1 and T >= 1, got shape (B, T, C, H, W) = {shape}")
        if c != 3:
            raise ValueError(f"pixel_values must have C = 3 (RGB) at dim 2 of (B, T, C, H, W), got shape {shape}")
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ValueError(f"pixel_values H and W must be >= {MIN_SIDE}, got shape (B, T, C, H, W) = {shape}")

    def _check_features(self, features: Tensor, b: int, t: int) -> None:
        d = self.config.external_dim
        if d is None:
            raise ValueError(
                "features were given but config.external_dim is None; build TrajTok with external_dim set to the "
                f"feature width (got features of shape {tuple(features.shape)})"
            )
        shape = tuple(features.shape)
        if features.ndim != 5 or shape[0] != b or shape[1] != t or shape[4] != d or min(shape) == 0:
            raise ValueError(
                f"features must have shape (B, T, h_e, w_e, external_dim) = ({b}, {t}, h_e, w_e, {d}), got {shape}"
            )
        if not features.is_floating_point():
            raise ValueError(f"features must be floating point, got dtype {features.dtype}")

    def _tokens_per_trajectory(self, n: int | None) -> int:
        choices = self.config.token_choices
        if n is None:
            if self.training:
                train = self.config.tokens_per_trajectory
                return train[int(torch.randint(len(train), (1,)).item())]
            return self.config.inference_tokens_per_trajectory
        if n not in choices:
            raise ValueError(f"tokens_per_trajectory must be one of {list(choices)} (from the config), got {n}")
        return int(n)

    # --- stages -----------------------------------------------------------------------------------------

    def encode_pixels(self, pixel_values: Tensor) -> Tensor:
        """(B, T, C, H, W) uint8 / [0, 1] float -> features (B, T, h0, w0, E) on the image_size / 4 grid."""
        if self.features is None:
            raise ValueError("this TrajTok has backbone='external': it reads features passed to forward, not pixels")
        b, t, c, h, w = pixel_values.shape
        x = pixel_values.reshape(b * t, c, h, w)  # (B*T, C, H, W)
        x = x.to(self.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(self.dtype)
        s = self.config.image_size
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        feats = self.features(x)  # (B*T, h0, w0, E)
        return feats.view(b, t, *feats.shape[1:])  # (B, T, h0, w0, E)

    def _clip(self, pixel_values: Tensor | None, features: Tensor | None, init_queries: Tensor) -> dict[str, Tensor]:
        """Segmenter + assignment of one clip; everything the encoder needs (no token assembly)."""
        cfg = self.config
        if self.features is None:  # external backbone: segmenter and encoder read the given features
            assert features is not None and self.external_proj is not None  # required with this backbone
            feats = self.external_proj(features.to(self.dtype))  # (B, T, h, w, E)
            features = None
        else:
            assert pixel_values is not None  # an image model reads pixels
            feats = self.encode_pixels(pixel_values)  # (B, T, h0, w0, E)
        b, t, h0, w0, e = feats.shape
        queries, logits = self.segmenter(
            feats, init_queries, detach_perceiver=cfg.detach_features
        )  # (B, K, E), (B, K, T, h0, w0) fp32
        k = logits.shape[1]
        soft = logits.softmax(dim=1)  # (B, K, T, h0, w0) fp32
        if features is None:
            enc_feats = feats.reshape(b, t * h0 * w0, e)  # (B, P, E)
            hard = logits.argmax(dim=1)  # (B, T, h0, w0)
            h, w = h0, w0
            positions = grid_positions(t, h, w, device=feats.device)
        else:
            _, _, h, w, _ = features.shape
            assert self.external_proj is not None  # features are given only with external_dim set (checked)
            enc_feats = self.external_proj(features.to(self.dtype))  # (B, T, h, w, E)
            if cfg.external_grid == "segmenter" and h <= h0 and w <= w0 and (h, w) != (h0, w0):
                # repeat each feature over the segmenter cells it covers: no trajectory loses its pixels (projected
                # first: the projection is per cell, so this equals projecting the repeated features, at E wide)
                x = enc_feats.reshape(b * t, h, w, e).permute(0, 3, 1, 2)  # (B*T, E, h, w)
                x = F.interpolate(x, size=(h0, w0), mode="nearest-exact")
                enc_feats = x.permute(0, 2, 3, 1)
                h, w = h0, w0
            enc_feats = enc_feats.reshape(b, t * h * w, e)  # (B, P_e, E)
            if (h, w) != (h0, w0):
                # soft: area-like (antialiased bilinear keeps the sum over K at 1); hard: nearest of the argmax
                soft = F.interpolate(
                    soft.reshape(b * k, t, h0, w0), size=(h, w), mode="bilinear", align_corners=False, antialias=True
                ).view(b, k, t, h, w)  # (B, K, T, h, w)
                hard = F.interpolate(
                    logits.argmax(dim=1).to(torch.float32), size=(h, w), mode="nearest-exact"
                ).long()  # (B, T, h, w)
            else:
                hard = logits.argmax(dim=1)
            positions = grid_positions(t, h, w, ref_hw=(h0, w0), device=feats.device)
        sums, mass = soft_mask_sums(soft.reshape(b, k, -1).to(enc_feats.dtype), enc_feats)  # (B, K, E), (B, K)
        return {
            "queries": queries,
            "logits": logits,
            "soft": soft,
            "hard": hard,
            "enc_feats": enc_feats,
            "positions": positions,
            "sums": sums,
            "mass": mass,
        }

    def _step(self, acc: _VideoAccumulator, pixel_values: Tensor | None, features: Tensor | None, n: int) -> None:
        """One clip of a video: queries from the carried state, segmenter, presence, encoder, accumulation.

        The single implementation behind ``forward``, ``tokenize_video`` and the VLM connector.
        """
        cfg = self.config
        source = features if pixel_values is None else pixel_values
        assert source is not None  # callers pass pixels, features or both
        b, t = source.shape[:2]
        released = acc.released(cfg.release_after)
        init = self.segmenter.initial_queries(b, acc.queries, released, carry=cfg.carry == "gated")
        c = self._clip(pixel_values, features, init)
        k = cfg.num_queries
        h, w = c["hard"].shape[-2:]
        clip_stats = _extent_stats(c["hard"], k, t_offset=acc.frames_seen, centres=cfg.extent_encoding)
        threshold = max(float(cfg.min_pixels), cfg.presence_fraction * t * h * w)
        on = clip_stats["counts"] >= threshold  # (B, K) present in this clip
        sums = c["sums"] if acc.sums is None else acc.sums + c["sums"]
        mass = c["mass"] if acc.mass is None else acc.mass + c["mass"]
        traj_init = sums / mass.clamp_min(1e-6)[..., None]  # (B, K, E) running soft-mask mean
        hard_flat = c["hard"].reshape(b, -1)  # (B, P)
        latents = self.encoder.refine(traj_init, c["enc_feats"], hard_flat, n, c["positions"])  # (B, K, n, E)
        acc.add(clip_stats, on, c["sums"], c["mass"], latents)
        acc.update_absence(on, cfg.release_after, t)
        acc.queries = c["queries"]
        acc.frames_seen += t
        acc.assignment.append(c["hard"])
        if acc.return_masks:
            acc.soft.append(c["soft"])
            acc.logits.append(c["logits"])

    def _finish(self, acc: _VideoAccumulator, mode: str, budget: int | None) -> TrajectoryTokens:
        """Tokens of every trajectory (present in >= 1 clip) of the accumulated video."""
        latent_sum, clips, stats, row_query = acc.rows()
        joined = None
        if self.config.merge_returning > 0:
            latent_sum, clips, stats, joined = _merge_returning(
                latent_sum, clips, stats, row_query, self.config.merge_returning
            )
        h, w = acc.assignment[0].shape[-2:]
        present = clips > 0  # (B, M)
        latents = latent_sum / clips.clamp_min(1.0)[:, :, None, None]  # (B, M, n, E) mean over present clips
        boxes, first_last = _boxes(stats, present, h, w)
        extent = None
        if self.config.extent_encoding:
            centres = torch.stack([stats[n] for n in ("cy0", "cx0", "cy1", "cx1")], dim=-1)  # (B, M, 4)
            extent = extent_features(boxes, stats["counts"], first_last, centres, h * w)
        tokens = self.encoder.project(latents, first_last, extent)  # (B, M, n, D_out)
        out, valid, traj, num = _assemble(tokens, present, stats["counts"], mode, budget, row_query)
        b, k = present.shape[0], self.config.num_queries
        if acc.return_masks:
            soft_masks, logits = torch.cat(acc.soft, dim=2), torch.cat(acc.logits, dim=2)
        else:
            soft_masks = out.new_zeros(b, k, 0, h, w)
            grid = (h, w) if self.features is None else (self.config.grid_size, self.config.grid_size)
            logits = out.new_zeros(b, k, 0, *grid)  # the segmenter's own grid
        assert acc.queries is not None  # set by the first clip
        return TrajectoryTokens(
            tokens=out,
            valid=valid,
            token_trajectory=traj,
            assignment=torch.cat(acc.assignment, dim=1),
            soft_masks=soft_masks,
            logits=logits,
            present=present,
            boxes=boxes,
            first_last=first_last,
            num_tokens=num,
            state=StreamState(queries=acc.queries, frames_seen=acc.frames_seen, absent=acc.absent),
            trajectory_query=torch.where(present, row_query, torch.full_like(row_query, -1)),
            frame_rows=acc.frame_rows(joined),
        )

    # --- public API ---------------------------------------------------------------------------------------

    def _resolve(self, token_mode: str | None, max_tokens: int | None, n: int | None) -> tuple[str, int | None, int]:
        mode = token_mode if token_mode is not None else self.config.token_mode
        if mode not in ("adaptive", "fixed"):
            raise ValueError(f"token_mode must be 'adaptive' or 'fixed', got {mode!r}")
        budget = max_tokens if max_tokens is not None else self.config.max_tokens
        return mode, budget, self._tokens_per_trajectory(n)

    def forward(
        self,
        pixel_values: Tensor,
        *,
        features: Tensor | None = None,
        tokens_per_trajectory: int | None = None,
        max_tokens: int | None = None,
        token_mode: str | None = None,
        state: StreamState | None = None,
    ) -> TrajectoryTokens:
        """Tokenize a batch of clips (one clip step; ``tokenize_video`` streams many).

        Args:
            pixel_values: (B, T, C, H, W) float in [0, 1] or uint8; any H, W >= 32 (resized to image_size).
            features: optional external features (B, T, h_e, w_e, external_dim); the encoder reads them on their
                grid (the segmenter still runs on the pixels; its masks are resized to (h_e, w_e)). Required with
                ``backbone='external'`` (then the segmenter reads them too and the pixels only give B and T).
            tokens_per_trajectory: n; default: sampled from config.tokens_per_trajectory in training, else
                config.inference_tokens_per_trajectory.
            max_tokens / token_mode: override the config's ("fixed" pads / truncates to max_tokens).
            state: StreamState of the previous clip (its final queries initialise this clip's queries, its
                frames_seen offsets the time stamps).
        Returns:
            TrajectoryTokens (see its fields); the tokens of this clip's trajectories.
        """
        self._check_pixels(pixel_values)
        b, t = pixel_values.shape[:2]
        self._require_features(features, b, t)
        mode, budget, n = self._resolve(token_mode, max_tokens, tokens_per_trajectory)
        self._check_state(state, b)
        acc = _VideoAccumulator(state, return_masks=True)
        self._step(acc, pixel_values if self.features is not None else None, features, n)
        return self._finish(acc, mode, budget)

    def _require_features(self, features: Tensor | None, b: int, t: int) -> None:
        if features is not None:
            self._check_features(features, b, t)
        elif self.features is None:
            raise ValueError("this TrajTok has backbone='external': pass features= (B, T, h, w, external_dim)")

    def _check_state(self, state: StreamState | None, b: int) -> Tensor | None:
        if state is None:
            return None
        want = (b, self.config.num_queries, self.config.width)
        if not isinstance(state, StreamState) or tuple(state.queries.shape) != want:
            got = tuple(state.queries.shape) if isinstance(state, StreamState) else type(state).__name__
            raise ValueError(f"state.queries must have shape (B, K, E) = {want}, got {got}")
        return state.queries

    def tokenize_video(
        self,
        frames: Tensor,
        *,
        clip_len: int | None = None,
        tokens_per_trajectory: int | None = None,
        features: Tensor | Callable[[int, int], Tensor] | None = None,
        max_tokens: int | None = None,
        token_mode: str | None = None,
        return_masks: bool = False,
        frame_transform: Callable[[Tensor], Tensor] | None = None,
        state: StreamState | None = None,
    ) -> TrajectoryTokens:
        """Tokenize a long video clip by clip with a carried state: one token set per trajectory, not per clip.

        Each clip is one ``_step`` (the same code as ``forward``). Query k is the same trajectory across clips;
        its encoder init is its running soft-mask-weighted mean over the clips so far, its refined latents are
        averaged over the clips it was present in, then projected with the time encoding of its first / last
        frame. Token count = trajectories present in >= 1 clip x n (at most K x n, plus trajectories closed by
        release). Memory is bounded by one clip: with ``features`` given as a callable, the features of a clip
        are computed only when it is processed. In training, gradients flow through at most
        ``config.carry_backprop_clips`` carried states (truncated backpropagation).

        Args:
            frames: (T, C, H, W) or (B, T, C, H, W), uint8 or float in [0, 1] (after ``frame_transform``).
            clip_len: frames per clip (default config.clip_len).
            features: optional external features per frame, (T, h_e, w_e, D) or (B, T, h_e, w_e, D), or a callable
                ``(start, stop) -> (B, stop - start, h_e, w_e, D)`` giving them clip by clip.
            return_masks: also return soft_masks / logits of the whole video (large); otherwise those two are
                empty tensors with T = 0 (assignment is always returned).
            frame_transform: applied to each clip's frames before the backbone (e.g. undoing a VLM's
                normalisation), so the whole video is never converted at once.
            state: continue from the state of an earlier call (frames then continue its time line).
        Returns:
            TrajectoryTokens with B = 1 for (T, C, H, W) input; first_last are video frame indices.
        """
        if isinstance(frames, Tensor) and frames.ndim == 4:
            frames = frames.unsqueeze(0)
            if isinstance(features, Tensor) and features.ndim == 4:
                features = features.unsqueeze(0)
        self._check_pixels(frames)
        b, t = frames.shape[:2]
        if isinstance(features, Tensor):
            self._check_features(features, b, t)
        elif features is None and self.features is None:
            raise ValueError("this TrajTok has backbone='external': pass features= (B, T, h, w, external_dim)")
        elif features is not None and not callable(features):
            raise ValueError(f"features must be a tensor or a callable (start, stop) -> tensor, got {type(features)}")
        clip_len = clip_len if clip_len is not None else self.config.clip_len
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        mode, budget, n = self._resolve(token_mode, max_tokens, tokens_per_trajectory)
        self._check_state(state, b)
        acc = _VideoAccumulator(state, return_masks)
        truncate = self.config.carry_backprop_clips
        for i, s in enumerate(range(0, t, clip_len)):
            stop = min(s + clip_len, t)
            if features is None:
                clip_feats = None
            elif isinstance(features, Tensor):
                clip_feats = features[:, s:stop]
            else:
                clip_feats = features(s, stop)
                self._check_features(clip_feats, b, stop - s)
            pixels = None
            if self.features is not None:
                pixels = frames[:, s:stop]
                pixels = frame_transform(pixels) if frame_transform is not None else pixels
            self._step(acc, pixels, clip_feats, n)
            if torch.is_grad_enabled() and (i + 1) % truncate == 0:
                assert acc.queries is not None  # set by the clip just run
                acc.queries = acc.queries.detach()  # truncated backpropagation through the carried state
        return self._finish(acc, mode, budget)


def tiny_model(seed: int = 0, **overrides: Any) -> TrajTok:
    """A seeded tiny random TrajTok (``TrajTokConfig.tiny``) for tests, docs and the quick start."""
    torch.manual_seed(seed)
    return TrajTok(TrajTokConfig.tiny(**overrides))
