"""Key-frame segmentation behind one interface: ``Segmenter(frame (H, W, 3) uint8 RGB) -> (H, W) int32 ids 1..R``.

Backends, chosen by a registry string (``build_segmenter(name, **options)``):

- ``"cpu"``: no weights. Superpixels (Felzenszwalb or SLIC from scikit-image) are merged greedily over their
  region adjacency graph: the cheapest edge is merged first, where an edge costs the CIE-Lab distance of the two
  regions' mean colours plus the mean image-gradient strength along their shared boundary; merging stops when the
  cheapest edge costs more than the threshold set by ``granularity`` ("coarse", "medium", "fine" or a float in
  [0, 1], 0 = coarsest). Regions smaller than ``min_area`` (fraction of the frame) are dropped and their pixels
  given to the nearest remaining region, so every pixel has an id.
- ``"sam2"``: SAM2's automatic mask generator (needs the ``sam2`` package, a checkpoint file and its config;
  GPU). Masks are painted largest first so smaller masks stay on top; pixels no mask covers go to the nearest mask.
"""

from __future__ import annotations

import heapq
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from trajtok.pseudolabel.keyframes import require

logger = logging.getLogger(__name__)

SAM2_HINT = "pip install 'trajtok[sam2]'"
GRANULARITY = {"coarse": 0.25, "medium": 0.5, "fine": 0.75}
SUPERPIXELS = ("felzenszwalb", "slic")


class Segmenter(Protocol):
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) int32 region ids 1..R (0 only where a backend leaves pixels unlabelled)."""
        ...


def check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 (H, W, 3) RGB, got {frame.dtype} {tuple(frame.shape)}")
    return frame


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Map the nonzero ids of ``labels`` to 1..R in increasing order; 0 stays 0. Returns int32."""
    ids, inverse = np.unique(labels, return_inverse=True)
    new = np.arange(len(ids), dtype=np.int32) + (0 if ids[0] == 0 else 1)
    return new[inverse].reshape(labels.shape).astype(np.int32)


def fill_nearest(labels: np.ndarray) -> np.ndarray:
    """Give every 0 pixel of ``labels`` (H, W) the id of the nearest nonzero pixel (all-zero input stays 0)."""
    holes = labels == 0
    if not holes.any() or holes.all():
        return labels
    _, (iy, ix) = ndimage.distance_transform_edt(holes, return_indices=True)
    return labels[iy, ix]


def _resolve_granularity(granularity: str | float) -> float:
    if isinstance(granularity, str):
        if granularity not in GRANULARITY:
            raise ValueError(
                f"granularity must be one of {sorted(GRANULARITY)} or a float in [0, 1], got {granularity!r}"
            )
        return GRANULARITY[granularity]
    g = float(granularity)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"granularity must be in [0, 1] (0 = coarsest) or a name, got {granularity}")
    return g


@dataclass
class CpuSegmenterConfig:
    granularity: str | float = "medium"  # "coarse" | "medium" | "fine" or float in [0, 1] (0 = fewest regions)
    superpixels: str = "slic"  # over-segmentation to merge: "slic" or "felzenszwalb"
    superpixel_scale: float = 100.0  # Felzenszwalb scale (larger: bigger superpixels)
    slic_segments: int = 400  # SLIC: approximate number of superpixels
    max_cost: float = 32.0  # merge threshold at granularity 0 (Lab distance + boundary strength units)
    min_cost: float = 8.0  # merge threshold at granularity 1
    boundary_weight: float = 0.5  # weight of the mean gradient along a shared boundary in the edge cost
    min_area: float = 0.002  # regions smaller than this fraction of the frame are dropped (filled by neighbours)
    min_thickness: float = 2.0  # regions whose widest inscribed disc has a smaller radius (pixels; edge strips) too
    blur_sigma: float = 1.0  # Gaussian blur (pixels) before computing colours and gradients; 0 = none
    motion_weight: float = 0.0  # cost per pixel of mean-flow difference when a motion field is given (0 = ignore)

    def __post_init__(self) -> None:
        self.granularity_value = _resolve_granularity(self.granularity)
        if self.superpixels not in SUPERPIXELS:
            raise ValueError(f"superpixels must be one of {SUPERPIXELS}, got {self.superpixels!r}")
        if self.superpixel_scale <= 0 or self.slic_segments < 1:
            raise ValueError(
                f"superpixel_scale must be > 0 and slic_segments >= 1, got {self.superpixel_scale}, {self.slic_segments}"
            )
        if not 0 <= self.min_cost <= self.max_cost:
            raise ValueError(f"need 0 <= min_cost <= max_cost, got min_cost={self.min_cost}, max_cost={self.max_cost}")
        if self.boundary_weight < 0 or self.blur_sigma < 0 or self.motion_weight < 0:
            raise ValueError(
                "boundary_weight, blur_sigma and motion_weight must be >= 0, got "
                f"{self.boundary_weight}, {self.blur_sigma}, {self.motion_weight}"
            )
        if self.min_thickness < 0:
            raise ValueError(f"min_thickness must be >= 0 pixels, got {self.min_thickness}")
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(f"min_area is a fraction of the frame in [0, 1), got {self.min_area}")

    @property
    def threshold(self) -> float:
        g = self.granularity_value
        return self.max_cost * (1.0 - g) + self.min_cost * g


class CpuSegmenter:
    """Superpixels + greedy region-adjacency merging by colour and boundary strength (no weights, CPU)."""

    def __init__(self, config: CpuSegmenterConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ValueError(f"give either a config or options, not both (options: {sorted(options)})")
        self.config = config or CpuSegmenterConfig(**options)
        require("skimage")
        require("cv2")

    def superpixels(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) int64 superpixel ids 0..S-1."""
        from skimage.segmentation import felzenszwalb, slic  # optional dependency (the pseudolabel extra)

        cfg = self.config
        if cfg.superpixels == "felzenszwalb":
            return felzenszwalb(frame, scale=cfg.superpixel_scale, sigma=0.8, min_size=20).astype(np.int64)
        return slic(frame, n_segments=cfg.slic_segments, compactness=10.0, start_label=0).astype(np.int64)

    def __call__(self, frame: np.ndarray, motion: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB [+ optional (H, W, 2) optical flow to a nearby frame] -> (H, W) int32 ids 1..R."""
        import cv2  # optional dependency (the pseudolabel extra): imported where used

        cfg = self.config
        frame = check_frame(frame)
        H, W, _ = frame.shape
        if motion is not None and np.shape(motion) != (H, W, 2):
            raise ValueError(f"motion must be an (H, W, 2) flow field with (H, W) = {(H, W)}, got {np.shape(motion)}")
        smooth = cv2.GaussianBlur(frame, (0, 0), cfg.blur_sigma) if cfg.blur_sigma > 0 else frame
        lab = cv2.cvtColor(smooth.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)  # (H, W, 3), L in 0..100
        gx = cv2.Sobel(lab[..., 0], cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab[..., 0], cv2.CV_32F, 0, 1, ksize=3)
        grad = np.sqrt(gx * gx + gy * gy) / 8.0  # (H, W) L units per pixel
        features = lab
        if motion is not None and cfg.motion_weight > 0:
            features = np.concatenate([lab, cfg.motion_weight * np.asarray(motion, dtype=np.float32)], axis=-1)
        sp = self.superpixels(frame)
        merged = merge_regions(sp, features, grad, cfg.threshold, cfg.boundary_weight)
        drop = np.bincount(merged.ravel()) < cfg.min_area * H * W  # (R + 1,)
        if cfg.min_thickness > 0:
            drop |= region_thickness(merged) < cfg.min_thickness
        drop[0] = False
        if drop[1:].any() and not drop[np.unique(merged)].all():
            merged = fill_nearest(np.where(drop[merged], 0, merged))
        return relabel_consecutive(merged)


def region_thickness(labels: np.ndarray) -> np.ndarray:
    """Radius (pixels) of the widest disc inside each region: (max id + 1,) from the distance to region borders."""
    border = np.zeros(labels.shape, dtype=bool)
    border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    border[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    border[1:, :] |= labels[1:, :] != labels[:-1, :]
    border[:-1, :] |= labels[1:, :] != labels[:-1, :]
    dist = ndimage.distance_transform_edt(~border)  # (H, W); frame edges do not count as borders
    out = np.zeros(int(labels.max()) + 1)
    np.maximum.at(out, labels.ravel(), dist.ravel())
    return out


def merge_regions(
    labels: np.ndarray, features: np.ndarray, grad: np.ndarray, threshold: float, boundary_weight: float = 1.0
) -> np.ndarray:
    """Greedy region-adjacency-graph merging; returns (H, W) int64 ids >= 1.

    Args:
        labels: (H, W) int ids 0..S-1 (superpixels).
        features: (H, W, F) float per-pixel features (CIE-Lab colour, optionally weighted flow); an edge costs
            the Euclidean distance of the two regions' mean features plus the weighted mean boundary strength.
        grad: (H, W) float boundary strength.
        threshold: merge while the cheapest edge costs at most this.
        boundary_weight: weight of the mean boundary strength in the edge cost.
    """
    S = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=S).astype(np.float64)
    F = features.shape[-1]
    colour_sum = np.stack([np.bincount(flat, features[..., c].ravel(), minlength=S) for c in range(F)], 1)  # (S, F)
    # Boundary statistics over 4-neighbour pixel pairs with different labels: (count, gradient sum) per region pair.
    pairs, strength = [], []
    for a, b, ga, gb in (
        (labels[:, :-1], labels[:, 1:], grad[:, :-1], grad[:, 1:]),
        (labels[:-1, :], labels[1:, :], grad[:-1, :], grad[1:, :]),
    ):
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        pairs.append(lo * S + hi)
        strength.append(np.maximum(ga[diff], gb[diff]))
    keys, inverse = np.unique(np.concatenate(pairs), return_inverse=True)
    count = np.bincount(inverse).astype(np.float64)
    gsum = np.bincount(inverse, np.concatenate(strength))
    # Adjacency: neighbour -> [boundary pixel count, gradient sum]
    adj: list[dict[int, list[float]]] = [{} for _ in range(S)]
    for key, c, g in zip(keys.tolist(), count.tolist(), gsum.tolist(), strict=True):
        i, j = divmod(key, S)
        adj[i][j] = adj[j][i] = [c, g]
    parent = np.arange(S)
    version = [0] * S

    def cost(i: int, j: int) -> float:
        ci, cj = colour_sum[i] / area[i], colour_sum[j] / area[j]
        c, g = adj[i][j]
        return float(np.sqrt(((ci - cj) ** 2).sum()) + boundary_weight * g / c)

    heap = [(cost(i, j), i, j, 0, 0) for i in range(S) for j in adj[i] if i < j]
    heapq.heapify(heap)
    while heap:
        w, i, j, vi, vj = heapq.heappop(heap)
        if w > threshold:
            break
        if vi != version[i] or vj != version[j] or parent[i] != i or parent[j] != j:
            continue  # stale entry: one side changed since it was pushed
        # merge j into i
        parent[j] = i
        area[i] += area[j]
        colour_sum[i] += colour_sum[j]
        for k, (c, g) in adj[j].items():
            del adj[k][j]
            if k == i:
                continue
            if k in adj[i]:
                adj[i][k][0] += c
                adj[i][k][1] += g
            else:
                adj[i][k] = [c, g]
            adj[k][i] = adj[i][k]
        adj[j] = {}
        version[i] += 1
        for k in adj[i]:
            heapq.heappush(heap, (cost(i, k), min(i, k), max(i, k), version[min(i, k)], version[max(i, k)]))
    # resolve union chains to roots
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return root[labels] + 1


class Sam2Segmenter:
    """SAM2 automatic mask generator (``sam2`` package, GPU; checkpoint and config supplied by the user).

    Args:
        checkpoint: path of a SAM2 checkpoint (``sam2.1_hiera_small.pt`` ...).
        config: SAM2 model config, as ``sam2.build_sam.build_sam2`` takes it
            (e.g. ``configs/sam2.1/sam2.1_hiera_s.yaml``).
        device: torch device.
        min_area: masks smaller than this fraction of the frame are dropped.
        generator_options: passed to ``SAM2AutomaticMaskGenerator`` (``points_per_side``, ``pred_iou_thresh`` ...).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        config: str | None = None,
        device: str = "cuda",
        min_area: float = 0.002,
        **generator_options: Any,
    ) -> None:
        require("sam2", SAM2_HINT)
        model = build_sam2_model(checkpoint, config, device, video=False)
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # optional dependency (the sam2 extra)

        self.generator = SAM2AutomaticMaskGenerator(model, **generator_options)
        self.min_area = min_area

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = check_frame(frame)
        H, W, _ = frame.shape
        masks = self.generator.generate(frame)  # list of {"segmentation": (H, W) bool, "area": int, ...}
        out = np.zeros((H, W), dtype=np.int32)
        for k, m in enumerate(sorted(masks, key=lambda m: -m["area"])):
            if m["area"] >= self.min_area * H * W:
                out[m["segmentation"]] = k + 1
        return relabel_consecutive(fill_nearest(out))


def build_sam2_model(checkpoint: str | os.PathLike | None, config: str | None, device: str, video: bool) -> Any:
    """SAM2 image model (``video=False``) or video predictor; errors name the missing piece."""
    require("sam2", SAM2_HINT)
    if checkpoint is None or config is None:
        raise ValueError(
            f"the sam2 backend needs a checkpoint path and a model config, got checkpoint={checkpoint!r} "
            f"config={config!r} (e.g. --sam2-checkpoint sam2.1_hiera_small.pt --sam2-config "
            "configs/sam2.1/sam2.1_hiera_s.yaml)"
        )
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"SAM2 checkpoint not found: {checkpoint}")
    from sam2.build_sam import build_sam2, build_sam2_video_predictor  # optional dependency (the sam2 extra)

    builder = build_sam2_video_predictor if video else build_sam2
    return builder(config, str(checkpoint), device=device)


SEGMENTERS: dict[str, type] = {"cpu": CpuSegmenter, "sam2": Sam2Segmenter}


def build_segmenter(name: str = "cpu", **options: Any) -> Segmenter:
    """The segmenter registered as ``name`` ("cpu" or "sam2") built with ``options``."""
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter backend {name!r}; choose one of {sorted(SEGMENTERS)}")
    return SEGMENTERS[name](**options)
