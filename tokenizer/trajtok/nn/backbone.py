"""Per-frame multi-scale features: a transformers backbone (ConvNeXt / ResNet), four stages fused at 1/4 scale."""

from __future__ import annotations

import logging
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, ConvNextBackbone, ConvNextConfig, PreTrainedModel, ResNetBackbone, ResNetConfig

logger = logging.getLogger(__name__)

STAGES = ["stage1", "stage2", "stage3", "stage4"]
# Keys of a transformers config that describe how it is used, not the architecture; dropped when the resolved
# backbone architecture is stored in TrajTokConfig.backbone_config.
_NON_ARCH_KEYS = {
    "transformers_version",
    "architectures",
    "out_features",
    "out_indices",
    "stage_names",
    "_name_or_path",
    "model_type",
    "id2label",
    "label2id",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "dtype",
    "torch_dtype",
    "problem_type",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
}


def _classes(family: str):
    classes = {"convnext": (ConvNextConfig, ConvNextBackbone), "resnet": (ResNetConfig, ResNetBackbone)}
    if family not in classes:
        raise ValueError(f"unknown backbone {family!r}; valid choices: {sorted(classes)}")
    return classes[family]


def build_backbone(family: str, overrides: dict[str, Any], pretrained: str | None) -> ConvNextBackbone | ResNetBackbone:
    """A transformers backbone returning the four stage feature maps.

    ``pretrained`` (a local folder or hub id) loads weights; otherwise the architecture is ``family``'s
    transformers config with ``overrides`` applied, randomly initialised.
    """
    if pretrained is not None:
        # The family's backbone class loads directly: AutoBackbone.from_pretrained in transformers 5 asks the hub
        # whether the name exists before loading (fails offline and for local folders).
        model_type = getattr(AutoConfig.from_pretrained(pretrained), "model_type", None)
        if model_type != family:
            raise ValueError(
                f"backbone_pretrained {pretrained!r} is a {model_type!r} model but the config says "
                f"backbone={family!r}; set backbone={model_type!r} (supported: convnext, resnet)"
            )
        return _classes(family)[1].from_pretrained(pretrained, out_features=STAGES)
    cfg_cls, backbone_cls = _classes(family)
    bad = sorted(set(overrides) & {"out_features", "out_indices"})
    if bad:
        raise ValueError(f"backbone_config must not set {bad}: TrajTok always uses the four stages {STAGES}")
    return backbone_cls(cfg_cls(**{**overrides, "out_features": STAGES}))


def architecture_dict(backbone: PreTrainedModel) -> dict[str, Any]:
    """The architecture part of a backbone's transformers config (enough to rebuild it without its weights)."""
    return {k: v for k, v in backbone.config.to_dict().items() if k not in _NON_ARCH_KEYS}


class FeatureBackbone(nn.Module):
    """Frames (N, 3, S, S) normalised -> features (N, S/4, S/4, E).

    Each backbone stage: 1x1 projection to E, LayerNorm over E, bilinear resize to 1/4 of the input; the four
    are summed.
    """

    def __init__(self, family: str, overrides: dict[str, Any], pretrained: str | None, width: int, eps: float):
        super().__init__()
        self.backbone = build_backbone(family, overrides, pretrained)
        channels = list(self.backbone.channels)
        if len(channels) != 4:
            raise ValueError(f"backbone must give 4 stages, got channels {channels}")
        self.proj = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in channels)
        self.norm = nn.ModuleList(nn.LayerNorm(width, eps=eps) for _ in channels)

    def forward(self, frames: Tensor) -> Tensor:
        size = (frames.shape[-2] // 4, frames.shape[-1] // 4)
        maps = self.backbone(frames).feature_maps
        out: Tensor | None = None
        for fmap, proj, norm in zip(maps, self.proj, self.norm, strict=True):
            x = norm(proj(fmap).permute(0, 2, 3, 1))  # (N, h_s, w_s, E)
            x = x.permute(0, 3, 1, 2)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            out = x if out is None else out + x  # (N, E, h, w)
        assert out is not None  # four stages
        return out.permute(0, 2, 3, 1)  # (N, h, w, E)
