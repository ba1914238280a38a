"""Tracking of a key frame's label map to the following frames: ``Tracker(frames, labels) -> (L, H, W) ids``.

Backends, chosen by a registry string (``build_tracker(name, **options)``):

- ``"cpu"``: dense optical flow (OpenCV DIS or Farneback). For each next frame the flow from that frame back to
  the previous one is computed and the previous label map is sampled along it (backward warping, nearest
  neighbour), so every pixel gets exactly one label. Pixels whose flow leads outside the frame or fails the
  forward-backward consistency check are holes; they take the label of the nearest valid pixel. A mode filter
  (majority vote over a ``vote_size`` window) then removes speckle and keeps region boundaries smooth.
- ``"sam2"``: SAM2's video predictor seeded with one mask per region of the key frame (``sam2`` package,
  checkpoint + config, GPU).

Ids keep their values: the ids present in the output are a subset of those in ``labels``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from trajtok.pseudolabel.keyframes import require
from trajtok.pseudolabel.segment import SAM2_HINT, build_sam2_model, fill_nearest

logger = logging.getLogger(__name__)

FLOW_METHODS = ("dis", "farneback")


class Tracker(Protocol):
    def __call__(self, frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """frames (L, H, W, 3) uint8 RGB with ``labels`` (H, W) int32 on frames[0] -> (L, H, W) int32 label maps."""
        ...


def check_track_inputs(frames: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames, labels = np.asarray(frames), np.asarray(labels)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"frames must be uint8 (L, H, W, 3) RGB with L >= 1, got {frames.dtype} {tuple(frames.shape)}")
    if labels.shape != frames.shape[1:3] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer (H, W) = {frames.shape[1:3]}, got {labels.dtype} {labels.shape}")
    return frames, labels.astype(np.int32)


@dataclass
class FlowTrackerConfig:
    method: str = "farneback"  # optical flow: "farneback" or "dis" (OpenCV DIS, medium preset; faster, drifts more)
    consistency: float = 0.0  # forward-backward flow error (pixels) above which a pixel is a hole; 0 = no check
    vote_size: int = 3  # side of the majority-vote window after warping (odd, 1 = no vote)

    def __post_init__(self) -> None:
        if self.method not in FLOW_METHODS:
            raise ValueError(f"method must be one of {FLOW_METHODS}, got {self.method!r}")
        if self.consistency < 0:
            raise ValueError(f"consistency must be >= 0 pixels, got {self.consistency}")
        if self.vote_size < 1 or self.vote_size % 2 == 0:
            raise ValueError(f"vote_size must be an odd integer >= 1, got {self.vote_size}")


class OpticalFlow:
    """Dense flow between two uint8 RGB frames: ``flow(a, b)`` (H, W, 2) with a(y, x) ~ b(y + v, x + u)."""

    def __init__(self, method: str = "farneback") -> None:
        require("cv2")
        import cv2  # optional dependency (the pseudolabel extra): imported where used

        if method not in FLOW_METHODS:
            raise ValueError(f"method must be one of {FLOW_METHODS}, got {method!r}")
        self.method = method
        self._dis = cv2.DISOpticalFlow.create(cv2.DISOpticalFlow_PRESET_MEDIUM) if method == "dis" else None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import cv2  # optional dependency (the pseudolabel extra): imported where used

        ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        if self._dis is not None:
            return self._dis.calc(ga, gb, None)  # type: ignore[call-overload]  # None: OpenCV allocates the output
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # type: ignore[call-overload]  # idem


def warp_labels(labels: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``labels`` (H, W) at (y + flow_y, x + flow_x) by nearest neighbour.

    Returns the warped (H, W) int32 labels and an (H, W) bool mask of pixels sampled inside the frame.
    """
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    H, W = labels.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    inside = (map_x > -0.5) & (map_x < W - 0.5) & (map_y > -0.5) & (map_y < H - 0.5)
    # remap on float32 is exact for ids < 2**24
    warped = cv2.remap(labels.astype(np.float32), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return warped.astype(np.int32), inside


def majority_filter(labels: np.ndarray, size: int) -> np.ndarray:
    """Mode of the labels in a ``size`` x ``size`` window around each pixel (ties keep the smallest id)."""
    if size <= 1:
        return labels
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    ids = np.unique(labels)
    if len(ids) <= 1:
        return labels
    best = np.zeros(labels.shape, dtype=np.float32)
    out = labels.copy()
    for i in ids.tolist():
        votes = cv2.boxFilter((labels == i).astype(np.float32), -1, (size, size), normalize=False)
        win = votes > best
        out[win] = i
        best[win] = votes[win]
    return out


class FlowTracker:
    """Propagate a label map with dense optical flow (backward warping + holes by nearest label + majority vote)."""

    def __init__(self, config: FlowTrackerConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ValueError(f"give either a config or options, not both (options: {sorted(options)})")
        self.config = config or FlowTrackerConfig(**options)
        self.flow = OpticalFlow(self.config.method)

    def step(self, prev_frame: np.ndarray, frame: np.ndarray, prev_labels: np.ndarray) -> np.ndarray:
        """Labels (H, W) of ``frame`` from ``prev_labels`` on ``prev_frame``."""
        cfg = self.config
        back = self.flow(frame, prev_frame)  # (H, W, 2): frame(p) ~ prev_frame(p + back(p))
        warped, valid = warp_labels(prev_labels, back)
        if cfg.consistency > 0:
            fwd = self.flow(prev_frame, frame)
            # forward flow sampled at the back-warped position must bring us back to p
            import cv2  # optional dependency (the pseudolabel extra): imported where used

            H, W = warped.shape
            ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
            fwd_at = cv2.remap(
                fwd, xs + back[..., 0], ys + back[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            err = np.linalg.norm(back + fwd_at, axis=-1)  # (H, W)
            valid &= err <= cfg.consistency
        warped = np.where(valid, warped, 0)
        warped = fill_nearest(warped)
        return majority_filter(warped, cfg.vote_size)

    def __call__(self, frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
        frames, labels = check_track_inputs(frames, labels)
        out = np.empty((frames.shape[0], *labels.shape), dtype=np.int32)  # (L, H, W)
        out[0] = labels
        for t in range(1, frames.shape[0]):
            out[t] = self.step(frames[t - 1], frames[t], out[t - 1])
        return out


class Sam2Tracker:
    """SAM2 video predictor seeded with one mask per region of the key frame (``sam2`` package, GPU).

    Args:
        checkpoint: SAM2 checkpoint path.
        config: SAM2 model config (as ``sam2.build_sam.build_sam2_video_predictor`` takes it).
        device: torch device.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, config: str | None = None, device: str = "cuda"):
        require("sam2", SAM2_HINT)
        self.predictor = build_sam2_model(checkpoint, config, device, video=True)

    def __call__(self, frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
        frames, labels = check_track_inputs(frames, labels)
        L, H, W, _ = frames.shape
        ids = [i for i in np.unique(labels).tolist() if i != 0]
        out = np.zeros((L, H, W), dtype=np.int32)
        out[0] = labels
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
            for t in range(L):  # the predictor reads a folder of JPEG frames named by index
                Image.fromarray(frames[t]).save(Path(tmp) / f"{t:05d}.jpg", quality=95)
            state = self.predictor.init_state(video_path=tmp)
            for i in ids:
                self.predictor.add_new_mask(state, frame_idx=0, obj_id=i, mask=labels == i)
            for t, obj_ids, mask_logits in self.predictor.propagate_in_video(state):
                logits = mask_logits[:, 0].float().cpu().numpy()  # (O, H, W)
                best = logits.argmax(0)
                painted = np.asarray(obj_ids, dtype=np.int32)[best]
                out[t] = np.where(logits.max(0) > 0, painted, 0)
        return out


TRACKERS: dict[str, type] = {"cpu": FlowTracker, "sam2": Sam2Tracker}


def build_tracker(name: str = "cpu", **options: Any) -> Tracker:
    """The tracker registered as ``name`` ("cpu" or "sam2") built with ``options``."""
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker backend {name!r}; choose one of {sorted(TRACKERS)}")
    return TRACKERS[name](**options)
