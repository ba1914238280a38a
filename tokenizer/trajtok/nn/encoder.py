"""The trajectory encoder: soft-mask mean init, sub-latents, and a Perceiver restricted by the hard mask."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trajtok.nn.perceiver import Perceiver
from trajtok.nn.positions import nested_fourier_bank, time_features, van_der_corput

OFFSET_SCALE = 0.1  # sub-latent offsets are small next to the soft-mean init; they only need to break symmetry
TIME_DIM = 32  # sin-cos features per time stamp (first frame, last frame) of a trajectory
EXTENT_DIM = 9  # extent features of a trajectory: union box, sqrt of area per frame, centre where it starts and ends


def extent_features(boxes: Tensor, counts: Tensor, first_last: Tensor, centres: Tensor, grid_pixels: int) -> Tensor:
    """(B, M, EXTENT_DIM) in [-1, 1]: where and how big each trajectory is, and where it starts and ends.

    Args:
        boxes: (B, M, 4) normalised (y0, x0, y1, x1) union boxes over time (zeros for empty rows).
        counts: (B, M) hard-mask pixels won over the video.
        first_last: (B, M, 2) first / last frame where it won pixels (-1 for empty rows).
        centres: (B, M, 4) normalised (row, column) centre of its pixels in its first frame, then in its last.
        grid_pixels: h * w of the grid the counts were taken on.
    Returns:
        box (4), sqrt of the mean area per frame while present (1), first centre (2), last centre (2).
    """
    frames = (first_last[..., 1] - first_last[..., 0] + 1).clamp_min(1)  # (B, M)
    area = (counts.float() / (frames.float() * grid_pixels)).clamp(0.0, 1.0).sqrt()
    return torch.cat([boxes.float(), area[..., None], centres.float()], dim=-1) * 2.0 - 1.0


def _zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear with zero weight and bias, built without drawing from the random generator (so adding it leaves
    every other layer's initialisation, and a seeded run's results, unchanged), on the default device (meta inside
    ``from_pretrained``)."""
    layer = nn.Linear(in_features, out_features, device="meta").to_empty(device=torch.empty(0).device)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


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
        *,
        time_encoding: bool = False,
        extent_encoding: bool = False,
        sparse_attention: bool = False,
    ):
        super().__init__()
        self.token_choices = tuple(sorted(token_choices))
        # ONE nested table of sub-latent offsets: n tokens per trajectory use its first n rows, so every choice
        # trains the same parameters (and DDP sees a gradient for the whole table on every step).
        self.offsets = nn.Parameter(nested_fourier_bank(max(self.token_choices), width) * OFFSET_SCALE)  # (n_max, E)
        self.perceiver = Perceiver(width, depth, heads, head_dim, mlp_ratio, dropout, eps, rope_base)
        # (first, last) frame of a trajectory -> a width-E vector added to its latents before the output projection
        self.time_proj = nn.Linear(2 * TIME_DIM, width) if time_encoding else None
        # (box, area, start and end centre) of a trajectory -> a width-E vector added the same way. Zero at init: a
        # pretrained encoder gains it without any change to its tokens until something trains it.
        self.extent_proj = _zero_linear(EXTENT_DIM, width) if extent_encoding else None
        self.sparse_attention = sparse_attention
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
        if n not in self.token_choices:
            raise ValueError(f"tokens_per_trajectory={n} has no sub-latent offsets; valid choices: {self.choices}")
        b, k, e = init.shape
        latents = init[:, :, None, :] + self.offsets[:n].to(init.dtype)  # (B, K, n, E)
        latents = latents.reshape(b, k * n, e)  # (B, K * n, E)
        if self.sparse_attention:
            latents = self.perceiver(latents, features, positions, groups=(hard, n))
        else:
            latents = self.perceiver(latents, features, positions, attn_mask=hard_mask_attention_mask(hard, k, n))
        return latents.view(b, k, n, e)  # (B, K, n, E)

    def time_embedding(self, first_last: Tensor) -> Tensor | None:
        """(B, M, 2) first / last frame in the video -> (B, M, 1, E) to add to the latents (None when disabled)."""
        if self.time_proj is None:
            return None
        feats = time_features(first_last.clamp_min(0), TIME_DIM)  # (B, M, 2, TIME_DIM)
        w = self.time_proj.weight
        return self.time_proj(feats.flatten(-2).to(w.dtype))[:, :, None, :]  # (B, M, 1, E)

    def extent_embedding(self, extent: Tensor) -> Tensor | None:
        """(B, M, EXTENT_DIM) extent features -> (B, M, 1, E) to add to the latents (None when disabled)."""
        if self.extent_proj is None:
            return None
        return self.extent_proj(extent.to(self.extent_proj.weight.dtype))[:, :, None, :]

    def project(self, latents: Tensor, first_last: Tensor | None = None, extent: Tensor | None = None) -> Tensor:
        """(B, M, n, E) -> (B, M, n, D_out); ``first_last`` (B, M, 2) adds the time encoding, ``extent``
        (B, M, EXTENT_DIM) the extent encoding (:func:`extent_features`)."""
        for add in (
            self.time_embedding(first_last) if first_last is not None else None,
            self.extent_embedding(extent) if extent is not None else None,
        ):
            if add is not None:
                latents = latents + add.to(latents.dtype)
        return self.out_proj(self.out_norm(latents))

    @property
    def choices(self) -> list[int]:
        return list(self.token_choices)


def upgrade_legacy_offsets(state: dict[str, Tensor], prefix: str = "encoder.") -> list[str]:
    """Convert the per-choice offset tables of old checkpoints (``offsets.1``, ``offsets.2``, ...) in place into
    the nested table (``offsets``): the largest table, rows reordered so that every power-of-two prefix is evenly
    spread. Exact for the largest choice; smaller choices now use its first rows. Returns the converted keys."""
    old = {int(k[len(prefix) + len("offsets.") :]): k for k in state if k.startswith(prefix + "offsets.")}
    if not old:
        return []
    table = state[old[max(old)]]
    n = table.shape[0]
    order = [round(float(v) * n) for v in van_der_corput(n)] if n & (n - 1) == 0 else list(range(n))
    for key in old.values():
        del state[key]
    state[prefix + "offsets"] = table[order].clone()
    return sorted(old.values())
