"""python eval/bench/bench_token_probe.py --model runs/demo-fast-v2/vlm-trajtok-restart-8f-run/final \
    --data runs/demo-fast-v2/data --frames 8 --json runs/token-probe/trajtok.json

Do a trained model's visual tokens hold what the long world's questions ask? A probe on the tokens, not the LLM.

The main job's models answer the long world's questions at chance (``docs/results/long_video_qa.md``) while an
ideal reader of the same frames answers 69 % of them (``bench_frame_oracle.py``). Between the frames and the
answer sit two readers: the tower + connector + projector, which turn the frames into the visual tokens, and the LLM,
which reads them. This script asks the first: it takes the tokens a trained model gives the LLM for each video
(``TrajVLMModel.encode_videos``, exactly what the LLM receives, at the model's own frames) and fits a small probe on
the training videos to say, for every object name of the world (colour + shape, as questions name objects), whether
that object is in view in the first frame (``start``), in the last frame (``end``), and in the video at all
(``present``: in any of its frames, including frames the model does not see).

The probe is one attention pooling per target with a learned query over the layer-normed tokens, then a linear
layer to one logit per name (binary cross-entropy). It is fitted on the first ``1 - holdout`` of the training
videos; its step count is chosen by the mean AUC on the rest of them (the probe's own val); the world's val split
(``--split``) is read once, with that step count. Reported on that split:

- AUC per target (mean over the names that occur both ways in the split), and the same for a probe fitted on the
  same tokens with the videos' labels shuffled (what the probe finds in noise; about 0.5);
- the questions the three targets answer directly, answered by the probe: ``start_end`` "gone" (in view at the start,
  not at the end: the option with the largest p_start * (1 - p_end)) and "new" (the reverse), and ``distinct_count``
  (the option nearest the sum of p_present over the names); beside them what chance gives.

A probe that reads these from the tokens while the LLM does not says the LLM's reading is the gap; a probe that
cannot says the tokens (or the tower under them) are. The probe is small (a query and a linear layer per target)
and sees the same training videos as the LLM's stage 2, so it bounds neither reader: it is a diagnosis.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from trajtok.synth.text import LETTERS, colour_at, is_visible, name  # noqa: E402
from trajtok.synth.world import COLOURS, SHAPES  # noqa: E402

TARGETS = ("start", "end", "present")
NAMES = tuple(f"the {c} {s}" for c in COLOURS for s in SHAPES)  # every object name the world can give
# what the probe says per target: each name, and apart from them each colour shown and each shape (groups of VOCAB)
VOCAB = NAMES + tuple(f"colour {c}" for c in COLOURS) + tuple(f"shape {s}" for s in SHAPES)
GROUPS = {
    "names": slice(0, len(NAMES)),
    "colours": slice(len(NAMES), len(NAMES) + len(COLOURS)),
    "shapes": slice(len(NAMES) + len(COLOURS), len(VOCAB)),
}


def labels(record: dict) -> np.ndarray:
    """(len(TARGETS), len(VOCAB)) 0/1: which names, colours (as shown then) and shapes are in view in the first
    frame, in the last, and anywhere in the video."""
    out = np.zeros((len(TARGETS), len(VOCAB)), dtype=np.float32)
    last = int(record["num_frames"]) - 1
    for i, obj in enumerate(record["objects"]):
        k, shape = VOCAB.index(name(record, i)), VOCAB.index(f"shape {obj['shape']}")
        for t, frame in ((0, 0), (1, last)):
            if is_visible(record, i, frame):
                out[t, [k, shape, VOCAB.index(f"colour {colour_at(record, i, frame)}")]] = 1.0
        if obj["visible"]:
            colours = [VOCAB.index(f"colour {c}") for c in obj.get("colours") or [obj["colour"]]]
            out[2, [k, shape, *colours]] = 1.0
    return out


@torch.inference_mode()
def encode(model_dir: str | Path, videos: list[Path], frames: int) -> list[torch.Tensor]:
    """The visual tokens the LLM receives for each video, (N_i, D) float32, at ``frames`` frames."""
    from trajvlm.inference import load_model

    model, processor = load_model(model_dir, num_frames=frames)
    model.eval()
    return _common.visual_tokens(model, processor, videos, progress="probe")


def _pad(tokens: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(t.shape[0] for t in tokens)
    x = torch.zeros(len(tokens), n, tokens[0].shape[1])
    valid = torch.zeros(len(tokens), n, dtype=torch.bool)
    for i, t in enumerate(tokens):
        x[i, : t.shape[0]], valid[i, : t.shape[0]] = t, True
    return x, valid


class AttentionProbe(nn.Module):
    """Per target: a learned query pools the layer-normed tokens (softmax attention), a linear layer gives one logit
    per name."""

    def __init__(self, dim: int, targets: int, names: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(targets, dim) / math.sqrt(dim))
        self.head = nn.Parameter(torch.randn(targets, dim, names) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(targets, names))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, N, D) tokens, (B, N) valid -> (B, targets, names) logits."""
        h = self.norm(x)
        scores = torch.einsum("bnd,td->btn", h, self.query) / math.sqrt(h.shape[-1])
        weights = scores.masked_fill(~valid[:, None, :], float("-inf")).softmax(-1)
        pooled = torch.einsum("btn,bnd->btd", weights, h)
        return torch.einsum("btd,tdk->btk", pooled, self.head) + self.bias


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); NaN when one class is absent."""
    pos, neg = scores[truth > 0.5], scores[truth <= 0.5]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def mean_auc(probs: np.ndarray, truth: np.ndarray, group: slice = GROUPS["names"]) -> list[float]:
    """Per target: the mean AUC over the entries of ``group`` of VOCAB that occur both ways among the videos
    ((V, targets, VOCAB) inputs)."""
    out = []
    for t in range(probs.shape[1]):
        values = [auc(probs[:, t, k], truth[:, t, k]) for k in range(probs.shape[2])[group]]
        values = [v for v in values if not math.isnan(v)]
        out.append(float(np.mean(values)) if values else math.nan)
    return out


def fit(
    train: tuple[list[torch.Tensor], np.ndarray],
    holdout: tuple[list[torch.Tensor], np.ndarray],
    *,
    steps: int = 600,
    batch: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    check_every: int = 25,
    seed: int = 0,
) -> tuple[AttentionProbe, int, float]:
    """A probe fitted on ``train``, kept at the step whose mean AUC on ``holdout`` is highest: (probe, step, AUC)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, valid = _pad(train[0])
    y = torch.from_numpy(train[1])
    hx, hvalid = _pad(holdout[0])
    probe = AttentionProbe(x.shape[-1], y.shape[1], y.shape[2])
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    best = (-1.0, 0, {k: v.clone() for k, v in probe.state_dict().items()})
    for step in range(1, steps + 1):
        idx = torch.randint(len(x), (min(batch, len(x)),), generator=gen)
        loss = nn.functional.binary_cross_entropy_with_logits(probe(x[idx], valid[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % check_every == 0 or step == steps:
            with torch.no_grad():
                score = float(np.nanmean(mean_auc(probe(hx, hvalid).sigmoid().numpy(), holdout[1])))
            if score > best[0]:
                best = (score, step, {k: v.clone() for k, v in probe.state_dict().items()})
    probe.load_state_dict(best[2])
    return probe, best[1], best[0]


def answer(question: dict, probs: np.ndarray) -> int | None:
    """The option the probe's (targets, names) probabilities pick for a question the targets answer (None: a
    question they do not answer)."""
    p = {t: dict(zip(NAMES, probs[k, GROUPS["names"]], strict=True)) for k, t in enumerate(TARGETS)}
    qtype, variant = question["qtype"], question.get("params", {}).get("variant")
    if qtype == "start_end" and variant in ("gone", "new"):
        first, second = ("start", "end") if variant == "gone" else ("end", "start")
        scores = [p[first].get(o, 0.0) * (1.0 - p[second].get(o, 0.0)) for o in question["options"]]
        return int(np.argmax(scores))
    if qtype == "distinct_count":
        expected = float(sum(p["present"].values()))
        return int(np.argmin([abs(int(o) - expected) for o in question["options"]]))
    return None


def split_videos(data: Path, split: str, limit: int) -> tuple[list[Path], list[dict]]:
    """The first ``limit`` videos of ``data/split`` (0 = all) and their records."""
    videos = _common.synth_videos(data / split, limit)
    return [v for v, _ in videos], [r for _, r in videos]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    train_videos, train_records = split_videos(data, "train", args.max_train)
    eval_videos, eval_records = split_videos(data, args.split, 0)
    tokens = encode(args.model, train_videos + eval_videos, args.frames)
    train_tokens, eval_tokens = tokens[: len(train_videos)], tokens[len(train_videos) :]
    y_train = np.stack([labels(r) for r in train_records])
    y_eval = np.stack([labels(r) for r in eval_records])
    cut = int(round(len(train_tokens) * (1 - args.holdout)))
    fitted = {}
    for kind in ("probe", "shuffled"):
        y = y_train.copy()
        if kind == "shuffled":  # the same tokens, each video given another video's labels
            y = y[np.random.default_rng(args.seed).permutation(len(y))]
        probe, step, holdout_auc = fit(
            (train_tokens[:cut], y[:cut]), (train_tokens[cut:], y[cut:]), steps=args.steps, seed=args.seed
        )
        with torch.no_grad():
            probs = probe(*_pad(eval_tokens)).sigmoid().numpy()
        aucs = {group: mean_auc(probs, y_eval, part) for group, part in GROUPS.items()}
        fitted[kind] = {"step": step, "holdout_auc": holdout_auc, "auc": aucs, "probs": probs}

    by_video = {v.stem: k for k, v in enumerate(eval_videos)}
    qa_path = data / args.split / "qa.json"
    try:
        questions = json.loads(qa_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{qa_path} not found: the long world writes one per split") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{qa_path} is not valid JSON ({err})") from None
    per_kind: dict[str, dict[str, list[float]]] = {}
    for q in questions:
        video = by_video.get(Path(q["video"]).stem)
        if video is None:
            continue
        picked = answer(q, fitted["probe"]["probs"][video])
        if picked is None:
            continue
        kind = q["qtype"] + (f" ({q['params']['variant']})" if q["qtype"] == "start_end" else "")
        row = per_kind.setdefault(kind, {"correct": [], "chance": []})
        row["correct"].append(float(picked == LETTERS.index(q["answer"])))
        row["chance"].append(1.0 / len(q["options"]))
    return {
        "model": str(args.model),
        "data": str(data),
        "split": args.split,
        "frames": args.frames,
        "train_videos": cut,
        "holdout_videos": len(train_tokens) - cut,
        "eval_videos": len(eval_tokens),
        "tokens_per_video": float(np.mean([t.shape[0] for t in eval_tokens])),
        "targets": list(TARGETS),
        **{kind: {k: v for k, v in fitted[kind].items() if k != "probs"} for kind in ("probe", "shuffled")},
        "questions": {
            k: {
                "n": len(v["correct"]),
                "acc": 100.0 * float(np.mean(v["correct"])),
                "chance": 100.0 * float(np.mean(v["chance"])),
            }
            for k, v in sorted(per_kind.items())
        },
    }


def table(result: dict) -> str:
    lines = [
        f"model {result['model']} ({result['tokens_per_video']:.1f} tokens per video at {result['frames']} frames); "
        f"probe fitted on {result['train_videos']} training videos, step chosen on {result['holdout_videos']}, "
        f"read on {result['eval_videos']} {result['split']} videos",
        "",
        "| probe | step | what | " + " | ".join(f"AUC {t}" for t in result["targets"]) + " |",
        "|---|---:|---|" + "---:|" * len(result["targets"]),
    ]
    for kind in ("probe", "shuffled"):
        r = result[kind]
        for group, aucs in r["auc"].items():
            cells = " | ".join(f"{a:.3f}" for a in aucs)
            lines.append(f"| {'tokens' if kind == 'probe' else 'shuffled labels'} | {r['step']} | {group} | {cells} |")
    lines += ["", "| question (answered by the probe) | n | accuracy % | chance % |", "|---|---:|---:|---:|"]
    for k, v in result["questions"].items():
        lines.append(f"| {k} | {v['n']} | {v['acc']:.1f} | {v['chance']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True, help="a trained model (a demo's vlm-*-run/final)")
    ap.add_argument("--data", required=True, help="the long world it was trained on (trajtok synth --world long)")
    ap.add_argument("--frames", type=int, required=True, help="frames per video (the model's own)")
    ap.add_argument("--split", default="val", help="the split the probe is read on (default val)")
    ap.add_argument("--max-train", type=int, default=0, help="training videos read (0 = all)")
    ap.add_argument("--holdout", type=float, default=0.2, help="share of them that chooses the probe's step")
    ap.add_argument("--steps", type=int, default=600, help="probe optimizer steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the result here")
    return _common.run_cli(report, ap.parse_args(argv))


def report(args: argparse.Namespace) -> dict:
    result = run(args)
    print(table(result))
    _common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main())
