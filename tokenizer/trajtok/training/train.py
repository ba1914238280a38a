"""``trajtok train``: pretrain the TrajTok segmenter on trajectory labels (synthetic world or pseudo-labels).

    trajtok train --config quickstart --out runs/quickstart                      # shipped preset by name
    trajtok train --config my.yaml --out runs/x steps=2000 lr=5e-4 model.num_queries=32
    trajtok train --out runs/x --resume                                           # continue exactly
    torchrun --nproc_per_node 2 -m trajtok.cli train --config quickstart --out runs/ddp

The recipe, top to bottom: resolve the config (YAML preset + ``key=value`` overrides) -> seed -> datasets (decoded
once into memory) -> model (``model_preset`` + ``model:`` fields) -> AdamW (no decay on norms, biases, queries and
scales) with linear warm-up and cosine decay -> loop: batch -> forward (bf16 autocast if asked) -> Hungarian focal +
Dice loss -> backward -> clip -> step -> log / validate / checkpoint.

The batch of step s is a pure function of (seed, s): position p of the sample stream is video
``perm(seed, p // n)[p % n]`` with its window drawn from (seed, epoch, video). With the optimizer, scheduler and
RNG states in the checkpoint, ``--resume`` continues exactly as if the run had not stopped.

Run folder: ``train_config.json`` (resolved), ``metrics.jsonl`` (one JSON object per logged step, validation
rows carry ``val_*`` keys), ``checkpoints/step_XXXXXXX/`` (``model.safetensors`` + ``config.json``, loadable with
``TrajTok.from_pretrained``; ``train_state.pt`` with optimizer / scheduler / step; ``rng_rank{r}.pt``;
``train_config.json``), each written to a temporary folder and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from trajtok.checks import (
    MAX_FRAMES,
    check_field_types,
    check_values,
    reading_weights,
    remove_stale_temporaries,
)
from trajtok.core.configuration import TrajTokConfig
from trajtok.core.losses import BACKGROUND_MODES, segmentation_loss
from trajtok.core.modeling import TrajTok
from trajtok.data import TrajectoryClipDataset, collate
from trajtok.io import config as config_io
from trajtok.io.checkpoints import (
    CHECKPOINTS,
    CONFIG_NAME,
    WEIGHTS_FILE,
    Dist,
    latest_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from trajtok.training.evaluate import evaluate_model
from trajtok.training.optim import lr_lambda, param_groups
from trajtok.trajvit2 import TrajViT2, TrajViT2Config, build_for_training, evaluate_clip

logger = logging.getLogger(__name__)

MODEL_PRESETS = ("tiny", "paper")
OBJECTIVES = ("segmentation", "clip")
METRICS_NAME = "metrics.jsonl"
# TrainConfig fields that hold another config's fields, set one at a time with ``model.width=32``
SECTIONS = {"model": TrajTokConfig, "trajvit2": TrajViT2Config}


@dataclass
class TrainConfig:
    # --- data ---
    data: str = "data/synth"  # dataset folder: synth manifest.json, pseudo-label labels.json, or videos + npz
    train_split: str = "train"  # split of a synth dataset used for training
    val_split: str | None = "val"  # split used for validation during training (None: no validation)
    clip_len: int = 16  # frames per training clip
    stream_clips: int = 1  # consecutive clips per sample, each starting from the previous one's carried state (as
    # tokenize_video streams long video); the loss matches trajectories over all stream_clips x clip_len frames, so
    # identities must survive the carry (2-4 trains the carry gate; gradients cross model.carry_backprop_clips clips)
    label_size: int | None = None  # side of the target ids (None: the model's image_size)
    hflip: bool = True  # random horizontal flips of training clips
    # most frames between a training clip's frames: each clip draws its step in 1..max_frame_stride (as far as the
    # video is long enough). A VLM samples a few frames spread over the whole video (4 of 24-48 frames: steps of
    # 6-12), so a segmenter pretrained on consecutive frames only meets displacements it never saw
    max_frame_stride: int = 1
    max_videos: int | None = None  # use only the first N training videos (None: all)
    max_skip_fraction: float = 0.1  # fail if more than this fraction of the videos cannot be read
    # --- optimisation ---
    batch_size: int = 8  # clips per optimizer step, summed over all processes (divisible by the world size)
    steps: int = 1000  # optimizer steps in total
    lr: float = 1e-3  # peak learning rate of AdamW
    min_lr_ratio: float = 0.05  # the cosine decays to lr * min_lr_ratio at the last step
    warmup_steps: int = 50  # linear warm-up from lr / warmup_steps to lr
    weight_decay: float = 0.05  # AdamW weight decay (not applied to norms, biases, queries and scales)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    grad_clip: float | None = 1.0  # max global gradient norm (None: no clipping)
    seed: int = 0  # seeds the model init, the clip sampling and every RNG
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda"
    bf16: bool = False  # bf16 autocast for the forward pass (CPU autocast works but is slower than fp32 on most CPUs)
    threads: int | None = None  # torch CPU threads per process (None: cores / processes on this machine)
    # --- loss ---
    background: str = "trajectory"  # "trajectory": background is one more GT trajectory | "ignore": not supervised
    focal_weight: float = 1.0  # weight of the softmax focal loss
    dice_weight: float = 2.0  # weight of the Dice loss
    multires: bool = False  # also compute the loss on logits upsampled to the label resolution
    objective: str = "segmentation"  # "segmentation": segmenter pretraining (the trajectory encoder is not run, so
    # its weights stay at init; the checkpoint says so) | "clip": TrajViT2 (trajtok.trajvit2), video-text InfoNCE +
    # the segmentation terms on the labels, trajectory encoder and segmenter trained together
    clip_weight: float = 1.0  # weight of the InfoNCE loss (objective "clip")
    trajvit2: dict = field(default_factory=dict)  # TrajViT2Config fields (objective "clip"), e.g. video_encoder
    # --- bookkeeping ---
    out_dir: str = "runs/trajtok"  # run folder (--out overrides)
    log_every: int = 10  # steps between metrics.jsonl rows
    eval_every: int | None = None  # steps between validations on val_split (None: only at the end)
    eval_videos: int | None = 8  # validation videos (None: the whole split)
    save_every: int | None = None  # steps between checkpoints (None: only at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept in the run folder (older ones are deleted)
    stop_at: int | None = None  # stop after this step without finishing the schedule (then --resume continues)
    # --- model ---
    model_preset: str | None = "tiny"  # TrajTokConfig.tiny() / .paper() as the base, or None for the defaults
    model: dict = field(default_factory=dict)  # TrajTokConfig fields set on top of the preset
    # start a NEW run (step 0, fresh optimizer and schedule) from these weights: a checkpoint folder or a run folder
    # (its newest checkpoint), of a model with this run's config; --resume of a run with a checkpoint ignores it
    init_from: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, (dict, type(None))):
            self.model = dict(self.model or {})
        if isinstance(self.trajvit2, (dict, type(None))):
            self.trajvit2 = dict(self.trajvit2 or {})
        check_field_types(self)  # each field its declared kind, numbers finite: the error names the field
        # the TrajTokConfig fields under model: the same check, named model.<field> (int("ten") names neither);
        # an int tokens_per_trajectory is TrajTokConfig's shorthand for a one-element tuple
        shorthand = {k for k, v in self.model.items() if k == "tokens_per_trajectory" and isinstance(v, int)}
        try:
            self.model.update(check_values(TrajTokConfig, {k: v for k, v in self.model.items() if k not in shorthand}))
        except ValueError as e:
            raise ValueError(f"model.{e}") from None
        if len(self.betas) != 2 or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.clip_weight < 0:
            raise ValueError(f"clip_weight must be >= 0, got {self.clip_weight}")
        if self.trajvit2 and self.objective != "clip":
            raise ValueError(f"trajvit2 fields {sorted(self.trajvit2)} are set but objective is {self.objective!r}")
        for name in (
            "clip_len",
            "stream_clips",
            "batch_size",
            "steps",
            "log_every",
            "keep_checkpoints",
            "max_frame_stride",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_len * self.stream_clips > MAX_FRAMES:  # the frames of one sample are decoded and held at once
            raise ValueError(
                f"clip_len x stream_clips must be at most {MAX_FRAMES} frames per sample (trajtok.checks.MAX_FRAMES), "
                f"got {self.clip_len} x {self.stream_clips}"
            )
        for name in ("eval_every", "save_every", "stop_at", "max_videos", "eval_videos", "label_size", "threads"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {v}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.background not in BACKGROUND_MODES:
            raise ValueError(f"background must be one of {BACKGROUND_MODES}, got {self.background!r}")
        if self.focal_weight < 0 or self.dice_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got focal {self.focal_weight}, dice {self.dice_weight}")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        if self.model_preset is not None and self.model_preset not in MODEL_PRESETS:
            raise ValueError(f"model_preset must be one of {MODEL_PRESETS} or null, got {self.model_preset!r}")
        if self.init_from is not None and not str(self.init_from).strip():
            raise ValueError("init_from must be a checkpoint or run folder, or null; got an empty string")
        self.model_config()  # validate the model fields now, not after the data is decoded
        if self.objective == "clip":
            TrajViT2Config.from_dict({**self.trajvit2, "trajtok": self.model_config().to_dict()})

    def model_config(self) -> TrajTokConfig:
        """The TrajTokConfig: ``model_preset`` as the base, ``model`` fields on top."""
        if self.model_preset == "tiny":
            return TrajTokConfig.tiny(**self.model)
        if self.model_preset == "paper":
            return TrajTokConfig.paper(**self.model)
        return TrajTokConfig.from_dict(self.model)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        config_io.unknown_fields(cls, d)
        return cls(**d)


# ---------------------------------------------------------------------------------------------- configuration


def preset_path(name: str | os.PathLike) -> Path:
    """A YAML path, or the name of a shipped preset (``quickstart``, ``smoke``, ``paper``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = resources.files("trajtok") / "presets" / f"{name}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    names = sorted(p.name[:-5] for p in (resources.files("trajtok") / "presets").iterdir() if p.name.endswith(".yaml"))
    raise FileNotFoundError(f"training preset not found: {name} (not a file, nor a shipped preset: {names})")


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """TrainConfig from a YAML preset (or a train_config.json) plus ``key=value`` overrides (``model.<field>=`` and
    ``trajvit2.<field>=`` set one field of those sections)."""
    return config_io.load_config(TrainConfig, preset_path(path), overrides, sections=SECTIONS, what="TrainConfig")


# ------------------------------------------------------------------------------------------------- helpers


def setup_distributed(device: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def batch_indices(step: int, n: int, batch_size: int, seed: int, dist: Dist) -> list[tuple[int, int]]:
    """(video index, epoch) of this process's share of the batch of ``step``: a pure function of (seed, step)."""
    local = batch_size // dist.world
    out = []
    perms: dict[int, np.ndarray] = {}
    for j in range(local):
        p = step * batch_size + dist.rank * local + j
        epoch = p // n
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append((int(perms[epoch][p % n]), epoch))
    return out


# ---------------------------------------------------------------------------------------------------- recipe


class SegmentationLogits(torch.nn.Module):
    """The model's assignment logits (B, K, T, h0, w0) as a plain tensor output, so DDP can trace which
    parameters the loss reaches (it cannot look inside the TrajectoryTokens dataclass).

    With ``clip_len`` < T the clip is streamed in pieces of ``clip_len`` frames, each piece's queries starting
    from the previous piece's final queries (as ``TrajTok.tokenize_video`` does), and the logits are concatenated
    over time, so one loss supervises identities across pieces.
    """

    def __init__(self, model: TrajTok, clip_len: int | None = None):
        super().__init__()
        self.model = model
        self.clip_len = clip_len

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # Backbone + segmenter only: the trajectory encoder gets no gradient from this loss, so it is not run.
        # Clips stream with the model's carry rule; gradients cross at most carry_backprop_clips carried states.
        cfg = self.model.config
        b, t = pixel_values.shape[:2]
        step = self.clip_len or t
        logits, queries = [], None
        for i, s in enumerate(range(0, t, step)):
            init = self.model.segmenter.initial_queries(b, queries, carry=cfg.carry == "gated")  # (B, K, E)
            feats = self.model.encode_pixels(pixel_values[:, s : s + step])  # (B, t_s, h0, w0, E)
            queries, clip_logits = self.model.segmenter(feats, init, detach_perceiver=cfg.detach_features)
            logits.append(clip_logits)  # (B, K, t_s, h0, w0)
            if (i + 1) % cfg.carry_backprop_clips == 0:  # truncated backpropagation through the carried state
                queries = queries.detach()
        return torch.cat(logits, dim=2)  # (B, K, T, h0, w0)


def train(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, resume: bool = False) -> Path:
    """Run the recipe; returns the folder of the final checkpoint."""
    run_dir = Path(out_dir or cfg.out_dir)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist = setup_distributed(device)
    if device == "cuda" and dist.world > 1:
        device = f"cuda:{dist.local_rank}"
    if device == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // local_world))
    if cfg.batch_size % dist.world != 0:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of processes ({dist.world})")
    if cfg.init_from is not None:  # a missing checkpoint fails now, before the data is decoded; the run's config
        cfg = dataclasses.replace(cfg, init_from=str(init_checkpoint(cfg.init_from)))  # records the folder read
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model_cfg = cfg.model_config()
    model: TrajTok | TrajViT2 | None = TrajTok(model_cfg).to(device) if cfg.objective == "segmentation" else None
    size = model_cfg.image_size
    data = TrajectoryClipDataset(
        cfg.data,
        cfg.train_split,
        cfg.clip_len * cfg.stream_clips,
        size,
        label_size=cfg.label_size,
        train=True,
        hflip=cfg.hflip,
        max_frame_stride=cfg.max_frame_stride,
        max_videos=cfg.max_videos,
        max_skip_fraction=cfg.max_skip_fraction,
        seed=cfg.seed,
        progress=dist.main,
    )
    if model is None:  # objective "clip": the text tokenizer is trained on the training captions first
        model = build_for_training(cfg.trajvit2, model_cfg, [c for v in data.videos for c in v.captions]).to(device)
    model.train()
    logger.info(
        "%d training videos (%d skipped), model %.2fM parameters, %d process(es) on %s",
        len(data),
        len(data.skipped),
        model.num_parameters() / 1e6,
        dist.world,
        device,
    )

    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    )
    step = 0
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if dist.main:
            for stale in remove_stale_temporaries(run_dir / CHECKPOINTS, ".tmp_step_"):
                logger.warning("--resume: removed %s, left by a save that was cut short", stale)
        if ckpt is None:
            logger.warning("--resume: no checkpoint in %s, starting from scratch", run_dir)
        else:
            with reading_weights(ckpt, "checkpoint"):
                step = load_checkpoint(ckpt, model, optimizer, scheduler, dist)
            logger.info("resumed from %s at step %d", ckpt, step)
    if step == 0 and cfg.init_from is not None:
        load_init_weights(model, cfg.init_from)
        logger.info("initialised from %s (new run: step 0, fresh optimizer and schedule)", cfg.init_from)

    net: torch.nn.Module = model
    if cfg.objective == "segmentation":
        assert isinstance(model, TrajTok)  # built above for this objective
        net = SegmentationLogits(model, cfg.clip_len)
    if dist.world > 1:
        # Segmentation pretraining leaves the trajectory encoder without gradient: DDP must not wait for it.
        net = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
    use_bf16 = cfg.bf16 and (not device.startswith("cuda") or torch.cuda.is_bf16_supported())
    if cfg.bf16 and not use_bf16:
        logger.warning("bf16 requested but not supported on %s: training in fp32", device)
    last = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
    metrics = open(run_dir / METRICS_NAME, "a") if dist.main else None
    start_time = time.perf_counter()
    bar = tqdm(total=last, initial=step, desc="train", unit="step", disable=not dist.main, dynamic_ncols=True)
    sums: dict[str, float] = {}
    count = 0
    try:
        while step < last:
            t0 = time.perf_counter()
            batch = collate(
                [data.sample(i, epoch) for i, epoch in batch_indices(step, len(data), cfg.batch_size, cfg.seed, dist)]
            )
            pixels = batch["pixel_values"].to(device, non_blocking=True)  # (B, T, 3, H, W)
            targets = batch["target_ids"].to(device, non_blocking=True)  # (B, T, H', W')
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
                if cfg.objective == "clip":
                    losses = net(pixels, _captions(batch), targets, **_clip_loss_kwargs(cfg))
                else:
                    logits = net(pixels)  # (B, K, T, h0, w0)
            if cfg.objective == "segmentation":
                losses = segmentation_loss(
                    logits.float(),
                    targets,
                    background=cfg.background,
                    focal_weight=cfg.focal_weight,
                    dice_weight=cfg.dice_weight,
                    multires=cfg.multires,
                )
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                if cfg.grad_clip is not None
                else torch.zeros(())
            )
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1

            names = [k for k in ("loss", "focal", "dice", "clip", "temperature", "tokens") if k in losses]
            values = torch.stack([losses[k].detach().float() for k in names])
            if dist.world > 1:
                torch.distributed.all_reduce(values)
                values /= dist.world
            for name, v in zip(names, values.tolist(), strict=True):
                sums[name] = sums.get(name, 0.0) + v
            count += 1
            bar.update(1)
            bar.set_postfix(loss=f"{values[0].item():.4f}", lr=f"{lr:.2e}")
            if step % cfg.log_every == 0 or step == last:
                row = {"step": step, **{k: v / count for k, v in sums.items()}, "lr": lr}
                row.update(grad_norm=float(grad_norm), step_time=time.perf_counter() - t0)
                row["time"] = time.perf_counter() - start_time
                sums, count = {}, 0
                if metrics:
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
            finished = step == cfg.steps
            # Save before validating: a validation failure (unreadable validation data) never costs a checkpoint.
            if (cfg.save_every and step % cfg.save_every == 0) or step == last:
                ckpt = save_checkpoint(
                    run_dir, step, model, optimizer, scheduler, cfg.to_dict(), cfg.keep_checkpoints, dist
                )
            if cfg.val_split and ((cfg.eval_every and step % cfg.eval_every == 0) or finished):
                validate(model, cfg, step, metrics, dist, time.perf_counter() - start_time)
    finally:
        bar.close()
        if metrics:
            metrics.close()
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:  # resumed a run that was already complete
        ckpt = save_checkpoint(run_dir, step, model, optimizer, scheduler, cfg.to_dict(), cfg.keep_checkpoints, dist)
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return ckpt


def init_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder ``init_from`` names (a run folder: its newest checkpoint); FileNotFoundError naming
    ``path`` when there is none."""
    try:
        return resolve_checkpoint(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"init_from: {e}") from None


def load_init_weights(model: Any, path: str | os.PathLike) -> None:
    """Load the weights of checkpoint folder ``path`` into ``model``; a checkpoint of another architecture or
    size is a ValueError naming ``path`` and the keys that differ."""
    path = Path(path)
    with reading_weights(path, "init_from checkpoint"):
        state = load_file(str(path / WEIGHTS_FILE)) if hasattr(model, "load_state_dict_strict") else None
    try:
        if state is not None:
            model.load_state_dict_strict(state, source=f"init_from {path}")
        else:
            with reading_weights(path, "init_from checkpoint"):
                model.load_weights(path)
    except (ValueError, RuntimeError) as e:
        if "corrupt" in str(e):  # reading_weights' own message: already names the file
            raise
        raise ValueError(
            f"init_from {str(path)!r} does not fit this run's model (its config must match the run's model): {e}"
        ) from None


def _captions(batch: dict) -> list[str]:
    if "caption" not in batch:
        raise ValueError(
            f"objective 'clip' needs a caption for every clip; videos {batch['video_id']} include some without one"
        )
    return batch["caption"]


def _clip_loss_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    return dict(
        clip_weight=cfg.clip_weight,
        focal_weight=cfg.focal_weight,
        dice_weight=cfg.dice_weight,
        background=cfg.background,
        multires=cfg.multires,
    )


def validate(model: Any, cfg: TrainConfig, step: int, metrics: Any, dist: Dist, elapsed: float) -> None:
    """Space-time mIoU / association (objective "clip": held-out retrieval) on a few validation videos (rank 0),
    logged with ``val_`` keys; unreadable validation data is logged and training goes on."""
    if dist.main:
        assert cfg.val_split is not None  # validation runs only with a validation split
        was_training = model.training
        try:
            if cfg.objective == "clip":  # TrajViT2: held-out retrieval
                r = evaluate_clip(model, cfg.data, cfg.val_split, clip_len=cfg.clip_len, max_videos=cfg.eval_videos)
            else:
                r = evaluate_model(
                    model, cfg.data, cfg.val_split, max_videos=cfg.eval_videos, max_skip_fraction=cfg.max_skip_fraction
                )
        except (OSError, ValueError) as e:  # unreadable validation data: report it, keep training and checkpoints
            logger.error("step %d: validation on %s/%s failed: %s", step, cfg.data, cfg.val_split, e)
            if metrics:
                metrics.write(json.dumps({"step": step, "val_error": str(e), "time": elapsed}) + "\n")
                metrics.flush()
            r = None
        finally:
            model.train(was_training)
        if r is None:
            dist.barrier()
            return
        if cfg.objective == "clip":
            row = {"step": step, **{f"val_{k}": v for k, v in r.items()}, "time": elapsed}
            logger.info("step %d: val R@5 t2v %.1f v2t %.1f", step, r["r5_t2v"], r["r5_v2t"])
        else:
            row = {"step": step, "val_miou": r["miou"], "val_association": r["association"]}
            row.update(val_tokens=r["tokens_mean"], val_gt_objects=r["gt_objects_mean"], time=elapsed)
            logger.info(
                "step %d: val mIoU %.4f, association %.4f, tokens %.1f",
                step,
                r["miou"],
                r["association"],
                r["tokens_mean"],
            )
        if metrics:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
    dist.barrier()
