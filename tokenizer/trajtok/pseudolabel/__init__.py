"""Trajectory pseudo-labels for real video (the TrajViT pipeline): key frames -> segmentation -> tracking -> merging.

    from trajtok.pseudolabel import PseudoLabeler, PseudoLabelConfig
    result = PseudoLabeler(PseudoLabelConfig(backend="cpu"))(frames)      # frames (T, H, W, 3) uint8 RGB
    # result.masks (T, h, w), result.graph (M, T): the trajtok.io.labels format

Backends: "cpu" (superpixels + region merging, dense optical flow, and moving objects from motion boundaries and
GrabCut, ``trajtok.pseudolabel.motion``; needs ``pip install 'trajtok[pseudolabel]'``)
and "sam2" (SAM2 automatic masks + video predictor on GPU; ``pip install 'trajtok[sam2]'`` and a checkpoint).
Command line: ``trajtok pseudolabel`` (see ``trajtok.pseudolabel.cli``).
"""

from __future__ import annotations

from trajtok.pseudolabel.keyframes import KeyframeConfig, KeyframeResult, detect_keyframes, frame_measures, match_cuts
from trajtok.pseudolabel.merge import TrajectoryLinker, match_segments, to_masks_and_graph
from trajtok.pseudolabel.motion import MotionConfig, MotionSegmenter, inside_outside
from trajtok.pseudolabel.pipeline import PseudoLabelConfig, PseudoLabeler, PseudoLabelResult, label_video
from trajtok.pseudolabel.segment import (
    SEGMENTERS,
    CpuSegmenter,
    CpuSegmenterConfig,
    Sam2Segmenter,
    Segmenter,
    build_segmenter,
)
from trajtok.pseudolabel.track import TRACKERS, FlowTracker, FlowTrackerConfig, Sam2Tracker, Tracker, build_tracker

__all__ = [
    "SEGMENTERS",
    "TRACKERS",
    "CpuSegmenter",
    "CpuSegmenterConfig",
    "FlowTracker",
    "FlowTrackerConfig",
    "KeyframeConfig",
    "KeyframeResult",
    "MotionConfig",
    "MotionSegmenter",
    "PseudoLabelConfig",
    "PseudoLabelResult",
    "PseudoLabeler",
    "Sam2Segmenter",
    "Sam2Tracker",
    "Segmenter",
    "Tracker",
    "TrajectoryLinker",
    "build_segmenter",
    "build_tracker",
    "detect_keyframes",
    "inside_outside",
    "frame_measures",
    "label_video",
    "match_cuts",
    "match_segments",
    "to_masks_and_graph",
]
