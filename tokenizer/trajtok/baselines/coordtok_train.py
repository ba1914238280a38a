"""``trajtok coordtok-train``: pretrain CoordTok (or the patch-autoencoder baseline) by l2 patch reconstruction.

    trajtok coordtok-train --out runs/coordtok                                    # paper geometry, synthetic world
    trajtok coordtok-train --out runs/ct model.image_size=64 model.num_frames=32 steps=500 batch_size=2
    trajtok coordtok-train --out runs/ct data=data/synth/train num_frames=32      # videos of a folder
    trajtok coordtok-train --out runs/ct --resume                                  # continue exactly

Config: :class:`CoordTokTrainConfig` (``key=value`` overrides, ``model.<field>=value`` for
:class:`~trajtok.baselines.coordtok.CoordTokConfig`; ``--config`` a YAML/JSON mapping of the same fields). Data:
``data=synthetic`` (default) renders fresh synthetic-world videos (``trajtok.synth.generate_video``) of the model's
size, the video of (step, slot) a pure function of the seed; a folder decodes its videos once
(``trajtok.io.video.load_video``, ``model.num_frames`` frames each, resized to ``model.image_size``).

Run folder, with the conventions of ``trajtok train``: ``train_config.json`` (resolved), ``metrics.jsonl`` (one JSON
per logged step), ``checkpoints/step_XXXXXXX/`` with ``model.safetensors`` + ``config.json`` (loadable with
``CoordTok.from_pretrained`` / ``PatchAutoencoder.from_pretrained``), ``train_state.pt`` (optimizer, scheduler,
step), ``rng_rank0.pt`` and ``train_config.json``, each written to a temporary folder renamed when complete. With the
optimizer, scheduler and RNG states saved, ``--resume`` continues exactly as if the run had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajtok.baselines.coordtok import CoordTokConfig, build_coordtok
from trajtok.io import config as config_io
from trajtok.io.checkpoints import (
    CHECKPOINTS,
    CONFIG_NAME,
    checkpoint_dirs,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from trajtok.io.video import load_video
from trajtok.synth import generate_video
from trajtok.training.optim import lr_lambda, param_groups

logger = logging.getLogger(__name__)


@dataclass
class CoordTokTrainConfig:
    """One CoordTok pretraining run."""

    model: dict[str, Any] = field(default_factory=dict)  # CoordTokConfig fields (defaults: the paper's geometry)
    data: str = "synthetic"  # "synthetic" (fresh synthetic-world videos) or a folder of videos
    objects: list[int] = field(default_factory=lambda: [2, 5])  # synthetic: objects per video (inclusive range)
    steps: int = 1000  # optimizer steps
    batch_size: int = 2  # videos per step
    lr: float = 3e-4  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup: int = 50  # linear warm-up steps (then cosine to min_lr_ratio)
    min_lr_ratio: float = 0.1  # final lr / peak lr
    grad_clip: float = 1.0  # gradient-norm clipping
    seed: int = 0  # seeds weights, data and patch sampling
    log_every: int = 10  # steps between metrics rows
    save_every: int = 200  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2  # newest checkpoints kept
    threads: int | None = None  # torch CPU threads (None: torch's default)
    max_seconds: float | None = None  # stop (and save) after this much training time; None = run all steps

    def __post_init__(self) -> None:
        self.model_config()  # validates the model fields
        if self.data != "synthetic" and not Path(self.data).is_dir():
            raise FileNotFoundError(f"data folder not found: {self.data} (or use data=synthetic)")
        for name in ("steps", "batch_size", "log_every", "save_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0, warmup >= 0, 0 <= min_lr_ratio <= 1; got {self.lr}, {self.warmup}, "
                             f"{self.min_lr_ratio}")  # fmt: skip
        if len(self.objects) != 2 or not 0 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"objects must be [low, high] with 0 <= low <= high, got {self.objects}")

    def model_config(self) -> CoordTokConfig:
        return CoordTokConfig.from_dict(dict(self.model))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "model": self.model_config().to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordTokTrainConfig:
        config_io.unknown_fields(cls, data)
        return cls(**data)


def load_config(path: str | os.PathLike | None, overrides: list[str]) -> CoordTokTrainConfig:
    """CoordTokTrainConfig from a YAML/JSON mapping (optional) plus ``key=value`` / ``model.<field>=value`` overrides."""
    return config_io.load_config(
        CoordTokTrainConfig, path, overrides, sections={"model": CoordTokConfig}, what="coordtok-train config"
    )


# ------------------------------------------------------------------------------------------------------- data


def synthetic_video(seed: int, num_frames: int, size: int, objects: tuple[int, int]) -> torch.Tensor:
    """One synthetic-world video (T, 3, H, W) float in [0, 1]; the same seed always gives the same video."""
    rng = np.random.default_rng(seed)
    video = generate_video(int(seed), num_frames, size, size, int(rng.integers(objects[0], objects[1] + 1)))
    return torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255.0


class VideoSource:
    """Training videos: synthetic (rendered per step) or a decoded folder."""

    def __init__(self, cfg: CoordTokTrainConfig) -> None:
        self.cfg = cfg
        self.model = cfg.model_config()
        self.videos: list[torch.Tensor] = []
        if cfg.data != "synthetic":
            exts = {".mp4", ".mkv", ".webm", ".avi", ".mov"}
            paths = sorted(p for p in Path(cfg.data).iterdir() if p.suffix.lower() in exts)
            if not paths:
                raise FileNotFoundError(f"no videos ({', '.join(sorted(exts))}) in {cfg.data}")
            size = self.model.image_size
            for p in paths:
                frames = load_video(p, num_frames=self.model.num_frames).frames.float() / 255.0  # (T, C, H, W)
                frames = torch.nn.functional.interpolate(frames, size=(size, size), mode="area")
                self.videos.append(frames)
            logger.info("decoded %d videos from %s", len(self.videos), cfg.data)

    def batch(self, step: int) -> torch.Tensor:
        """(B, T, 3, H, W) of ``step``: a pure function of (seed, step)."""
        cfg, m = self.cfg, self.model
        if not self.videos:
            seeds = [cfg.seed * 1_000_003 + step * cfg.batch_size + i for i in range(cfg.batch_size)]
            return torch.stack(
                [synthetic_video(s, m.num_frames, m.image_size, (cfg.objects[0], cfg.objects[1])) for s in seeds]
            )
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(len(self.videos), (cfg.batch_size,), generator=g).tolist()
        return torch.stack([self.videos[i] for i in idx])


# ------------------------------------------------------------------------------------------------ checkpoints


# ----------------------------------------------------------------------------------------------------- recipe


def train(cfg: CoordTokTrainConfig, out_dir: str | os.PathLike, resume: bool = False) -> Path:
    """Run the recipe; returns the last checkpoint folder."""
    run_dir = Path(out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_coordtok(cfg.model_config())
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
    )
    start = 0
    if resume:
        last = latest_checkpoint(run_dir)
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {run_dir / CHECKPOINTS}")
        start = load_checkpoint(last, model, optimizer, scheduler)
        logger.info("resumed from %s (step %d)", last, start)
    elif checkpoint_dirs(run_dir):
        raise ValueError(f"{run_dir} already has checkpoints; pass --resume to continue or choose a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    source = VideoSource(cfg)
    logger.info("%s: %.2fM parameters, %d tokens per video", cfg.model_config().kind,
                sum(p.numel() for p in model.parameters()) / 1e6, cfg.model_config().num_tokens)  # fmt: skip
    model.train()
    last = None
    t_start = time.perf_counter()
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        for step in range(start, cfg.steps):
            video = source.batch(step)
            loss = model(video).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            done = step + 1
            elapsed = time.perf_counter() - t_start
            out_of_time = cfg.max_seconds is not None and elapsed > cfg.max_seconds
            if done % cfg.log_every == 0 or done == cfg.steps or out_of_time:
                row = {"step": done, "loss": loss.item(), "grad_norm": grad.item(), "lr": scheduler.get_last_lr()[0],
                       "seconds": round(elapsed, 2)}  # fmt: skip
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                logger.info("step %d loss %.5f", done, row["loss"])
            if done % cfg.save_every == 0 or done == cfg.steps or out_of_time:
                last = save_checkpoint(run_dir, done, model, optimizer, scheduler, cfg.to_dict(), cfg.keep_checkpoints)
            if out_of_time:
                logger.info("max_seconds %.0f reached after %d steps", cfg.max_seconds, done)
                break
    final = last or latest_checkpoint(run_dir)
    assert final is not None  # a step saved one, or the run resumed from one
    return final


__all__ = ["CoordTokTrainConfig", "load_config", "train"]
