"""The pseudo-label pipeline: key frames -> segment each key frame -> track to the next key frame -> merge
(-> cpu backend: moving objects found from motion and appearance over each shot laid on top).

    labeler = PseudoLabeler(PseudoLabelConfig(backend="cpu"))
    result = labeler(frames)            # frames (T, H, W, 3) uint8 RGB
    save_labels("clip.npz", result.masks, result.graph)

With the cpu backend the colour segments alone rarely keep a whole object together, so the motion stage
(``trajtok.pseudolabel.motion``: flow, motion boundaries, inside-outside maps, GrabCut) finds the moving
foreground of each shot; its space-time connected components become trajectories of their own, painted over the
colour trajectories. ``trajtok pseudolabel`` and the benchmark turn it on (``motion=MotionConfig()``); the library
default leaves it off because it costs 3-5 times the rest of the pipeline and callers that label on the fly (the
VLM's trajvit connector labels every video it sees) keep their colour-only labels unless they ask for it.

Labels are produced at the processing resolution: frames are downscaled so that their shorter side is ``size``
pixels (240 by default; never upscaled), so ``masks`` is (T, h, w) at that size, not the video's. Training
resizes labels to its own resolution anyway (nearest neighbour).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from trajtok.io.labels import save_labels
from trajtok.io.video import load_video, probe_video
from trajtok.pseudolabel.keyframes import KeyframeConfig, detect_keyframes, require
from trajtok.pseudolabel.merge import TrajectoryLinker, merge_small_trajectories, to_masks_and_graph
from trajtok.pseudolabel.motion import MotionConfig, MotionSegmenter, split_by_colour
from trajtok.pseudolabel.segment import CpuSegmenter, CpuSegmenterConfig, build_segmenter
from trajtok.pseudolabel.track import FlowTrackerConfig, OpticalFlow, build_tracker
from trajtok.viz import contact_sheet

logger = logging.getLogger(__name__)

BACKENDS = ("cpu", "sam2")
STAGES = ("keyframes", "segmentation", "tracking", "merging", "motion")


@dataclass
class PseudoLabelConfig:
    backend: str = "cpu"  # "cpu" (superpixels + optical flow, no weights) or "sam2" (GPU, user-supplied weights)
    size: int | None = 240  # shorter side of the processing resolution (labels are at this size); None = as decoded
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)  # shot / key-frame detection
    iou_threshold: float = 0.5  # a key-frame segment continues a tracked trajectory when IoU >= this
    link_across_cuts: bool = True  # match segments at detected cuts too (False: every shot starts new trajectories)
    segmenter: CpuSegmenterConfig = field(default_factory=CpuSegmenterConfig)  # "cpu" segmentation settings
    tracker: FlowTrackerConfig = field(default_factory=FlowTrackerConfig)  # "cpu" tracking settings
    motion_gap: int = 0  # cpu: segment key frames with the flow to the frame this many frames later (0 = colour only;
    # used when segmenter.motion_weight > 0; measured no better than colour alone on the DAVIS clips)
    motion: MotionConfig | None = None  # cpu: moving-object stage (None = off; `trajtok pseudolabel` turns it on)
    # object-level labels: merge the smallest trajectories into their neighbours until at most this many remain
    # (moving objects of the motion stage are never merged away); None = keep every trajectory
    max_trajectories: int | None = None
    sam2_checkpoint: str | None = None  # sam2: checkpoint path
    sam2_config: str | None = None  # sam2: model config (e.g. configs/sam2.1/sam2.1_hiera_s.yaml)
    device: str = "cuda"  # sam2: torch device

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"size (shorter side in pixels) must be >= 8 or None, got {self.size}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.motion_gap < 0:
            raise ValueError(f"motion_gap must be >= 0 frames, got {self.motion_gap}")
        if self.max_trajectories is not None and self.max_trajectories < 1:
            raise ValueError(f"max_trajectories must be >= 1 or None, got {self.max_trajectories}")


@dataclass
class PseudoLabelResult:
    masks: np.ndarray  # (T, h, w) int32 instance ids (= trajectory number m + 1), 0 = none
    graph: np.ndarray  # (M, T) int32: graph[m, t] = m + 1 where trajectory m is present in frame t
    keyframes: list[int]  # key-frame indices
    cuts: list[int]  # key frames found by the detectors
    seconds: dict[str, float]  # wall time per stage (keyframes, segmentation, tracking, merging, motion)


def resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Downscale (T, H, W, 3) uint8 so the shorter side is ``size`` (area interpolation; never upscales)."""
    if size is None or min(frames.shape[1:3]) <= size:
        return frames
    require("cv2")
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    T, H, W, _ = frames.shape
    s = size / min(H, W)
    h, w = max(1, round(H * s)), max(1, round(W * s))
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])  # (T, h, w, 3)


class PseudoLabeler:
    """Trajectory pseudo-labels for one video at a time (models are built once and reused)."""

    def __init__(self, config: PseudoLabelConfig | None = None) -> None:
        self.config = cfg = config or PseudoLabelConfig()
        if cfg.backend == "cpu":
            self.segmenter = build_segmenter("cpu", config=cfg.segmenter)
            self.tracker = build_tracker("cpu", config=cfg.tracker)
            use_motion = cfg.motion_gap > 0 and cfg.segmenter.motion_weight > 0
            self.flow = OpticalFlow(cfg.tracker.method) if use_motion else None
            self.motion = MotionSegmenter(cfg.motion) if cfg.motion is not None else None
        else:
            sam2 = {"checkpoint": cfg.sam2_checkpoint, "config": cfg.sam2_config, "device": cfg.device}
            self.segmenter = build_segmenter("sam2", **sam2)
            self.tracker = build_tracker("sam2", **sam2)
            self.flow = None
            self.motion = None

    def segment(self, frames: np.ndarray, k: int, end: int) -> np.ndarray:
        """Segmentation (h, w) of key frame ``k`` (with motion to a later frame of its segment [k, end))."""
        gap = min(self.config.motion_gap, end - 1 - k)
        if self.flow is not None and gap > 0:
            assert isinstance(self.segmenter, CpuSegmenter)  # optical flow is built with the CPU backend only
            return self.segmenter(frames[k], motion=self.flow(frames[k], frames[k + gap]))
        return self.segmenter(frames[k])

    def __call__(self, frames: Any) -> PseudoLabelResult:
        """Pseudo-labels of ``frames``: (T, H, W, 3) uint8 RGB numpy, or a (T, C, H, W) uint8 tensor."""
        if hasattr(frames, "detach"):
            frames = frames.detach().cpu().permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
        frames = np.ascontiguousarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
            raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB with T >= 1, got {frames.dtype} {frames.shape}")
        cfg = self.config
        frames = resize_frames(frames, cfg.size)
        T, H, W, _ = frames.shape
        seconds = dict.fromkeys(STAGES, 0.0)

        t0 = time.perf_counter()
        kf = detect_keyframes(frames, cfg.keyframes)
        seconds["keyframes"] = time.perf_counter() - t0

        linker = TrajectoryLinker(cfg.iou_threshold)
        ids = np.zeros((T, H, W), dtype=np.int32)
        carry: np.ndarray | None = None  # labels tracked into the current key frame from the previous segment
        cuts = set(kf.cuts)
        bounds = [*kf.keyframes, T]
        for k, end in zip(bounds[:-1], bounds[1:], strict=True):
            t0 = time.perf_counter()
            segments = self.segment(frames, k, end)
            t1 = time.perf_counter()
            if carry is not None and k in cuts and not cfg.link_across_cuts:
                carry = None
            ids[k] = linker.link(segments, carry)
            t2 = time.perf_counter()
            last = min(end, T - 1)  # track one frame into the next key frame to link there
            tracked = self.tracker(frames[k : last + 1], ids[k])  # (last - k + 1, H, W)
            ids[k + 1 : end] = tracked[1 : end - k]
            carry = tracked[-1] if end < T else None
            t3 = time.perf_counter()
            seconds["segmentation"] += t1 - t0
            seconds["merging"] += t2 - t1
            seconds["tracking"] += t3 - t2
        t0 = time.perf_counter()
        first_motion_id = linker.next_id  # ids from here on are moving objects
        if self.motion is not None:
            shots = list(zip(kf.cuts, [*kf.cuts[1:], T], strict=True))
            fg = np.concatenate([self.motion(frames[a:b]) for a, b in shots])  # (T, H, W): each shot on its own
            if cfg.link_across_cuts:  # an object overlapping itself across a cut continues (as colour segments do)
                linker.next_id = paint_objects(ids, fg, linker.next_id, frames, self.motion.config)
            else:
                for a, b in shots:
                    linker.next_id = paint_objects(ids[a:b], fg[a:b], linker.next_id, frames[a:b], self.motion.config)
        seconds["motion"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if cfg.max_trajectories is not None:
            moving = {int(i) for i in np.unique(ids) if i >= first_motion_id}
            ids = merge_small_trajectories(ids, cfg.max_trajectories, keep=moving)
        masks, graph = to_masks_and_graph(ids)
        seconds["merging"] += time.perf_counter() - t0
        logger.debug(
            "%d frames, key frames %s: %d trajectories (%d segments continued one)",
            T,
            kf.keyframes,
            graph.shape[0],
            linker.continued,
        )
        return PseudoLabelResult(masks, graph, kf.keyframes, kf.cuts, seconds)


def paint_objects(
    ids: np.ndarray,
    foreground: np.ndarray,
    next_id: int,
    frames: np.ndarray | None = None,
    config: MotionConfig | None = None,
) -> int:
    """Give each space-time connected component of ``foreground`` (T, H, W) bool a new id from ``next_id`` in
    ``ids`` (T, H, W), in place; returns the next unused id. A moving object overlaps itself from one frame to the
    next, so its pixels form one component over the shot. With ``frames`` (T, H, W, 3) and ``config``, a component
    whose colours form two clearly separate, coherent parts (``split_by_colour``: a rider on a bicycle) gets two."""
    comps, n = ndimage.label(foreground, structure=np.ones((3, 3, 3), bool))  # (T, H, W) 1..n
    for c in range(1, n + 1):
        component = comps == c
        parts = split_by_colour(frames, component, config) if frames is not None and config is not None else None
        if parts is None:
            ids[component] = next_id
            next_id += 1
        else:
            ids[parts == 1], ids[parts == 2] = next_id, next_id + 1
            next_id += 2
    return next_id


def label_video(
    labeler: PseudoLabeler,
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    viz: str | os.PathLike | None = None,
) -> PseudoLabelResult:
    """Decode ``source`` (video file or frame folder), pseudo-label it and write ``out`` (npz, atomically).

    ``viz``: optional contact-sheet PNG path (skipped with a log line when ``trajtok.viz`` is unavailable).
    Raises ``trajtok.io.video.VideoDecodeError`` / FileNotFoundError for unreadable input.
    """
    size = labeler.config.size
    if size is not None:  # decode straight to the processing size, but never upscale
        info = probe_video(source)
        size = size if min(info.height, info.width) > size else None
    video = load_video(source, num_frames=num_frames, fps=fps, max_frames=max_frames, size=size)
    frames = video.frames.permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    result = labeler(frames)
    save_labels(out, result.masks, result.graph)
    if viz is not None:
        contact_sheet(resize_frames(frames, labeler.config.size), result.masks, Path(viz))
    return result
