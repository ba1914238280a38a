"""The ``tome`` connector: training-free token merging of the tower's space-time patches down to a budget.

Bipartite soft matching as in ToMe (Bolya et al., ICLR 2023), applied once to the whole video's projected patch
tokens (the family of ToMe / FastVID / DyCoke that merge video tokens before the LLM): each round splits the tokens
(in space-time order) alternately into sets A and B, links every A token to its most similar B token (cosine
similarity of the features), and merges the ``r`` most similar links: the B token becomes the size-weighted mean of
itself and the A tokens merged into it, and sizes add up. Rounds repeat until ``budget`` tokens are left
(``r = min(N - budget, |A|)``). The tokens are returned in space-time order (ordered by the size-weighted mean of
the original positions they cover), so the LLM reads them roughly as it would read the pooled patches.

Similarity: ToMe uses the attention keys of the layer it merges in; here the tokens are merged after the
projector, so the projected features themselves are compared. Cost: matching all A x B pairs of a 128-frame
SigLIP video (93k patches) is too large, so each round matches within consecutive windows of ``window`` tokens
(space-time neighbours; the windows grow in content as tokens merge).

kwargs: ``budget`` (tokens per video; default ``video_token_budget``), ``window`` (4096). No weights: the
connector is training-free (training a TrajVLM with it trains the projector / LoRA only).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from trajvlm.connectors.base import Connector, ConnectorOutput
from trajvlm.token_budget import check_kwargs, finish_tokens

logger = logging.getLogger(__name__)


def merge_round(x: torch.Tensor, size: torch.Tensor, pos: torch.Tensor, r: int, window: int):
    """One bipartite soft-matching round on (N, D) tokens with sizes (N,) and positions (N,): N -> N - r.

    Matching is restricted to windows of ``window`` consecutive tokens; the ``r`` best A->B links over all
    windows are merged.
    """
    n, d = x.shape
    a_idx = torch.arange(0, n, 2, device=x.device)  # (Na,)
    b_idx = torch.arange(1, n, 2, device=x.device)  # (Nb,)
    metric = F.normalize(x.detach().float(), dim=-1)
    best_score = torch.full((a_idx.numel(),), -2.0, device=x.device)
    best_b = torch.zeros(a_idx.numel(), dtype=torch.long, device=x.device)
    half = max(1, window // 2)
    for s in range(0, a_idx.numel(), half):  # window of `half` A tokens and the B tokens between them
        a = a_idx[s : s + half]
        b_lo, b_hi = s, min(s + half, b_idx.numel())
        if b_hi <= b_lo:
            b_lo = max(0, b_idx.numel() - 1)
            b_hi = b_idx.numel()
        sim = metric[a] @ metric[b_idx[b_lo:b_hi]].T  # (window A, window B)
        score, arg = sim.max(dim=-1)
        best_score[s : s + half] = score
        best_b[s : s + half] = arg + b_lo
    order = best_score.argsort(descending=True)
    merged_a = order[:r]  # A tokens merged away
    kept_a = order[r:]
    dst = best_b[merged_a]  # their B partners (indices into B)
    xb, sb, pb = x[b_idx], size[b_idx], pos[b_idx]
    sa, xa, pa = size[a_idx[merged_a]], x[a_idx[merged_a]], pos[a_idx[merged_a]]
    # size-weighted sums into B (index_add keeps autograd through x)
    wsum = (xb * sb[:, None]).index_add(0, dst, xa * sa[:, None])  # (Nb, D)
    new_size = sb.index_add(0, dst, sa)
    new_pos = (pb * sb).index_add(0, dst, pa * sa) / new_size
    xb = wsum / new_size[:, None]
    keep = a_idx[kept_a]
    x = torch.cat([x[keep], xb])
    size = torch.cat([size[keep], new_size])
    pos = torch.cat([pos[keep], new_pos])
    order = pos.argsort()  # back to space-time order for the next round's alternation
    return x[order], size[order], pos[order]


def merge_tokens(x: torch.Tensor, budget: int, window: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) tokens in space-time order -> (min(N, budget), D) merged tokens and their sizes (patches covered)."""
    size = torch.ones(x.shape[0], device=x.device, dtype=torch.float32)
    pos = torch.arange(x.shape[0], device=x.device, dtype=torch.float32)
    while x.shape[0] > budget:
        r = min(x.shape[0] - budget, x.shape[0] // 2)
        x, size, pos = merge_round(x, size.to(x.dtype), pos, r, window)
    return x, size


class ToMeConnector(Connector):
    """Bipartite soft matching of all of a video's patch tokens down to ``budget`` (see the module docstring)."""

    name = "tome"

    def __init__(self, config) -> None:
        super().__init__(config)
        check_kwargs(self.name, self.kwargs, {"budget", "window"})
        self.budget = int(self.kwargs.get("budget", config.video_token_budget))
        self.window = int(self.kwargs.get("window", 4096))
        if self.budget < 1:
            raise ValueError(f"tome budget must be a positive number of tokens, got {self.budget}")
        if self.window < 2:
            raise ValueError(f"tome window must be >= 2 tokens, got {self.window}")
        self.token_mode = config.token_mode
        self.fixed_budget = int(config.video_token_budget)

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None) -> ConnectorOutput:
        num_videos = self._check(features, pixel_values_videos, num_frames)
        tokens = features.reshape(num_videos, -1, features.shape[-1])  # (V, T*h*w, D), frame-major
        per_video, sizes = [], []
        for v in range(num_videos):
            merged, size = merge_tokens(tokens[v], self.budget, self.window)
            per_video.append(merged)
            sizes.append(size)
        return finish_tokens(self.name, per_video, self.token_mode, self.fixed_budget, {"sizes": sizes})


__all__ = ["ToMeConnector", "merge_round", "merge_tokens"]
