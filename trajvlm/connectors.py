"""Vision connectors: what turns projected tower features into the visual tokens the LLM reads.

One registry, chosen by ``config.connector``::

    connector(features, pixel_values_videos, num_frames, newline=...) -> ConnectorOutput

- ``features``: (V*T, h*w, D) tower features after the projector (D = LLM width), frames of video v at rows
  ``v*T .. v*T+T-1``, patches row-major on the ``h x w`` grid (h = w = image_size // patch_size).
- ``pixel_values_videos``: (V, T, C, H, W) the tower's normalised input (connectors that look at pixels undo it).
- returns one (N_i, D) tensor per video, its count N_i, and connector-specific extras.

Adding a connector: subclass :class:`Connector`, register the class in :data:`CONNECTORS` and its key in
``trajvlm.configuration.CONNECTOR_NAMES``.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trajvlm.configuration import CONNECTOR_NAMES

logger = logging.getLogger(__name__)


@dataclass
class ConnectorOutput:
    """Visual tokens of a batch of videos."""

    tokens: list[torch.Tensor]  # one (N_i, D) tensor per video
    num_tokens: list[int]  # N_i per video
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. "stacked" (V, N, D), "valid" (V, N) bool

    def stacked(self) -> torch.Tensor:
        """(V, N, D): the tokens of all videos, which must all have the same N."""
        if len(set(self.num_tokens)) > 1:
            raise ValueError(f"videos have different token counts {self.num_tokens}; stacking needs equal counts")
        return torch.stack(self.tokens)


class Connector(nn.Module):
    """Base class: holds the VLM config; subclasses implement :meth:`forward`."""

    name: ClassVar[str] = ""

    def __init__(self, config) -> None:
        super().__init__()
        self.grid = config.vision_config.image_size // config.vision_config.patch_size  # h = w
        self.hidden = config.text_config.hidden_size  # D
        self.kwargs = dict(config.connector_kwargs or {})
        self._config = copy.deepcopy(config)

    def forward(
        self,
        features: torch.Tensor,
        pixel_values_videos: torch.Tensor,
        num_frames: int,
        *,
        newline: torch.Tensor | None = None,
    ) -> ConnectorOutput:
        raise NotImplementedError

    def _check(self, features: torch.Tensor, pixel_values_videos: torch.Tensor, num_frames: int) -> int:
        """Validate shapes; returns V."""
        num_videos = pixel_values_videos.shape[0]
        want = (num_videos * num_frames, self.grid * self.grid)
        if tuple(features.shape[:2]) != want:
            raise ValueError(
                f"{self.name} connector: features of shape {tuple(features.shape)}, expected (V*T, h*w, D) = "
                f"({want[0]}, {want[1]}, {self.hidden}) for V={num_videos}, T={num_frames}, grid {self.grid}"
            )
        return num_videos

    @torch.no_grad()
    def fill_uninitialized_(self) -> None:
        """Give freshly constructed values to parameters/buffers that loading did not fill.

        ``from_pretrained`` builds models on the meta device and only re-initialises missing tensors through
        ``_init_weights``, which cannot know a connector's own initialisation (Fourier query banks, rotary
        buffers): so a reference connector is built on CPU and its values are copied into every parameter
        without the loaded flag and into every non-persistent buffer.
        """
        with torch.device("cpu"):
            reference = type(self)(self._config)
        ref_state = dict(reference.named_parameters()) | dict(reference.named_buffers())
        persistent = set(self.state_dict().keys())
        for name, tensor in list(self.named_parameters()) + list(self.named_buffers()):
            loaded = getattr(tensor, "_is_hf_initialized", False)
            if loaded and name in persistent:
                continue
            ref = ref_state[name]
            if getattr(getattr(tensor, "ds_status", None), "name", None) == "NOT_AVAILABLE":
                # a DeepSpeed ZeRO-3 shard that transformers' loading did not gather: gather, fill, re-partition
                import deepspeed

                with deepspeed.zero.GatheredParameters([tensor], modifier_rank=0):
                    tensor.copy_(ref.to(device=tensor.device, dtype=tensor.dtype))
                tensor._is_hf_initialized = True
                continue
            if tensor.is_meta or tensor.shape != ref.shape:
                raise ValueError(
                    f"connector tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(ref.shape)}"
                )
            tensor.copy_(ref.to(device=tensor.device, dtype=tensor.dtype))
            tensor._is_hf_initialized = True


class PoolConnector(Connector):
    """Upstream LLaVA-OneVision: 2-D pooling of every frame's patch grid, then one newline token per video.

    kwargs: ``mode`` ``"bilinear"`` (upstream ``apply_pooling``: interpolate to ``ceil(g/stride)``), ``"average"``
    or ``"max"`` (LLaVA-NeXT ``get_2dPool``: ``floor(g/stride)``); ``stride`` (2).
    """

    name = "pool"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.mode = self.kwargs.get("mode", "bilinear")
        self.stride = int(self.kwargs.get("stride", 2))
        if self.mode not in ("bilinear", "average", "max"):
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


class TrajTokConnector(Connector):
    """Trajectory tokens: ``trajtok.TrajTok`` in external-features mode, streamed clip by clip.

    The video is cut into the TrajTok config's ``clip_len``-frame clips and goes through
    ``TrajTok.tokenize_video`` (the same code as the standalone tokenizer): the carried query state links
    trajectories across clips, and tokens carry when their trajectory exists. Called through
    :meth:`encode_streaming` (what ``TrajVLMModel.encode_videos`` does), the tower + projector also run one clip
    at a time, so memory is one clip plus the carried state whatever the number of frames.

    The segmenter runs on the raw frames (recovered from the tower's normalised input, one clip at a time), or
    with the TrajTok config's ``backbone="external"`` on the projected tower features themselves (no second image
    model); the trajectory encoder attends, under the hard masks, to the projected tower features on the
    ``h x w`` patch grid. Adaptive mode returns each video's valid tokens; fixed mode returns
    ``video_token_budget`` tokens per video with ``extra["valid"]`` (V, budget) marking real ones. kwargs:
    ``image_mean`` / ``image_std`` of the tower (SigLIP 0.5 / 0.5).
    """

    name = "trajtok"

    def __init__(self, config) -> None:
        super().__init__(config)
        from trajtok import TrajTok

        self.trajtok = TrajTok(trajtok_config_for(config))
        mean = torch.tensor(self.kwargs.get("image_mean", (0.5, 0.5, 0.5)), dtype=torch.float32)
        std = torch.tensor(self.kwargs.get("image_std", (0.5, 0.5, 0.5)), dtype=torch.float32)
        self.register_buffer("image_mean", mean.view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", std.view(1, 1, 3, 1, 1), persistent=False)
        self.token_mode = config.token_mode
        self.budget = int(config.video_token_budget)
        self.tokens_per_trajectory = config.tokens_per_trajectory

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None) -> ConnectorOutput:
        """Features of the whole video already computed: (V*T, h*w, D); still tokenized clip by clip."""
        num_videos = self._check(features, pixel_values_videos, num_frames)
        feats = features.view(num_videos, num_frames, self.grid, self.grid, -1)  # (V, T, h, w, D)
        return self._tokenize(pixel_values_videos, feats)

    def encode_streaming(self, pixel_values_videos, feature_fn, *, newline=None) -> ConnectorOutput:
        """Tower + connector clip by clip: ``feature_fn`` maps one clip's normalised frames (V, t, C, H, W) to its
        projected features (V*t, h*w, D) and is called once per clip, so no all-frames tensor is ever built."""
        num_videos, num_frames = pixel_values_videos.shape[:2]

        def clip_features(start: int, stop: int) -> torch.Tensor:
            feats = feature_fn(pixel_values_videos[:, start:stop])
            self._check(feats, pixel_values_videos[:, start:stop], stop - start)
            return feats.view(num_videos, stop - start, self.grid, self.grid, -1)  # (V, t, h, w, D)

        return self._tokenize(pixel_values_videos, clip_features)

    def _tokenize(self, pixel_values_videos, features) -> ConnectorOutput:
        num_videos = pixel_values_videos.shape[0]
        mean, std = self.image_mean.to(pixel_values_videos), self.image_std.to(pixel_values_videos)

        def to_unit(clip: torch.Tensor) -> torch.Tensor:
            return (clip * std + mean).clamp(0.0, 1.0)  # (V, t, 3, H, W) in [0, 1]

        out = self.trajtok.tokenize_video(
            pixel_values_videos,
            features=features,
            frame_transform=to_unit,
            tokens_per_trajectory=self.tokens_per_trajectory,
            max_tokens=self.budget,
            token_mode=self.token_mode,
        )
        tokens, valid = out.tokens, out.valid  # (V, N, D), (V, N)
        extra: dict[str, Any] = {"assignment": out.assignment, "present": out.present, "first_last": out.first_last}
        if self.token_mode == "adaptive":
            per_video = [tokens[i][valid[i]] for i in range(num_videos)]
        else:
            n = tokens.shape[1]
            if n < self.budget:  # pad up to the budget
                tokens = F.pad(tokens, (0, 0, 0, self.budget - n))
                valid = F.pad(valid, (0, self.budget - n), value=False)
            tokens, valid = tokens[:, : self.budget], valid[:, : self.budget]
            tokens = tokens * valid[..., None].to(tokens.dtype)  # padding tokens are exact zeros
            per_video = list(tokens.unbind(0))
            extra["valid"] = valid
            extra["stacked"] = tokens
        counts = [int(t.shape[0]) for t in per_video]
        extra["valid_counts"] = [int(v) for v in valid.sum(-1).tolist()]
        return ConnectorOutput(tokens=per_video, num_tokens=counts, extra=extra)


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


CONNECTORS: dict[str, type[Connector]] = {
    "pool": PoolConnector,
    "trajtok": TrajTokConnector,
    "resampler": ResamplerConnector,
}


# The other video tokenizers, each in its own module: name -> (module, class). A module imported before this one
# registers its class itself at its end (here it is still partially initialised).
OTHER_CONNECTORS: dict[str, tuple[str, str]] = {
    "vtok": ("trajvlm.vtok", "VTokConnector"),
    "tome": ("trajvlm.tome", "ToMeConnector"),
    "trajvit": ("trajvlm.trajvit_connector", "TrajViTConnector"),
    "coordtok": ("trajvlm.coordtok_connector", "CoordTokConnector"),
}


def _register_other_tokenizers() -> None:
    import importlib

    for name, (module, cls) in OTHER_CONNECTORS.items():
        found = getattr(importlib.import_module(module), cls, None)
        if found is not None:
            CONNECTORS[name] = found


_register_other_tokenizers()
if set(CONNECTORS) | set(OTHER_CONNECTORS) != set(CONNECTOR_NAMES):
    raise ImportError(f"CONNECTORS {sorted(CONNECTORS)} and configuration.CONNECTOR_NAMES {CONNECTOR_NAMES} disagree")


def trajtok_config_for(config):
    """The ``TrajTokConfig`` of a TrajVLM config, with ``external_dim = output_dim = `` the LLM width."""
    from trajtok import TrajTokConfig
    from trajtok.configuration import LEGACY_DEFAULTS

    width = config.text_config.hidden_size
    data = dict(config.trajtok) if config.trajtok is not None else TrajTokConfig().to_dict()
    # A trajtok dict saved before a field existed gets the value that reproduces that checkpoint (to_dict() always
    # writes every field, so only older configs lack one).
    data = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in data}, **data}
    data["external_dim"] = width
    data["output_dim"] = width
    return TrajTokConfig.from_dict(data)


def build_connector(config) -> Connector:
    """The connector named by ``config.connector``."""
    name = config.connector
    if name not in CONNECTORS:
        raise ValueError(f"unknown connector {name!r}; valid connectors: {', '.join(sorted(CONNECTORS))}")
    return CONNECTORS[name](config)


__all__ = [
    "CONNECTORS",
    "Connector",
    "ConnectorOutput",
    "PoolConnector",
    "ResamplerConnector",
    "TrajTokConnector",
    "build_connector",
    "trajtok_config_for",
]
