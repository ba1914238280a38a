"""Tokens vs duration when the objects never change: does streaming keep a trajectory, or open new ones?

    python eval/bench/bench_stream_identity.py --checkpoint runs/demo/tokenizer-restart/checkpoints/step_0000600 \\
        --seeds 10000,10001,10002,10003 --objects 6 --frames 32,512 --release-after 4,16,0

Scenes of the default synthetic world with every object present throughout (none starts late, ends early, starts
outside the view, lives briefly or changes colour; static camera; the world barely larger than the view), held out
(seeds 10000+; training worlds use small seeds). The object count is the same at every length, so a tokenizer that
keeps identities across clips has tokens(max) / tokens(min) = 1 (n = 1 token per trajectory). For each
``--release-after`` value the first F frames of each scene are streamed (``TrajTok.tokenize_video``, the
checkpoint's carry) and every trajectory row is split into: ``first rows`` (a query's first trajectory) and
``re-opened rows`` (a later trajectory of a query that was released after ``release_after`` absent clips and came
back), with the pixels each row holds. Prints a table; ``--json`` keeps the rows.

``--data WORLD`` reads the videos of a world's split instead (``--split``, default val; ``--videos`` of them), each
sampled at F frames evenly over the whole video as the VLM connector samples it (``load_video(num_frames=F)``): how
the visual tokens grow with the frame budget on long videos whose objects leave and come back (``objects``: the
labelled objects in the sampled frames). ``--merge-returning`` compares thresholds of joining a trajectory seen
again after an absence into its earlier one (``TrajTokConfig.merge_returning``):

    python eval/bench/bench_stream_identity.py --checkpoint runs/demo/tokenizer-restart/checkpoints/step_0000600 \
        --data runs/demo/data --split val --frames 8,32,64 --merge-returning 0,0.95
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tokenizer")]

logger = logging.getLogger("bench_stream_identity")


def parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{what} must be a comma list of integers, got {text!r}") from None
    if not values:
        raise SystemExit(f"{what} names no value")
    return values


def constant_world():
    """The default world with every object present from the first to the last frame and a static camera."""
    from trajtok.synth.world import WorldConfig

    return WorldConfig(
        late_start_prob=0.0,
        early_end_prob=0.0,
        brief_prob=0.0,
        start_outside_prob=0.0,
        colour_change_prob=0.0,
        camera_probs=(1.0, 0.0, 0.0, 0.0),
        world_scale=1.001,
    )


@torch.no_grad()
def stream_rows(model, frames: torch.Tensor) -> dict:
    """Stream (T, 3, H, W) uint8 frames; tokens, and the trajectory rows split into first and re-opened ones."""
    out = model.tokenize_video(frames, tokens_per_trajectory=1)
    rows_q = out.trajectory_query[0].tolist()
    first_last = out.first_last[0].tolist()
    pixels = torch.bincount(out.row_assignment()[0].flatten(), minlength=len(rows_q)).tolist()  # per row
    rows = sorted((fl[0], q, r) for r, (q, fl) in enumerate(zip(rows_q, first_last, strict=True)) if q >= 0)
    seen: set[int] = set()
    first, reopened, reopened_pixels = 0, 0, []
    for _, q, r in rows:  # a row of a query that already had one (in time order) was re-opened after a release
        if q in seen:
            reopened += 1
            reopened_pixels.append(pixels[r])
        else:
            first += 1
            seen.add(q)
    return {
        "tokens": int(out.num_tokens[0]),
        "first_rows": first,
        "reopened_rows": reopened,
        "reopened_pixels": reopened_pixels,
    }


def world_videos(args: argparse.Namespace, size: int):
    """(name, frames (T, 3, H, W) uint8, masks (T, H', W') ids) of --data's split, each at max(--frames) frames
    sampled as load_video(num_frames=F) samples them; shorter budgets take their own samples (see scenes)."""
    from trajtok.io.labels import load_labels
    from trajtok.io.video import load_video, sample_indices

    split = Path(args.data) / args.split
    paths = sorted(split.glob("*.mp4"))[: args.videos]
    if not paths:
        raise SystemExit(f"--data {args.data}: no .mp4 videos in {split}")
    for path in paths:
        masks = path.with_suffix(".npz")
        if not masks.is_file():
            raise SystemExit(f"{masks}: not found (the world's labels; --data needs a trajtok synth world)")
        try:  # a corrupt video or label file is one line naming it, not a traceback
            labels = load_labels(masks).masks
            videos = [(f, load_video(path, num_frames=f, size=(size, size))) for f in args.frames]
        except (OSError, ValueError) as err:
            raise SystemExit(f"--data: {err}") from None
        for f, video in videos:  # frames (F, 3, H, W) uint8 and the labels of those frames
            yield path.stem, f, video.frames, labels[sample_indices(len(labels), f)]


def scenes(args: argparse.Namespace, size: int):
    """(scene, frames F, (F, 3, H, W) uint8, (F, H, W) object ids) for every scene and length."""
    if args.data is not None:
        yield from world_videos(args, size)
        return
    from trajtok.synth import generate_video

    for seed in args.seeds:
        video = generate_video(seed, max(args.frames), size, size, args.objects, config=constant_world())
        frames = torch.from_numpy(np.ascontiguousarray(video.frames)).permute(0, 3, 1, 2)
        for f in args.frames:
            yield seed, f, frames[:f], video.masks[:f]


def run(args: argparse.Namespace) -> list[dict]:
    from trajtok import TrajTok

    results = []
    for release_after in args.release_after:
        for merge in args.merge_returning:
            overrides: dict = {"release_after": release_after, "merge_returning": merge}
            if args.presence_fraction is not None:
                overrides["presence_fraction"] = args.presence_fraction
            model = TrajTok.from_pretrained(args.checkpoint, **overrides).eval()
            for scene, f, frames, masks in scenes(args, model.config.image_size):
                row = {"release_after": release_after, "merge_returning": merge, "seed": scene, "frames": f}
                row |= stream_rows(model, frames)
                row["objects_present"] = int(len(np.unique(masks[masks > 0])))
                results.append(row)
                logger.info("%s", row)
    return results


def print_table(results: list[dict]) -> None:
    lo, hi = min(r["frames"] for r in results), max(r["frames"] for r in results)
    print(
        "| release_after | merge_returning | frames | objects | tokens | first rows | re-opened rows "
        "| pixels per re-opened row |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    settings = dict.fromkeys((r["release_after"], r.get("merge_returning", 0.0)) for r in results)
    for ra, mr in settings:
        mine = [r for r in results if r["release_after"] == ra and r.get("merge_returning", 0.0) == mr]
        for f in sorted({r["frames"] for r in results}):
            rs = [r for r in mine if r["frames"] == f]
            pix = [p for r in rs for p in r["reopened_pixels"]]
            print(
                f"| {ra} | {mr:g} | {f} | {statistics.fmean(r['objects_present'] for r in rs):.1f} | "
                f"{statistics.fmean(r['tokens'] for r in rs):.2f} | {statistics.fmean(r['first_rows'] for r in rs):.2f} | "
                f"{statistics.fmean(r['reopened_rows'] for r in rs):.2f} | "
                f"{statistics.median(pix) if pix else '-'} |"
            )
        a = statistics.fmean(r["tokens"] for r in mine if r["frames"] == lo)
        b = statistics.fmean(r["tokens"] for r in mine if r["frames"] == hi)
        print(f"| {ra} | {mr:g} | {hi} / {lo} | | **{b / a:.2f}x** | | | |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a TrajTok folder (trajtok train output)")
    p.add_argument("--seeds", default="10000,10001,10002,10003", help="scene seeds (held out)")
    p.add_argument("--data", type=Path, default=None, help="a trajtok synth world: its videos instead of scenes")
    p.add_argument("--split", default="val", help="--data's split (default val)")
    p.add_argument("--videos", type=int, default=16, help="--data: the first N videos of the split")
    p.add_argument("--objects", type=int, default=6, help="objects per scene, all present throughout")
    p.add_argument("--frames", default="32,512", help="video lengths (comma list)")
    p.add_argument("--release-after", default="4", help="release_after values to compare (comma list)")
    p.add_argument(
        "--merge-returning", default="0", help="merge_returning values to compare (comma list of cosines; 0 = off)"
    )
    p.add_argument("--presence-fraction", type=float, default=None, help="override the presence threshold")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    args.seeds = parse_ints(args.seeds, "--seeds")
    args.frames = parse_ints(args.frames, "--frames")
    args.release_after = parse_ints(args.release_after, "--release-after")
    try:
        args.merge_returning = [float(v) for v in args.merge_returning.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--merge-returning must be a comma list of numbers, got {args.merge_returning!r}") from None
    if not args.merge_returning or not all(0.0 <= v <= 1.0 for v in args.merge_returning):
        raise SystemExit(f"--merge-returning values must be cosines in [0, 1], got {args.merge_returning}")
    if min(args.frames) < 1 or args.objects < 1 or min(args.release_after) < 0:
        raise SystemExit(
            f"--frames and --objects must be >= 1 and --release-after >= 0, got {args.frames}, "
            f"{args.objects}, {args.release_after}"
        )
    if not (args.checkpoint / "config.json").is_file():
        raise SystemExit(f"--checkpoint {args.checkpoint}: no config.json there (not a TrajTok folder)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    results = run(args)
    print_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
