"""The authors' released segmenter layout (``segmenter_variant = "release"``), so its weights load exactly.

It differs from TrajTok's own segmenter (``trajtok.nn.segmenter``) in these places, each kept as released:

- backbone: DINOv3 ConvNeXt (``transformers`` ``DINOv3ConvNextBackbone``); the last stage goes through the
  backbone's final LayerNorm (DINOv3's intermediate-layer norm), then each stage: 1x1 conv to E, **one shared**
  LayerNorm, bilinear resize to 1/4 of the input, sum;
- query Perceiver: pre-normalised latents every layer, keys/values over [latents; features] with a **1-D** rotary
  position over that concatenated sequence (on the first half of each head), a gated SiLU MLP (4x), learnable
  ``freqs`` of the rotary held as a persistent buffer;
- heads: ReLU MLPs E -> E/4 -> E/8 for queries and features (low resolution), and a second pair for full
  resolution (features up-sampled 4x by transposed convolutions); logit scale softplus(s) + 1 capped at 20.

Checked against the authors' own code (their SimpleSegmenter, DINOv3's ConvNeXt, same weights, real clips): equal to
float32 rounding at every stage; ``docs/release_parity.md``, ``eval/bench/bench_release_parity.py``.

Shapes: B batch, T frames, h x w feature grid, P = T*h*w, K queries (latents), E width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DINOv3ConvNextBackbone, DINOv3ConvNextConfig

STAGES = ["stage1", "stage2", "stage3", "stage4"]
ROTARY_THETA = 10000.0


class ReleaseFeatures(nn.Module):
    """Frames (N, 3, S, S) normalised -> features (N, S/4, S/4, E)."""

    def __init__(self, config) -> None:
        super().__init__()
        arch = dict(config.backbone_config)
        bad = sorted(set(arch) & {"out_features", "out_indices"})
        if bad:
            raise ValueError(f"backbone_config must not set {bad}: the release uses the four stages {STAGES}")
        self.backbone = DINOv3ConvNextBackbone(DINOv3ConvNextConfig(**{**arch, "out_features": STAGES}))
        assert self.backbone.config.hidden_sizes is not None  # DINOv3ConvNextConfig's default is set
        channels = list(self.backbone.config.hidden_sizes)
        eps = self.backbone.config.layer_norm_eps
        self.final_norm = nn.LayerNorm(channels[-1], eps=eps)  # DINOv3's norm of its last intermediate layer
        self.proj = nn.ModuleList(nn.Conv2d(c, config.width, kernel_size=1) for c in channels)
        self.norm = nn.LayerNorm(config.width)  # shared by the four stages (torch default eps, as released)

    def forward(self, frames: Tensor) -> Tensor:
        size = (frames.shape[-2] // 4, frames.shape[-1] // 4)
        maps = list(self.backbone(frames).feature_maps)
        maps[-1] = self.final_norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        out: Tensor | None = None
        for fmap, proj in zip(maps, self.proj, strict=True):
            x = self.norm(proj(fmap).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (N, E, h_s, w_s)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            out = x if out is None else out + x
        assert out is not None  # four stages
        return out.permute(0, 2, 3, 1)  # (N, h, w, E)


class _GatedMLP(nn.Module):
    def __init__(self, width: int, mult: int = 4, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=eps)
        self.gate = nn.Linear(width, width * mult)
        self.up = nn.Linear(width, width * mult)
        self.down = nn.Linear(width * mult, width)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        return self.down(F.silu(self.gate(x)) * self.up(x))


def _rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate interleaved pairs of the first 2 * angles.shape[-1] channels of x (..., L, D) by angles (L, R)."""
    r = 2 * angles.shape[-1]
    head, tail = x[..., :r], x[..., r:]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = head[..., 0::2], head[..., 1::2]
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return torch.cat([rotated, tail], dim=-1)


class _Attention(nn.Module):
    """Latents attend to [latents; features] with 1-D rotary position over that sequence."""

    rotary_freqs: Tensor  # a buffer

    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.norm_media = nn.LayerNorm(width)
        self.norm_latents = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_kv = nn.Linear(width, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, width, bias=False)
        rot = head_dim // 2  # rotary on the first half of each head
        inv = 1.0 / (ROTARY_THETA ** (torch.arange(0, rot, 2, dtype=torch.float32)[: rot // 2] / rot))
        self.register_buffer("rotary_freqs", inv)  # (rot / 2,) persistent: the release stores it

    def forward(self, x: Tensor, latents: Tensor) -> Tensor:
        x = self.norm_media(x)
        latents = self.norm_latents(latents)
        b, n_lat, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([latents, x], dim=1)).chunk(2, dim=-1)
        q, k, v = (t.view(b, -1, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, n, Dh)
        pos = torch.arange(k.shape[2], device=x.device, dtype=torch.float32)
        angles = pos[:, None] * self.rotary_freqs.float()[None, :]  # (L + P, rot / 2)
        q, k = _rotate(q, angles[:n_lat]), _rotate(k, angles)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, Dh)
        return self.to_out(out.transpose(1, 2).flatten(2))


class _Layer(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        self.attn = _Attention(width, heads, head_dim)
        self.mlp = _GatedMLP(width)


class ReleasePerceiver(nn.Module):
    """latents (B, K, E), features (B, P, E) -> (B, K, E)."""

    def __init__(self, width: int, depth: int, heads: int, head_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(_Layer(width, heads, head_dim) for _ in range(depth))
        self.norm_lat = nn.LayerNorm(width, eps=1e-6)
        self.norm_ctx = nn.LayerNorm(width, eps=1e-6)

    def forward(self, latents: Tensor, x: Tensor) -> Tensor:
        x = self.norm_ctx(x)
        for layer in cast("Iterable[_Layer]", self.layers):
            latents = self.norm_lat(latents)
            latents = layer.attn(x, latents) + latents
            latents = layer.mlp(latents) + latents
        return latents


class _LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def _head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width // 4), nn.ReLU(), nn.Linear(width // 4, width // 8))


class ReleaseSegmenter(nn.Module):
    """Same interface as ``trajtok.nn.segmenter.Segmenter``: features (B, T, h, w, E) -> queries, logits."""

    def __init__(self, config) -> None:
        super().__init__()
        e = config.width
        if e % 8 or config.seg_heads * config.seg_head_dim != e:
            raise ValueError(
                f"segmenter_variant='release' needs width divisible by 8 and seg_heads x seg_head_dim = width, got "
                f"width {e}, seg_heads {config.seg_heads}, seg_head_dim {config.seg_head_dim}"
            )
        self.queries = nn.Parameter(torch.randn(config.num_queries, e) * 0.02)  # (K, E) the released latents
        self.perceiver = ReleasePerceiver(e, config.seg_depth, config.seg_heads, config.seg_head_dim)
        self.query_head = _head(e)
        self.feature_head = _head(e)
        self.hires_decoder = nn.Sequential(  # 4x up-sampling of the features for full-resolution logits
            nn.ConvTranspose2d(e, e // 2, 2, 2),
            _LayerNorm2d(e // 2),
            nn.GELU(),
            nn.ConvTranspose2d(e // 2, e // 4, 2, 2),
            nn.GELU(),
            nn.Conv2d(e // 4, e // 8, 1),
            nn.GELU(),
        )
        self.hires_query_head = _head(e)
        self.logit_scale = nn.Parameter(torch.tensor([math.log(16.0)]))
        self.max_logit_scale = config.max_logit_scale

    def scale(self) -> Tensor:
        return (F.softplus(self.logit_scale) + 1.0).clamp(max=self.max_logit_scale)

    def initial_queries(
        self, b: int, previous: Tensor | None = None, released: Tensor | None = None, carry: bool = False
    ) -> Tensor:
        """Queries a clip starts from, (B, K, E): the released layout has no carry gate, so every clip restarts
        from the learned latents (the config rejects carry='gated' for it)."""
        return self.queries.unsqueeze(0).expand(b, -1, -1)

    def forward(
        self, features: Tensor, init_queries: Tensor | None = None, *, detach_perceiver: bool = True
    ) -> tuple[Tensor, Tensor]:
        b, t, h, w, e = features.shape
        flat = features.reshape(b, t * h * w, e)  # (B, P, E)
        q0 = self.queries.unsqueeze(0).expand(b, -1, -1) if init_queries is None else init_queries
        queries = self.perceiver(q0, flat.detach() if detach_perceiver else flat)  # (B, K, E)
        qa = F.normalize(self.query_head(queries), dim=-1)  # (B, K, E/8)
        fa = F.normalize(self.feature_head(flat), dim=-1)  # (B, P, E/8)
        logits = torch.einsum("bka,bpa->bkp", qa, fa) * self.scale()
        return queries, logits.view(b, -1, t, h, w)  # (B, K, T, h, w)

    def high_res_logits(self, features: Tensor, queries: Tensor) -> Tensor:
        """Full-resolution logits (B, K, T, 4h, 4w) from features (B, T, h, w, E) and final queries (B, K, E)."""
        b, t, h, w, e = features.shape
        x = self.hires_decoder(features.reshape(b * t, h, w, e).permute(0, 3, 1, 2))  # (B*T, E/8, 4h, 4w)
        x = F.normalize(x.view(b, t, -1, 4 * h, 4 * w).permute(0, 1, 3, 4, 2), dim=-1)  # (B, T, 4h, 4w, E/8)
        qa = F.normalize(self.hires_query_head(queries), dim=-1)  # (B, K, E/8)
        return torch.einsum("bka,bthwa->bkthw", qa, x) * self.scale()
