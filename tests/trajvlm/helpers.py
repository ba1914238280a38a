"""Helpers shared by the trajvlm tests: a tiny base checkpoint built once, seeded videos, tiny TrajVLM models."""

from __future__ import annotations

from pathlib import Path

import torch

# Geometry of the tiny base: 64 px frames, patch 8 -> an 8x8 patch grid; LLM width 64.
IMAGE_SIZE = 64
PATCH_SIZE = 8
LLM_HIDDEN = 64


def tiny_base(tmp_path_factory, name: str = "tiny_base", **kwargs) -> Path:
    """Build the tiny LLaVA-OneVision base (random weights, local tokenizer, processor) into a fresh temp dir."""
    from trajvlm.training.base import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp(name), **kwargs)


def random_video(num_frames: int = 4, height: int = 48, width: int = 40, seed: int = 0) -> torch.Tensor:
    """Seeded uint8 video (T, C, H, W) with a few bright moving blocks over noise (so segmenters see objects)."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 60, (num_frames, 3, height, width), generator=g, dtype=torch.uint8)
    for k in range(3):
        colour = torch.randint(80, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
        size = max(4, height // 4)
        for t in range(num_frames):
            y = (int(torch.randint(0, height - size, (1,), generator=g)) + 2 * t) % (height - size)
            x = (k * width // 3 + 3 * t) % (width - size)
            video[t, :, y : y + size, x : x + size] = colour
    return video


def tiny_trajtok_config(**overrides):
    """A tiny TrajTok config for connector tests (TrajTok's ``tiny()`` preset with 16 trajectory queries)."""
    from trajtok import TrajTokConfig

    return TrajTokConfig.tiny(**{"num_queries": 16, **overrides})


def tiny_trajvlm(base_path: Path, *, connector: str = "trajtok", seed: int = 0, **kwargs):
    """(model, processor): a TrajVLM on the tiny base with a tiny TrajTok connector, in eval mode, processor synced."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    if connector == "trajtok":
        kwargs.setdefault("trajtok", tiny_trajtok_config())
    torch.manual_seed(seed)
    model = TrajVLMForConditionalGeneration.from_llava(base_path, connector=connector, **kwargs).eval()
    return model, TrajVLMProcessor.from_pretrained(base_path).for_model(model.config)


def tiny_warmup_config(steps: int, **overrides):
    """A ``WarmupConfig`` that runs in seconds: ``steps`` steps of 4 videos, 4 videos held out, learning rate 1e-2,
    every caption word a target (no document-frequency floor)."""
    from trajvlm.training.warmup import WarmupConfig

    values = {"steps": steps, "batch_size": 4, "held_out": 4, "lr": 1e-2, "min_doc_freq": 0.0}
    return WarmupConfig(**{**values, **overrides})


def save_tiny_trajvlm(base_path: Path, out: Path, *, connector: str = "trajtok", **processor_settings) -> Path:
    """:func:`tiny_trajvlm` saved in ``out`` like a real checkpoint; ``processor_settings`` (``num_frames=4``,
    ``fps=None``, ...) are set on its processor first."""
    model, processor = tiny_trajvlm(base_path, connector=connector)
    model.save_pretrained(out)
    for name, value in processor_settings.items():
        setattr(processor, name, value)
    processor.save_pretrained(out)
    return out
