"""python eval/bench/bench_probe.py --data runs/demo/data --tower runs/demo/tower --vlm runs/demo/vlm-trajtok runs/demo/vlm-pool

Do the features carry what the questions ask about? A linear probe per object word (the 9 colours, 8 shapes and the
"striped" / "dotted" textures of the synthetic world): for each video, 1 when one of its objects has that colour /
shape / texture. Features per video are the mean and the max over space and time of:

- ``pixels``: a 64-bin colour histogram of the frames (4 levels per channel): the floor any image model should
  reach on colours, with no learning;
- ``tower``: the patch features of a tower saved by ``trajvlm pretrain-tower`` (``--tower``, one or more);
- ``<vlm folder>``: the visual tokens a TrajVLM model's connector hands the LLM (``--vlm``, one or more; trajtok
  tokens, pooled patches, ...), exactly as ``encode_videos`` makes them.

The probe is L2-regularised logistic regression on standardised features, fitted on ``--train-videos`` training
videos and scored by ROC AUC on the held-out split (``--split``) (0.5 = no information, 1 = perfect), averaged per word group. A
tower with word detectors (``text.pt`` with ``word_head``) also gets its detectors scored directly (``tower
detectors``: the max over patches of each word's logit, no probe). Prints a table; ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tokenizer"), str(Path(__file__).resolve().parent)]
import _common  # noqa: E402

TEXTURE_WORDS = ("striped", "dotted")


def word_groups() -> dict[str, tuple[str, ...]]:
    from trajtok.synth.world import COLOURS, SHAPES

    return {"colours": tuple(COLOURS), "shapes": tuple(SHAPES), "textures": TEXTURE_WORDS}


def video_words(meta: dict, words: list[str]) -> torch.Tensor:
    """(W,) 1 where one of the video's objects has the word as colour, shape or texture."""
    present = set()
    for obj in meta["objects"]:
        present.update(obj.get("colours") or [obj["colour"]])
        present.add(obj["shape"])
        present.add(obj["texture"])
    return torch.tensor([1.0 if w in present else 0.0 for w in words])


def read_videos(split_dir: Path, limit: int, frames: int, size: int) -> tuple[torch.Tensor, list[dict]]:
    """uint8 frames (N, T, C, H, W) and the metadata of the first ``limit`` videos of a split (0 = all)."""
    from trajtok.io.video import load_video

    videos = _common.synth_videos(split_dir, limit)
    clips = [load_video(path, num_frames=frames, size=(size, size)).frames for path, _ in videos]
    return torch.stack(clips), [meta for _, meta in videos]


def pool(feats: torch.Tensor) -> torch.Tensor:
    """(N, E) features of one video -> (2E,) mean and max."""
    return torch.cat([feats.mean(0), feats.amax(0)])


def colour_histogram(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, T, C, H, W) -> (N, 64) share of pixels in each 4x4x4 colour bin."""
    q = frames.long() // 64  # 4 levels per channel
    code = (q[:, :, 0] * 16 + q[:, :, 1] * 4 + q[:, :, 2]).flatten(1)  # (N, T*H*W)
    hist = torch.zeros(code.shape[0], 64).scatter_add_(1, code, torch.ones_like(code, dtype=torch.float32))
    return hist / code.shape[1]


@torch.no_grad()
def tower_features(tower_dir: Path, frames: torch.Tensor, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean + max of the tower's patch features per video, and its word detectors' logits (None without them)."""
    from trajvlm.training.tower import TowerConfig, VideoTextModel, load_tower, normalise

    tower = load_tower(tower_dir).eval()
    head = None
    text = tower_dir / "text.pt"
    if text.is_file():
        saved = torch.load(text, map_location="cpu", weights_only=False)
        if any(k.startswith("word_head.") for k in saved["state"]):
            model = VideoTextModel(saved["vocab"], TowerConfig(**saved["config"]))
            model.load_state_dict(saved["state"])
            head = (model.text.vocab, model.word_head.eval())
    feats, logits = [], []
    for i in range(0, len(frames), batch):
        x = normalise(frames[i : i + batch])
        h = tower(pixel_values=x.flatten(0, 1)).last_hidden_state
        h = h.reshape(x.shape[0], -1, h.shape[-1])  # (B, T*h*w, E)
        feats += [pool(v) for v in h]
        if head is not None:
            logits.append(head[1](h).amax(1))
    return torch.stack(feats), (head[0], torch.cat(logits)) if head is not None else None


@torch.no_grad()
def vlm_features(model_dir: Path, split_dir: Path, names: list[str], frames: int, batch: int = 8) -> torch.Tensor:
    """Mean + max of the visual tokens a TrajVLM model's connector makes of each video."""
    from trajvlm.inference import load_model

    model, processor = load_model(model_dir, device="cpu")
    cfg = model.config
    out = []
    for i in range(0, len(names), batch):
        videos = [processor.load_video(split_dir / n, num_frames=frames) for n in names[i : i + batch]]
        pixels = processor.preprocess_videos(videos)
        enc = model.model.encode_videos(
            pixels,
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        out += [pool(t.float()) for t in enc.tokens]
    return torch.stack(out)


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC (ties count half); NaN when one class is absent."""
    pos, neg = scores[labels > 0], scores[labels <= 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def probe_auc(x_train, y_train, x_test, y_test, l2: float = 1e-2, iters: int = 200) -> list[float]:
    """Logistic regression per word (one joint fit, L2 on the weights) -> held-out AUC per word."""
    bce = F.binary_cross_entropy_with_logits
    scores = _common.linear_probe(x_train, y_train, x_test, y_train.shape[1], bce, l2, iters)
    return [auc(scores[:, j], y_test[:, j]) for j in range(y_test.shape[1])]


def group_means(per_word: list[float], words: list[str]) -> dict[str, float]:
    out = {}
    for group, members in word_groups().items():
        vals = [a for w, a in zip(words, per_word, strict=True) if w in members and not math.isnan(a)]
        out[group] = round(sum(vals) / len(vals), 3) if vals else math.nan
    return out


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    words = [w for ws in word_groups().values() for w in ws]
    t0 = time.time()
    train_frames, train_meta = read_videos(data / "train", args.train_videos, args.frames, args.size)
    test_frames, test_meta = read_videos(data / args.split, args.test_videos, args.frames, args.size)
    y_train = torch.stack([video_words(m, words) for m in train_meta])
    y_test = torch.stack([video_words(m, words) for m in test_meta])
    rows: dict[str, dict] = {}

    def add(name: str, x_train: torch.Tensor, x_test: torch.Tensor) -> None:
        per_word = probe_auc(x_train, y_train, x_test, y_test)
        rows[name] = {
            **group_means(per_word, words),
            "per_word": dict(zip(words, per_word, strict=True)),
            "dim": x_train.shape[1],
        }

    add("pixels", colour_histogram(train_frames), colour_histogram(test_frames))
    for tower_dir in map(Path, args.tower or []):
        x_train, _ = tower_features(tower_dir, train_frames)
        x_test, detectors = tower_features(tower_dir, test_frames)
        add(f"tower {tower_dir}", x_train, x_test)
        if detectors is not None:
            vocab, logits = detectors
            per_word = [
                auc(logits[:, vocab.index(w)], y_test[:, j]) if w in vocab else math.nan for j, w in enumerate(words)
            ]
            rows[f"tower detectors {tower_dir}"] = {
                **group_means(per_word, words),
                "per_word": dict(zip(words, per_word, strict=True)),
            }
    for vlm in map(Path, args.vlm or []):
        x_train = vlm_features(vlm, data / "train", [f"{m['id']}.mp4" for m in train_meta], args.frames)
        x_test = vlm_features(vlm, data / args.split, [f"{m['id']}.mp4" for m in test_meta], args.frames)
        add(f"tokens {vlm}", x_train, x_test)
    result = {
        "train_videos": len(train_meta),
        "split": args.split,
        "test_videos": len(test_meta),
        "frames": args.frames,
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
    }
    print(
        f"\nLinear probe, held-out ROC AUC (0.5 = no information), {len(train_meta)} train / {len(test_meta)} {args.split} videos"
    )
    table = [
        [name, *(f"{row[group]:.3f}" for group in ("colours", "shapes", "textures"))] for name, row in rows.items()
    ]
    _common.print_table(["features", "colours", "shapes", "textures"], table, "lrrr")
    _common.write_json(args.json, result, indent=2)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = _common.probe_arguments(__doc__, 800, "a `trajtok synth --out` folder (train + test)")
    ap.add_argument("--vlm", nargs="*", help="TrajVLM model folders whose connector tokens to probe")
    ap.add_argument("--size", type=int, default=64, help="frame side the towers read")
    return _common.run_cli(run, ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
