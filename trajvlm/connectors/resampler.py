"""The ``resampler`` connector: ``video_token_budget`` learnable queries cross-attending to a video's features."""

from __future__ import annotations

import torch
from torch import nn

from trajvlm.connectors.base import Connector, ConnectorOutput


class ResamplerConnector(Connector):
    """Fixed learnable queries cross-attending to all of a video's features (``video_token_budget`` tokens).

    kwargs: ``heads`` (attention heads, default: D // 64 or 1).
    """

    name = "resampler"

    def __init__(self, config) -> None:
        super().__init__(config)
        d = self.hidden
        heads = int(self.kwargs.get("heads", max(1, d // 64)))
        if d % heads:
            raise ValueError(f"resampler heads ({heads}) must divide the LLM width {d}")
        self.num_queries = int(config.video_token_budget)
        self.queries = nn.Parameter(torch.randn(self.num_queries, d) * d**-0.5)
        self.norm_kv = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None) -> ConnectorOutput:
        num_videos = self._check(features, pixel_values_videos, num_frames)
        kv = self.norm_kv(features.reshape(num_videos, -1, features.shape[-1]))  # (V, T*h*w, D)
        q = self.queries[None].expand(num_videos, -1, -1).to(kv.dtype)  # (V, Q, D)
        x = q + self.attn(q, kv, kv, need_weights=False)[0]
        x = x + self.mlp(self.norm_out(x))  # (V, Q, D)
        return ConnectorOutput(
            tokens=list(x.unbind(0)), num_tokens=[self.num_queries] * num_videos, extra={"stacked": x}
        )


__all__ = ["ResamplerConnector"]
