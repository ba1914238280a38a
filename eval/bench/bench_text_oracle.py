"""python eval/bench/bench_text_oracle.py --model runs/demo/base --data runs/demo/data --split test

What the LLM alone makes of the synthetic world's held-out questions, with no video: the question text only, or
the question after the video's ground-truth caption given as text (a perfect description of the cast, its textures
and motions; no events such as exits or collisions). Two ways of answering, both over the 4 options (chance 25 %):

- ``letter``: the options listed with letters and lmms-eval's instruction ("Answer with the option's letter from
  the given choices directly."); the answer is the greedy letter (the ``trajworld`` task's format);
- ``open``: the question alone; the answer is the option whose text the LLM finds likeliest after it (the
  ``trajworld_open`` task's format).

It sizes what a VLM built on the same LLM must learn: if the LLM cannot use a perfect caption in one format, the
visual tokens will not rescue it there. ``--model`` is any model ``trajvlm.inference.load_model`` reads (the demo's
``base``: the LLM before any training). Prints a table per question type; ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tokenizer")]

LETTERS = "ABCD"
ANSWER_PROMPT = "Answer with the option's letter from the given choices directly."


def first_captions(split_dir: Path) -> dict[str, str]:
    """video file -> its first caption (the cast)."""
    out: dict[str, str] = {}
    for row in json.loads((split_dir / "captions.json").read_text()):
        out.setdefault(row["video"], row["conversations"][1]["value"])
    return out


def run(args: argparse.Namespace) -> dict:
    from trajvlm.inference import generate_batch, load_model, score_choices

    split_dir = Path(args.data) / args.split
    questions = json.loads((split_dir / "qa.json").read_text())
    if args.limit:
        questions = questions[: args.limit]
    captions = first_captions(split_dir)
    model, processor = load_model(args.model, device="cpu")  # a llava-hf base loads with the pool connector
    table: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for context in ("question only", "caption + question"):

        def prefix(q: dict, context: str = context) -> str:
            return f"Video description: {captions[q['video']]}\n" if context != "question only" else ""

        prompts = [
            f"{prefix(q)}{q['question']}\n"
            + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q["options"]))
            + f"\n{ANSWER_PROMPT}"
            for q in questions
        ]
        gen = {"max_new_tokens": 2, "do_sample": False}
        letters = generate_batch(model, processor, [(None, p, gen) for p in prompts], batch_size=8)
        for q, text in zip(questions, letters, strict=True):
            for key in ("all", q["qtype"]):
                table[f"letter, {context}"][key].append(text.strip()[:1] == q["answer"])
        for q in questions:
            scores = score_choices(model, processor, None, prefix(q) + q["question"], q["options"])
            pick = max(range(len(scores)), key=lambda i: scores[i][0])
            for key in ("all", q["qtype"]):
                table[f"open, {context}"][key].append(LETTERS[pick] == q["answer"])
    return {
        row: {k: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)} for k, v in cells.items()}
        for row, cells in table.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model directory (the demo's base: the untrained LLM)")
    ap.add_argument("--data", required=True, help="a `trajtok synth` output folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=0, help="the first N questions only (0: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    for path in (Path(args.model), Path(args.data) / args.split / "qa.json"):
        if not path.exists():
            print(f"error: {path}: not found", file=sys.stderr)
            return 2
    results = run(args)
    types = sorted({k for cells in results.values() for k in cells if k != "all"})
    print("| LLM alone | all | " + " | ".join(types) + " |")
    print("|---" * (len(types) + 2) + "|")
    for row, cells in results.items():
        accs = [f"{cells[t]['accuracy']:.1f}" if t in cells else "n/a" for t in ["all", *types]]
        print(f"| {row} | " + " | ".join(accs) + " |")
    print(f"({results[next(iter(results))]['all']['n']} questions, 4 options, chance 25 %)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
