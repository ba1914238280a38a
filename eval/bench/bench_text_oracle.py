"""python eval/bench/bench_text_oracle.py --model runs/demo/base --data runs/demo/data --split test

    python eval/bench/bench_text_oracle.py --data runs/demo/data --split val    # no model: text-only baselines

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

Without ``--model``: the text-only baselines a model trained on the world's questions could learn, fitted on the
``train`` split's questions and scored on ``--split`` (no video, no caption, no LLM; ``--split train``: fitted on
the first four fifths of the training videos' questions, scored on the last fifth's):

- ``majority per template``: the question with object names masked is its template; each option is scored by how
  often its text (names masked) was the answer to that template in train (ties: the first option);
- ``bag of words``: a logistic regression scoring each option from its words, its words crossed with the question's
  words and type, its letter, and (numeric options) its rank among the options and its value crossed with the
  template; the question's answer is its highest-scoring option.

If either beats chance (25 %) by much on a question type, the answer of that type can be read from its text.
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


_NAME = None


def template(text: str) -> str:
    """The text with every object name ('the red circle', 'The red circle') replaced by OBJ."""
    global _NAME
    if _NAME is None:
        import re

        from trajtok.synth.world import COLOURS, SHAPES

        _NAME = re.compile(rf"\b[Tt]he ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")
    return _NAME.sub("OBJ", text)


def _option_features(q: dict, k: int) -> dict[str, float]:
    """Sparse features of option k of question q (the bag-of-words scorer's input)."""
    qtype, tmpl, opt = q["qtype"], template(q["question"]), template(q["options"][k])
    qwords, owords = set(tmpl.lower().replace("?", " ").split()), opt.lower().split()
    f = {f"letter={LETTERS[k]}": 1.0, f"{qtype}|letter={LETTERS[k]}": 1.0, f"{tmpl}|opt={opt}": 1.0}
    for w in owords:
        f[f"o={w}"] = f[f"{qtype}|o={w}"] = 1.0
        for qw in qwords:
            f[f"q={qw}|o={w}"] = 1.0
    if all(o.lstrip("-").isdigit() for o in q["options"]):
        values = sorted(int(o) for o in q["options"])
        rank = values.index(int(q["options"][k]))
        f[f"{qtype}|rank={rank}"] = f[f"{tmpl}|rank={rank}"] = f[f"{tmpl}|low={values[0]}|rank={rank}"] = 1.0
    return f


def text_baselines(train: list[dict], test: list[dict]) -> dict:
    """Accuracy per question type of the two text-only baselines (see the module docstring)."""
    from collections import Counter

    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    answer_counts: dict[str, Counter] = defaultdict(Counter)
    for q in train:
        answer_counts[template(q["question"])][template(q["options"][LETTERS.index(q["answer"])])] += 1
    table: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for q in test:
        counts = answer_counts.get(template(q["question"]), Counter())
        scores = [counts[template(o)] for o in q["options"]]
        pick = max(range(4), key=lambda i: (scores[i], -i))
        for key in ("all", q["qtype"]):
            table["majority per template"][key].append(LETTERS[pick] == q["answer"])
    vec = DictVectorizer()
    x = vec.fit_transform([_option_features(q, k) for q in train for k in range(4)])
    y = [int(LETTERS[k] == q["answer"]) for q in train for k in range(4)]
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    scores = clf.decision_function(vec.transform([_option_features(q, k) for q in test for k in range(4)]))
    for j, q in enumerate(test):
        pick = max(range(4), key=lambda i: scores[4 * j + i])
        for key in ("all", q["qtype"]):
            table["bag of words"][key].append(LETTERS[pick] == q["answer"])
    return {
        row: {k: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)} for k, v in cells.items()}
        for row, cells in table.items()
    }


def run(args: argparse.Namespace) -> dict:
    if args.model is None:
        data = Path(args.data)
        train = json.loads((data / "train" / "qa.json").read_text())
        if args.split == "train":  # the last fifth of the training videos held out (more questions than val)
            videos = sorted({q["video"] for q in train})
            held = set(videos[len(videos) - len(videos) // 5 :])
            train, test = [q for q in train if q["video"] not in held], [q for q in train if q["video"] in held]
        else:
            test = json.loads((data / args.split / "qa.json").read_text())
        return text_baselines(train, test[: args.limit or None])
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
    ap.add_argument(
        "--model", default=None, help="a model directory (the demo's base: the untrained LLM); none: text baselines"
    )
    ap.add_argument("--data", required=True, help="a `trajtok synth` output folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=0, help="the first N questions only (0: all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    needed = [Path(args.data) / args.split / "qa.json"]
    needed += [Path(args.model)] if args.model else [Path(args.data) / "train" / "qa.json"]
    for path in needed:
        if not path.exists():
            print(f"error: {path}: not found", file=sys.stderr)
            return 2
    results = run(args)
    types = sorted({k for cells in results.values() for k in cells if k != "all"})
    print(f"| {'LLM alone' if args.model else 'text only'} | all | " + " | ".join(types) + " |")
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
