"""``TrajTokConfig``: every hyper-parameter of the TrajTok tokenizer (segmenter + trajectory encoder).

The config is saved as ``config.json`` next to every checkpoint and is the only thing ``TrajTok.from_pretrained``
reads to rebuild the architecture; behaviour is never inferred from a path or a model name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from trajtok.io.config import read_json_mapping, read_mapping, unknown_fields

BACKBONES = (
    "convnext",
    "resnet",
    "external",
    "dinov3_convnext",
)  # dinov3_convnext: only with segmenter_variant="release"
CARRY_MODES = ("gated", "restart")
EXTERNAL_GRIDS = ("features", "segmenter")
SEGMENTER_VARIANTS = ("trajtok", "release")
ENCODER_TRAINERS = ("clip", "probe", "vlm")  # objectives that can have trained the trajectory encoder
# Fields added after the first release, with the value that reproduces a checkpoint saved before them (applied by
# ``TrajTokConfig.load`` when a saved config.json lacks the key). Old checkpoints carried the raw final query
# states, which was measured to be no better than restarting every clip, so they stream with "restart".
LEGACY_DEFAULTS: dict[str, Any] = {"time_encoding": False, "carry": "restart"}
# The paper's size (and the release's): 224 px, E = 512, K = 128; ConvNeXt-Tiny/Small stage widths
PAPER_SIZES: dict[str, Any] = {"image_size": 224, "width": 512, "num_queries": 128}
CONVNEXT_HIDDEN_SIZES = [96, 192, 384, 768]


def _backbone(kind: str, depths: list[int], hidden_sizes: list[int] = CONVNEXT_HIDDEN_SIZES) -> dict[str, Any]:
    """The ``backbone`` / ``backbone_config`` fields of a preset (fresh lists: presets never share them)."""
    return {"backbone": kind, "backbone_config": {"depths": list(depths), "hidden_sizes": list(hidden_sizes)}}


TOKEN_MODES = ("adaptive", "fixed")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The default architecture of each backbone family (ConvNeXt-Tiny, ResNet-50), written out as lists: transformers'
# own ConvNextConfig defaults are tuples, which its backbone then concatenates to a list (TypeError).
BACKBONE_DEFAULTS: dict[str, dict[str, list[int]]] = {
    "convnext": {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]},
    "resnet": {"depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048]},
}


@dataclass
class TrajTokConfig:
    # --- backbone ---
    backbone: str = "convnext"  # "convnext" | "resnet" (a transformers backbone run on the frames) | "external":
    # no image model of its own; segmenter and encoder read the features passed to forward (e.g. a VLM tower's)
    backbone_config: dict = field(default_factory=dict)  # overrides for the transformers config (depths, hidden_sizes)
    backbone_pretrained: str | None = None  # local path or hub id of pretrained backbone weights (None = random init)
    image_size: int = 224  # frames are resized to image_size x image_size; the feature grid is image_size / 4
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean of [0, 1] RGB input (normalised inside)
    pixel_std: tuple[float, float, float] = IMAGENET_STD  # per-channel std of [0, 1] RGB input
    # --- widths ---
    width: int = 512  # E: width of the features, queries and trajectory latents
    num_queries: int = 128  # K: trajectory queries (the most trajectories one clip can hold)
    # --- segmenter (query Perceiver over the space-time features) ---
    seg_depth: int = 2  # Perceiver layers of the segmenter
    seg_heads: int = 8  # attention heads of the segmenter
    seg_head_dim: int = 64  # width of one segmenter head (even: rotary position needs pairs)
    assign_dim: int | None = None  # width of the shared query/feature space of the assignment MLPs (None: width // 4)
    seg_read_stride: int = 1  # the query Perceiver reads s x s average-pooled features (s^2 fewer keys / values;
    # cheaper on long video); the assignment logits stay on the full feature grid. 1 = the paper
    detach_features: bool = True  # stop-gradient of the features into the segmenter (keep True; ablation switch)
    init_logit_scale: float = 10.0  # initial value of the assignment scale softplus(s) + 1
    max_logit_scale: float = 20.0  # cap of the assignment scale (cosine similarity x scale = logit)
    # --- trajectory encoder (hard-mask Perceiver) ---
    enc_depth: int = 2  # Perceiver layers of the trajectory encoder
    enc_heads: int = 8  # attention heads of the encoder
    enc_head_dim: int = 64  # width of one encoder head (even: rotary position needs pairs)
    tokens_per_trajectory: tuple[int, ...] = (1, 2, 4)  # choices of tokens per trajectory; sampled in training
    inference_tokens_per_trajectory: int = 1  # tokens per trajectory in eval mode unless given to forward
    # --- shared layer settings ---
    mlp_ratio: float = 4.0  # hidden width of the Perceiver MLPs = mlp_ratio x width
    dropout: float = 0.0  # dropout on attention outputs and MLPs (training only)
    rope_base: float = 100.0  # rotary base; small because positions are grid/frame indices (at most a few hundred)
    layer_norm_eps: float = 1e-6  # epsilon of every LayerNorm of the tokenizer (not of the backbone)
    # --- inputs / outputs ---
    external_dim: int | None = None  # width of external features (VLM / adapter use); None = the model's own features
    output_dim: int | None = None  # width of the output tokens (None: external_dim if set, else width)
    external_grid: str = "features"  # external features on a coarser grid than the segmenter's: "features" (the
    # masks are resized down to the features' grid: an object that wins only a few segmenter cells can lose them
    # all and with them its token) | "segmenter" (the features are repeated up to the segmenter's grid, nearest:
    # every trajectory the segmenter finds keeps its pixels; the VLM connector's default)
    token_mode: str = "adaptive"  # "adaptive": only valid tokens, padded to the batch max | "fixed": N = max_tokens
    max_tokens: int | None = None  # fixed mode: pad / truncate to this many tokens (truncation keeps the biggest)
    min_pixels: int = 1  # a query that wins fewer hard-mask pixels than this in a clip is absent from that clip
    presence_fraction: float = 0.001  # ... or fewer than this fraction of the clip's T*h*w pixels (the larger
    # threshold applies); a trajectory has a token if it is present in at least one clip (not: >= 1 pixel summed
    # over all clips, which lets stray pixels of a long video add tokens)
    clip_len: int = 16  # frames per clip when streaming long video (tokenize_video, the VLM connector)
    # --- long video ---
    carry: str = "restart"  # how clip i+1's queries start: "restart" (the learned queries; identity across clips
    # from each query's spatial prior) | "gated" (the final states of clip i, each rescaled to its learned query's
    # norm and mixed with it by a learned gate: bounded). Default restart: on held-out noisy moving synthetic videos
    # (32-512 frames) a gated carry trained on 4 consecutive clips did not beat it on association (README)
    release_after: int = 4  # clips a carried query may stay absent before it returns to its learned query and its
    # trajectory is closed (a new object can then claim it as a new trajectory); 0 = never
    merge_returning: float = 0.0  # identity across absences: a trajectory that starts after another one of the
    # same video ended is merged into it (one token row: latents averaged over both, extents joined) when the
    # cosine similarity of their mean latents is at least this; each joins the most similar earlier one. 0 = off
    carry_backprop_clips: int = 2  # training: gradients flow back through at most this many carried states
    # (truncated backpropagation through time); the state is detached after every such group of clips
    time_encoding: bool = True  # add a sin-cos encoding of each trajectory's first and last frame in the video
    # (a learned projection of it) to its tokens, so tokens say when their trajectory exists
    extent_encoding: bool = False  # add a learned projection of each trajectory's union box, area per frame and
    # the centre where it starts and where it ends to its tokens, so tokens say where and how big their trajectory
    # is (e.g. which one is the background) and where it goes; starts at zero, so a checkpoint switched to it keeps
    # its tokens until the projection trains
    sparse_attention: bool = True  # encoder: each trajectory gathers only its own pixels (O(P) memory) instead of
    # a dense (K*n) x P attention mask; both give the same result
    segmenter_variant: str = "trajtok"  # "trajtok": this package's backbone fusion + segmenter | "release": the
    # authors' released segmenter layout (trajtok.nn.release_segmenter; weights via `trajtok convert-release`)
    # --- provenance ---
    encoder_trained_by: str | None = None  # what trained the trajectory encoder: None = nothing (random init, e.g.
    # after segmentation-only pretraining), "clip" = TrajViT2 co-training, "probe" = a TrajAdapter probe's loss,
    # "vlm" = a VLM's language loss (trajvlm train with the connector trainable)

    def __post_init__(self) -> None:
        # JSON / YAML give lists; keep tuples so configs compare equal after a round trip.
        self.pixel_mean = cast("tuple[float, float, float]", tuple(float(v) for v in self.pixel_mean))
        self.pixel_std = cast("tuple[float, float, float]", tuple(float(v) for v in self.pixel_std))
        if isinstance(self.tokens_per_trajectory, int):
            self.tokens_per_trajectory = (self.tokens_per_trajectory,)
        self.tokens_per_trajectory = tuple(int(v) for v in self.tokens_per_trajectory)
        # transformers configs need lists (JSON gives lists; Python callers and transformers' defaults give tuples)
        self.backbone_config = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dict(self.backbone_config or {}).items()
        }
        if self.backbone_pretrained is None and self.backbone in BACKBONE_DEFAULTS:
            self.backbone_config = {**BACKBONE_DEFAULTS[self.backbone], **self.backbone_config}

        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.image_size < 32 or self.image_size % 32 != 0:
            raise ValueError(
                f"image_size must be a multiple of 32 and >= 32 (four backbone stages), got {self.image_size}"
            )
        for name in ("pixel_mean", "pixel_std"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} must have 3 values (RGB), got {getattr(self, name)}")
        if min(self.pixel_std) <= 0:
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std}")
        for name in ("width", "num_queries", "seg_depth", "seg_heads", "seg_head_dim", "enc_depth", "enc_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.enc_head_dim < 1:
            raise ValueError(f"enc_head_dim must be >= 1, got {self.enc_head_dim}")
        for name in ("seg_head_dim", "enc_head_dim"):
            # rotary position over (t, y, x) splits a head into three parts of rotated pairs
            if getattr(self, name) % 2 != 0 or getattr(self, name) < 6:
                raise ValueError(f"{name} must be even and >= 6 (rotary over t, y, x), got {getattr(self, name)}")
        if self.seg_read_stride < 1:
            raise ValueError(f"seg_read_stride must be >= 1, got {self.seg_read_stride}")
        if self.assign_dim is not None and self.assign_dim < 1:
            raise ValueError(f"assign_dim must be >= 1 or None, got {self.assign_dim}")
        if not self.init_logit_scale > 1.0:
            raise ValueError(f"init_logit_scale must be > 1 (scale = softplus(s) + 1), got {self.init_logit_scale}")
        if self.max_logit_scale < self.init_logit_scale:
            raise ValueError(
                f"max_logit_scale ({self.max_logit_scale}) must be >= init_logit_scale ({self.init_logit_scale})"
            )
        if not self.tokens_per_trajectory or min(self.tokens_per_trajectory) < 1:
            raise ValueError(
                f"tokens_per_trajectory must be a non-empty tuple of ints >= 1, got {self.tokens_per_trajectory}"
            )
        if self.inference_tokens_per_trajectory < 1:
            raise ValueError(
                f"inference_tokens_per_trajectory must be >= 1, got {self.inference_tokens_per_trajectory}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.rope_base <= 1.0:
            raise ValueError(f"rope_base must be > 1, got {self.rope_base}")
        if self.external_dim is not None and self.external_dim < 1:
            raise ValueError(f"external_dim must be >= 1 or None, got {self.external_dim}")
        if self.output_dim is not None and self.output_dim < 1:
            raise ValueError(f"output_dim must be >= 1 or None, got {self.output_dim}")
        if self.token_mode not in TOKEN_MODES:
            raise ValueError(f"token_mode must be one of {TOKEN_MODES}, got {self.token_mode!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")
        if self.token_mode == "fixed" and self.max_tokens is None:
            raise ValueError("token_mode='fixed' needs max_tokens (the padded token count N); got max_tokens=None")
        if self.min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {self.min_pixels}")
        if self.clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {self.clip_len}")
        if not 0.0 <= self.presence_fraction < 1.0:
            raise ValueError(f"presence_fraction must be in [0, 1), got {self.presence_fraction}")
        if self.external_grid not in EXTERNAL_GRIDS:
            raise ValueError(f"external_grid must be one of {EXTERNAL_GRIDS}, got {self.external_grid!r}")
        if self.carry not in CARRY_MODES:
            raise ValueError(f"carry must be one of {CARRY_MODES}, got {self.carry!r}")
        if self.release_after < 0:
            raise ValueError(f"release_after must be >= 0 clips (0 = never release), got {self.release_after}")
        if not 0.0 <= self.merge_returning <= 1.0:
            raise ValueError(f"merge_returning must be a cosine in [0, 1] (0 = off), got {self.merge_returning}")
        if self.carry_backprop_clips < 1:
            raise ValueError(f"carry_backprop_clips must be >= 1, got {self.carry_backprop_clips}")
        if self.backbone == "external" and self.external_dim is None:
            raise ValueError(
                "backbone='external' reads features passed to forward and needs their width: set external_dim"
            )
        if self.segmenter_variant == "release" and self.carry == "gated":
            raise ValueError("segmenter_variant='release' has no carry gate: use carry='restart'")
        if self.segmenter_variant not in SEGMENTER_VARIANTS:
            raise ValueError(f"segmenter_variant must be one of {SEGMENTER_VARIANTS}, got {self.segmenter_variant!r}")
        if (self.segmenter_variant == "release") != (self.backbone == "dinov3_convnext"):
            raise ValueError(
                "backbone='dinov3_convnext' goes with segmenter_variant='release' (and only there), got "
                f"backbone={self.backbone!r}, segmenter_variant={self.segmenter_variant!r}"
            )
        if self.segmenter_variant == "release" and self.backbone_pretrained is not None:
            raise ValueError(
                "segmenter_variant='release' loads its weights with `trajtok convert-release`, not backbone_pretrained"
            )
        if self.encoder_trained_by is not None and self.encoder_trained_by not in ENCODER_TRAINERS:
            raise ValueError(
                f"encoder_trained_by must be None or one of {ENCODER_TRAINERS}, got {self.encoder_trained_by!r}"
            )

    # --- derived sizes ---
    @property
    def grid_size(self) -> int:
        """h = w of the segmenter's feature grid (1/4 of image_size)."""
        return self.image_size // 4

    @property
    def resolved_assign_dim(self) -> int:
        return self.assign_dim if self.assign_dim is not None else max(1, self.width // 4)

    @property
    def resolved_output_dim(self) -> int:
        """D_out: output_dim, else external_dim, else width."""
        if self.output_dim is not None:
            return self.output_dim
        return self.external_dim if self.external_dim is not None else self.width

    @property
    def token_choices(self) -> tuple[int, ...]:
        """Every tokens-per-trajectory value the encoder has sub-latent offsets for (training choices + inference)."""
        return tuple(sorted(set(self.tokens_per_trajectory) | {self.inference_tokens_per_trajectory}))

    # --- (de)serialisation ---
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> TrajTokConfig:
        """Build from a dict (e.g. a YAML preset section); unknown keys raise ValueError listing the valid ones."""
        merged = {**d, **overrides}
        unknown_fields(cls, merged)
        return cls(**merged)

    def replace(self, **changes: Any) -> TrajTokConfig:
        """A copy with some fields changed (validated again)."""
        return self.from_dict(self.to_dict(), **changes)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> TrajTokConfig:
        """Read a config JSON written by ``save`` (a directory means its ``config.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        d = read_json_mapping(path, "TrajTok config")
        d = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in d}, **d}
        return cls.from_dict(d, **overrides)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> TrajTokConfig:
        """Read a YAML preset of TrajTokConfig fields; a file with a top-level ``model:`` section uses that section."""
        d = read_mapping(path, "TrajTok preset")
        if isinstance(d.get("model"), dict):
            d = d["model"]
        return cls.from_dict(d, **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> TrajTokConfig:
        """A tiny preset that runs in well under a second per clip on CPU (tests, docs, quick start)."""
        sizes = dict(image_size=64, width=64, num_queries=16, mlp_ratio=2.0)
        heads = dict(seg_depth=2, seg_heads=2, seg_head_dim=32, enc_depth=2, enc_heads=2, enc_head_dim=32)
        # tiny test clips have 16x16 grids: a single pixel is a real trajectory there
        base = {**_backbone("convnext", [1, 1, 1, 1], [16, 32, 64, 128]), **sizes, **heads, "presence_fraction": 0.0}
        return cls.from_dict(base, **overrides)

    # Which preset is which (the paper names ConvNeXt-Tiny, the authors' release ships ConvNeXt-Small):
    #   paper()                  this package's architecture at the paper's size, ConvNeXt-Tiny (depths 3-3-9-3)
    #   paper_convnext_small()   the same architecture with the release's backbone size, ConvNeXt-Small (3-3-27-3);
    #                            it cannot load the release's weights (its stage fusion and segmenter differ)
    #   release()                the release itself: DINOv3 ConvNeXt-Small and the release's segmenter layout;
    #                            the only preset that matches the release and loads its converted weights
    @classmethod
    def release(cls, **overrides: Any) -> TrajTokConfig:
        """The authors' released segmenter, the preset that matches the release (its weights load through
        ``trajtok convert-release``): DINOv3 ConvNeXt-Small (depths 3-3-27-3, 96-768) with the release's segmenter
        layout (``segmenter_variant="release"``), 224 px, E = 512, K = 128, 8 heads x 64."""
        heads = dict(seg_depth=2, seg_heads=8, seg_head_dim=64)
        base = {**_backbone("dinov3_convnext", [3, 3, 27, 3]), "segmenter_variant": "release", **PAPER_SIZES, **heads}
        return cls.from_dict(base, **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> TrajTokConfig:
        """The paper's size, ConvNeXt-Tiny: this package's architecture with a ConvNeXt-Tiny backbone (depths
        3-3-9-3, 96-768), 224 px, E = 512, K = 128, 8 heads x 64. Not the authors' release, which uses
        ConvNeXt-Small: see :meth:`release` (the release itself) and :meth:`paper_convnext_small`."""
        return cls._paper_architecture([3, 3, 9, 3], **overrides)

    @classmethod
    def paper_convnext_small(cls, **overrides: Any) -> TrajTokConfig:
        """This package's architecture with the backbone size of the authors' release, ConvNeXt-Small (depths
        3-3-27-3, 96-768), otherwise as :meth:`paper`. Matches the release's geometry, not its layout: the release's
        weights load only into :meth:`release`."""
        return cls._paper_architecture([3, 3, 27, 3], **overrides)

    @classmethod
    def _paper_architecture(cls, depths: list[int], **overrides: Any) -> TrajTokConfig:
        return cls.from_dict({**_backbone("convnext", depths), **PAPER_SIZES}, **overrides)
