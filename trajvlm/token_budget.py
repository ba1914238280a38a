"""Helpers shared by connectors whose token count depends on the video (vtok, tome, trajvit, coordtok).

- :func:`finish_tokens`: per-video token lists -> :class:`~trajvlm.connectors.ConnectorOutput` in the config's
  ``token_mode``: ``adaptive`` returns every video's own tokens (the model splices them in, one ``<video>`` per
  video); ``fixed`` pads / truncates each video to ``video_token_budget`` tokens and marks the real ones in
  ``extra["valid"]`` (padding tokens are exact zeros and are masked out of attention by the model).
- :func:`raw_frames`: the tower's normalised input back to RGB in [0, 1] (connectors that look at pixels).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from trajvlm.connectors.base import ConnectorOutput

logger = logging.getLogger(__name__)

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def finish_tokens(
    name: str, per_video: list[torch.Tensor], token_mode: str, budget: int, extra: dict[str, Any] | None = None
):
    """Per-video (N_i, D) tensors -> ``ConnectorOutput`` honouring ``token_mode`` (see the module docstring)."""

    extra = dict(extra or {})
    if token_mode == "adaptive":
        counts = [int(t.shape[0]) for t in per_video]
        return ConnectorOutput(tokens=per_video, num_tokens=counts, extra=extra)
    padded, valid = [], []
    for i, tok in enumerate(per_video):
        n = int(tok.shape[0])
        if n > budget:
            logger.debug("%s connector: video %d has %d tokens, truncated to the budget %d", name, i, n, budget)
            tok, n = tok[:budget], budget
        padded.append(F.pad(tok, (0, 0, 0, budget - n)))  # (budget, D), zeros after the real tokens
        valid.append(torch.arange(budget, device=tok.device) < n)
    stacked = torch.stack(padded)  # (V, budget, D)
    valid_t = torch.stack(valid)  # (V, budget)
    extra.update(stacked=stacked, valid=valid_t, valid_counts=[int(v) for v in valid_t.sum(-1).tolist()])
    return ConnectorOutput(tokens=list(stacked.unbind(0)), num_tokens=[budget] * len(per_video), extra=extra)


def raw_frames(pixel_values_videos: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """(V, T, 3, H, W) normalised tower input -> RGB in [0, 1], undoing ``image_mean`` / ``image_std`` of kwargs."""
    mean = torch.tensor(kwargs.get("image_mean", SIGLIP_MEAN), dtype=pixel_values_videos.dtype)
    std = torch.tensor(kwargs.get("image_std", SIGLIP_STD), dtype=pixel_values_videos.dtype)
    mean, std = (
        mean.to(pixel_values_videos.device).view(1, 1, 3, 1, 1),
        std.to(pixel_values_videos.device).view(1, 1, 3, 1, 1),
    )
    return (pixel_values_videos * std + mean).clamp(0.0, 1.0)


def to_uint8_frames(frames: torch.Tensor) -> Any:
    """(T, 3, H, W) RGB in [0, 1] -> numpy uint8 (T, H, W, 3), the layout of the pseudo-label pipeline."""
    return (frames.detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def check_kwargs(name: str, kwargs: dict[str, Any], allowed: set[str]) -> None:
    """Unknown connector kwargs are an error (a typo would otherwise silently fall back to a default)."""
    unknown = sorted(set(kwargs) - allowed - {"image_mean", "image_std"})
    if unknown:
        raise ValueError(
            f"unknown connector_kwargs {unknown} for the {name!r} connector; valid: "
            f"{', '.join(sorted(allowed | {'image_mean', 'image_std'}))}"
        )


__all__ = ["check_kwargs", "finish_tokens", "raw_frames", "to_uint8_frames"]
