"""Frame sampling speed and peak memory of trajtok.io.video: seek vs sequential vs auto, on a long video and real clips.

    python eval/bench/bench_video_io.py [--workdir runs/bench_video] [--minutes 30] [--counts 16 64 256] [--json out.json]
    python eval/bench/bench_video_io.py --sampling [--sampling-minutes 20] [--repeats 5] [--json out.json]

``--sampling`` compares ``load_video(path, num_frames=64)`` with the plain PyAV loop a user would write (seek to each
timestamp, ``thread_type="AUTO"``, keep the first frame at or after it, convert it to RGB) on a 20-minute 640x360
H.264 file at 30 fps with a key frame every 250 frames (x264 ultrafast: no B-frames), and on a 2-minute file of the
same content encoded with B-frames (x264 veryfast, 3 B-frames), where skipping non-reference frames pays. Each
measurement runs in a fresh subprocess with torch's default thread count (OMP_NUM_THREADS unset, as a user runs it),
the two methods alternate, and the best of ``--repeats`` counts.

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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

# the sampling comparison's video (--sampling)
S_WIDTH, S_HEIGHT, S_FPS, S_GOP = 640, 360, 30, 250
SHARED_DATA = Path(os.environ.get("TRAJVLM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SIZE, FPS, GOP = 112, 10, 250


def write_long_video(path: Path, minutes: float) -> Path:
    """Stream frames into the encoder one at a time (a 30-minute clip never sits in memory)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]

    def frames():
        frame = np.empty((SIZE, SIZE, 3), np.uint8)
        for i in range(int(minutes * 60 * FPS)):
            frame[..., 0] = (xx + i) % 256
            frame[..., 1] = (yy + 2 * i) % 256
            frame[..., 2] = (i // 10) % 256
            x, y = (3 * i) % (SIZE - 16), (5 * i) % (SIZE - 16)
            frame[y : y + 16, x : x + 16] = 255
            yield frame

    options = {"preset": "ultrafast", "g": str(GOP), "crf": "23"}
    return _common.write_h264(path, frames(), (SIZE, SIZE), FPS, options)


def write_sampling_video(path: Path, minutes: float, bframes: int = 0) -> Path:
    """640x360 at 30 fps, a key frame every 250 frames (no scene-cut key frames); bframes 0 = x264 ultrafast."""
    options = {"g": str(S_GOP), "keyint_min": str(S_GOP), "sc_threshold": "0", "crf": "28"}
    options.update({"preset": "veryfast", "bf": str(bframes)} if bframes else {"preset": "ultrafast"})
    yy, xx = np.mgrid[0:S_HEIGHT, 0:S_WIDTH].astype(np.uint16)

    def frames():
        frame = np.empty((S_HEIGHT, S_WIDTH, 3), np.uint8)
        for i in range(int(minutes * 60 * S_FPS)):
            frame[..., 0] = (xx + i % 256) % 256
            frame[..., 1] = (yy + (2 * i) % 256) % 256
            frame[..., 2] = (i // S_FPS) % 256
            x, y = (7 * i) % (S_WIDTH - 48), (5 * i) % (S_HEIGHT - 48)
            frame[y : y + 48, x : x + 48] = 255
            yield frame

    return _common.write_h264(path, frames(), (S_WIDTH, S_HEIGHT), S_FPS, options)


def plain_loop(path: str, count: int) -> tuple[np.ndarray, int]:
    """The reference: seek to each of ``count`` evenly spaced timestamps, keep the first frame at or after it."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb, start = float(stream.time_base), stream.start_time or 0
        fps = float(stream.average_rate)
        duration = float(stream.duration * stream.time_base)
        frames, decoded = [], 0
        for t in np.linspace(0.0, duration - 1.0 / fps, count):
            container.seek(int(t / tb) + start, stream=stream, backward=True)
            for frame in container.decode(stream):
                decoded += 1
                if (frame.pts - start) * tb >= t - 1e-6:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    break
        return np.stack(frames), decoded  # (T, H, W, 3)


def measure_sampling(method: str, path: str, count: int) -> dict:
    """One timed sample of ``method`` ("plain" or "ours") in this fresh process, with its peak RSS."""
    import av  # noqa: F401  (imports before timing)
    import torch  # noqa: F401

    from trajtok.io.video import load_video

    t0 = time.perf_counter()
    if method == "plain":
        frames, decoded = plain_loop(path, count)
        shape, used = frames.shape, "seek loop"
    else:
        video = load_video(path, num_frames=count)
        shape, used, decoded = tuple(video.frames.shape), video.strategy, -1
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "rss_mib": rss, "shape": list(shape), "used": used, "decoded": decoded}


def run_sampling(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    minutes = args.sampling_minutes
    videos = [
        (f"{minutes:g} min, no B-frames", write_sampling_video(args.workdir / f"sampling_{minutes:g}min.mp4", minutes)),
        ("2 min, 3 B-frames", write_sampling_video(args.workdir / "sampling_2min_bframes.mp4", 2.0, bframes=3)),
    ]
    print(f"videos ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    for name, path in videos:
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for method in ("plain", "ours"):
                cmd = [sys.executable, __file__, "--_sampling", method, str(path), str(args.sampling_count)]
                env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # a user's default threads
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{name} {method}: {result}", file=sys.stderr)
                if method not in best or result["seconds"] < best[method]["seconds"]:
                    best[method] = result
        ratio = best["ours"]["seconds"] / best["plain"]["seconds"]
        rows.append({"video": name, "path": str(path), "frames": args.sampling_count, **{
            f"{m}_{k}": best[m][k] for m in ("plain", "ours") for k in ("seconds", "rss_mib")}, "ratio": ratio,
            "ours_strategy": best["ours"]["used"], "plain_decoded": best["plain"]["decoded"]})  # fmt: skip
    _common.print_table(
        [f"video (640x360, 30 fps, GOP {S_GOP})", "frames", "plain seek loop s", "load_video s", "ratio",
         "plain RSS MiB", "load_video RSS MiB"],
        [
            [r["video"], r["frames"], f"{r['plain_seconds']:.3f}", f"{r['ours_seconds']:.3f} ({r['ours_strategy']})",
             f"{r['ratio']:.2f}x", f"{r['plain_rss_mib']:.0f}", f"{r['ours_rss_mib']:.0f}"]
            for r in rows
        ],
        "lrrrrrr",
    )  # fmt: skip
    _common.write_json(args.json, rows)


def measure(path: str, count: int, strategy: str, size: int | None, repeats: int) -> dict:
    """Decode in this process: best of ``repeats`` seconds, peak RSS (MiB). count 0 = imports only, -1 = all frames."""
    import av  # noqa: F401  (imported before timing, and in every mode so that "base" includes it)
    import torch  # noqa: F401

    from trajtok.io.video import load_video

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
    parser.add_argument("--sampling", action="store_true", help="load_video vs a plain PyAV seek loop (see above)")
    parser.add_argument("--sampling-minutes", type=float, default=20.0, help="length of the no-B-frame video")
    parser.add_argument("--sampling-count", type=int, default=64, help="frames sampled in the comparison")
    parser.add_argument("--_measure", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--_sampling", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._sampling:
        method, path, count = args._sampling
        print(json.dumps(measure_sampling(method, path, int(count))))
        return
    if args.sampling:
        run_sampling(args)
        return
    if args._measure:
        path, count, strategy, size, repeats = args._measure
        print(json.dumps(measure(path, int(count), strategy, int(size) or None, int(repeats))))
        return

    from trajtok.io.video import probe_video

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
    _common.print_table(
        ["video", "requested", "returned", "strategy", f"seconds (best of {args.repeats})", "peak RSS MiB",
         "over base MiB"],
        [
            [r["video"], r["requested"], r["frames"], r["strategy"], f"{r['seconds']:.3f}", f"{r['rss_mib']:.0f}",
             f"{r['rss_mib'] - base:.0f}"]
            for r in rows
        ],
        "lrrlrrr",
    )  # fmt: skip
    _common.write_json(args.json, rows)


if __name__ == "__main__":
    main()
