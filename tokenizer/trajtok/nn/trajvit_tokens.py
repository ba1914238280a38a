"""TrajViT's trajectory tokens (ICCV 2025, its Table 2): one token per trajectory found outside the model.

Per frame, the features under the trajectory's mask are pooled (area pooling: a feature cell half covered by the
mask counts half) and sinusoidal encodings of the frame's bounding box and of the frame's position in the clip are
added (learned projections); a Perceiver resampler with one learned query attends over the trajectory's frames
(frames where it is absent are masked out) and gives its token, refined by a residual MLP.

One implementation for both users: the ``trajvit`` baseline of TrajViT2 (``trajtok.trajvit2``) and the ``trajvit``
connector of the VLM plugin (``trajvlm.trajvit_connector``). :class:`TrajViTTokens` is a mixin for an
``nn.Module``: its layers become the host module's own attributes (``box_proj``, ``time_proj``, ``norm_kv``,
``query``, ``attn``, ``norm_out``, ``mlp``), so the host's state-dict keys are those the connector always saved and
its checkpoints load unchanged.

Shapes: M trajectories, T frames, H' x W' mask resolution, h x w feature grid, D width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal(values: Tensor, dim: int) -> Tensor:
    """(..., k) values in [0, 1] -> (..., dim) sin/cos features (dim // (2k) frequencies per value, zero padded)."""
    k = values.shape[-1]
    per = max(1, dim // (2 * k))
    freqs = 2.0 ** torch.arange(per, device=values.device, dtype=values.dtype) * math.pi  # (per,)
    angles = values[..., None] * freqs  # (..., k, per)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., 2 * k * per)
    return F.pad(enc, (0, dim - enc.shape[-1]))


def boxes_of(onehot: Tensor) -> Tensor:
    """(M, T, H, W) bool masks -> (M, T, 4) normalised boxes (y0, x0, y1, x1) in [0, 1] (zeros where absent)."""
    _, _, h, w = onehot.shape
    rows = onehot.any(-1)  # (M, T, H)
    cols = onehot.any(-2)  # (M, T, W)
    ar_h = torch.arange(h, device=onehot.device)
    ar_w = torch.arange(w, device=onehot.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ar_h, big).amin(-1).clamp(max=h)
    y1 = torch.where(rows, ar_h, -1).amax(-1) + 1
    x0 = torch.where(cols, ar_w, big).amin(-1).clamp(max=w)
    x1 = torch.where(cols, ar_w, -1).amax(-1) + 1
    box = torch.stack([y0 / h, x0 / w, y1 / h, x1 / w], dim=-1).float()
    return box * rows.any(-1, keepdim=True)  # absent frames -> 0


class TrajViTTokens:
    """Mixin for an ``nn.Module``: call :meth:`init_trajvit_layers` in ``__init__``, then :meth:`trajectory_tokens`.

    The layers are registered on the host module itself (see the module docstring for why).
    """

    def init_trajvit_layers(self, dim: int, heads: int) -> None:
        """Register the box / time projections and the 1-query resampler (``heads`` must divide ``dim``)."""
        if not isinstance(self, nn.Module):
            raise TypeError(f"TrajViTTokens is a mixin for nn.Module, got {type(self).__name__}")
        if heads < 1 or dim % heads:
            raise ValueError(f"trajvit resampler heads ({heads}) must be >= 1 and divide the width {dim}")
        self.box_proj = nn.Linear(dim, dim)
        self.time_proj = nn.Linear(dim, dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(1, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def trajectory_tokens(self, feats: Tensor, onehot: Tensor) -> Tensor:
        """Features (T, h, w, D) of one clip and trajectory masks (M, T, H', W') bool -> tokens (M, D).

        The masks may have any resolution; they are area-pooled to the feature grid. A trajectory with no pixel in
        any frame gets a zero token (an attention over no frame has no value).
        """
        num_frames, h, w, d = feats.shape
        m = onehot.shape[0]
        if onehot.ndim != 4 or onehot.shape[1] != num_frames:
            raise ValueError(
                f"trajectory masks must be (M, T={num_frames}, H', W') for features {tuple(feats.shape)}, "
                f"got {tuple(onehot.shape)}"
            )
        if m == 0:
            return feats.new_zeros(0, d)
        cover = F.adaptive_avg_pool2d(onehot.float().flatten(0, 1)[:, None], (h, w))  # (M*T, 1, h, w)
        cover = cover.view(m, num_frames, h * w).to(feats.dtype)  # fraction of each feature cell covered
        area = cover.sum(-1)  # (M, T)
        flat = feats.reshape(num_frames, h * w, d)  # (T, h*w, D)
        pooled = torch.einsum("mtp,tpd->mtd", cover, flat) / area.clamp(min=1e-6)[..., None]  # (M, T, D)
        boxes = boxes_of(onehot).to(feats.dtype)  # (M, T, 4)
        times = torch.linspace(0, 1, num_frames, device=feats.device, dtype=feats.dtype)[None, :, None]  # (1, T, 1)
        x = pooled + self.box_proj(sinusoidal(boxes, d)) + self.time_proj(sinusoidal(times.expand(m, -1, 1), d))
        absent = area <= 0  # (M, T) frames the trajectory is not in
        empty = absent.all(-1)  # (M,) no frame at all: attend to every frame, the token is zeroed below
        kv = self.norm_kv(x)  # (M, T, D)
        q = self.query[None].expand(m, -1, -1).to(kv.dtype)  # (M, 1, D)
        mask = absent & ~empty[:, None]
        tok = q + self.attn(q, kv, kv, key_padding_mask=mask, need_weights=False)[0]  # (M, 1, D)
        tok = tok + self.mlp(self.norm_out(tok))
        return tok[:, 0] * (~empty)[:, None].to(tok.dtype)  # (M, D)


__all__ = ["TrajViTTokens", "boxes_of", "sinusoidal"]
