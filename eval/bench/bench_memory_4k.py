"""Peak memory of the video entry points on a 3-second 3840x2160 clip: memory must follow the sampled frames at
model size, not the source resolution.

    python eval/bench/bench_memory_4k.py [--workdir runs/bench_memory_4k] [--num-frames 32] [--json out.json]

Writes (once, cached in --workdir) a 3-second 4K H.264 clip (30 fps, x264 ultrafast, moving shapes over a gradient),
the tiny LLaVA-OneVision base (``trajvlm build-base``), a tiny TrajTok checkpoint and a label npz at 384x216 (the
size a pseudo-label run would write). Then each command runs in a fresh process and reports its peak resident set
size (VmHWM, which counts FFmpeg's and torch's C allocations):

- ``trajvlm chat --model BASE --video clip --num-frames 32 --prompt ...`` (the base's ``pool`` connector)
- ``trajvlm chat`` as above with ``--connector trajtok`` (default paper-size TrajTok, randomly initialised)
- ``trajtok tokenize clip --checkpoint TINY --num-frames 32`` and without ``--num-frames`` (all 90 frames)
- ``trajtok viz --video clip --labels LABELS --out sheet.png``
- the same interpreter importing torch, transformers and PyAV only (the floor every row shares)

Prints a markdown table (target: chat at 32 frames under 1.5 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

WIDTH, HEIGHT, FPS, SECONDS = 3840, 2160, 30, 3


def write_clip(path: Path) -> Path:
    """3 s of 4K video, frames streamed into the encoder one at a time."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(xx // 15) % 256, (yy // 9) % 256, ((xx + yy) // 24) % 256], axis=-1).astype(np.uint8)

    def frames():
        for i in range(FPS * SECONDS):
            frame = base.copy()
            x, y = 40 * i, 20 * i
            frame[y : y + 400, x : x + 400] = (255, 40, 40)
            frame[1200 - y : 1600 - y, 3000 - x : 3400 - x] = (40, 255, 40)
            yield frame

    return _common.write_h264(path, frames(), (WIDTH, HEIGHT), FPS, {"preset": "ultrafast", "crf": "30"})


def write_labels(path: Path) -> Path:
    """Two moving boxes at 216x384 (masks + graph), the label format of trajtok.io.labels."""
    from trajtok.io.labels import save_labels

    if path.is_file():
        return path
    t = FPS * SECONDS
    masks = np.zeros((t, 216, 384), np.int32)
    for i in range(t):
        masks[i, 2 * i : 2 * i + 40, 4 * i : 4 * i + 40] = 1
        masks[i, 120 - 2 * i : 160 - 2 * i, 300 - 4 * i : 340 - 4 * i] = 2
    graph = np.stack([np.ones(t, np.int32), np.full(t, 2, np.int32)])  # (M, T): instance id per frame
    save_labels(path, masks, graph)
    return path


def child(argv: list[str]) -> None:
    """Run one CLI in this process, then print its peak RSS (MiB) as the last stdout line."""
    tool, args = argv[0], argv[1:]
    if tool == "imports":
        import av  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        rc = 0
    else:
        module = {"trajvlm": "trajvlm.cli", "trajtok": "trajtok.cli"}[tool]
        import importlib

        rc = importlib.import_module(module).main(args)
    print(json.dumps({"rc": rc, "rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak resident set size. VmHWM belongs to the process image (reset by exec); ru_maxrss is not:
    Linux carries the parent's high-water mark over fork + exec, so a child of a big parent would report the parent."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(argv: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--_child", *argv], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "seconds": seconds, "stdout": proc.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_memory_4k")
    parser.add_argument("--num-frames", type=int, default=32, help="frames sampled by chat and tokenize")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--_child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args._child)
        return

    from trajtok.core.modeling import tiny_model
    from trajvlm.training.base import build_tiny_base

    work = args.workdir
    t0 = time.perf_counter()
    clip = write_clip(work / "clip_4k_3s.mp4")
    labels = write_labels(work / "clip_4k_3s.npz")
    base = work / "base"
    if not (base / "config.json").is_file():
        build_tiny_base(base, num_frames=args.num_frames)
    tokenizer = work / "tokenizer"
    if not (tokenizer / "model.safetensors").is_file():
        tiny_model(seed=0, clip_len=8).save_pretrained(tokenizer)
    print(
        f"inputs ready in {time.perf_counter() - t0:.1f} s ({clip.stat().st_size / 2**20:.1f} MiB clip)",
        file=sys.stderr,
    )

    n = str(args.num_frames)
    chat = ["trajvlm", "chat", "--model", str(base), "--video", str(clip), "--num-frames", n, "--prompt", "What?"]
    jobs = [
        ("imports only (torch, transformers, PyAV)", ["imports"]),
        (f"trajvlm chat, pool, {n} frames", [*chat, "--max-new-tokens", "4"]),
        (f"trajvlm chat, trajtok (paper size), {n} frames", [*chat, "--max-new-tokens", "4", "--connector", "trajtok"]),
        (
            f"trajtok tokenize, {n} frames",
            ["trajtok", "tokenize", str(clip), "--checkpoint", str(tokenizer), "--num-frames", n],
        ),  # fmt: skip
        ("trajtok tokenize, all 90 frames", ["trajtok", "tokenize", str(clip), "--checkpoint", str(tokenizer)]),
        (
            "trajtok viz (contact sheet)",
            ["trajtok", "viz", "--video", str(clip), "--labels", str(labels), "--out", str(work / "sheet.png")],
        ),  # fmt: skip
    ]
    rows = []
    for name, argv in jobs:
        result = measure(argv)
        decoded = next((line for line in result["stdout"].splitlines() if line.startswith("video: ")), "")
        rows.append({"command": name, "argv": argv, "peak_rss_mib": result["rss_mib"], "seconds": result["seconds"],
                     "video_line": decoded})  # fmt: skip
        print(f"{name}: {result['rss_mib']:.0f} MiB, {result['seconds']:.1f} s  {decoded}", file=sys.stderr)

    print(f"3-second {WIDTH}x{HEIGHT} H.264 clip ({FPS * SECONDS} frames); peak RSS of a fresh process per command\n")
    table = [[r["command"], f"{r['peak_rss_mib']:,.0f}", f"{r['seconds']:.1f}"] for r in rows]
    _common.print_table(["command", "peak RSS MiB", "wall s"], table, "lrr")
    _common.write_json(args.json, rows)


if __name__ == "__main__":
    main()
