"""The unified segmenter: K queries cluster all pixels of a clip, over space and time at once, into trajectories."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trajtok.nn.perceiver import MLP, Perceiver
from trajtok.nn.positions import grid_positions, query_fourier_bank


class Head(nn.Module):
    """LayerNorm + 2-layer MLP into the shared assignment space."""

    def __init__(self, width: int, out: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, width, out=out)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.norm(x))


# the segmenter's scalar parameters, shape (1,); checkpoints saved before that hold them 0-dim
SCALAR_PARAMETERS = ("logit_scale", "carry_gate")


def upgrade_scalar_parameters(state: dict[str, Tensor], prefix: str = "") -> list[str]:
    """Reshape 0-dim ``prefix + name`` tensors of :data:`SCALAR_PARAMETERS` in ``state`` to (1,), in place; returns
    the keys changed. Checkpoints from before the parameters were 1-dim (ZeRO cannot broadcast 0-dim ones) so load."""
    changed = []
    for name in SCALAR_PARAMETERS:
        value = state.get(prefix + name)
        if value is not None and value.dim() == 0:
            state[prefix + name] = value.reshape(1)  # (1,)
            changed.append(prefix + name)
    return changed


class Segmenter(nn.Module):
    """Queries read the features through a Perceiver; logit = cosine(query, feature) x learnable scale.

    There is no tracker: one query index is one trajectory in every frame of the clip.
    """

    def __init__(
        self,
        width: int,
        num_queries: int,
        depth: int,
        heads: int,
        head_dim: int,
        assign_dim: int,
        mlp_ratio: float,
        dropout: float,
        eps: float,
        rope_base: float,
        init_logit_scale: float,
        max_logit_scale: float,
        read_stride: int = 1,
    ):
        super().__init__()
        self.read_stride = read_stride
        self.queries = nn.Parameter(query_fourier_bank(num_queries, width))  # (K, E)
        self.perceiver = Perceiver(width, depth, heads, head_dim, mlp_ratio, dropout, eps, rope_base)
        self.query_head = Head(width, assign_dim, eps)
        self.feature_head = Head(width, assign_dim, eps)
        # scale = softplus(s) + 1, so s = softplus^-1(init - 1). Shape (1,), as every scalar parameter here: DeepSpeed
        # ZeRO's broadcast and partitioning cannot view a 0-dim tensor (checkpoints that hold one still load)
        self.logit_scale = nn.Parameter(torch.tensor([math.log(math.expm1(init_logit_scale - 1.0))]))  # (1,)
        self.max_logit_scale = max_logit_scale
        # Carried state: sigmoid(carry_gate) of the previous clip's (norm-matched) final state, the rest the learned
        # query. 0 -> an even mix at init; training on consecutive clips learns how much to carry.
        self.carry_gate = nn.Parameter(torch.zeros(1))  # (1,)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args, **kwargs) -> None:
        upgrade_scalar_parameters(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def initial_queries(
        self, b: int, previous: Tensor | None = None, released: Tensor | None = None, carry: bool = True
    ) -> Tensor:
        """Queries a clip starts from, (B, K, E).

        Without ``previous`` (first clip) or with ``carry=False`` (restart): the learned queries. Otherwise each
        query is its previous final state rescaled to the RMS of its learned query, mixed with the learned query by
        the gate: a convex combination of two vectors of the learned norm, so the carried state stays bounded over
        any number of clips (the raw final states grow without bound). ``released`` (B, K) bool queries go back to
        their learned value (free to claim a new object). Computed in fp32.
        """
        learned = self.queries.float()  # (K, E)
        gate = torch.sigmoid(self.carry_gate.float())
        if previous is None or not carry:
            # The gate joins the graph with weight 0, so DDP sees a (zero) gradient for it on every step.
            q = (learned + 0.0 * gate).unsqueeze(0).expand(b, -1, -1)
            return q.to(self.queries.dtype)
        prev = previous.float()  # (B, K, E)
        rms = learned.pow(2).mean(-1, keepdim=True).sqrt()  # (K, 1)
        normed = prev * torch.rsqrt(prev.pow(2).mean(-1, keepdim=True) + 1e-12) * rms  # (B, K, E)
        q = learned + gate * (normed - learned)  # (B, K, E)
        if released is not None:
            q = torch.where(released[..., None], learned.expand_as(q), q)
        return q.to(self.queries.dtype)

    def scale(self) -> Tensor:
        return (F.softplus(self.logit_scale) + 1.0).clamp(max=self.max_logit_scale)

    def forward(
        self, features: Tensor, init_queries: Tensor | None = None, *, detach_perceiver: bool = True
    ) -> tuple[Tensor, Tensor]:
        """
        Args:
            features: (B, T, h, w, E) fused backbone features.
            detach_perceiver: stop-gradient on the features the query Perceiver reads (the paper's largest ablation:
                without it the queries can move the features to suit themselves). The feature-side assignment head
                still reads the live features, so the segmentation loss trains the backbone through it.
            init_queries: (B, K, E) query states to start from (streaming), or None for the learned queries.
        Returns:
            queries: (B, K, E) final query states (un-normalised; carried to the next clip when streaming).
            logits: (B, K, T, h, w) assignment logits.
        """
        b, t, h, w, e = features.shape
        flat = features.reshape(b, t * h * w, e)  # (B, P, E)
        q0 = self.queries.unsqueeze(0).expand(b, -1, -1) if init_queries is None else init_queries
        read = flat.detach() if detach_perceiver else flat
        if self.read_stride > 1:  # the queries read s x s average-pooled features; logits stay on the full grid
            s = self.read_stride
            x = read.view(b * t, h, w, e).permute(0, 3, 1, 2)  # (B*T, E, h, w)
            x = F.avg_pool2d(x, s, ceil_mode=True)  # (B*T, E, h', w')
            h2, w2 = x.shape[-2:]
            read = x.permute(0, 2, 3, 1).reshape(b, t * h2 * w2, e)  # (B, P', E)
            positions = grid_positions(t, h2, w2, ref_hw=(h, w), device=features.device)  # full-grid units
        else:
            positions = grid_positions(t, h, w, device=features.device)  # (P, 3)
        queries = self.perceiver(q0, read, positions)  # (B, K, E)
        # The heads may run under autocast; the cosine logits are computed in fp32 (in bf16 near-equal logits of
        # neighbouring queries would flip the argmax).
        qa = self.query_head(queries)  # (B, K, A)
        fa = self.feature_head(flat)  # (B, P, A)
        with torch.autocast(device_type=flat.device.type, enabled=False):
            qa = F.normalize(qa.float(), dim=-1)
            fa = F.normalize(fa.float(), dim=-1)
            logits = torch.einsum("bka,bpa->bkp", qa, fa) * self.scale().float()  # (B, K, P) fp32
        return queries, logits.view(b, -1, t, h, w)  # (B, K, T, h, w)
