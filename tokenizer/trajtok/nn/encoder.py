"""The trajectory encoder: soft-mask mean init, sub-latents, and a Perceiver restricted by the hard mask."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trajtok.nn.perceiver import Perceiver
from trajtok.nn.positions import ring_fourier_bank

OFFSET_SCALE = 0.1  # sub-latent offsets are small next to the soft-mean init; they only need to break symmetry


def soft_mask_sums(soft: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
    """Soft-mask-weighted sums: soft (B, K, P), features (B, P, E) -> (sums (B, K, E), mass (B, K)).

    The weighted mean is sums / mass; kept apart so streaming can accumulate both over clips.
    """
    return torch.einsum("bkp,bpe->bke", soft, features), soft.sum(dim=-1)


def hard_mask_attention_mask(hard: Tensor, num_queries: int, n: int) -> Tensor:
    """Attention mask of the encoder, (B, 1, K * n, K * n + P) bool (True = may attend).

    Latent (k, j) attends to the n latents of its own trajectory k (never to other trajectories) and to the
    features of the pixels whose hard assignment is k. A trajectory without pixels still sees its own latents,
    so no row is all-masked and attention never produces NaN; its outputs are dropped by the caller.
    """
    b, p = hard.shape
    traj = torch.arange(num_queries, device=hard.device).repeat_interleave(n)  # (L,) trajectory of each latent
    own = (traj[:, None] == traj[None, :]).expand(b, -1, -1)  # (B, L, L)
    pix = hard[:, None, :] == traj[None, :, None]  # (B, L, P)
    return torch.cat([own, pix], dim=-1).unsqueeze(1)  # (B, 1, L, L + P)


class TrajectoryEncoder(nn.Module):
    """Trajectory inits (B, K, E) -> n refined latents each (B, K, n, E), then ``project`` to output tokens."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        head_dim: int,
        token_choices: tuple[int, ...],
        output_dim: int,
        mlp_ratio: float,
        dropout: float,
        eps: float,
        rope_base: float,
    ):
        super().__init__()
        # One table of distinct Fourier offsets per tokens-per-trajectory choice (keys "1", "2", "4", ...).
        self.offsets = nn.ParameterDict(
            {str(n): nn.Parameter(ring_fourier_bank(n, width) * OFFSET_SCALE) for n in token_choices}
        )
        self.perceiver = Perceiver(width, depth, heads, head_dim, mlp_ratio, dropout, eps, rope_base)
        self.out_norm = nn.LayerNorm(width, eps=eps)
        self.out_proj = nn.Linear(width, output_dim)

    def refine(self, init: Tensor, features: Tensor, hard: Tensor, n: int, positions: Tensor | None) -> Tensor:
        """
        Args:
            init: (B, K, E) trajectory inits (soft-mask means).
            features: (B, P, E) features the trajectories read.
            hard: (B, P) long hard assignment of each feature pixel (0..K-1).
            n: sub-latents (tokens) per trajectory; must be one of the configured choices.
            positions: (P, 3) (t, y, x) positions of the features for rotary, or None.
        Returns:
            (B, K, n, E) refined latents.
        """
        if str(n) not in self.offsets:
            raise ValueError(f"tokens_per_trajectory={n} has no sub-latent offsets; valid choices: {self.choices}")
        b, k, e = init.shape
        latents = init[:, :, None, :] + self.offsets[str(n)].to(init.dtype)  # (B, K, n, E)
        latents = latents.reshape(b, k * n, e)  # (B, K * n, E)
        mask = hard_mask_attention_mask(hard, k, n)
        latents = self.perceiver(latents, features, positions, attn_mask=mask)
        return latents.view(b, k, n, e)  # (B, K, n, E)

    def project(self, latents: Tensor) -> Tensor:
        """(..., E) -> (..., D_out)."""
        return self.out_proj(self.out_norm(latents))

    @property
    def choices(self) -> list[int]:
        return sorted(int(n) for n in self.offsets)
