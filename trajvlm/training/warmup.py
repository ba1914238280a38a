"""Stage 0: warm a new connector + projector up on the captions' words, before any LLM pass.

    trajvlm warmup --base runs/demo/base --train-json runs/demo/stage1.json --video-root runs/demo/data/train \\
        --out runs/demo/vlm-trajtok-warmup connector=trajtok trajtok=runs/demo/tokenizer/checkpoints/step_0000600
    trajvlm train --config trajvlm/presets/demo_stage1.yaml base_model=runs/demo/vlm-trajtok-warmup ...

A connector starts random (TrajTok's trajectory encoder, the projector), and the LLaVA recipe's stage 1 teaches it
through the frozen LLM: every step is a full LLM forward and backward, and a few dozen of them (what a CPU affords)
leave the visual tokens carrying little of the video. This stage is cheap instead: the tower and the connector
run, the LLM does not. Each caption's informative words (those in between ``min_doc_freq`` and ``max_doc_freq`` of
the captions that are one token of the LLM's vocabulary: colours, shapes, textures, motions in the synthetic world)
are the targets, and a video's score for a word is the best cosine, over its visual tokens, between a token and the
LLM's own input embedding of that word (scaled, plus a learned per-word bias), trained with binary cross-entropy
against the words of the video's caption (multiple-instance learning: some token must be "red" when the caption
says red). The visual tokens so learn to carry the video's words and to lie where the LLM already reads those words.
Trained: the projector and the connector (``frozen_modules``, default TrajTok's pretrained segmenter and its pixel
backbone, excepted). Every connector gets the same recipe. The tower is frozen: it runs once per video and the steps
train on its cached features (``cache_tower``), so a warm-up of a thousand steps costs minutes on a CPU. TrajTok's
pixel backbone and segmenter are frozen too (``frozen_modules``): their output for each video and clip (the query
states and assignment logits) is computed once as well (``cache_segmenter``), and the steps run only the parts
that train (TrajTok's projection of the tower features, its trajectory encoder, the projector).

Outputs a TrajVLM model folder (``from_pretrained``; stage 1 continues from it with ``base_model=``) and
``warmup_metrics.json``: the loss and the held-out word AUC (videos the warm-up never trained on) before and after.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from trajtok.core.modeling import TrajTok
from trajtok.nn.release_segmenter import ReleaseSegmenter
from trajtok.nn.segmenter import Segmenter
from trajvlm.modeling import TrajVLMForConditionalGeneration
from trajvlm.processing import TrajVLMProcessor
from trajvlm.training.config import config_from_overrides
from trajvlm.training.config import parse_overrides as parse_pairs
from trajvlm.training.data import load_samples
from trajvlm.training.tower import word_targets
from trajvlm.training.tower import words as split_words

logger = logging.getLogger(__name__)

METRICS_NAME = "warmup_metrics.json"
READ_AUC = 0.9  # a word the visual tokens carry: held-out AUC at least this


@dataclass
class WarmupConfig:
    """The connector to warm up and the recipe."""

    # connector added to a llava-hf base (ignored when --base is already a TrajVLM model)
    connector: str = "trajtok"
    # pretrained TrajTok checkpoint directory for the trajtok connector (None = random TrajTok)
    trajtok: str | None = None
    # trajtok only: tokens per trajectory (1, 2, 4; None = TrajTok's own choice)
    tokens_per_trajectory: int | None = None
    # most visual tokens per video of a new connector, kept in the saved model for the stages after it
    video_token_budget: int = 256
    # connector options for a new connector (e.g. {stride: 4} for pool: 4x4 pooling); kept in the saved config
    connector_kwargs: dict = field(default_factory=dict)
    # frames per video
    frames: int = 4
    # optimizer steps and videos per step
    steps: int = 300
    batch_size: int = 32
    # AdamW learning rate (linear warm-up over 5 % of the steps, then cosine)
    lr: float = 1e-3
    # connector parts kept as they are (name components, as TrainConfig.frozen_modules); default: TrajTok's
    # segmenter and the pixel backbone it reads, so the trajectories stay those TrajTok was pretrained for
    frozen_modules: list[str] = field(default_factory=lambda: ["segmenter", "features"])
    # a word is a target when it is in at least min_doc_freq and at most max_doc_freq of the captions
    min_doc_freq: float = 0.01
    max_doc_freq: float = 0.5
    # videos read (0 = all); the last held_out of them are never trained on and measure the word AUC
    max_videos: int = 0
    held_out: int = 64
    # initial cosine scale
    init_scale: float = 10.0
    # run the (frozen) tower once per video and train on its cached features: the same result, far fewer tower
    # passes (false: the tower runs in every step, as in the LLaVA stages)
    cache_tower: bool = True
    # trajtok with its pixel backbone and segmenter frozen: compute their outputs once per video and clip and train
    # on them (the same result; false: they run in every step)
    cache_segmenter: bool = True
    seed: int = 0
    # where the tower and connector run: "auto" (a CUDA GPU when there is one, else the CPU), "cpu", "cuda", "cuda:1"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.tokens_per_trajectory not in (None, 1, 2, 4):
            raise ValueError(f"tokens_per_trajectory must be 1, 2, 4 or null, got {self.tokens_per_trajectory!r}")
        if self.steps < 1 or self.batch_size < 1 or self.frames < 1:
            raise ValueError(
                f"steps, batch_size and frames must be >= 1, got {self.steps}, {self.batch_size}, {self.frames}"
            )
        if not self.lr > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.min_doc_freq < self.max_doc_freq <= 1.0:
            raise ValueError(
                f"need 0 <= min_doc_freq < max_doc_freq <= 1, got {self.min_doc_freq}, {self.max_doc_freq}"
            )
        if not isinstance(self.connector_kwargs, dict):
            raise ValueError(f"connector_kwargs must be a mapping, got {self.connector_kwargs!r}")
        if not isinstance(self.frozen_modules, list):
            raise ValueError(f"frozen_modules must be a list of module names, got {self.frozen_modules!r}")
        if self.device != "auto" and not str(self.device).startswith(("cpu", "cuda")):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")

    def torch_device(self) -> torch.device:
        """The device ``device`` names (``auto``: the first CUDA GPU when there is one)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} needs a CUDA GPU and none is available; use device=cpu or auto")
        return torch.device(self.device)


def caption_samples(train_json: str | Path, *, seed: int = 0) -> list[tuple[str, str]]:
    """(video, caption) per video of a LLaVA-format JSON: the first answer of its first sample.

    ``seed`` drives a mixture YAML's ``random:N`` picks, as in training (the same seed picks the same rows).
    """

    seen: dict[str, str] = {}
    for sample in load_samples(train_json, seed=seed):
        video = sample.get("video")
        answers = [t["value"] for t in sample.get("conversations", []) if t.get("from") == "gpt"]
        if video and answers:
            seen.setdefault(str(video), str(answers[0]))
    if not seen:
        raise ValueError(f"{train_json} holds no sample with a video and an answer")
    return list(seen.items())


def target_words(captions: list[str], tokenizer, min_df: float, max_df: float) -> tuple[list[str], list[int]]:
    """The informative words of the captions that the LLM spells as one token (" word"), and those token ids."""

    df = Counter(w for c in captions for w in set(split_words(c)))
    n = len(captions)
    chosen, ids = [], []
    for word, count in sorted(df.items()):
        if not (min_df * n <= count <= max_df * n) or word.isdigit():
            continue
        tok = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(tok) == 1 and tok[0] not in ids:
            chosen.append(word)
            ids.append(tok[0])
    if not chosen:
        raise ValueError("no caption word passes the document-frequency window and is one LLM token")
    return chosen, ids


class WordScorer(nn.Module):
    """Visual tokens -> word logits: max over tokens of cos(token, LLM embedding of the word) * scale + bias."""

    embeddings: torch.Tensor  # buffer (W, D)

    def __init__(self, embeddings: torch.Tensor, init_scale: float) -> None:
        super().__init__()
        self.register_buffer("embeddings", F.normalize(embeddings.float(), dim=-1), persistent=False)  # (W, D)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.full((embeddings.shape[0],), -init_scale / 2))

    def forward(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        best = torch.stack([(F.normalize(t.float(), dim=-1) @ self.embeddings.T).amax(0) for t in tokens])  # (B, W)
        return best * self.log_scale.exp() + self.bias


def word_aucs(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """ROC AUC of the logits per word (NaN where the held-out videos hold one class only)."""
    aucs = []
    for j in range(targets.shape[1]):
        pos, neg = logits[targets[:, j] > 0, j], logits[targets[:, j] <= 0, j]
        if len(pos) and len(neg):
            diff = pos[:, None] - neg[None, :]
            aucs.append(((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item())
        else:
            aucs.append(math.nan)
    return aucs


def mean_auc(aucs: list[float]) -> float:
    vals = [a for a in aucs if not math.isnan(a)]
    return sum(vals) / len(vals) if vals else math.nan


class _CachedSegmenter(nn.Module):
    """Stands in for TrajTok's frozen segmenter during the warm-up: returns the (queries, logits) it gave for the
    same video and clip, recorded once by :func:`cache_segmentation`. ``videos`` (the batch's video indices) is
    set before each encode; each call is the next clip of those videos."""

    def __init__(self, segmenter: Segmenter | ReleaseSegmenter) -> None:
        super().__init__()
        self.inner = segmenter
        self.queries = segmenter.queries  # TrajTok reads its device and dtype here
        self.store: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.videos: list[int] = []
        self.clip = 0
        self.recording = False

    def initial_queries(self, *args, **kwargs) -> torch.Tensor:
        return self.inner.initial_queries(*args, **kwargs)

    def start(self, videos: list[int], *, recording: bool = False) -> None:
        self.videos, self.clip, self.recording = videos, 0, recording

    def forward(self, features, init_queries=None, *, detach_perceiver: bool = True):
        clip, self.clip = self.clip, self.clip + 1
        if self.recording:
            queries, logits = self.inner(features, init_queries, detach_perceiver=detach_perceiver)
            for row, video in enumerate(self.videos):
                self.store.setdefault(video, []).append((queries[row].detach(), logits[row].detach()))
            return queries, logits
        queries = torch.stack([self.store[v][clip][0] for v in self.videos])  # (B, K, E)
        logits = torch.stack([self.store[v][clip][1] for v in self.videos])  # (B, K, t, h0, w0)
        return queries, logits


class _SkippedFeatures(nn.Module):
    """Stands in for TrajTok's frozen pixel backbone once the segmentation is cached: the segmenter no longer reads
    its features, so an empty tensor of the right shape replaces them (the tower features feed the encoder)."""

    def __init__(self, grid: int, width: int) -> None:
        super().__init__()
        self.grid, self.width = grid, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.grid, self.grid, self.width)  # (B*T, h0, w0, E)


def _trajtok(model: TrajVLMForConditionalGeneration) -> TrajTok:
    """The TrajTok of the model's trajtok connector."""
    return cast(TrajTok, model.model.connector.trajtok)


def can_cache_segmenter(model: TrajVLMForConditionalGeneration, cfg: WarmupConfig) -> bool:
    """True for a trajtok connector that reads pixels with its backbone and segmenter both frozen."""
    trajtok = getattr(model.model.connector, "trajtok", None)
    frozen = {"segmenter", "features"} <= set(cfg.frozen_modules)
    return cfg.cache_segmenter and trajtok is not None and trajtok.features is not None and frozen


def cache_segmentation(
    model: TrajVLMForConditionalGeneration, encode, num_videos: int, batch: int = 32
) -> tuple[_CachedSegmenter, tuple]:
    """Run the frozen backbone + segmenter once over every video (through ``encode``, the warm-up's own encoding)
    and swap in the cached stand-ins; returns the stand-in and the originals (for :func:`restore_segmenter`)."""
    trajtok = _trajtok(model)
    originals = (trajtok.segmenter, trajtok.features)
    cached = _CachedSegmenter(trajtok.segmenter)
    trajtok.segmenter = cached  # type: ignore[assignment]  # a stand-in with the segmenter's interface
    with torch.no_grad():
        for i in range(0, num_videos, batch):
            videos = list(range(i, min(i + batch, num_videos)))
            cached.start(videos, recording=True)
            encode(torch.tensor(videos))
    logits = next(iter(cached.store.values()))[0][1]  # (K, t, h0, w0)
    trajtok.features = _SkippedFeatures(logits.shape[-1], trajtok.config.width)  # type: ignore[assignment]  # stand-in
    return cached, originals


def restore_segmenter(model: TrajVLMForConditionalGeneration, originals: tuple) -> None:
    trajtok = _trajtok(model)
    trajtok.segmenter, trajtok.features = originals


def load_model(base: str | Path, cfg: WarmupConfig):
    base = Path(base)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {base}: expected a llava-hf base or a TrajVLM model folder")
    torch.manual_seed(cfg.seed)
    if json.loads((base / "config.json").read_text()).get("model_type") == "trajvlm":
        model = TrajVLMForConditionalGeneration.from_pretrained(base)
    else:
        extra: dict[str, Any] = {"connector_kwargs": cfg.connector_kwargs} if cfg.connector_kwargs else {}
        model = TrajVLMForConditionalGeneration.from_llava(
            base,
            connector=cfg.connector,
            trajtok=cfg.trajtok,
            tokens_per_trajectory=cfg.tokens_per_trajectory,
            video_token_budget=cfg.video_token_budget,
            **extra,
        )
    processor = TrajVLMProcessor.from_pretrained(base).for_model(model.config)
    return model, processor


def trainable(model: nn.Module, frozen: list[str]) -> list[nn.Parameter]:
    """Projector + connector parameters, without the ``frozen`` name components; everything else frozen."""
    model.requires_grad_(False)
    params = []
    for name, p in model.named_parameters():
        parts = name.split(".")
        if ("multi_modal_projector" in parts or "connector" in parts) and not any(f in parts for f in frozen):
            p.requires_grad_(True)
            params.append(p)
    if not params:
        raise ValueError("the model has no projector or connector weights to warm up")
    return params


def warmup(
    base: str | Path, train_json: str | Path, video_root: str | Path, out: str | Path, cfg: WarmupConfig
) -> dict:
    """Warm up ``base``'s connector + projector on the captions of ``train_json``; save to ``out``; the metrics."""
    t0 = time.time()
    model, processor = load_model(base, cfg)
    device = cfg.torch_device()
    model.to(device)
    samples = caption_samples(train_json, seed=cfg.seed)[: cfg.max_videos or None]
    if len(samples) <= cfg.held_out + 1:
        raise ValueError(f"{train_json}: {len(samples)} captioned videos, need more than held_out={cfg.held_out}")
    captions = [c for _, c in samples]
    vocab, ids = target_words(captions[: -cfg.held_out], processor.tokenizer, cfg.min_doc_freq, cfg.max_doc_freq)
    targets = word_targets(captions, vocab)  # the tower's own multi-hot caption words
    pixels = torch.cat(
        [
            processor.preprocess_videos(
                [processor.load_video(Path(video_root) / v, num_frames=cfg.frames) for v, _ in samples[i : i + 64]]
            )
            for i in range(0, len(samples), 64)
        ]
    )  # (N, T, 3, S, S)
    mcfg = model.config
    select = {
        "vision_feature_layer": mcfg.vision_feature_layer,
        "vision_feature_select_strategy": mcfg.vision_feature_select_strategy,
    }
    model.eval()  # the tower's and segmenter's layers as in inference; only the trainable parts get gradients
    # the tower never trains here: run it once per video, and train on its cached features (what it would give)
    cache = (
        torch.cat(
            [model.model.tower_features(pixels[i : i + 64].to(device), **select) for i in range(0, len(pixels), 64)]
        )
        if cfg.cache_tower
        else None
    )  # (N, T, h*w, D_tower)
    logger.info("read %d videos, %d target words in %.0f s", len(samples), len(vocab), time.time() - t0)
    scorer = WordScorer(model.get_input_embeddings().weight[ids].detach(), cfg.init_scale).to(device)
    params = trainable(model, cfg.frozen_modules)
    opt = torch.optim.AdamW([*params, *scorer.parameters()], lr=cfg.lr, weight_decay=0.0)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))
    )

    def encode(idx: torch.Tensor | slice) -> list[torch.Tensor]:
        tower = cache[idx] if cache is not None else None
        if segmentation is not None and not segmentation.recording:
            rows = range(len(pixels))[idx] if isinstance(idx, slice) else idx.tolist()
            segmentation.start(list(rows))
        return model.model.encode_videos(pixels[idx].to(device), tower_features=tower, **select).tokens

    segmentation, originals = None, None
    if can_cache_segmenter(model, cfg):
        t_seg = time.time()
        segmentation, originals = cache_segmentation(model, encode, len(pixels))
        segmentation.recording = False
        logger.info("cached TrajTok's frozen segmentation of %d videos in %.0f s", len(pixels), time.time() - t_seg)

    def held_out_auc() -> list[float]:
        with torch.no_grad():
            logits = torch.cat(
                [scorer(encode(slice(i, i + 32))) for i in range(len(pixels) - cfg.held_out, len(pixels), 32)]
            )
        return word_aucs(logits.cpu(), targets[-cfg.held_out :])

    before = mean_auc(held_out_auc())
    gen = torch.Generator().manual_seed(cfg.seed)
    n_train = len(samples) - cfg.held_out
    t_train = time.time()
    losses = []
    for step in range(cfg.steps):
        idx = torch.randint(n_train, (cfg.batch_size,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(scorer(encode(idx)), targets[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            logger.info("warmup step %d/%d loss %.4f", step + 1, cfg.steps, loss.item())
    train_s = time.time() - t_train
    after = held_out_auc()
    if originals is not None:  # the real modules back before saving
        restore_segmenter(model, originals)
    metrics: dict[str, Any] = {
        "held_out_word_auc_before": round(before, 4),
        "held_out_word_auc_after": round(mean_auc(after), 4),
        "held_out_auc_per_word": {w: round(a, 3) for w, a in zip(vocab, after, strict=True)},
        # the words the visual tokens carry: most caption words (function words, motions a frame cannot show) stay
        # near 0.5 whatever the training, and hide in the mean what the tokens learned
        "words_read": [w for w, a in zip(vocab, after, strict=True) if a >= READ_AUC],
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "words": vocab,
        "videos": n_train,
        "held_out": cfg.held_out,
        "train_s": round(train_s, 1),
        "segmenter_cached": segmentation is not None,
        "config": dataclasses.asdict(cfg),
    }
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2))
    logger.info(
        "held-out word AUC %.3f -> %.3f (%d words, %d read at >= %.1f, %.0f s)",
        before,
        metrics["held_out_word_auc_after"],
        len(vocab),
        len(metrics["words_read"]),
        READ_AUC,
        train_s,
    )
    return metrics


def parse_overrides(overrides: list[str], config: str | Path | None = None) -> WarmupConfig:
    """The WarmupConfig of a YAML preset (optional) with ``key=value`` overrides applied after it."""

    values: dict = {}
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"warm-up preset not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML ({err})") from err
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a YAML mapping of WarmupConfig fields, got {type(values).__name__}")
    return config_from_overrides(WarmupConfig, {**values, **parse_pairs(overrides)})
