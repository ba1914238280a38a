"""``trajtok synth``: write the synthetic world (short clips by default, or the long-video world).

    trajtok synth --out data/synth --num-videos train=64,val=8,test=16 --frames 32-256 --size 128 \\
        --objects 2-8 --cuts 0.3 --workers 2
    trajtok synth --out data/long --world long --train 0 --val 32 --test 32 --workers 2
    trajtok synth --out data/long2 --like data/long/manifest.json --seed 7   # same settings, a new world

Every setting is an option with a default, and the manifest records all of them. ``--like MANIFEST`` takes that
manifest's settings; an option given on the command line overrides the manifest's value.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trajtok.synth.dataset import parse_counts, write_dataset
from trajtok.synth.longworld import LongWorldConfig
from trajtok.synth.text import LONG_QTYPES
from trajtok.synth.world import CAMERA_KINDS, WorldConfig

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


def parse_float_range(text: str) -> tuple[float, float]:
    """``"0.2"`` -> (0.2, 0.2), ``"0.1-0.3"`` -> (0.1, 0.3)."""
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return float(lo), float(hi)
        return float(text), float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a range lo-hi (e.g. 0.1-0.3), got {text!r}") from None


def parse_size(text: str) -> int | tuple[int, int]:
    """``"128"`` -> 128 (square), ``"96x160"`` -> (96, 160) (height x width)."""
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x", 1)
            return int(h), int(w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or HxW (e.g. 96x160), got {text!r}") from None


def parse_switch(text: str) -> bool:
    """``on`` / ``off`` (also true/false, yes/no, 1/0)."""
    value = text.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def parse_qtypes(text: str) -> tuple[str, ...]:
    names = tuple(q.strip() for q in text.split(",") if q.strip())
    bad = [q for q in names if q not in LONG_QTYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of {','.join(LONG_QTYPES)}, got {text!r}")
    return names


# Defaults of the options both worlds share, per world (the long world's videos are longer, larger and fuller).
WORLD_DEFAULTS: dict[str, dict[str, object]] = {
    "short": {"frames": (32, 128), "size": 64, "objects": (2, 6)},
    "long": {"frames": (256, 1024), "size": 128, "objects": (4, 8)},
}
COMMON_DEFAULTS: dict[str, object] = {
    "num_videos": "8",
    "seed": 0,
    "cuts": 0.0,
    "fps": 10.0,
    "codec": "mpeg4",
    "crf": 18,
    "questions_per_type": 2,
    "min_separation": 16,
    "qtypes": LONG_QTYPES,
}
LONG = LongWorldConfig()
# LongWorldConfig field -> (option type, help); defaults come from LongWorldConfig itself
LONG_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "visits": (parse_range, "visits per object (times it comes into view): N or lo-hi"),
    "visit_frames": (parse_range, "frames one visit lasts: N or lo-hi"),
    "min_gap": (int, "frames at least between two visits of one object"),
    "start_prob": (float, "chance an object is in view from the first frame"),
    "end_prob": (float, "chance an object's last visit lasts to the last frame"),
    "enter_prob": (float, "chance a visit begins by walking in through a side (else the object pops up)"),
    "exit_prob": (float, "chance a visit ends by walking out through a side (else the object disappears)"),
    "object_size": (parse_float_range, "object diameter as a fraction of min(H, W): x or lo-hi (0.125 = 16 px at 128)"),
    "speed": (parse_float_range, "object speed in min(H, W) per frame: x or lo-hi"),
    "colour_change_prob": (float, "chance an object changes colour once during one of its visits"),
    "camera": (str, f"camera motion: one of {', '.join(CAMERA_KINDS)}"),
    "pan_speed": (parse_float_range, "camera pan speed in min(H, W) per frame: x or lo-hi"),
    "max_zoom": (float, "camera zoom range [1, max_zoom] (zoom cameras)"),
    "world_scale": (float, "world extent / view extent (room for the camera to pan)"),
    "noise_std": (parse_float_range, "per-pixel noise std range on the 0-255 scale: x or lo-hi"),
    "blur_prob": (float, "chance a video is mildly blurred"),
    "balance": (
        parse_switch,
        "on: no answer can be read from a question's text (return counts spread by keeping every visit, count "
        "options and event kinds balanced); off: the first long world's draws",
    ),
}


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return "-".join(str(v) for v in value) if not isinstance(value[0], str) else ",".join(value)
    return str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every default is None here and resolved in run(): an option left out takes the --like manifest's value, else
    # the default shown in its help.
    short, long_ = WORLD_DEFAULTS["short"], WORLD_DEFAULTS["long"]
    parser.add_argument("--out", required=True, help="output folder (manifest.json + train/ val/ test/)")
    parser.add_argument(
        "--world",
        choices=("short", "long"),
        default=None,
        help="short: clips with cuts, collisions and local questions (default); long: objects come and go over "
        "hundreds of frames, questions about the whole video",
    )
    parser.add_argument(
        "--like",
        type=Path,
        default=None,
        help="take every setting from this manifest.json (options given here override it); with a new --seed: "
        "a fresh world with the same settings",
    )
    parser.add_argument(
        "--num-videos", default=None, help="videos per split: N for every split, or train=64,val=8,test=16 (default 8)"
    )
    for split in ("train", "val", "test"):
        parser.add_argument(f"--{split}", type=int, default=None, help=f"videos in the {split} split (overrides)")
    parser.add_argument(
        "--frames",
        type=parse_range,
        default=None,
        help=f"frames per video: N or lo-hi (default {_show(short['frames'])}; long world {_show(long_['frames'])})",
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help=f"frame size: N (square) or HxW (default {short['size']}; long world {long_['size']})",
    )
    parser.add_argument(
        "--objects",
        type=parse_range,
        default=None,
        help=f"objects per video: N or lo-hi (default {_show(short['objects'])}; long world {_show(long_['objects'])})",
    )
    parser.add_argument("--seed", type=int, default=None, help="base seed (same seed => same annotations; default 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (output does not depend on it)")
    parser.add_argument(
        "--cuts", type=float, default=None, help="probability that a video contains hard scene cuts (short world; 0)"
    )
    parser.add_argument("--fps", type=float, default=None, help="frame rate written into the videos (default 10)")
    parser.add_argument(
        "--codec",
        choices=("mpeg4", "h264"),
        default=None,
        help="mpeg4: the same seed writes the same bytes (default); h264: libx264 at --crf, differs slightly run to run",
    )
    parser.add_argument("--crf", type=int, default=None, help="H.264 quality with --codec h264 (lower = better; 18)")
    group = parser.add_argument_group("long world (--world long)")
    for name, (kind, help_) in LONG_OPTIONS.items():
        group.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=None,
            choices=CAMERA_KINDS if name == "camera" else None,
            help=f"{help_} (default {_show(getattr(LONG, name))})",
        )
    group.add_argument(
        "--questions-per-type",
        type=int,
        default=None,
        help=f"distinct questions of each type per video (default {COMMON_DEFAULTS['questions_per_type']})",
    )
    group.add_argument(
        "--min-separation",
        type=int,
        default=None,
        help=f"frames at least between the moments a question compares (default {COMMON_DEFAULTS['min_separation']})",
    )
    group.add_argument(
        "--qtypes",
        type=parse_qtypes,
        default=None,
        help=f"question types, a comma list (default all: {_show(LONG_QTYPES)})",
    )


def _as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _from_manifest(path: Path) -> dict[str, object]:
    """A manifest's generator settings under the option names of this command."""
    if not path.is_file():
        raise FileNotFoundError(f"--like: manifest not found: {path}")
    try:
        gen = json.loads(path.read_text())["generator"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--like: {path} is not a `trajtok synth` manifest.json ({e})") from None
    world = gen.get("world", "short")
    out: dict[str, object] = {"world": world, "num_videos": gen["num_videos"]}
    for name in ("frames", "objects", "size"):
        out[name] = _as_tuple(gen[name])
    out |= {"seed": gen["seed"], "fps": gen["fps"], "codec": gen["codec"], "crf": gen["crf"]}
    if world == "long":
        out |= {name: _as_tuple(v) for name, v in gen["config"].items()}
        out.setdefault("balance", False)  # a manifest written before balancing: its world had none
        out |= {k: _as_tuple(gen[k]) for k in ("questions_per_type", "min_separation", "qtypes")}
    else:
        out["cuts"] = gen["cut_prob"]
        out["short_config"] = {
            k: _as_tuple(v) for k, v in gen["config"].items()
        }  # all of the short world's knobs, cut_prob included
    return out


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Settings from the command line, then the --like manifest, then the defaults (in that order of precedence)."""
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k not in ("out", "like", "workers", "verbose", "command")
    }
    like = _from_manifest(args.like) if args.like is not None else {}
    if "world" in given and "world" in like and given["world"] != like["world"]:
        raise ValueError(
            f"--world {given['world']} contradicts --like {args.like}, a {like['world']} world: drop one of them"
        )
    world = given.get("world", like.get("world", "short"))
    long_names = {*LONG_OPTIONS, "questions_per_type", "min_separation", "qtypes"}
    if world == "short":
        wrong = sorted(name for name in given if name in long_names)
        if wrong:
            flags = ", ".join("--" + n.replace("_", "-") for n in wrong)
            raise ValueError(f"{flags}: options of the long world; add --world long (got the short world)")
    elif given.get("cuts"):
        raise ValueError(f"--cuts {given['cuts']}: the long world has one shot, no cuts (use the short world)")
    defaults = {**COMMON_DEFAULTS, **WORLD_DEFAULTS[world]}
    if world == "long":
        defaults |= {name: getattr(LONG, name) for name in LONG_OPTIONS}
    return {**defaults, **like, **given, "world": world}


def run(args: argparse.Namespace) -> int:
    s = resolve(args)
    lo, hi = s["objects"] if isinstance(s["objects"], tuple) else (s["objects"], s["objects"])
    if lo < 0 or hi < 1 or hi < lo:
        raise ValueError(
            f"--objects must be N >= 1 or a range lo-hi with 0 <= lo <= hi and hi >= 1, got {lo}-{hi}: videos "
            "without objects have no trajectories to learn and no questions (qa.json would be empty)"
        )
    if lo == 0:
        logger.warning(
            "--objects %d-%d: some videos will have no objects, hence no trajectories and no questions", lo, hi
        )
    counts = parse_counts(s["num_videos"])
    for split in ("train", "val", "test"):
        if s.get(split) is not None:
            if s[split] < 0:
                raise ValueError(f"--{split} must be >= 0 videos, got {s[split]}")
            counts[split] = s[split]
    extra: dict[str, Any] = {}
    config: LongWorldConfig | WorldConfig | None
    if s["world"] == "long":
        config = LongWorldConfig(**{name: s[name] for name in LONG_OPTIONS})
        extra = {k: s[k] for k in ("questions_per_type", "min_separation")} | {"qtypes": tuple(s["qtypes"])}
        size = s["size"] if isinstance(s["size"], tuple) else (s["size"], s["size"])
        px = [f * min(size) for f in config.object_size]
        logger.info("long world: objects %.0f-%.0f px across in %dx%d frames", px[0], px[1], *size)
    else:
        config = WorldConfig(**s["short_config"]) if "short_config" in s else None
    manifest = write_dataset(
        args.out,
        counts,
        frames=s["frames"],
        size=s["size"],
        objects=s["objects"],
        seed=s["seed"],
        workers=args.workers,
        cut_prob=s["cuts"],
        fps=s["fps"],
        crf=s["crf"],
        codec=s["codec"],
        config=config,
        world=s["world"],
        **extra,
    )
    logger.info("manifest: %s", manifest)
    return 0
