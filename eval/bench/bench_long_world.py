"""Speed of the long-video world: seconds per video to generate (simulate, render, events, questions) and to write
(generate + mp4 + label npz + record json, as `trajtok synth --world long` does), one process.

    OMP_NUM_THREADS=1 python eval/bench/bench_long_world.py --frames 256 1024 --sizes 64 128 --videos 4

Default long-world settings (``LongWorldConfig()``, 2 questions per type). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from trajtok.synth import write_dataset
from trajtok.synth.generate import generate_long_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--videos", type=int, default=4, help="videos per setting (seeds 0..N-1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            for size in args.sizes:
                t0 = time.perf_counter()
                for seed in range(args.videos):
                    generate_long_video(seed, frames, size, size, args.objects)
                t1 = time.perf_counter()
                out = Path(tmp) / f"{frames}_{size}"
                counts = {"train": 0, "val": args.videos, "test": 0}
                write_dataset(out, counts, frames=frames, size=size, objects=args.objects, world="long")
                t2 = time.perf_counter()
                questions = len(json.loads((out / "val" / "qa.json").read_text()))
                rows.append(
                    {
                        "frames": frames,
                        "size": size,
                        "generate_s": (t1 - t0) / args.videos,
                        "write_s": (t2 - t1) / args.videos,
                        "questions": questions / args.videos,
                    }
                )
    print("| frames | size | generate s/video | generate + write s/video | questions/video |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['frames']} | {r['size']} | {r['generate_s']:.2f} | {r['write_s']:.2f} | {r['questions']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
