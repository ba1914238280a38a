"""Frame sampling speed and peak memory of trajtok.video: seek vs sequential vs auto, on a long video and real clips.

    python eval/bench/bench_video_io.py [--workdir runs/bench_video] [--minutes 30] [--counts 16 64 256] [--json out.json]

Writes (once, cached in --workdir) a long synthetic video: 112x112, 10 fps, H.264 ultrafast with a key frame every
250 frames, a moving square over a drifting gradient. Each measurement runs in a fresh subprocess so that peak
resident memory (ru_maxrss, which counts FFmpeg's C allocations) belongs to that decode alone; "base" is the same
subprocess with the imports and no decoding. The real clips of ../shared/data are measured too when present.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("TRAJVLM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SIZE, FPS, GOP = 112, 10, 250


def write_long_video(path: Path, minutes: float) -> Path:
    """Stream frames into the encoder one at a time (a 30-minute clip never sits in memory)."""
    import av

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    num = int(minutes * 60 * FPS)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(FPS), options={"preset": "ultrafast", "g": str(GOP), "crf": "23"}
        )
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        frame = np.empty((SIZE, SIZE, 3), np.uint8)
        for i in range(num):
            frame[..., 0] = (xx + i) % 256
            frame[..., 1] = (yy + 2 * i) % 256
            frame[..., 2] = (i // 10) % 256
            x, y = (3 * i) % (SIZE - 16), (5 * i) % (SIZE - 16)
            frame[y : y + 16, x : x + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def measure(path: str, count: int, strategy: str, size: int | None, repeats: int) -> dict:
    """Decode in this process: best of ``repeats`` seconds, peak RSS (MiB). count 0 = imports only, -1 = all frames."""
    import av  # noqa: F401  (imported before timing, and in every mode so that "base" includes it)
    import torch  # noqa: F401

    from trajtok.video import load_video

    best, frames, used = 0.0, 0, "-"
    if count != 0:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            video = load_video(path, num_frames=count if count > 0 else None, strategy=strategy, size=size)
            times.append(time.perf_counter() - t0)
            frames, used = int(video.frames.shape[0]), video.strategy
            del video
        best = min(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": best, "rss_mib": rss, "frames": frames, "used": used}


def run_measure(path: Path, count: int, strategy: str, size: int | None, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--_measure", str(path), str(count), strategy, str(size or 0), str(repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_video")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the synthetic long video")
    parser.add_argument("--counts", type=int, nargs="+", default=[16, 64, 256], help="num_frames to sample")
    parser.add_argument("--clip-size", type=int, default=224, help="shorter side for the real clips")
    parser.add_argument("--repeats", type=int, default=3, help="time = best of this many decodes")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--_measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        path, count, strategy, size, repeats = args._measure
        print(json.dumps(measure(path, int(count), strategy, int(size) or None, int(repeats))))
        return

    from trajtok.video import probe_video

    t0 = time.perf_counter()
    long_path = write_long_video(args.workdir / f"long_{args.minutes:g}min_{SIZE}px.mp4", args.minutes)
    generation = time.perf_counter() - t0
    info = probe_video(long_path)
    print(
        f"long video: {long_path} ({info.num_frames} frames, {info.num_keyframes} key frames, "
        f"{long_path.stat().st_size / 2**20:.1f} MiB; ready in {generation:.1f} s)\n",
        file=sys.stderr,
    )
    jobs: list[tuple[str, Path, int, str, int | None]] = [("(imports only)", long_path, 0, "base", None)]
    for count in args.counts:
        jobs += [("long", long_path, count, s, None) for s in ("seek", "sequential", "auto")]
    if (SHARED_DATA / "manifest.json").is_file():
        for name in json.loads((SHARED_DATA / "manifest.json").read_text()):
            jobs += [(name, SHARED_DATA / name, 16, s, args.clip_size) for s in ("seek", "sequential", "auto")]
            jobs.append((name, SHARED_DATA / name, -1, "sequential", args.clip_size))
    else:
        print(f"real clips skipped: {SHARED_DATA} not found", file=sys.stderr)

    rows = []
    for video, path, count, strategy, size in jobs:
        result = run_measure(path, count, strategy, size, args.repeats)
        if strategy == "auto":
            strategy = f"auto -> {result['used']}"
        rows.append({"video": video, "requested": count if count >= 0 else "all", "strategy": strategy, **result})
        print(f"{video} {count} {strategy}: {result}", file=sys.stderr)

    base = rows[0]["rss_mib"]
    print(
        f"| video | requested | returned | strategy | seconds (best of {args.repeats}) | peak RSS MiB | over base MiB |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['video']} | {r['requested']} | {r['frames']} | {r['strategy']} | {r['seconds']:.3f} | "
            f"{r['rss_mib']:.0f} | {r['rss_mib'] - base:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
