"""``trajtok pseudolabel``: trajectory pseudo-labels (masks + graph npz) for real videos.

    trajtok pseudolabel clips/*.mp4 frames_dir/ --out labels/ --backend cpu --workers 2 --size 240 --num-frames 64
    trajtok pseudolabel train.json --video-root data/videos --out labels/        # LLaVA-format list of {"video"}

Writes ``OUT/<name>.npz`` per video (atomically, as each finishes), ``OUT/labels.json`` (video path -> npz,
relative to OUT) and ``OUT/failures.jsonl`` (one {"video", "error"} line per video that could not be labelled; the
run goes on). Re-running skips videos whose npz already exists, so an interrupted run resumes where it stopped.
Exit status 0 when at least one video has labels in OUT, 1 when none has.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trajtok.pseudolabel.keyframes import KeyframeConfig
from trajtok.pseudolabel.motion import MotionConfig
from trajtok.pseudolabel.pipeline import PseudoLabelConfig, PseudoLabeler, label_video
from trajtok.pseudolabel.segment import CpuSegmenterConfig

logger = logging.getLogger(__name__)

# Which exceptions count as "this video failed" (logged to failures.jsonl) rather than a bug that stops the run.
VIDEO_ERRORS = (ValueError, OSError, RuntimeError, MemoryError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="video files, folders of frames, or LLaVA-format JSON lists")
    parser.add_argument("--out", required=True, help="output folder (npz per video, labels.json, failures.jsonl)")
    parser.add_argument("--video-root", default=None, help="folder that relative 'video' paths of a JSON list are in")
    parser.add_argument("--backend", choices=("cpu", "sam2"), default="cpu", help="segmentation + tracking backend")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--size", type=int, default=240, help="shorter side of the processing (and label) resolution")
    sample = parser.add_mutually_exclusive_group()
    sample.add_argument("--num-frames", type=int, default=None, help="frames evenly sampled per video")
    sample.add_argument("--fps", type=float, default=None, help="sample frames at this rate")
    parser.add_argument("--max-frames", type=int, default=None, help="cap on frames per video")
    parser.add_argument(
        "--keyframe-rule",
        choices=("exact", "pyscenedetect"),
        default="exact",
        help="histogram detector reading: exact (corr < 0.15) or pyscenedetect (corr <= 0.85; finds more hard cuts)",
    )
    parser.add_argument("--max-spacing", type=int, default=None, help="re-segment at least every N frames")
    parser.add_argument("--granularity", default="medium", help="cpu segmenter: coarse | medium | fine | 0..1")
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="IoU to continue a trajectory at a key frame")
    parser.add_argument(
        "--no-motion",
        action="store_true",
        help="cpu backend: skip the moving-object stage (flow, motion boundaries, GrabCut); colour segments only",
    )
    parser.add_argument(
        "--max-trajectories",
        type=int,
        default=None,
        help="object-level labels: merge the smallest trajectories into their neighbours until at most this many "
        "remain (moving objects are kept); default: keep all",
    )
    parser.add_argument("--sam2-checkpoint", default=None, help="sam2 backend: checkpoint path")
    parser.add_argument("--sam2-config", default=None, help="sam2 backend: model config")
    parser.add_argument("--device", default="cuda", help="sam2 backend: torch device")
    parser.add_argument("--viz", action="store_true", help="also write OUT/viz/<name>.png contact sheets")


def collect_videos(inputs: list[str], video_root: str | None = None) -> list[Path]:
    """Video paths from files, frame folders and LLaVA JSON lists (entries without "video" are skipped)."""
    videos: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() == ".json" and path.is_file():
            try:
                entries = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e}); expected a LLaVA-format JSON list") from e
            if not isinstance(entries, list):
                raise ValueError(f"{path}: expected a LLaVA-format JSON list of objects, got {type(entries).__name__}")
            root = Path(video_root) if video_root else path.parent
            for entry in entries:
                if isinstance(entry, dict) and entry.get("video"):
                    v = Path(entry["video"])
                    videos.append(v if v.is_absolute() else root / v)
        else:
            videos.append(path)
    return list(dict.fromkeys(videos))  # drop repeats (many QA entries share a video), keep order


def output_names(videos: list[Path]) -> dict[Path, str]:
    """npz file name per video: its stem, with a short path hash when two videos share a stem."""
    stems: dict[str, int] = {}
    for v in videos:
        stems[v.stem] = stems.get(v.stem, 0) + 1
    names = {}
    for v in videos:
        if stems[v.stem] > 1:
            digest = hashlib.sha1(str(v.resolve()).encode()).hexdigest()[:8]
            names[v] = f"{v.stem}-{digest}.npz"
        else:
            names[v] = f"{v.stem}.npz"
    return names


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


_LABELER = None  # one per worker process, rebuilt when a run in the same process asks for another config


def _config(args: argparse.Namespace):
    if args.max_trajectories is not None and args.max_trajectories < 1:
        raise ValueError(f"--max-trajectories must be >= 1, got {args.max_trajectories}")
    g = args.granularity
    granularity = float(g) if g and (g[0].isdigit() or g[0] == ".") else g
    return PseudoLabelConfig(
        backend=args.backend,
        size=args.size,
        keyframes=KeyframeConfig(histogram_rule=args.keyframe_rule, max_spacing=args.max_spacing),
        iou_threshold=args.iou_threshold,
        segmenter=CpuSegmenterConfig(granularity=granularity),
        motion=None if args.no_motion else MotionConfig(),
        max_trajectories=args.max_trajectories,
        sam2_checkpoint=args.sam2_checkpoint,
        sam2_config=args.sam2_config,
        device=args.device,
    )


def _label_one(job: tuple[Any, str, str, dict[str, Any]]) -> tuple[str, str, str | None]:
    """Worker: (config, video, npz, options) -> (video, npz, error or None)."""
    global _LABELER
    config, video, npz, options = job
    if _LABELER is None or _LABELER.config != config:
        _LABELER = PseudoLabeler(config)
    try:
        label_video(_LABELER, video, npz, **options)
    except VIDEO_ERRORS as e:
        return video, npz, f"{type(e).__name__}: {e}"
    return video, npz, None


def _results(jobs: list, workers: int) -> Iterator[tuple[str, str, str | None]]:
    if workers <= 1:
        yield from map(_label_one, jobs)
        return
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_label_one, jobs)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    config = _config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    videos = collect_videos(args.inputs, args.video_root)
    names = output_names(videos)
    index_path = out / "labels.json"
    index: dict[str, str] = {}
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{index_path}: not valid JSON ({e}); delete it to rebuild the index") from e
    options: dict[str, Any] = {"num_frames": args.num_frames, "fps": args.fps, "max_frames": args.max_frames}
    jobs = []
    for v in videos:
        npz = out / names[v]
        if npz.is_file():
            index[str(v)] = names[v]
            continue
        viz = out / "viz" / f"{npz.stem}.png" if args.viz else None
        jobs.append((config, str(v), str(npz), {**options, "viz": viz}))
    skipped = len(videos) - len(jobs)
    logger.info("%d videos: %d already labelled, %d to do", len(videos), skipped, len(jobs))
    _write_json_atomic(index_path, index)
    failed = 0
    with open(out / "failures.jsonl", "a") as failures:
        for video, npz, error in tqdm(_results(jobs, args.workers), total=len(jobs), desc="pseudolabel", unit="video"):
            if error is None:
                index[video] = Path(npz).name
                _write_json_atomic(index_path, index)
            else:
                failed += 1
                logger.warning("failed: %s (%s)", video, error)
                failures.write(json.dumps({"video": video, "error": error}) + "\n")
                failures.flush()
    logger.info("labelled %d, skipped %d, failed %d; index %s", len(jobs) - failed, skipped, failed, index_path)
    return 0 if index else 1
