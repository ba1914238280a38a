"""Pseudo-label pipeline benchmark: key-frame detection against shot-cut answer keys, trajectory quality (J) on
DAVIS clips, and seconds per frame of each stage.

    python eval/bench/bench_pseudolabel.py --data ../shared/data [--size 240] [--max-trajectories 5] [--json out.json]
    python eval/bench/bench_pseudolabel.py --skip-cuts --skip-davis --checkpoint runs/a/final --checkpoint runs/b/final

Key frames: the hard cuts of ``cuts/`` (bikes.mp4, goldeneye-vfr-drop3.mp4), precision / recall with a detection
counted when within 1 frame of a true cut; ``testvideo.mp4`` joins its shots by fades to black (no hard cut), so
its row lists what each rule reports there. Both readings of the histogram rule are measured ("exact":
correlation < 0.15; "pyscenedetect": PySceneDetect's threshold 0.15, i.e. correlation <= 0.85).

J: for each ground-truth object, the space-time IoU (intersection and union summed over the frames where the
object is annotated) of the best-matching predicted trajectory; mean over the objects of a clip, then over clips.
Predictions are made at the processing size and resized (nearest) to the annotation size. This is the main
number. J_union (second column) is the space-time IoU of the union of all trajectories that lie mostly (more than
half of their annotated-frame area) inside the object, with how many were used: it credits an object found as a
few parts (rider + motorbike), but it also rises with over-segmentation, so it is reported beside J, not instead.

Held out: every setting of the pipeline was chosen looking at the five DAVIS clips (docs/results/pseudolabels.md), so
their mean is a number on the clips it was tuned on. ``clips/apple.mp4`` (a hand-held phone clip with a first-frame
mask of its object, ``clips/apple_mask.png``; never looked at while tuning) is scored with the same protocol on its
annotated first frame and reported apart, not in the mean.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

CUTS = {  # clip -> (hard cuts, note)
    "bikes.mp4": ([30, 76, 137, 187, 242], ""),
    "goldeneye-vfr-drop3.mp4": ([60, 140], ""),
    "testvideo.mp4": ([], "fades: scene starts 201, 382 (fade-ins 217, 400; fade-outs 185, 364, 697)"),
}
DAVIS = ("blackswan", "car-shadow", "motocross-jump", "judo", "bike")
# clips no setting was chosen on: (name, video under data/, its first-frame mask under data/), reported apart
HELD_OUT = (("apple", "clips/apple.mp4", "clips/apple_mask.png"),)


def load_frames(path: Path, size: int | None) -> np.ndarray:
    from trajtok.io.video import load_video

    return load_video(path, size=size).frames.permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)


def bench_cuts(data: Path, size: int) -> list[dict]:
    from trajtok.pseudolabel.keyframes import KeyframeConfig, detect_keyframes, match_cuts

    rows = []
    for clip, (truth, note) in CUTS.items():
        frames = load_frames(data / "cuts" / clip, size)
        for rule in ("exact", "pyscenedetect"):
            t0 = time.perf_counter()
            res = detect_keyframes(frames, KeyframeConfig(histogram_rule=rule))
            dt = time.perf_counter() - t0
            found = [c for c in res.cuts if c != 0]
            tp, fp, fn = match_cuts(found, truth, tolerance=1)
            rows.append(
                {
                    "clip": clip,
                    "rule": rule,
                    "frames": int(frames.shape[0]),
                    "true_cuts": truth,
                    "found": found,
                    "tp": tp,
                    "fp": fp,
                    "fn": fn,
                    "precision": tp / max(tp + fp, 1) if found else float("nan"),
                    "recall": tp / len(truth) if truth else float("nan"),
                    "s_per_frame": dt / frames.shape[0],
                    "note": note,
                }
            )
    return rows


def load_davis(folder: Path) -> tuple[Path, dict[int, np.ndarray]]:
    """(video source, {frame index: (H, W) int instance ids}) of a DAVIS-style clip folder."""
    from PIL import Image

    source = folder / "video.mp4" if (folder / "video.mp4").is_file() else folder / "frames"
    gt = {}
    for png in sorted((folder / "masks").glob("*.png")):
        img = Image.open(png)
        a = np.asarray(img)
        if img.mode != "P":  # binary 0/255 masks: one object
            a = (a > 128).astype(np.int32) if a.ndim == 2 else (a[..., 0] > 128).astype(np.int32)
        gt[int(re.sub(r"\D", "", png.stem))] = a.astype(np.int32)
    return source, gt


def j_scores(masks: np.ndarray, gt: dict[int, np.ndarray]) -> dict[int, float]:
    """Per-object space-time IoU of the best-matching trajectory; ``masks`` (T, h, w) trajectory numbers."""
    return {o: best for o, (best, _, _) in j_stats(masks, gt).items()}


def j_stats(masks: np.ndarray, gt: dict[int, np.ndarray]) -> dict[int, tuple[float, float, int]]:
    """Per object: (best single-trajectory J, J of the union of the trajectories mostly inside it, how many)."""
    M = int(masks.max()) + 1
    inter: dict[int, np.ndarray] = {}
    area_p: dict[int, np.ndarray] = {}
    area_g: dict[int, int] = {}
    for t, g in gt.items():
        if t >= masks.shape[0]:
            continue
        H, W = g.shape
        rows = (np.arange(H) * masks.shape[1]) // H
        cols = (np.arange(W) * masks.shape[2]) // W
        p = masks[t][rows[:, None], cols[None, :]]  # (H, W) nearest resize to the annotation size
        ap = np.bincount(p.ravel(), minlength=M)
        for o in np.unique(g[g != 0]).tolist():
            obj = g == o
            inter[o] = inter.get(o, 0) + np.bincount(p[obj], minlength=M)
            area_p[o] = area_p.get(o, 0) + ap
            area_g[o] = area_g.get(o, 0) + int(obj.sum())
    out = {}
    for o in inter:
        i, a = inter[o][1:], area_p[o][1:]  # per trajectory, over the frames where o is annotated
        iou = i / np.maximum(a + area_g[o] - i, 1)
        inside = i * 2 > a  # more than half of the trajectory's area lies in the object
        union = float(i[inside].sum() / max(a[inside].sum() + area_g[o] - i[inside].sum(), 1))
        out[o] = (float(iou.max()) if iou.size else 0.0, union, int(inside.sum()))
    return out


def davis_clips(data: Path):
    """(clip, frame source, ground truth) of each DAVIS clip under ``data/masks`` (absent clips are skipped)."""
    for clip in DAVIS:
        folder = data / "masks" / clip
        if folder.is_dir():
            yield (clip, *load_davis(folder))


def held_out_clips(data: Path):
    """(clip, video, ground truth: its first frame's object) of each held-out clip under ``data`` (absent: skipped)."""
    from PIL import Image

    for clip, video, mask in HELD_OUT:
        if (data / video).is_file() and (data / mask).is_file():
            a = np.asarray(Image.open(data / mask).convert("L"))
            yield clip, data / video, {0: (a >= 128).astype(np.int32)}


def bench_davis(data: Path, config, clips=davis_clips) -> list[dict]:
    from trajtok.pseudolabel.pipeline import PseudoLabeler

    labeler = PseudoLabeler(config)
    rows = []
    for clip, source, gt in clips(data):
        frames = load_frames(source, config.size)
        t0 = time.perf_counter()
        res = labeler(frames)
        total = time.perf_counter() - t0
        stats = j_stats(res.masks, gt)
        js = {o: v[0] for o, v in stats.items()}
        T = frames.shape[0]
        rows.append(
            {
                "clip": clip,
                "frames": T,
                "objects": len(js),
                "J": float(np.mean(list(js.values()))),
                "J_per_object": js,
                "J_union": float(np.mean([v[1] for v in stats.values()])),
                "J_union_per_object": {o: v[1] for o, v in stats.items()},
                "union_trajectories": {o: v[2] for o, v in stats.items()},
                "trajectories": int(res.graph.shape[0]),
                "keyframes": res.keyframes,
                "s_per_frame": {k: v / T for k, v in res.seconds.items()},
                "s_per_frame_total": total / T,
            }
        )
    return rows


TOKEN_PREFIXES = (8, 16, 32)  # tokens over time: counts for the first N frames of each clip


def bench_tokenizer(data: Path, checkpoint: Path, device: str = "cpu") -> list[dict]:
    """A TrajTok checkpoint's trajectories on the DAVIS clips, scored like pseudo-labels (same J protocol), with
    its token counts: over the whole clip, per annotated object, and for the first ``TOKEN_PREFIXES`` frames."""
    import torch

    from trajtok.core.modeling import TrajTok
    from trajtok.io.video import load_video
    from trajtok.training.evaluate import predict_ids

    model = TrajTok.from_pretrained(checkpoint).to(device).eval()
    size = model.config.image_size
    rows = []
    for clip, source, gt in davis_clips(data):
        frames = load_video(source, size=(size, size)).frames.to(device)  # (T, 3, size, size), as training sees them
        T = frames.shape[0]
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids, tokens, present = predict_ids(model, frames, (size, size))
            over_time = {n: predict_ids(model, frames[:n], (size, size))[1] for n in TOKEN_PREFIXES if n < T}
        seconds = time.perf_counter() - t0
        stats = j_stats(ids.astype(np.int64) + 1, gt)  # query index k -> trajectory number k + 1
        rows.append(
            {
                "checkpoint": str(checkpoint),
                "clip": clip,
                "frames": T,
                "objects": len(stats),
                "J": float(np.mean([v[0] for v in stats.values()])),
                "J_per_object": {o: v[0] for o, v in stats.items()},
                "tokens": tokens,
                "trajectories": present,
                "tokens_per_object": tokens / max(len(stats), 1),
                "tokens_over_time": {**over_time, T: tokens},
                "seconds": seconds,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here.parents[2].parent / "shared" / "data")
    parser.add_argument("--size", type=int, default=240, help="processing shorter side")
    parser.add_argument("--granularity", default=None, help="cpu segmenter granularity (name or float)")
    parser.add_argument("--no-motion", action="store_true", help="colour segments + flow tracking only")
    parser.add_argument(
        "--max-trajectories", type=int, default=None, help="object-level labels (trajtok pseudolabel's option)"
    )
    parser.add_argument("--skip-cuts", action="store_true")
    parser.add_argument("--skip-davis", action="store_true")
    parser.add_argument("--skip-held-out", action="store_true", help="do not score the held-out clip (apple)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="also score this TrajTok folder (repeatable)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for --checkpoint")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(here.parents[2] / "tokenizer"))
    from trajtok.pseudolabel.motion import MotionConfig
    from trajtok.pseudolabel.pipeline import PseudoLabelConfig

    config = PseudoLabelConfig(
        size=args.size, motion=None if args.no_motion else MotionConfig(), max_trajectories=args.max_trajectories
    )
    if args.granularity is not None:
        g = args.granularity
        config.segmenter = replace(config.segmenter, granularity=float(g) if g[0].isdigit() else g)
    results: dict = {"size": args.size}
    if not args.skip_cuts:
        rows = results["cuts"] = bench_cuts(args.data, args.size)
        print("| clip | rule | true cuts | found | TP | FP | FN | precision | recall | s/frame |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['clip']} | {r['rule']} | {r['true_cuts'] or r['note']} | {r['found']} | {r['tp']} | {r['fp']} "
                f"| {r['fn']} | {r['precision']:.2f} | {r['recall']:.2f} | {r['s_per_frame']:.4f} |"
            )
        print()
    if not args.skip_davis:
        rows = results["davis"] = bench_davis(args.data, config)
        print(
            "| clip | frames | objects | J | J_union (trajectories used) | trajectories | key frames | s/frame keyframes | segmentation "
            "| tracking | merging | motion | total |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            s = r["s_per_frame"]
            print(
                f"| {r['clip']} | {r['frames']} | {r['objects']} | {r['J']:.3f} | {r['J_union']:.3f} "
                f"({sum(r['union_trajectories'].values())}) | {r['trajectories']} "
                f"| {len(r['keyframes'])} | {s['keyframes']:.4f} | {s['segmentation']:.4f} | {s['tracking']:.4f} "
                f"| {s['merging']:.4f} | {s['motion']:.4f} | {r['s_per_frame_total']:.4f} |"
            )
        print(
            f"| **mean** | | | **{np.mean([r['J'] for r in rows]):.3f}** | {np.mean([r['J_union'] for r in rows]):.3f} "
            "| | | | | | | | |"
        )
    if not args.skip_held_out:
        rows = results["held_out"] = bench_davis(args.data, config, held_out_clips)
        print("\nheld out (no setting was chosen on it; not in the mean):")
        print("| clip | frames | objects | J | J_union (trajectories used) | trajectories | total s/frame |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['clip']} | {r['frames']} | {r['objects']} | {r['J']:.3f} | {r['J_union']:.3f} "
                f"({sum(r['union_trajectories'].values())}) | {r['trajectories']} | {r['s_per_frame_total']:.4f} |"
            )
    if args.checkpoint:
        rows = results["tokenizers"] = [r for c in args.checkpoint for r in bench_tokenizer(args.data, c, args.device)]
        print("| checkpoint | clip | frames | objects | J | tokens | trajectories | tokens/object | tokens over time |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            over = ", ".join(f"{n}: {k}" for n, k in r["tokens_over_time"].items())
            print(
                f"| {r['checkpoint']} | {r['clip']} | {r['frames']} | {r['objects']} | {r['J']:.3f} | {r['tokens']} "
                f"| {r['trajectories']} | {r['tokens_per_object']:.1f} | {over} |"
            )
        for c in args.checkpoint:
            print(f"| {c} | **mean** | | | **{np.mean([r['J'] for r in rows if r['checkpoint'] == str(c)]):.3f}** |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
