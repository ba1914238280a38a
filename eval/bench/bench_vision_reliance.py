"""python eval/bench/bench_vision_reliance.py --model runs/demo/vlm-trajtok-restart-8f-run/final \
    --data runs/demo/data --split val --frames 8 --json out.json

Does a trained model's answer depend on its video? Each question of a long-world split is scored three ways, as
``trajworld_open`` scores it (the log-likelihood of each option's text after the open question; the likeliest
option is the answer):

- ``own``: with the question's own video (what the main job's evaluation does);
- ``other``: with another video of the same split (video ``i`` of the sorted videos gets video ``i + n // 2``), so
  the tokens show other objects and other events than the question is about;
- ``none``: with no video (the main job's no-video control, here on the chosen split).

Reported: the accuracy of each (intervals resample whole videos), the share of questions whose answer changes when
the video is swapped or removed, and the mean total-variation distance between the option distributions (softmax
over the options' log-likelihoods) of ``own`` and the others. A model that reads its video answers differently when
shown another one; a model whose ``own`` and ``other`` answers agree on almost every question, at the same accuracy,
does not use its visual tokens for these questions, whatever its accuracy. The accuracy of ``own`` here equals the
main job's on the same split (the same scoring, batched by video).

Beside them, what the LLM is given (``tokens`` in the JSON): the median norm of the visual tokens against that of
the LLM's text embeddings, the share of the tokens' energy in the mean token of the split (``|mean|^2 / mean |t|^2``:
what every video's tokens have in common) and the mean cosine between two videos' mean tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

CONDITIONS = ("own", "other", "none")


def read_questions(data: Path, split: str, limit: int | None) -> list[dict]:
    """The split's questions (``qa.json``), the first ``limit`` videos' questions when given."""
    path = data / split / "qa.json"
    if not path.is_file():
        raise FileNotFoundError(f"no questions at {path}: expected a long world written by `trajtok synth`")
    try:
        questions = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    if not questions:
        raise ValueError(f"no questions in {path}")
    videos = sorted({q["video"] for q in questions})
    if limit is not None:
        keep = set(videos[:limit])
        questions = [q for q in questions if q["video"] in keep]
    return questions


def swapped(videos: list[str]) -> dict[str, str]:
    """Each video's stand-in for ``other``: the video half the split away in sorted order (never itself)."""
    if len(videos) < 2:
        raise ValueError("the `other` condition needs at least 2 videos in the split")
    order = sorted(videos)
    return {v: order[(i + len(order) // 2) % len(order)] for i, v in enumerate(order)}


def option_probs(scores: list[tuple[float, bool]]) -> np.ndarray:
    """Softmax over the options' summed log-likelihoods."""
    ll = np.array([s[0] for s in scores], dtype=np.float64)
    ll = ll - ll.max()
    p = np.exp(ll)
    return p / p.sum()


def token_stats(tokens: list[torch.Tensor], embeddings: torch.Tensor) -> dict:
    """What the LLM receives: visual token norms against its text embeddings' and how much the videos share.

    ``tokens``: each video's visual tokens (N_i, D); ``embeddings``: the LLM's input embedding matrix (V, D)."""
    every = torch.cat(tokens).float()
    norms = every.norm(dim=-1)
    text = embeddings.detach().float().norm(dim=-1)
    means = torch.nn.functional.normalize(torch.stack([t.float().mean(0) for t in tokens]), dim=-1)
    n = len(tokens)
    between = (means @ means.T)[~torch.eye(n, dtype=torch.bool)].mean() if n > 1 else torch.tensor(float("nan"))
    return {
        "videos": n,
        "tokens_per_video": every.shape[0] / n,
        "visual_norm_median": float(norms.median()),
        "visual_norm_p10_p90": [float(norms.quantile(0.1)), float(norms.quantile(0.9))],
        "text_norm_median": float(text.median()),
        "common_share": float(every.mean(0).norm() ** 2 / (norms**2).mean()),
        "between_video_cosine": float(between),
    }


def compare(questions: list[dict], probs: dict[str, list[np.ndarray]], seed: int = 0, samples: int = 2000) -> dict:
    """Accuracy per condition (clustered bootstrap over videos), answer changes and distances against ``own``."""
    truth = np.array([ord(q["answer"]) - ord("A") for q in questions])
    preds = {c: np.array([int(p.argmax()) for p in probs[c]]) for c in probs}
    vids = np.array([q["video"] for q in questions])
    unique = sorted(set(vids.tolist()))
    rows = [np.flatnonzero(vids == v) for v in unique]
    rng = np.random.default_rng(seed)
    draws = [np.concatenate([rows[j] for j in rng.integers(0, len(rows), len(rows))]) for _ in range(samples)]
    out: dict = {"questions": len(questions), "videos": len(unique), "conditions": {}}
    for c, pred in preds.items():
        right = (pred == truth).astype(float)
        boot = [right[d].mean() for d in draws]
        entry = {
            "accuracy": 100 * right.mean(),
            "ci95": [100 * np.percentile(boot, 2.5), 100 * np.percentile(boot, 97.5)],
        }
        if c != "own":
            entry["answers_changed"] = 100 * float((pred != preds["own"]).mean())
            tv = [0.5 * np.abs(a - b).sum() for a, b in zip(probs["own"], probs[c], strict=True)]
            entry["mean_tv_distance"] = float(np.mean(tv))
        out["conditions"][c] = entry
    per_type: dict = {}
    for t in sorted({q["qtype"] for q in questions}):
        idx = [i for i, q in enumerate(questions) if q["qtype"] == t]
        per_type[t] = {"n": len(idx)} | {c: 100 * float((preds[c][idx] == truth[idx]).mean()) for c in preds}
        if "other" in preds:
            per_type[t]["changed_other"] = 100 * float((preds["other"][idx] != preds["own"][idx]).mean())
    out["per_type"] = per_type
    return out


def run(args: argparse.Namespace) -> dict:
    from trajvlm.inference.loading import load_model

    torch.set_num_threads(args.threads)
    questions = read_questions(args.data, args.split, args.limit)
    videos = sorted({q["video"] for q in questions})
    model, processor = load_model(args.model, num_frames=args.frames)
    root = args.data / args.split
    start = time.perf_counter()
    result: dict = {} if args.tokens_only else score_conditions(model, processor, questions, root, args.batch_size)
    stats = token_stats(
        _common.visual_tokens(model, processor, [root / v for v in videos]), model.get_input_embeddings().weight
    )
    result |= {
        "tokens": stats,
        "model": str(args.model),
        "split": args.split,
        "frames": args.frames,
        "seconds": time.perf_counter() - start,
    }
    if not args.tokens_only:
        print_tables(args, result)
    print(
        f"visual tokens: {stats['tokens_per_video']:.1f} per video, median norm {stats['visual_norm_median']:.2f} "
        f"(p10-p90 {stats['visual_norm_p10_p90'][0]:.2f}-{stats['visual_norm_p10_p90'][1]:.2f}) against "
        f"{stats['text_norm_median']:.2f} for the text embeddings; {100 * stats['common_share']:.0f} % of their energy "
        f"in the split's mean token; cosine between two videos' mean tokens {stats['between_video_cosine']:.2f}"
    )
    _common.write_json(args.json, result)
    return result


def score_conditions(model, processor, questions: list[dict], root: Path, batch_size: int) -> dict:
    """Every question scored with its own video, another one and none; :func:`compare` of the three."""
    from trajvlm.inference.scoring import score_choices_batch

    videos = sorted({q["video"] for q in questions})
    other = swapped(videos)
    probs: dict[str, list[np.ndarray]] = {c: [] for c in CONDITIONS}
    for video in videos:  # one video's questions at a time: its frames are decoded once per condition
        asked = [q for q in questions if q["video"] == video]
        for c in CONDITIONS:
            path = {"own": root / video, "other": root / other[video], "none": None}[c]
            batch = [(str(path) if path else None, q["question"], list(q["options"])) for q in asked]
            scores = score_choices_batch(model, processor, batch, batch_size=batch_size)
            probs[c].extend(option_probs(s) for s in scores)
    return compare(questions, probs)


def print_tables(args: argparse.Namespace, result: dict) -> None:
    rows = []
    for c, e in result["conditions"].items():
        rows.append(
            [
                c,
                f"{e['accuracy']:.1f} [{e['ci95'][0]:.0f}, {e['ci95'][1]:.0f}]",
                f"{e.get('answers_changed', 0):.1f}",
                f"{e.get('mean_tv_distance', 0):.3f}",
            ]
        )
    print(f"{args.model} on {args.split} ({result['questions']} questions, {result['videos']} videos)")
    _common.print_table(["video", "accuracy % [95 % CI]", "answers changed vs own %", "mean TV vs own"], rows, "lrrr")
    type_rows = [
        [t, e["n"], *(f"{e[c]:.1f}" for c in CONDITIONS), f"{e.get('changed_other', 0):.1f}"]
        for t, e in result["per_type"].items()
    ]
    _common.print_table(["type", "n", *CONDITIONS, "changed (other) %"], type_rows, "lrrrrr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a trained TrajVLM (a run's final/ folder)")
    parser.add_argument("--data", type=Path, required=True, help="the long world (trajtok synth --world long --out)")
    parser.add_argument("--split", default="val", choices=["val", "test"], help="which split's questions (default val)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video, as the model was trained (default 8)")
    parser.add_argument("--limit", type=int, default=None, help="the first N videos of the split only")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per forward (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--tokens-only", action="store_true", help="only what the LLM is given: no question scored")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    return _common.run_cli(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
