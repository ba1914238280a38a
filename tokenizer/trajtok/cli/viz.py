"""``trajtok viz``: draw the trajectory ids of a label npz over its video (PNG contact sheet, GIF / MP4);
the drawing is :mod:`trajtok.viz`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from trajtok.checks import MAX_FRAMES, check_input_exists, check_rate
from trajtok.io.labels import load_labels
from trajtok.io.video import load_video, probe_video
from trajtok.viz import animate, as_frames, contact_sheet

logger = logging.getLogger(__name__)


def _read_video(path: Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """All frames (T, H, W, 3) uint8 and the frame rate of a video file, resized while decoding to ``size`` (H, W)."""
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    video = load_video(path, size=size)
    return as_frames(video.frames), float(video.fps)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="video file")
    parser.add_argument("--labels", required=True, help="trajectory label npz (masks + graph) of the video")
    parser.add_argument("--out", required=True, help="sheet.png (contact sheet), anim.gif or anim.mp4")
    parser.add_argument("--max-frames", type=int, default=16, help="frames on the contact sheet")
    parser.add_argument("--cols", type=int, default=8, help="tiles per row of the contact sheet")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the trajectory colours")
    parser.add_argument("--fps", type=float, default=None, help="animation frame rate (default: the video's)")


def check_labels_fit(video: str | Path, labels: str | Path, label_shape: tuple[int, ...]) -> None:
    """ValueError when the labels (T, H, W) cannot be this video's: another frame count or another aspect ratio
    (labels may be smaller than the video, at the same shape). Read from the container before decoding."""
    T, H, W = (int(v) for v in label_shape)
    if T > MAX_FRAMES:
        raise ValueError(f"{labels}: {T} labelled frames is more than the {MAX_FRAMES} frames viz draws")
    info = probe_video(video)
    if info.num_frames != T and not info.num_frames_exact:
        info = probe_video(video, count_frames=True)  # container metadata can be off: count before refusing
    if info.num_frames != T:
        raise ValueError(
            f"{labels} does not fit {video}: the labels have {T} frames, the video {info.num_frames} "
            "(labels of another video?)"
        )
    if abs(H / W - info.height / info.width) > 0.02 * info.height / info.width + 1.0 / min(W, info.width):
        raise ValueError(
            f"{labels} does not fit {video}: the labels are {W}x{H}, the video {info.width}x{info.height}, "
            "another shape (labels of another video?)"
        )


def run(args: argparse.Namespace) -> int:
    check_rate("--fps", args.fps)
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    for flag, value in (("--max-frames", args.max_frames), ("--cols", args.cols)):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    check_input_exists(args.video)
    ids = load_labels(args.labels).trajectory_ids()  # (T, H, W): trajectory m -> m + 1
    check_labels_fit(args.video, args.labels, ids.shape)
    # decoded at the labels' size: memory follows the labels, not the source resolution (a 4K video stays small)
    frames, fps = _read_video(Path(args.video), size=(int(ids.shape[1]), int(ids.shape[2])))
    if frames.shape[0] != ids.shape[0]:
        raise ValueError(
            f"{args.labels} does not fit {args.video}: the labels have {ids.shape[0]} frames, the video decoded to "
            f"{frames.shape[0]}"
        )
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        contact_sheet(frames, ids, out, max_frames=args.max_frames, cols=args.cols, alpha=args.alpha)
    else:
        animate(frames, ids, out, fps=args.fps or fps, alpha=args.alpha)
    logger.info("wrote %s", out)
    return 0
