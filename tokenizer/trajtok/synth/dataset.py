"""Write synthetic-world splits to disk: per video an mp4, a label npz and a JSON record; per split LLaVA caption
and QA lists; one manifest for the whole dataset.

Layout (paths in the manifest are relative to ``out``)::

    out/manifest.json
    out/{split}/{id}.mp4 | {id}.npz | {id}.json
    out/{split}/captions.json | qa.json

Video seeds come from disjoint ranges per split (train, val, test never share a seed) and depend only on the base
seed, the split and the index, so the output does not depend on the number of workers. Videos are MPEG-4 Part 2
by default, which FFmpeg encodes the same way every time: one seed gives one dataset, byte for byte (libx264,
``codec="h264"``, gives files that differ slightly from one run to the next; see ``trajtok.io.writer``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from trajtok.io.labels import save_labels
from trajtok.io.writer import write_video
from trajtok.synth.generate import generate_long_video, generate_video
from trajtok.synth.longworld import LongWorldConfig
from trajtok.synth.text import LONG_QTYPES
from trajtok.synth.world import WorldConfig

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
WORLDS: tuple[str, ...] = ("short", "long")  # the short-clip world (default) and the long-video world
SEED_RANGE = 1 << 30  # split k draws its video seeds from [k * SEED_RANGE, (k + 1) * SEED_RANGE)

Range = int | tuple[int, int]
# codec name of write_dataset / `trajtok synth --codec` -> FFmpeg encoder
CODECS: dict[str, str] = {"mpeg4": "mpeg4", "h264": "libx264"}


def split_seed(seed: int, split: str) -> int:
    """Seed of a split: a hash of (base seed, split)."""
    k = SPLITS.index(split)
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def video_seed(seed: int, split: str, index: int) -> int:
    """Seed of video ``index`` of ``split``, inside the split's own range of seeds."""
    k = SPLITS.index(split)
    h = int(np.random.SeedSequence([split_seed(seed, split), index]).generate_state(1)[0])
    return k * SEED_RANGE + h % SEED_RANGE


def _as_range(value: Range, what: str, lowest: int) -> tuple[int, int]:
    lo, hi = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
    if not lowest <= lo <= hi:
        raise ValueError(f"{what} must be an int or a range lo-hi with {lowest} <= lo <= hi, got {value}")
    return lo, hi


def _num_objects(rng: np.random.Generator, lo: int, hi: int, balanced: bool, split_seed: int, index: int) -> int:
    """Objects in one video: uniform over lo-hi. ``balanced``: a window of 4 consecutive counts inside the range
    (a range of 4+ counts), then a count inside it, so that a count question whose options are a window holding the
    answer (drawn uniformly among the windows that hold it) has each of its options equally likely; the (window,
    place) pairs are dealt in shuffled blocks over the split's videos, so that every block of them holds each pair
    once and a split's counts are balanced, not only their expectation (a video's count does not depend on the
    split's size)."""
    if not balanced:
        return int(rng.integers(lo, hi + 1))
    atoms = (
        [(k, j) for k in range(lo, hi - 2) for j in range(4)] if hi - lo >= 3 else [(v, 0) for v in range(lo, hi + 1)]
    )
    block = np.random.default_rng([split_seed, 4, index // len(atoms)]).permutation(len(atoms))
    k, j = atoms[int(block[index % len(atoms)])]
    return k + j


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _make_video(task: dict) -> dict:
    """Generate and write one video (runs in a worker); returns its manifest entry, captions and questions."""
    out: Path = task["out"]
    split, vid = task["split"], task["id"]
    args = (task["seed"], task["num_frames"], task["height"], task["width"], task["num_objects"])
    if task["world"] == "long":
        cfg: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in task["config"].items()}
        video = generate_long_video(
            *args, config=LongWorldConfig(**cfg), fps=task["fps"], video_id=vid, **task["questions"]
        )
    else:
        video = generate_video(*args, config=WorldConfig(**task["config"]), fps=task["fps"], video_id=vid)
    rel = {k: f"{split}/{vid}.{ext}" for k, ext in (("video", "mp4"), ("labels", "npz"), ("record", "json"))}
    # one encoder thread: the video's bytes then depend on its frames only
    write_video(
        out / rel["video"], video.frames, fps=task["fps"], codec=CODECS[task["codec"]], crf=task["crf"], threads=1
    )
    save_labels(out / rel["labels"], video.masks, video.graph)
    _write_json(out / rel["record"], video.record)
    rec = video.record
    entry = {
        "split": split,
        "seed": task["seed"],
        "num_frames": rec["num_frames"],
        "height": rec["height"],
        "width": rec["width"],
        "fps": rec["fps"],
        "num_objects": len(rec["objects"]),
        **rel,
    }
    captions = [
        {
            "id": vid,
            "video": f"{vid}.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nDescribe the video."},
                {"from": "gpt", "value": caption},
            ],
        }
        for caption in rec["captions"]
    ]
    return {"id": vid, "entry": entry, "captions": captions, "questions": rec["questions"]}


def parse_counts(value: int | str | dict[str, int]) -> dict[str, int]:
    """Videos per split from ``8`` (every split), ``"train=64,val=8,test=16"`` or a dict."""
    try:
        if isinstance(value, int):
            counts = dict.fromkeys(SPLITS, value)
        elif isinstance(value, dict):
            counts = {k: int(v) for k, v in value.items()}
        elif "=" in value:
            counts = {}
            for part in value.split(","):
                key, _, num = part.partition("=")
                counts[key.strip()] = int(num)
        else:
            counts = dict.fromkeys(SPLITS, int(value))
    except (TypeError, ValueError):  # "train=ten": int()'s own message names neither the option nor the value
        raise ValueError(
            f"video counts (--num-videos) must be N or split=N,... with whole numbers N, got {value!r}"
        ) from None
    bad = set(counts) - set(SPLITS)
    if bad or any(n < 0 for n in counts.values()):
        raise ValueError(f"video counts must be split=N with splits in {SPLITS} and N >= 0, got {value!r}")
    return {s: counts.get(s, 0) for s in SPLITS}


def write_dataset(
    out: str | os.PathLike,
    num_videos: int | str | dict[str, int] = 8,
    *,
    frames: Range = (32, 128),
    size: int | tuple[int, int] = 64,
    objects: Range = (2, 6),
    seed: int = 0,
    workers: int = 1,
    cut_prob: float = 0.0,
    fps: float = 10.0,
    crf: int = 18,
    config: WorldConfig | LongWorldConfig | None = None,
    codec: str = "mpeg4",
    world: str = "short",
    questions_per_type: int = 2,
    min_separation: int = 16,
    qtypes: tuple[str, ...] = LONG_QTYPES,
) -> Path:
    """Write the splits under ``out`` and return the path of ``manifest.json``.

    ``frames`` and ``objects`` are an int or an inclusive (lo, hi) range drawn per video; ``size`` is an int
    (square) or (height, width). ``cut_prob`` overrides ``config.cut_prob``. ``codec`` is ``"mpeg4"`` (byte-reproducible)
    or ``"h264"`` (libx264 at ``crf``).

    ``world="long"``: the long-video world (``config`` a :class:`LongWorldConfig`; no cuts) and its whole-video
    questions: ``questions_per_type`` of each type in ``qtypes``, comparing moments >= ``min_separation`` frames
    apart. The manifest's ``generator`` records every setting (``trajtok synth --like`` reads it back).
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    long_world = world == "long"
    if long_world and cut_prob:
        raise ValueError(f"cut_prob must be 0 in the long world (it has one shot), got {cut_prob}")
    if long_world and not isinstance(config, LongWorldConfig | None):
        raise ValueError(f"world='long' needs a LongWorldConfig, got {type(config).__name__}")
    if not long_world and not isinstance(config, WorldConfig | None):
        raise ValueError(f"world='short' needs a WorldConfig, got {type(config).__name__}")
    if long_world:
        if questions_per_type < 1 or min_separation < 1:
            raise ValueError(
                f"questions_per_type and min_separation must be >= 1, got {questions_per_type} and {min_separation}"
            )
        unknown = sorted(set(qtypes) - set(LONG_QTYPES))
        if unknown or not qtypes:
            raise ValueError(f"qtypes must be some of {LONG_QTYPES}, got {list(qtypes)}")
    counts = parse_counts(num_videos)
    f_lo, f_hi = _as_range(frames, "frames", 1)
    o_lo, o_hi = _as_range(objects, "objects", 0)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if long_world:
        cfg = asdict(config or LongWorldConfig())
        questions: dict[str, Any] = {
            "questions_per_type": int(questions_per_type),
            "min_separation": int(min_separation),
        }
        questions["qtypes"] = list(qtypes)
    else:
        cfg = asdict(config or WorldConfig())
        cfg["cut_prob"] = float(cut_prob)
        WorldConfig(**cfg)  # validate before starting workers
        questions = {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    balanced = long_world and bool(cfg["balance"])
    # the count question reads the range its options are drawn from (a setting of the generator, not recorded twice)
    task_questions = {**questions, "count_range": (o_lo, o_hi)} if balanced else questions
    tasks = []
    for split in SPLITS:
        for index in range(counts[split]):
            vs = video_seed(seed, split, index)
            rng = np.random.default_rng([vs, 3])
            tasks.append(
                {
                    "out": out,
                    "split": split,
                    "id": f"{split}_{index:05d}",
                    "seed": vs,
                    "num_frames": int(rng.integers(f_lo, f_hi + 1)),
                    "num_objects": _num_objects(rng, o_lo, o_hi, balanced, split_seed(seed, split), index),
                    "height": height,
                    "width": width,
                    "fps": float(fps),
                    "crf": int(crf),
                    "codec": codec,
                    "config": cfg,
                    "world": world,
                    "questions": task_questions,
                }
            )
    logger.info("writing %d videos to %s with %d worker(s)", len(tasks), out, workers)
    if workers == 1 or len(tasks) <= 1:
        results = [_make_video(t) for t in tasks]
    else:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
            results = list(pool.imap(_make_video, tasks, chunksize=1))

    manifest: dict[str, Any] = {
        "version": 1,
        "generator": {
            "num_videos": counts,
            "frames": [f_lo, f_hi],
            "size": [height, width],
            "objects": [o_lo, o_hi],
            "seed": seed,
            "cut_prob": float(cut_prob),
            "fps": float(fps),
            "codec": codec,
            "crf": int(crf),
            "config": cfg,
            "world": world,
            **questions,
        },
        "splits": {},
        "videos": {},
    }
    for split in SPLITS:
        mine = [r for r in results if r["entry"]["split"] == split]
        manifest["splits"][split] = {"seed": split_seed(seed, split), "videos": [r["id"] for r in mine]}
        for r in mine:
            manifest["videos"][r["id"]] = r["entry"]
        if counts[split]:
            _write_json(out / split / "captions.json", [c for r in mine for c in r["captions"]])
            _write_json(out / split / "qa.json", [q for r in mine for q in r["questions"]])
    path = out / "manifest.json"
    _write_json(path, manifest)
    logger.info("wrote %s", path)
    return path
