"""Speed of the synthetic world: generation (simulate + render + events + text) and encoding, one core.

    python eval/bench/bench_synth.py --frames 1024 --sizes 64 128 224 [--codec mpeg4|h264] [--json out.json]

Encodes as `trajtok synth` does: one encoder thread, MPEG-4 Part 2 by default (byte-reproducible), or H.264.

Prints a markdown table of frames per second at each size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from trajtok.io.writer import write_video
from trajtok.synth import generate_video
from trajtok.synth.dataset import CODECS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", choices=sorted(CODECS), default="mpeg4", help="as `trajtok synth --codec`")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            t0 = time.perf_counter()
            video = generate_video(args.seed, args.frames, size, size, args.objects)
            t1 = time.perf_counter()
            write_video(Path(tmp) / f"{size}.mp4", video.frames, codec=CODECS[args.codec], threads=1)
            t2 = time.perf_counter()
            rows.append(
                {
                    "size": size,
                    "frames": args.frames,
                    "generate_fps": args.frames / (t1 - t0),
                    "encode_fps": args.frames / (t2 - t1),
                    "total_fps": args.frames / (t2 - t0),
                    "total_s": t2 - t0,
                }
            )
    table = [
        [r["size"], r["frames"], f"{r['generate_fps']:.0f}", f"{r['encode_fps']:.0f}", f"{r['total_fps']:.0f}",
         f"{r['total_s']:.2f}"]
        for r in rows
    ]  # fmt: skip
    _common.print_table(["size", "frames", "generate fps", "encode fps", "total fps", "total s"], table, "rrrrrr")
    _common.write_json(args.json, rows)


if __name__ == "__main__":
    main()
