"""A Perceiver: latents read a (long) input sequence through cross-attention over [latents; inputs]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trajtok.nn.positions import Rotary3D


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float = 0.0, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, out if out is not None else width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


def grouped_attention(q: Tensor, k_l: Tensor, v_l: Tensor, k_i: Tensor, v_i: Tensor, groups: Tensor, n: int) -> Tensor:
    """Sparse hard-mask attention: latent (k, j) attends to the n latents of trajectory k and to the inputs whose
    group is k, and to nothing else; each input is scored only against its own trajectory's n latents.

    Equal to dense attention under ``hard_mask_attention_mask`` but with O(P * n) scores instead of O(K * n * P).
    The softmax runs in fp32 (a segment softmax: scatter max, exp, scatter sum).

    Args:
        q, k_l, v_l: (B, heads, K * n, Dh) latent queries, keys, values (latents of one trajectory are contiguous).
        k_i, v_i: (B, heads, P, Dh) input keys and values.
        groups: (B, P) long trajectory index (0..K-1) of each input.
        n: latents per trajectory.
    Returns:
        (B, heads, K * n, Dh).
    """
    b, h, length, d = q.shape
    k = length // n
    p = k_i.shape[2]
    scale = d**-0.5
    with torch.autocast(device_type=q.device.type, enabled=False):
        q5 = q.float().view(b, h, k, n, d)
        s_ll = torch.einsum("bhkid,bhkjd->bhkij", q5, k_l.float().view(b, h, k, n, d)) * scale  # (B, heads, K, n, n)
        gather_q = groups[:, None, :, None, None].expand(b, h, p, n, d)
        q_p = torch.gather(q5, 2, gather_q)  # (B, heads, P, n, Dh): each input's own trajectory's latents
        s_p = torch.einsum("bhpnd,bhpd->bhpn", q_p, k_i.float()) * scale  # (B, heads, P, n)
        g = groups[:, None, :, None].expand(b, h, p, n)
        with torch.no_grad():  # the stabiliser only shifts the exponent; no gradient needed
            m = s_ll.amax(-1).scatter_reduce(2, g, s_p, reduce="amax", include_self=True)  # (B, heads, K, n)
        e_ll = (s_ll - m[..., None]).exp()  # (B, heads, K, n, n)
        e_p = (s_p - torch.gather(m, 2, g)).exp()  # (B, heads, P, n)
        denom = e_ll.sum(-1).scatter_add(2, g, e_p)  # (B, heads, K, n)
        num = torch.einsum("bhkij,bhkjd->bhkid", e_ll, v_l.float().view(b, h, k, n, d))  # (B, heads, K, n, Dh)
        contrib = e_p[..., None] * v_i.float()[:, :, :, None, :]  # (B, heads, P, n, Dh)
        num = num.scatter_add(2, gather_q, contrib)
    return (num / denom[..., None]).to(q.dtype).reshape(b, h, length, d)


class PerceiverLayer(nn.Module):
    """latents <- latents + Attn(latents, [latents; inputs]); latents <- latents + MLP(latents).

    Inputs are not updated. Rotary position is applied to the input keys only: latents carry no position, so a
    query's dot product with a rotated key gives it a learnable preference over (t, y, x) (an absolute positional
    bias); latent keys stay unrotated.
    """

    def __init__(self, width: int, heads: int, head_dim: int, mlp_ratio: float, dropout: float, eps: float):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.norm_latents = nn.LayerNorm(width, eps=eps)
        self.norm_inputs = nn.LayerNorm(width, eps=eps)
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_kv = nn.Linear(width, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, width)
        self.drop = nn.Dropout(dropout)
        self.norm_mlp = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, int(width * mlp_ratio), dropout)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, n, Dh)

    def forward(
        self,
        latents: Tensor,
        inputs: Tensor,
        angles: Tensor | None = None,
        attn_mask: Tensor | None = None,
        groups: tuple[Tensor, int] | None = None,
    ) -> Tensor:
        """
        Args:
            latents: (B, L, E).
            inputs: (B, P, E).
            angles: (P, head_dim / 2) rotary angles of the inputs, or None.
            attn_mask: (B, 1 or heads, L, L + P) bool, True = may attend; every row needs at least one True.
            groups: (hard (B, P) long, n): sparse hard-mask attention instead of a mask (see grouped_attention).
        Returns:
            (B, L, E) updated latents.
        """
        lat = self.norm_latents(latents)
        inp = self.norm_inputs(inputs)
        q = self._heads(self.to_q(lat))  # (B, heads, L, Dh)
        k_l, v_l = self.to_kv(lat).chunk(2, dim=-1)
        k_i, v_i = self.to_kv(inp).chunk(2, dim=-1)
        k_i = self._heads(k_i)  # (B, heads, P, Dh)
        if angles is not None:
            k_i = Rotary3D.apply(k_i, angles)
        if groups is not None:
            out = grouped_attention(q, self._heads(k_l), self._heads(v_l), k_i, self._heads(v_i), *groups)
        else:
            k = torch.cat([self._heads(k_l), k_i], dim=2)  # (B, heads, L + P, Dh)
            v = torch.cat([self._heads(v_l), self._heads(v_i)], dim=2)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, L, Dh)
        out = out.transpose(1, 2).flatten(2)  # (B, L, heads * Dh)
        latents = latents + self.drop(self.to_out(out))
        return latents + self.mlp(self.norm_mlp(latents))


class Perceiver(nn.Module):
    """``depth`` PerceiverLayers sharing one rotary table. Returns the residual stream un-normalised (callers
    normalise: the segmenter carries the raw query states from clip to clip)."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        head_dim: int,
        mlp_ratio: float,
        dropout: float,
        eps: float,
        rope_base: float,
    ):
        super().__init__()
        self.rotary = Rotary3D(head_dim, rope_base)
        self.layers = nn.ModuleList(
            PerceiverLayer(width, heads, head_dim, mlp_ratio, dropout, eps) for _ in range(depth)
        )

    def forward(
        self,
        latents: Tensor,
        inputs: Tensor,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
        groups: tuple[Tensor, int] | None = None,
    ) -> Tensor:
        """latents (B, L, E), inputs (B, P, E), positions (P, 3) (t, y, x) -> (B, L, E); see PerceiverLayer."""
        angles = self.rotary.angles(positions) if positions is not None else None
        for layer in self.layers:
            latents = layer(latents, inputs, angles, attn_mask, groups)
        return latents
