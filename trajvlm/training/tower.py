"""Pretrain the base's SigLIP vision tower on a synthetic world: SigLIP's sigmoid loss (video <-> caption) + patch words.

    trajvlm pretrain-tower --data runs/demo/data --out runs/demo/tower              # CPU, a few minutes
    trajvlm pretrain-tower --data runs/demo/data --out runs/demo/tower steps=50    # key=value overrides
    trajvlm build-base --llm smollm2 --tower runs/demo/tower --out runs/demo/base  # the base then reads it

No pretrained vision weights can be installed here, so the demo learns its own: a small ``SiglipVisionModel``
(the llava-hf tower class) reads ``frames`` frames of every training video; the mean of its patch features over
space and time is the video embedding. A small transformer over the caption's words is the text side. Both train
with the pairwise sigmoid loss of SigLIP (learnable temperature and bias), on each video's first caption of the
world (the cast: colour, texture, shape and motion of every object and the background). A pooled contrastive loss
alone leaves single patches poor at naming what they show (a linear probe reads the objects' colours from the
features at AUC 0.69, from a plain colour histogram of the frames at 0.90), and a VLM reads single patches or
trajectories; so a second loss trains one word detector per caption word on every patch, the video's score for a
word being its best patch over space and time (multiple-instance learning, as the word detectors of Fang et al.
2015, "From captions to visual concepts and back"), with binary cross-entropy against the caption's words. Retrieval R@1 / R@5 (video -> caption and caption -> video) on a held-out split (val;
``eval_split``) measures what was learned. Outputs: ``out/vision/`` (a ``SiglipVisionModel`` checkpoint that ``build-base
--tower`` loads), ``out/text.pt`` (the caption encoder and its vocabulary), ``out/tower_metrics.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from trajtok.io.labels import load_labels
from trajtok.io.video import load_video, sample_indices
from trajtok.synth.text import colour_at
from trajtok.synth.world import COLOURS, SHAPES
from trajvlm.training.config import config_from_overrides
from trajvlm.training.tower_scenes import SceneSampler, scene_batches, scene_settings

logger = logging.getLogger(__name__)

METRICS_NAME = "tower_metrics.json"


@dataclass
class TowerConfig:
    """Tower geometry and the contrastive recipe."""

    # frame side in pixels the tower reads (the VLM processor resizes to it)
    image_size: int = 64
    # ViT patch side: the patch grid is (image_size // patch_size) squared
    patch_size: int = 8
    # tower width
    hidden_size: int = 96
    # tower depth
    num_layers: int = 3
    # tower attention heads (must divide hidden_size)
    num_heads: int = 2
    # width of the caption encoder
    text_width: int = 96
    # depth of the caption encoder
    text_layers: int = 2
    # longest caption in words (longer ones are cut)
    max_words: int = 48
    # width of the shared embedding space
    embed_dim: int = 96
    # frames per video read in training and evaluation (uniform over the video)
    frames: int = 4
    # optimizer steps
    steps: int = 300
    # videos per step (the sigmoid loss compares every video with every caption of the batch)
    batch_size: int = 64
    # AdamW peak learning rate (linear warm-up over the first 5 % of steps, then cosine)
    lr: float = 2e-3
    # AdamW weight decay
    weight_decay: float = 0.05
    # initial logit scale t' (SigLIP: log 10) and bias (SigLIP: -10)
    init_logit_scale: float = math.log(10.0)
    init_logit_bias: float = -10.0
    # torch seed for initialisation and batches
    seed: int = 0
    # the most training videos read (0 = all of the split)
    max_videos: int = 0
    # held-out split that retrieval is measured on (val: nothing that trains or chooses reads test)
    eval_split: str = "val"
    # weight of the patch-level word loss (multiple-instance word detectors; 0 = the sigmoid loss alone). The loss
    # is a mean over the whole caption vocabulary, mostly easy absent words: at 1.0 the colour detectors reach
    # AUC 0.68 in 200 steps, at 20 0.92 (held-out videos of the demo's world)
    word_weight: float = 20.0
    # weight of the patch-label loss (0 = off): every patch is classified by the shape and by the colour of the
    # object covering most of its pixels (or background), read from the world's trajectory masks (the ``.npz``
    # beside each video) and records. The caption losses teach colour but leave shapes near chance at 8 px patches
    # (docs/long_video_world.md); a pretrained tower (SigLIP) names objects, and this is the synthetic world's stand-in
    patch_label_weight: float = 0.0
    # share of each batch drawn as fresh scenes of the world (trajvlm.training.tower_scenes: the world's renderer,
    # settings and caption words, new objects every step; 0 = the training videos only). On the training videos
    # alone the tower memorises which shapes go with which video instead of learning to see shapes
    scene_frac: float = 0.0
    # processes rendering those scenes while the tower trains (0: in the training process, between steps)
    scene_workers: int = 1

    def __post_init__(self) -> None:
        if self.image_size < self.patch_size or self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must divide by num_heads {self.num_heads}")
        for name in ("hidden_size", "num_layers", "text_width", "text_layers", "max_words", "embed_dim", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"steps must be >= 1 and batch_size >= 2, got {self.steps}, {self.batch_size}")
        if self.patch_label_weight < 0.0 or self.word_weight < 0.0:
            raise ValueError(
                f"word_weight and patch_label_weight must be >= 0, got {self.word_weight}, {self.patch_label_weight}"
            )
        if self.scene_workers not in (0, 1):
            raise ValueError(f"scene_workers must be 0 or 1, got {self.scene_workers!r}")
        if not 0.0 <= self.scene_frac <= 1.0:
            raise ValueError(f"scene_frac must be in [0, 1], got {self.scene_frac!r}")
        if not self.lr > 0.0 or self.weight_decay < 0.0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr!r}, {self.weight_decay!r}")
        if self.text_width % 2:
            raise ValueError(f"text_width must be even (2 heads), got {self.text_width}")
        if self.eval_split == "train" or not self.eval_split:
            raise ValueError(f"eval_split must name a held-out split (val or test), got {self.eval_split!r}")

    def vision_config(self):
        return SiglipVisionConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.hidden_size * 4,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            vision_use_head=False,
        )


# ---------------------------------------------------------------------------------------------------------------
# text side


def words(text: str) -> list[str]:
    """Lower-case words of a caption (punctuation dropped)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def word_targets(texts: list[str], vocab: list[str]) -> torch.Tensor:
    """(B, len(vocab)) 1 where the text holds the vocabulary word (words outside ``vocab`` are ignored)."""
    index = {w: i for i, w in enumerate(vocab)}
    out = torch.zeros(len(texts), len(vocab))
    for i, text in enumerate(texts):
        out[i, [index[w] for w in set(words(text)) if w in index]] = 1.0
    return out


class CaptionEncoder(nn.Module):
    """Word embeddings + a small transformer, mean-pooled over the caption's words -> (B, embed_dim)."""

    def __init__(self, vocab: list[str], cfg: TowerConfig) -> None:
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i + 2 for i, w in enumerate(self.vocab)}  # 0 = pad, 1 = unknown word
        self.max_words = cfg.max_words
        self.embed = nn.Embedding(len(self.vocab) + 2, cfg.text_width, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(cfg.max_words, cfg.text_width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.text_width, 2, cfg.text_width * 4, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.text_width)
        self.proj = nn.Linear(cfg.text_width, cfg.embed_dim)

    def ids(self, texts: list[str]) -> torch.Tensor:
        rows = [[self.index.get(w, 1) for w in words(t)][: self.max_words] or [1] for t in texts]
        out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out  # (B, L)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = self.ids(texts).to(self.pos.device)
        pad = ids == 0  # (B, L)
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, L, E)
        x = self.norm(self.encoder(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return self.proj((x * keep).sum(1) / keep.sum(1))  # (B, embed_dim)


# ---------------------------------------------------------------------------------------------------------------
# video side + loss


class VideoTextModel(nn.Module):
    """SigLIP tower (mean of patch features over space and time) and caption encoder with the sigmoid loss."""

    def __init__(self, vocab: list[str], cfg: TowerConfig) -> None:
        super().__init__()

        self.cfg = cfg
        self.vision = SiglipVisionModel(cfg.vision_config())
        self.video_proj = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.text = CaptionEncoder(vocab, cfg)
        self.logit_scale = nn.Parameter(torch.tensor(cfg.init_logit_scale))
        self.logit_bias = nn.Parameter(torch.tensor(cfg.init_logit_bias))
        # one detector per caption word, applied to every patch (Fang et al. 2015, "From captions to visual
        # concepts and back": a word is in the video's caption when some patch of some frame fires for it)
        self.word_head = nn.Linear(cfg.hidden_size, len(vocab))
        # patch labels, only when trained (patch_label_weight > 0): class 0 is background, then SHAPES / COLOURS
        if cfg.patch_label_weight > 0:
            self.shape_head = nn.Linear(cfg.hidden_size, len(SHAPES) + 1)
            self.colour_head = nn.Linear(cfg.hidden_size, len(COLOURS) + 1)

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, T, C, H, W) -> the tower's patch features (B, T*h*w, E)."""
        b = pixels.shape[0]
        feats = self.vision(pixel_values=pixels.flatten(0, 1)).last_hidden_state  # (B*T, h*w, E)
        return feats.reshape(b, -1, feats.shape[-1])

    def encode_video(self, pixels: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """pixels (B, T, C, H, W) normalised like the VLM processor -> unit embeddings (B, embed_dim)."""
        feats = self.patch_features(pixels) if feats is None else feats
        return F.normalize(self.video_proj(feats.mean(1)), dim=-1)  # mean over space and time

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text(texts), dim=-1)  # (B, embed_dim)

    def word_targets(self, texts: list[str]) -> torch.Tensor:
        """(B, vocab) 1 where the caption holds the word."""
        return word_targets(texts, self.text.vocab)

    def word_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, N, E) patch features -> (B, vocab) video-level word logits: the max over patches and frames."""
        return self.word_head(feats).amax(1)

    def loss(self, pixels: torch.Tensor, texts: list[str], patch_labels: torch.Tensor | None = None) -> torch.Tensor:
        """SigLIP's pairwise sigmoid loss (every (video, caption) pair is a binary match / no-match decision),
        plus ``word_weight`` x the multiple-instance word loss, which makes single patches name what they show,
        plus ``patch_label_weight`` x the cross-entropy of each patch's shape and colour (``patch_labels``: (B, T,
        h*w, 2) class indices, shape then colour, from :func:`patch_labels`)."""
        feats = self.patch_features(pixels)
        zv, zt = self.encode_video(pixels, feats), self.encode_text(texts)
        logits = zv @ zt.T * self.logit_scale.exp() + self.logit_bias  # (B, B)
        labels = 2 * torch.eye(len(texts), device=logits.device) - 1  # +1 on the diagonal, -1 elsewhere
        loss = -F.logsigmoid(labels * logits).sum() / len(texts)
        if self.cfg.word_weight > 0:
            target = self.word_targets(texts).to(feats.device)
            loss = loss + self.cfg.word_weight * F.binary_cross_entropy_with_logits(self.word_logits(feats), target)
        if self.cfg.patch_label_weight > 0:
            if patch_labels is None:
                raise ValueError("patch_label_weight > 0 needs the patch labels of the batch")
            target = patch_labels.to(feats.device).reshape(-1, 2)  # (B*T*h*w, 2), in the features' order
            flat = feats.reshape(-1, feats.shape[-1])
            shape = F.cross_entropy(self.shape_head(flat), target[:, 0])
            colour = F.cross_entropy(self.colour_head(flat), target[:, 1])
            loss = loss + self.cfg.patch_label_weight * (shape + colour)
        return loss


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) -> float in [-1, 1] (SigLIP mean = std = 0.5, as the VLM processor)."""
    return frames.float().div(255.0).sub(0.5).div(0.5)


# ---------------------------------------------------------------------------------------------------------------
# data


def patch_labels(record: dict, masks: np.ndarray, frames: list[int], cfg: TowerConfig) -> torch.Tensor:
    """(T, h*w, 2) long: per sampled frame and patch (row-major, as the tower's patches), the class of the object
    covering most of the patch's pixels, as (shape, colour) indices (0 = background, else 1 + the index in
    SHAPES / COLOURS; the colour it shows in that frame). ``masks``: (frames, H, W) object id + 1 per pixel (0
    background), resized to the tower's frame side by nearest neighbour."""
    side, patch = cfg.image_size, cfg.patch_size
    grid = side // patch
    out = torch.zeros(len(frames), grid * grid, 2, dtype=torch.long)
    for k, t in enumerate(frames):
        m = masks[t]
        rows = (np.arange(side) * m.shape[0]) // side
        cols = (np.arange(side) * m.shape[1]) // side
        m = m[rows][:, cols].reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
        for j, pixels in enumerate(m):
            ids, counts = np.unique(pixels, return_counts=True)
            obj = int(ids[np.argmax(counts)]) - 1
            if obj >= 0:
                o = record["objects"][obj]
                out[k, j, 0] = SHAPES.index(o["shape"]) + 1
                out[k, j, 1] = COLOURS.index(colour_at(record, obj, t)) + 1
    return out


def read_split(
    data: str | Path, split: str, cfg: TowerConfig, limit: int = 0, *, with_patch_labels: bool = False
) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
    """uint8 frames (N, T, C, H, W) and the first caption of each video of ``data/split``; with
    ``with_patch_labels`` also their :func:`patch_labels` (N, T, h*w, 2), read from each video's ``.npz`` masks and
    ``.json`` record (None otherwise)."""

    data = Path(data)
    path = data / split / "captions.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected the output of `trajtok synth --out {data}`")
    first: dict[str, tuple[str, str]] = {}
    for row in json.loads(path.read_text()):
        first.setdefault(str(row["id"]), (str(row["video"]), str(row["conversations"][1]["value"])))
    items = list(first.values())[: limit or None]
    if not items:
        raise ValueError(f"{path} holds no captions")
    frames, texts, labels = [], [], []
    for video, text in items:
        path = data / split / video
        clip = load_video(path, num_frames=cfg.frames, size=(cfg.image_size, cfg.image_size))
        frames.append(clip.frames)
        texts.append(text)
        if with_patch_labels:
            record_path, mask_path = path.with_suffix(".json"), path.with_suffix(".npz")
            if not record_path.is_file():
                raise FileNotFoundError(f"{record_path} not found: patch labels need each video's world record")
            record, masks = json.loads(record_path.read_text()), load_labels(mask_path).masks
            labels.append(patch_labels(record, masks, sample_indices(len(masks), cfg.frames).tolist(), cfg))
    # (N, T, C, H, W), N captions, (N, T, h*w, 2) or None
    return torch.stack(frames), texts, torch.stack(labels) if with_patch_labels else None


@torch.no_grad()
def retrieval(model: VideoTextModel, frames: torch.Tensor, texts: list[str], batch: int = 64) -> dict[str, float]:
    """R@1 / R@5 in % for video -> caption and caption -> video over one split (pair i is the match)."""
    model.eval()
    zv = torch.cat([model.encode_video(normalise(frames[i : i + batch])) for i in range(0, len(frames), batch)])
    zt = torch.cat([model.encode_text(texts[i : i + batch]) for i in range(0, len(texts), batch)])
    sim = zv @ zt.T  # (N, N)
    out = {}
    for name, s in (("video_to_text", sim), ("text_to_video", sim.T)):
        rank = (s > s.diagonal()[:, None]).sum(1)  # how many candidates beat the true one
        for k in (1, 5):
            out[f"{name}_r{k}"] = 100.0 * (rank < k).float().mean().item()
    out["num_pairs"] = len(texts)
    return out


@torch.no_grad()
def patch_head_accuracy(
    model: VideoTextModel, frames: torch.Tensor, labels: torch.Tensor, batch: int = 64
) -> dict[str, float]:
    """Per-patch accuracy in % of a patch-label tower's shape and colour heads over the patches an object covers
    (``labels`` from :func:`read_split` with patch labels). On the training videos against a held-out split it
    measures what the heads memorised rather than learned."""
    if not hasattr(model, "shape_head"):
        raise ValueError("the tower has no patch heads (it was trained with patch_label_weight=0)")
    model.eval()
    right = {"shape": 0, "colour": 0}
    total = 0
    for i in range(0, len(frames), batch):
        feats = model.patch_features(normalise(frames[i : i + batch]))  # (B, T*h*w, E)
        target = labels[i : i + batch].reshape(feats.shape[0], -1, 2)
        on = target[..., 0] > 0
        right["shape"] += int((model.shape_head(feats).argmax(-1) == target[..., 0])[on].sum())
        right["colour"] += int((model.colour_head(feats).argmax(-1) == target[..., 1])[on].sum())
        total += int(on.sum())
    return {k: round(100.0 * v / max(1, total), 1) for k, v in right.items()} | {"object_patches": total}


def pretrain_tower(data: str | Path, out: str | Path, cfg: TowerConfig | None = None) -> dict:
    """Train the tower on ``data/train``, measure retrieval on ``data/<cfg.eval_split>`` (val by default), save;
    returns the metrics (retrieval under the split's name, and ``eval_split``)."""
    cfg = cfg or TowerConfig()
    data, out = Path(data), Path(out)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    scenes = round(cfg.batch_size * cfg.scene_frac)
    settings = scene_settings(data) if scenes else None  # a missing or bad manifest stops the run before any reading
    train_frames, train_texts, train_labels = read_split(
        data, "train", cfg, cfg.max_videos, with_patch_labels=cfg.patch_label_weight > 0
    )
    held_frames, held_texts, held_labels = read_split(
        data, cfg.eval_split, cfg, with_patch_labels=cfg.patch_label_weight > 0
    )
    logger.info(
        "read %d train / %d %s videos in %.0f s", len(train_texts), len(held_texts), cfg.eval_split, time.time() - t0
    )
    vocab = sorted({w for t in train_texts for w in words(t)})
    model = VideoTextModel(vocab, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    drawn_scenes = None
    if settings is not None:
        sampler = SceneSampler(settings, cfg.frames, cfg.seed)
        label = functools.partial(patch_labels, frames=list(range(cfg.frames)), cfg=cfg)
        drawn_scenes = scene_batches(
            sampler, scenes, cfg.image_size, cfg.scene_workers, label if cfg.patch_label_weight > 0 else None
        )
    t_train = time.time()
    model.train()
    for step in range(cfg.steps):
        idx = torch.randperm(len(train_texts), generator=gen)[: cfg.batch_size - scenes]
        frames, texts = train_frames[idx], [train_texts[i] for i in idx.tolist()]
        labels = train_labels[idx] if train_labels is not None else None
        if drawn_scenes is not None:
            more, more_texts, _, more_labels = next(drawn_scenes)  # labelled where they were rendered
            frames, texts = torch.cat([frames, more]), texts + more_texts
            if labels is not None:
                labels = torch.cat([labels, more_labels])
        pixels = normalise(frames)
        if torch.rand((), generator=gen) < 0.5:  # horizontal flip: captions name no left / right
            pixels = pixels.flip(-1)
            if labels is not None:  # the patch grid flips with the pixels
                g = cfg.image_size // cfg.patch_size
                labels = labels.reshape(*labels.shape[:2], g, g, 2).flip(3).reshape(labels.shape)
        loss = model.loss(pixels, texts, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == cfg.steps - 1:
            logger.info("tower step %d/%d loss %.4f", step + 1, cfg.steps, loss.item())
    train_s = time.time() - t_train
    n = len(held_texts)
    metrics = {
        "eval_split": cfg.eval_split,
        cfg.eval_split: retrieval(model, held_frames, held_texts),
        "train_subset": retrieval(model, train_frames[:n], train_texts[:n]),
        "train_s": round(train_s, 1),
        "final_loss": round(loss.item(), 4),
        "config": dataclasses.asdict(cfg),
    }
    if train_labels is not None and held_labels is not None:  # the patch heads on seen and on held-out videos
        metrics["patch_heads"] = {
            "train_subset": patch_head_accuracy(model, train_frames[:n], train_labels[:n]),
            cfg.eval_split: patch_head_accuracy(model, held_frames, held_labels),
        }
    out.mkdir(parents=True, exist_ok=True)
    model.vision.save_pretrained(out / "vision")
    torch.save({"vocab": vocab, "config": dataclasses.asdict(cfg), "state": model.state_dict()}, out / "text.pt")
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2))
    logger.info("tower retrieval on the %s split: %s", cfg.eval_split, metrics[cfg.eval_split])
    return metrics


def load_tower(path: str | Path):
    """The ``SiglipVisionModel`` saved by :func:`pretrain_tower` (``path`` or ``path/vision``)."""

    path = Path(path)
    folder = path / "vision" if (path / "vision" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no tower checkpoint at {path} (expected {path}/vision/config.json)")
    return SiglipVisionModel.from_pretrained(folder)


def load_video_text_model(path: str | Path) -> VideoTextModel:
    """The whole tower :func:`pretrain_tower` saved in ``path`` (``text.pt``): vision, caption encoder and heads."""
    text = Path(path) / "text.pt"
    if not text.is_file():
        raise FileNotFoundError(f"{text} not found: expected a folder written by `trajvlm pretrain-tower`")
    saved = torch.load(text, map_location="cpu", weights_only=False)
    model = VideoTextModel(saved["vocab"], TowerConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    return model.eval()


def parse_overrides(overrides: list[str]) -> TowerConfig:
    return config_from_overrides(TowerConfig, overrides)
