"""``trajtok synth``: write the synthetic long-video world.

    trajtok synth --out data/synth --num-videos train=64,val=8,test=16 --frames 32-256 --size 128 \\
        --objects 2-8 --cuts 0.3 --workers 2
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def parse_range(text: str) -> int | tuple[int, int]:
    """``"32"`` -> 32, ``"32-128"`` -> (32, 128)."""
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return int(lo), int(hi)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or a range lo-hi (e.g. 32-128), got {text!r}") from None


def parse_size(text: str) -> int | tuple[int, int]:
    """``"128"`` -> 128 (square), ``"96x160"`` -> (96, 160) (height x width)."""
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x", 1)
            return int(h), int(w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or HxW (e.g. 96x160), got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (manifest.json + train/ val/ test/)")
    parser.add_argument(
        "--num-videos", default="8", help="videos per split: N for every split, or train=64,val=8,test=16"
    )
    parser.add_argument("--frames", type=parse_range, default=(32, 128), help="frames per video: N or lo-hi")
    parser.add_argument("--size", type=parse_size, default=64, help="frame size: N (square) or HxW")
    parser.add_argument("--objects", type=parse_range, default=(2, 6), help="objects per video: N or lo-hi")
    parser.add_argument("--seed", type=int, default=0, help="base seed (same seed => same annotations)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (output does not depend on it)")
    parser.add_argument("--cuts", type=float, default=0.0, help="probability that a video contains hard scene cuts")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate written into the videos")
    parser.add_argument(
        "--codec",
        choices=("mpeg4", "h264"),
        default="mpeg4",
        help="mpeg4: the same seed writes the same bytes (default); h264: libx264 at --crf, differs slightly run to run",
    )
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality with --codec h264 (lower = better)")


def run(args: argparse.Namespace) -> int:
    from trajtok.synth.dataset import parse_counts, write_dataset

    lo, hi = args.objects if isinstance(args.objects, tuple) else (args.objects, args.objects)
    if lo < 0 or hi < 1 or hi < lo:
        raise ValueError(
            f"--objects must be N >= 1 or a range lo-hi with 0 <= lo <= hi and hi >= 1, got {lo}-{hi}: videos "
            "without objects have no trajectories to learn and no questions (qa.json would be empty)"
        )
    if lo == 0:
        logger.warning(
            "--objects %d-%d: some videos will have no objects, hence no trajectories and no questions", lo, hi
        )
    manifest = write_dataset(
        args.out,
        parse_counts(args.num_videos),
        frames=args.frames,
        size=args.size,
        objects=args.objects,
        seed=args.seed,
        workers=args.workers,
        cut_prob=args.cuts,
        fps=args.fps,
        crf=args.crf,
        codec=args.codec,
    )
    logger.info("manifest: %s", manifest)
    return 0
