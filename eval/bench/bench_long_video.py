"""Tokens vs duration on long video, streamed (carried state) vs restarting every clip.

    python eval/bench/bench_long_video.py --checkpoint runs/stream/checkpoints/step_0000160 \\
        --frames 32,64,128,256,512 --videos 4 --json runs/bench_long_video/synth.json
    python eval/bench/bench_long_video.py --checkpoint CKPT --real ../shared/data --frames 32,64,128,256

Synthetic (default): ``--videos`` held-out scenes of the noisy moving world (``trajtok.synth.world.
noisy_moving_world``: the camera always pans / zooms, strong sensor noise, objects entering, leaving, appearing
briefly), each rendered ``max(--frames)`` long at the checkpoint's image size with exact trajectory labels. For
every length F the first F frames (the video grows in duration, it is not resampled) are tokenized clip by clip
with ``TrajTok.tokenize_video`` twice: ``carry`` (the checkpoint's gated carried state, with release) and
``restart`` (every clip starts from the learned queries; identity across clips only from each query's spatial
prior). Measured per run: tokens (n = 1 per trajectory), trajectories, space-time association (STQ's AQ) and mIoU
against the labels (``trajtok.training.evaluate``; the predicted id of a pixel is its trajectory: query and, after a
release, segment), the carried state's mean norm at the end (learned queries: printed), and seconds.

Real (``--real DIR``, the shared data folder): tokens vs duration on the longest real clips (``cuts/testvideo.mp4``
720 frames, ``cuts/bikes.mp4`` 250 frames; no trajectory labels), and association / mIoU on the DAVIS clips with
per-frame masks (``masks/{blackswan,car-shadow,motocross-jump}``: one object, 40-50 frames).

Targets: tokens(512) / tokens(32) <= 1.5 with association no worse than restarting. The script prints markdown
tables and (``--json``) the rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

logger = logging.getLogger("bench_long_video")

MODES = ("carry", "restart")
DAVIS = ("blackswan", "car-shadow", "motocross-jump")
LONG_REAL = ("cuts/testvideo.mp4", "cuts/bikes.mp4")


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def load_model(checkpoint: Path | None, overrides: dict):
    from trajtok import TrajTok, TrajTokConfig

    if checkpoint is None:
        logger.warning("no --checkpoint: a random tiny TrajTok (128 px); its token counts say little")
        torch.manual_seed(0)
        return TrajTok(TrajTokConfig.tiny(image_size=128, **overrides)).eval()
    return TrajTok.from_pretrained(checkpoint, **overrides).eval()


@torch.no_grad()
def trajectory_ids(model, frames: torch.Tensor, out_size: tuple[int, int], mode: str) -> tuple[np.ndarray, dict]:
    """Stream ``frames`` (T, 3, H, W) uint8 in ``mode``; (ids (T, H', W') per pixel, stats of the run).

    A pixel's id is its trajectory: its query's row whose [first, last] frames contain the pixel's frame (a
    released and reclaimed query gives several rows); pixels of a query outside all its rows (too few pixels to be
    present in that clip) get an id of their own per query.
    """
    model.config = model.config.replace(carry="gated" if mode == "carry" else "restart")
    t0 = time.perf_counter()
    out = model.tokenize_video(frames, return_masks=True, tokens_per_trajectory=1)
    seconds = time.perf_counter() - t0
    logits = out.logits[0]  # (K, T, h0, w0)
    k, t = logits.shape[:2]
    rows_q = out.trajectory_query[0].tolist()
    rows_fl = out.first_last[0].tolist()
    ids = []
    for s in range(0, t, 16):  # upsample a few frames at a time to bound memory
        up = F.interpolate(logits[:, s : s + 16].float(), size=out_size, mode="bilinear", align_corners=False)
        q = up.argmax(dim=0)  # (t, H', W') query per pixel
        seg = q + 10_000  # default: a per-query id (pixels outside every present span of the query)
        for r, (kq, (f0, f1)) in enumerate(zip(rows_q, rows_fl, strict=True)):
            if kq < 0:
                continue
            frames_idx = torch.arange(s, s + q.shape[0])
            inside = ((frames_idx >= f0) & (frames_idx <= f1))[:, None, None]
            seg = torch.where(inside & (q == kq), torch.full_like(seg, r), seg)
        ids.append(seg)
    learned = model.segmenter.queries.norm(dim=-1).mean().item()
    stats = {
        "tokens": int(out.num_tokens[0]),
        "trajectories": int(out.present[0].sum()),
        "state_norm": float(out.state.queries.float().norm(dim=-1).mean()),
        "learned_norm": learned,
        "seconds": seconds,
    }
    return torch.cat(ids).cpu().numpy(), stats


@torch.no_grad()
def token_count(model, frames: torch.Tensor, mode: str) -> dict:
    model.config = model.config.replace(carry="gated" if mode == "carry" else "restart")
    t0 = time.perf_counter()
    out = model.tokenize_video(frames, tokens_per_trajectory=1)
    return {
        "tokens": int(out.num_tokens[0]),
        "trajectories": int(out.present[0].sum()),
        "seconds": time.perf_counter() - t0,
    }


def synthetic_rows(model, args) -> list[dict]:
    from trajtok.synth import generate_video
    from trajtok.synth.world import noisy_moving_world
    from trajtok.training.evaluate import association_quality, spacetime_miou

    size = model.config.image_size
    longest = max(args.frames)
    rows = []
    for i in range(args.videos):
        seed = args.seed + i
        rng = np.random.default_rng(seed)
        objects = int(rng.integers(args.objects[0], args.objects[1] + 1))
        video = generate_video(seed, longest, size, size, objects, config=noisy_moving_world())
        frames = torch.from_numpy(np.ascontiguousarray(video.frames)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        gt_all = video.masks.astype(np.int64)
        for f in args.frames:
            gt = gt_all[:f]
            for mode in MODES:
                pred, stats = trajectory_ids(model, frames[:f], gt.shape[1:], mode)
                row = {"source": "synthetic", "video": f"noisy_moving_{seed}", "frames": f, "mode": mode, **stats}
                row.update(
                    gt_objects=int(len(np.unique(gt[gt > 0]))),
                    association=association_quality(gt, pred),
                    miou=spacetime_miou(gt, pred),
                )
                rows.append(row)
                logger.info("%s", {k: row[k] for k in ("video", "frames", "mode", "tokens", "association")})
    return rows


def real_rows(model, args) -> list[dict]:
    from trajtok.io.video import load_video
    from trajtok.training.evaluate import association_quality, spacetime_miou

    root = args.real
    size = model.config.image_size
    rows = []
    for rel in LONG_REAL:
        path = root / rel
        if not path.is_file():
            logger.warning("skipping %s: not found", path)
            continue
        clip = load_video(path, max_frames=max(args.frames), size=(size, size))
        frames = clip.frames  # (T, 3, H, W) uint8
        for f in args.frames:
            if f > frames.shape[0]:
                continue
            for mode in MODES:
                row = {
                    "source": "real",
                    "video": rel,
                    "frames": f,
                    "mode": mode,
                    **token_count(model, frames[:f], mode),
                }
                rows.append(row)
    for name in DAVIS:
        folder = root / "masks" / name
        if not (folder / "video.mp4").is_file():
            logger.warning("skipping %s: not found", folder)
            continue
        from PIL import Image

        clip = load_video(folder / "video.mp4", size=(size, size))
        masks = sorted((folder / "masks").glob("*.png"))
        gt = np.stack([(np.asarray(Image.open(m).convert("L")) > 127).astype(np.int64) for m in masks])
        n = min(len(gt), clip.frames.shape[0])
        for mode in MODES:
            pred, stats = trajectory_ids(model, clip.frames[:n], gt.shape[1:], mode)
            row = {"source": "real", "video": f"davis/{name}", "frames": n, "mode": mode, **stats}
            row.update(association=association_quality(gt[:n], pred), miou=spacetime_miou(gt[:n], pred))
            rows.append(row)
    return rows


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def mean(values) -> float | None:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.mean(v) if v else None


def print_report(rows: list[dict], args) -> dict:
    summary: dict = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        sub = [r for r in rows if r["source"] == source]
        print(f"\n### {source}: mean over videos per length (n = 1 token per trajectory)\n")
        print("| frames | mode | videos | GT objects | tokens | association | mIoU | state norm | s |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for f in sorted({r["frames"] for r in sub}):
            for mode in MODES:
                rs = [r for r in sub if r["frames"] == f and r["mode"] == mode]
                if not rs:
                    continue
                print(
                    f"| {f} | {mode} | {len(rs)} | {fmt(mean(r.get('gt_objects') for r in rs), 1)} | "
                    f"{fmt(mean(r['tokens'] for r in rs), 1)} | "
                    f"{fmt(mean(r.get('association') for r in rs))} | {fmt(mean(r.get('miou') for r in rs))} | "
                    f"{fmt(mean(r.get('state_norm') for r in rs), 2)} | {fmt(mean(r['seconds'] for r in rs), 2)} |"
                )
        lo, hi = min(args.frames), max(args.frames)
        for mode in MODES:
            a = mean(r["tokens"] for r in sub if r["frames"] == lo and r["mode"] == mode)
            b = mean(r["tokens"] for r in sub if r["frames"] == hi and r["mode"] == mode)
            if a and b:
                summary[f"{source}_{mode}_tokens_ratio"] = b / a
        for mode in MODES:
            summary[f"{source}_{mode}_association"] = mean(
                r.get("association") for r in sub if r["mode"] == mode and r.get("association") is not None
            )
    learned = mean(r.get("learned_norm") for r in rows)
    print(f"\nlearned queries' mean norm: {fmt(learned, 2)}; state norm = the final query states' mean norm")
    print("\n| summary | value |\n|---|---:|")
    for k, v in summary.items():
        print(f"| {k} | {fmt(v)} |")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="a TrajTok folder (trajtok train output)")
    parser.add_argument("--frames", default="32,64,128,256,512", help="video lengths (comma list)")
    parser.add_argument("--videos", type=int, default=4, help="held-out synthetic scenes")
    parser.add_argument("--objects", default="3,5", help="objects per scene: lo,hi")
    parser.add_argument("--seed", type=int, default=10_000, help="first scene seed (held out: training uses 0..)")
    parser.add_argument("--clip-len", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    parser.add_argument("--presence-fraction", type=float, default=None, help="override the presence threshold")
    parser.add_argument("--release-after", type=int, default=None, help="override release_after (clips)")
    parser.add_argument("--real", type=Path, default=None, help="the shared data folder: also run real clips")
    parser.add_argument("--no-synthetic", action="store_true", help="only the real clips")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the summary here")
    parser.add_argument("--report", type=Path, default=None, help="only print the tables of a --json file")
    args = parser.parse_args()
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        args.frames = parse_ints(str(saved["settings"]["frames"]).strip("[]").replace(" ", ""))
        print_report(saved["rows"], args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.frames = parse_ints(args.frames)
    args.objects = parse_ints(args.objects)
    if not args.frames or min(args.frames) < 1 or len(args.objects) != 2:
        parser.error("--frames needs positive lengths and --objects lo,hi")
    if args.real is not None and not args.real.is_dir():
        parser.error(f"--real {args.real} is not a folder")
    torch.set_num_threads(args.threads)
    overrides = {}
    for key in ("clip_len", "presence_fraction", "release_after"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    model = load_model(args.checkpoint, overrides)
    rows = [] if args.no_synthetic else synthetic_rows(model, args)
    if args.real is not None:
        rows += real_rows(model, args)
    summary = print_report(rows, args)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {"settings": settings, "config": model.config.to_dict(), "rows": rows, "summary": summary}
    _common.write_json(args.json, report, indent=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
