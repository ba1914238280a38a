"""python eval/bench/bench_scoring.py --model runs/demo/vlm-pool --data runs/demo/data --questions 48

Speed of multiple-choice scoring (what lmms-eval's ``loglikelihood`` runs): the held-out questions of a synthetic
world split scored one question at a time (``score_choices``) and ``batch_size`` questions per forward
(``score_choices_batch``), with their videos and without (``--blind`` adds that row). Prints milliseconds per
question and the largest difference between the two ways' log-likelihoods (they must agree up to float rounding).
Videos are decoded inside the timed loop, as in an evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tokenizer"), str(Path(__file__).resolve().parent)]
import _common  # noqa: E402


def run(args: argparse.Namespace) -> list[dict]:
    import torch

    from trajvlm.inference import load_model, score_choices, score_choices_batch

    torch.set_num_threads(args.threads)
    split = args.data / args.split
    qa_file = split / "qa.json"
    if not qa_file.is_file():
        raise FileNotFoundError(f"no qa.json in {split}: expected a `trajtok synth` split folder")
    questions = json.loads(qa_file.read_text())[: args.questions]
    model, processor = load_model(args.model, num_frames=args.frames, device="cpu")
    rows = []
    for blind in [False, True] if args.blind else [False]:
        items = [(None if blind else str(split / q["video"]), q["question"], q["options"]) for q in questions]
        start = time.perf_counter()
        one = [score_choices(model, processor, *item) for item in items]
        one_ms = (time.perf_counter() - start) / len(items) * 1000
        for size in args.batch_sizes:
            start = time.perf_counter()
            batched = score_choices_batch(model, processor, items, batch_size=size)
            ms = (time.perf_counter() - start) / len(items) * 1000
            diff = max(abs(a[0] - b[0]) for x, y in zip(one, batched, strict=True) for a, b in zip(x, y, strict=True))
            rows.append({"video": not blind, "batch_size": size, "one_ms": one_ms, "batched_ms": ms, "max_diff": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="any model trajvlm.inference.load_model reads")
    parser.add_argument("--data", required=True, type=Path, help="a `trajtok synth` output folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16])
    parser.add_argument("--blind", action="store_true", help="also time the questions without their videos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    try:
        rows = run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"bench_scoring: {e}", file=sys.stderr)
        return 1
    print(f"{args.questions} questions of {args.data / args.split}, model {args.model}\n")
    table = [
        ["yes" if r["video"] else "no", r["batch_size"], f"{r['one_ms']:.0f}", f"{r['batched_ms']:.0f}",
         f"{r['one_ms'] / r['batched_ms']:.2f}x", f"{r['max_diff']:.1e}"]
        for r in rows
    ]  # fmt: skip
    header = ["video", "batch", "one at a time ms/question", "batched ms/question", "speed-up", "max |diff|"]
    _common.print_table(header, table, "lrrrrr")
    _common.write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
