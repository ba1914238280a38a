"""python eval/bench/bench_tokenizer.py --checkpoint runs/quickstart --metrics runs/quickstart/metrics.jsonl --plot eval/bench/quickstart_curve.png --json eval/bench/tokenizer.json

TrajTok tokenizer benchmark, printed as markdown tables:

1. Forward throughput (frames/s) and peak memory of ``tokenize_video`` (streaming 16-frame clips, no grad) at
   16 / 64 / 256 frames, for the tiny preset and the paper size (ConvNeXt-Tiny, 224 px, K = 128, E = 512). Each
   measurement runs in a fresh process: peak memory is its resident-set high-water mark minus the one after the
   model was built (CPU), or ``torch.cuda.max_memory_allocated`` (GPU). Paper-size runs whose estimated time
   passes ``--max-seconds`` are skipped and listed as such.
2. Tokens vs duration: one synthetic scene tokenized at 32 / 128 / 512 frames (first frames of the same video,
   streamed with carried queries); goal: 16x more frames for at most 1.5x more tokens. Uses ``--checkpoint`` when
   given, else a random-init tiny model (the table says which).
3. The pretraining curve of a run from its ``metrics.jsonl`` (``--metrics``), with a PNG (``--plot``) when
   matplotlib is installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

CONFIGS = ("tiny", "paper")


def model_config(name: str):
    from trajtok import TrajTokConfig

    return TrajTokConfig.tiny(clip_len=16) if name == "tiny" else TrajTokConfig.paper(clip_len=16)


def measure(name: str, frames: int, device: str, repeats: int) -> dict:
    """One throughput / memory measurement (run in its own process so the memory high-water mark is its own)."""
    import torch

    from trajtok import TrajTok

    torch.manual_seed(0)
    model = TrajTok(model_config(name)).to(device).eval()
    size = model.config.image_size
    video = torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.tokenize_video(video, clip_len=16)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    best = sorted(times)[len(times) // 2]
    return {
        "config": name,
        "frames": frames,
        "seconds": best,
        "frames_per_s": frames / best,
        "peak_mem_mib": peak / 2**20,
        "tokens": int(out.num_tokens[0]),
        "params_m": model.num_parameters() / 1e6,
        "device": device,
    }


def run_isolated(name: str, frames: int, device: str, repeats: int, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--_measure", f"{name}:{frames}", "--device", device, "--repeats", str(repeats)]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {name} at {frames} frames failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def throughput_table(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    rows, notes = [], []
    for name in args.configs:
        per_frame = None
        for frames in args.frames:
            if per_frame is not None and per_frame * frames * args.repeats > args.max_seconds:
                notes.append(
                    f"{name} at {frames} frames skipped: about {per_frame * frames * args.repeats:.0f} s "
                    f"estimated (> --max-seconds {args.max_seconds:.0f})"
                )
                continue
            r = run_isolated(name, frames, args.device, args.repeats, args.threads)
            per_frame = r["seconds"] / frames
            rows.append(r)
            print(f"  measured {name} {frames} frames: {r['frames_per_s']:.1f} frames/s", file=sys.stderr)
    return rows, notes


def tokens_vs_duration(args: argparse.Namespace) -> tuple[list[dict], str]:
    import torch

    from trajtok import TrajTok
    from trajtok.core.modeling import tiny_model
    from trajtok.synth import generate_video

    if args.checkpoint:
        from trajtok.io.checkpoints import resolve_checkpoint

        ckpt = resolve_checkpoint(args.checkpoint)
        model, source = TrajTok.from_pretrained(ckpt), f"checkpoint {ckpt}"
    else:
        model, source = tiny_model(seed=0), "random-init tiny model (no --checkpoint)"
    model = model.to(args.device).eval()
    size = model.config.image_size
    longest = max(args.durations)
    video = generate_video(args.scene_seed, longest, size, size, args.scene_objects)
    frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2).to(args.device)  # (T, 3, H, W)
    rows = []
    for t in args.durations:
        with torch.no_grad():
            out = model.tokenize_video(frames[:t], clip_len=args.clip_len)
        visible = int(video.graph[:, :t].any(axis=1).sum())
        rows.append({"frames": t, "tokens": int(out.num_tokens[0]), "gt_objects_seen": visible})
    return rows, source


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r], [r for r in rows if "val_miou" in r]


def plot_curve(train: list[dict], val: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss (focal + 2 dice)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in val], [r["val_miou"] for r in val], "o-", color="C1", label="val space-time mIoU")
        ax2.set_ylabel("val mIoU")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="checkpoint for tokens vs duration (default: random init)")
    p.add_argument("--metrics", default=None, help="metrics.jsonl of a training run for the pretraining curve")
    p.add_argument("--plot", default=None, help="PNG path for the pretraining curve")
    p.add_argument("--json", default=None, help="also write all results here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--configs", default="tiny,paper", type=lambda s: s.split(","))
    p.add_argument("--frames", default="16,64,256", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--durations", default="32,128,512", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--clip-len", type=int, default=16, help="streaming clip length for tokens vs duration")
    p.add_argument("--scene-seed", type=int, default=7)
    p.add_argument("--scene-objects", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (median)")
    p.add_argument("--threads", type=int, default=None, help="OMP threads of each measurement process")
    p.add_argument("--max-seconds", type=float, default=300.0, help="skip measurements estimated to take longer")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        p.error(f"unknown --configs {unknown}; choose from {list(CONFIGS)}")

    if args._measure:  # child process: one measurement, JSON on the last stdout line
        name, frames = args._measure.split(":")
        print(json.dumps(measure(name, int(frames), args.device, args.repeats)))
        return 0

    results: dict = {}
    if not args.skip_throughput:
        rows, notes = throughput_table(args)
        results["throughput"] = rows
        results["throughput_notes"] = notes
        print(f"\n### Forward throughput (tokenize_video, 16-frame clips, no grad, {args.device})\n")
        table = [
            [r["config"], f"{r['params_m']:.1f}", r["frames"], f"{r['seconds']:.2f}", f"{r['frames_per_s']:.1f}",
             f"{r['peak_mem_mib']:.0f}", r["tokens"]]
            for r in rows
        ]  # fmt: skip
        header = ["config", "params (M)", "frames", "seconds", "frames/s", "peak memory (MiB)", "tokens"]
        _common.print_table(header, table, "lllllll")
        for n in notes:
            print(f"\nNote: {n}")

    rows, source = tokens_vs_duration(args)
    results["tokens_vs_duration"] = {"model": source, "rows": rows}
    print(f"\n### Tokens vs duration (one synthetic scene, streamed with carried queries; {source})\n")
    table = [[r["frames"], r["tokens"], r["gt_objects_seen"], f"{r['tokens'] / r['frames']:.3f}"] for r in rows]
    _common.print_table(["frames", "tokens", "GT objects seen", "tokens per frame"], table, "llll")
    if len(rows) >= 2 and rows[0]["tokens"]:
        growth = rows[-1]["tokens"] / rows[0]["tokens"]
        frames_x = rows[-1]["frames"] / rows[0]["frames"]
        ok = "meets" if growth <= 1.5 else "misses"
        print(f"\n{frames_x:.0f}x more frames -> {growth:.2f}x more tokens ({ok} the goal of at most 1.5x)")
        results["tokens_vs_duration"]["growth"] = growth

    if args.metrics:
        train, val = read_metrics(Path(args.metrics))
        results["curve"] = {"train": train, "val": val}
        print(f"\n### Pretraining curve ({args.metrics})\n")
        print("| step | time (s) | loss | focal | dice | val mIoU | val association |")
        print("|---|---|---|---|---|---|---|")
        val_at = {r["step"]: r for r in val}
        train_at = {r["step"]: r for r in train}
        stride = max(1, math.ceil(len(train) / 12))
        steps = {r["step"] for r in train[::stride]} | ({train[-1]["step"]} if train else set()) | set(val_at)
        for step in sorted(steps):
            r, v = train_at.get(step), val_at.get(step, {})
            loss = f"{r['loss']:.4f} | {r['focal']:.4f} | {r['dice']:.4f}" if r else " | | "
            vm = f"{v['val_miou']:.3f} | {v['val_association']:.3f}" if v else " | "
            print(f"| {step} | {(r or v)['time']:.0f} | {loss} | {vm} |")
        if args.plot:
            if plot_curve(train, val, Path(args.plot)):
                print(f"\nplot: {args.plot}")
            else:
                print("\nmatplotlib is not installed: no plot (pip install 'trajtok[plot]')")

    _common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
