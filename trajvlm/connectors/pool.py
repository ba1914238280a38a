"""The ``pool`` connector: upstream LLaVA-OneVision's 2-D pooling of every frame's patch grid, then a newline token.

With the defaults (bilinear, stride 2) the tokens, their count and the logits are exactly upstream's, so a model
with this connector can be written as a plain ``llava_onevision`` checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from trajvlm.connectors.base import Connector, ConnectorOutput

POOL_MODES = ("bilinear", "average", "max")


def pooled_grid(grid: int, stride: int = 2, mode: str = "bilinear") -> int:
    """Side of the pooled token grid for a ``grid x grid`` patch grid (upstream: bilinear to ``ceil(grid / 2)``)."""
    if mode == "bilinear":
        return math.ceil(grid / stride)
    if mode in ("average", "max"):
        return grid // stride
    raise ValueError(f"unknown pool mode {mode!r}; expected one of 'bilinear', 'average', 'max'")


class PoolConnector(Connector):
    """Upstream LLaVA-OneVision: 2-D pooling of every frame's patch grid, then one newline token per video.

    kwargs: ``mode`` ``"bilinear"`` (upstream ``apply_pooling``: interpolate to ``ceil(g/stride)``), ``"average"``
    or ``"max"`` (LLaVA-NeXT ``get_2dPool``: ``floor(g/stride)``); ``stride`` (2).
    """

    name = "pool"
    expands_in_processor = True
    strides_patch_grid = True

    @classmethod
    def tokens_per_video(cls, num_frames: int, *, grid: int, connector_kwargs: dict[str, Any]) -> int:
        side = pooled_grid(grid, int(connector_kwargs.get("stride", 2)), connector_kwargs.get("mode", "bilinear"))
        return num_frames * side * side + 1  # +1: the newline token after the video

    @classmethod
    def upstream_problem(cls, connector_kwargs: dict[str, Any]) -> str | None:
        mode, stride = connector_kwargs.get("mode", "bilinear"), int(connector_kwargs.get("stride", 2))
        if (mode, stride) != ("bilinear", 2):
            return f"its pool connector uses mode={mode!r}, stride={stride}; upstream pools bilinear with stride 2"
        return None

    def __init__(self, config) -> None:
        super().__init__(config)
        self.mode = self.kwargs.get("mode", "bilinear")
        self.stride = int(self.kwargs.get("stride", 2))
        if self.mode not in POOL_MODES:
            raise ValueError(f"pool mode must be 'bilinear', 'average' or 'max', got {self.mode!r}")
        if self.stride < 1:
            raise ValueError(f"pool stride must be >= 1, got {self.stride}")

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(V*T, h*w, D) -> (V*T, p*p, D); with the defaults exactly upstream ``apply_pooling``."""
        batch_frames, _, dim = features.shape
        x = features.view(batch_frames, self.grid, self.grid, -1)
        x = x.permute(0, 3, 1, 2).contiguous()  # (VT, D, h, w)
        if self.mode == "bilinear":
            size = [math.ceil(self.grid / self.stride), math.ceil(self.grid / self.stride)]
            x = F.interpolate(x, size=size, mode="bilinear")
        elif self.mode == "average":
            x = F.avg_pool2d(x, self.stride)
        else:
            x = F.max_pool2d(x, self.stride)
        x = x.permute(0, 2, 3, 1)
        return x.view(batch_frames, -1, dim)  # (VT, p*p, D)

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None) -> ConnectorOutput:
        num_videos = self._check(features, pixel_values_videos, num_frames)
        pooled = self.pool(features)
        pooled = pooled.reshape(num_videos, num_frames * pooled.shape[1], -1)  # (V, T*p*p, D)
        if newline is not None:
            pooled = torch.cat((pooled, newline[None, None, :].repeat(num_videos, 1, 1).to(pooled.device)), dim=1)
        tokens = list(pooled.unbind(0))
        return ConnectorOutput(tokens=tokens, num_tokens=[pooled.shape[1]] * num_videos, extra={"stacked": pooled})


__all__ = ["POOL_MODES", "PoolConnector", "pooled_grid"]
