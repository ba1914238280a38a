"""Positions: the Fourier (sin-cos) banks that initialise queries and sub-latents, and 3-D rotary embedding."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def grid_shape(k: int) -> tuple[int, int]:
    """The rows x cols factorisation of ``k`` closest to a square (rows <= cols), e.g. 16 -> (4, 4), 128 -> (8, 16)."""
    if k < 1:
        raise ValueError(f"grid_shape needs k >= 1, got {k}")
    rows = int(math.isqrt(k))
    while k % rows:
        rows -= 1
    return rows, k // rows


def fourier_features(coords: Tensor, dim: int, max_freq: float = 8.0) -> Tensor:
    """Sin-cos features of points in [-1, 1]^c.

    Args:
        coords: (L, c) coordinates in [-1, 1].
        dim: output width; each coordinate gets dim // c channels (sin and cos of geometric frequencies from
            1 to ``max_freq`` cycles over the range); leftover channels are zero.

    Returns:
        (L, dim) features with entries in [-1, 1].
    """
    length, c = coords.shape
    per = dim // c
    nf = max(1, per // 2)
    freqs = torch.logspace(0.0, math.log2(max_freq), nf, base=2.0, dtype=torch.float64)  # (nf,)
    ang = coords.double()[:, :, None] * freqs * math.pi  # (L, c, nf)
    feats = torch.cat([ang.sin(), ang.cos()], dim=-1)[:, :, :per].reshape(length, c * per)  # (L, c * per)
    out = torch.zeros(length, dim, dtype=torch.float64)
    out[:, : c * per] = feats
    return out.float()


def query_fourier_bank(k: int, dim: int) -> Tensor:
    """(k, dim) initial queries: sin-cos features of a near-square 2-D grid of positions, one per query.

    Distinct, spread-out starting points make queries prefer different image regions from the first step (the
    paper's initialisation, in place of plain random queries).
    """
    rows, cols = grid_shape(k)
    ys = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows * 2 - 1
    xs = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols * 2 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=-1)  # (k, 2)
    return fourier_features(coords, dim)


def ring_fourier_bank(n: int, dim: int, max_freq: int = 4) -> Tensor:
    """(n, dim) distinct offsets for n sub-latents: sin-cos of n evenly spaced angles on a ring, tiled to dim.

    Row j holds sin/cos(f * theta_j) for f = 1..max_freq; the pattern repeats across the width, scaled so that
    every row has unit RMS. For n = 1 the single offset is the constant pattern of theta = 0.
    """
    theta = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)  # (n,)
    f = torch.arange(1, max_freq + 1, dtype=torch.float64)
    base = torch.cat([(theta[:, None] * f).sin(), (theta[:, None] * f).cos()], dim=-1)  # (n, 2 * max_freq)
    reps = -(-dim // base.shape[1])
    out = base.repeat(1, reps)[:, :dim]  # (n, dim)
    out = out / out.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-6)
    return out.float()


def van_der_corput(n: int) -> Tensor:
    """(n,) float64 base-2 van der Corput sequence 0, 1/2, 1/4, 3/4, 1/8, ...: every prefix of length 2^j is the
    evenly spaced set {i / 2^j}."""
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        x, denom, v = i, 1.0, 0.0
        while x:
            denom *= 2.0
            v += (x & 1) / denom
            x >>= 1
        out[i] = v
    return out


def nested_fourier_bank(n: int, dim: int, max_freq: int = 4) -> Tensor:
    """(n, dim) sub-latent offsets whose first m rows suit every m: row j is the ring pattern of angle
    2 pi vdc(j), so the first 1, 2, 4, ... rows are exactly ``ring_fourier_bank(m, dim)`` (in another row order).

    One table serves every tokens-per-trajectory choice (slice its first m rows), so all choices train the same
    parameters.
    """
    theta = van_der_corput(n) * (2 * math.pi)  # (n,)
    f = torch.arange(1, max_freq + 1, dtype=torch.float64)
    base = torch.cat([(theta[:, None] * f).sin(), (theta[:, None] * f).cos()], dim=-1)  # (n, 2 * max_freq)
    reps = -(-dim // base.shape[1])
    out = base.repeat(1, reps)[:, :dim]  # (n, dim)
    out = out / out.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-6)
    return out.float()


def time_features(frames: Tensor, dim: int, min_period: float = 4.0, max_period: float = 4096.0) -> Tensor:
    """Sin-cos features of frame indices: (...,) -> (..., dim), periods geometric from min_period to max_period
    frames (distinct for every frame of videos up to max_period frames long; nearby frames stay similar)."""
    nf = max(1, dim // 2)
    periods = torch.logspace(
        math.log10(min_period), math.log10(max_period), nf, dtype=torch.float32, device=frames.device
    )  # (nf,)
    ang = frames.float()[..., None] * (2 * math.pi / periods)  # (..., nf)
    out = torch.cat([ang.sin(), ang.cos()], dim=-1)  # (..., 2 nf)
    if out.shape[-1] < dim:
        out = torch.nn.functional.pad(out, (0, dim - out.shape[-1]))
    return out


class Rotary3D:
    """Rotary position embedding over (t, y, x): a head of width d is split into three even parts, one per axis.

    ``angles(pos)`` gives (L, d / 2) rotation angles for positions (L, 3); ``apply(x, angles)`` rotates the
    interleaved pairs of x (..., L, d).
    """

    def __init__(self, head_dim: int, base: float = 100.0) -> None:
        if head_dim % 2 or head_dim < 6:
            raise ValueError(f"rotary head_dim must be even and >= 6, got {head_dim}")
        pairs = head_dim // 2
        per = [pairs // 3, pairs // 3, pairs - 2 * (pairs // 3)]  # pairs for t, y, x (x takes the remainder)
        inv = [base ** (-torch.arange(p, dtype=torch.float32) / max(p, 1)) for p in per]
        self.head_dim = head_dim
        self.inv_freq = inv  # three (p_a,) tensors

    def angles(self, pos: Tensor) -> Tensor:
        """pos (L, 3) float (t, y, x) -> (L, head_dim / 2) angles."""
        parts = [pos[:, a : a + 1].float() * self.inv_freq[a].to(pos.device) for a in range(3)]
        return torch.cat(parts, dim=-1)

    @staticmethod
    def apply(x: Tensor, angles: Tensor) -> Tensor:
        """Rotate x (..., L, d) by angles (L, d / 2) (pairs (2i, 2i+1))."""
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (..., L, d / 2, 2)
        return out.flatten(-2)


def grid_positions(t: int, h: int, w: int, *, ref_hw: tuple[int, int] | None = None, device=None) -> Tensor:
    """(t * h * w, 3) float positions (frame, row, column) of a flattened (T, h, w) grid, row-major.

    With ``ref_hw`` = (h0, w0) rows and columns are expressed in units of that reference grid (cell centres), so a
    coarser or finer grid (external features) gets positions comparable to the segmenter's own grid.
    """
    sy = 1.0 if ref_hw is None else ref_hw[0] / h
    sx = 1.0 if ref_hw is None else ref_hw[1] / w
    tt = torch.arange(t, dtype=torch.float32, device=device)
    yy = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * sy - 0.5
    xx = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * sx - 0.5
    g = torch.stack(torch.meshgrid(tt, yy, xx, indexing="ij"), dim=-1)  # (T, h, w, 3)
    return g.reshape(-1, 3)
