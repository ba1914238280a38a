"""TrajViT2: a video CLIP whose video tokens are TrajTok trajectory tokens, TrajTok co-trained end to end.

    trajtok train --config trajvit2_quick --out runs/trajvit2 data=data/synth              # TrajViT2
    trajtok train --config trajvit2_quick --out runs/vit3d data=data/synth trajvit2.video_encoder=vit3d

Video side: TrajTok tokens (B, N, D_tok) with their validity (B, N) -> linear to the transformer width -> [CLS] +
a pre-norm transformer encoder whose key-padding mask hides dropped trajectories (no positional embedding: position
enters through TrajTok's rotary) -> LayerNorm of [CLS] -> projection to the shared space. Text side: a small BERT
from ``transformers`` (random init) over a word-level tokenizer trained locally on the captions (``tokenizers``),
mean-pooled, projected. Loss: symmetric InfoNCE with a learnable temperature (init 0.07, clamped to [0.001, 0.5])
plus TrajTok's Hungarian focal + Dice segmentation loss on the clip's trajectory labels, so segmenter and encoder
learn together (the recipe weights: CLIP x1 + focal x0.5 + Dice x1).

Baselines behind the same transformer and text tower (``video_encoder``):

- ``vit3d``: space-time patch tokens (tubelets of ``tubelet`` frames x ``patch_size``^2 pixels, Conv3d) with a
  learned factorised (time + space) positional embedding.
- ``trajvit``: one token per ground-truth (or pseudo-label) trajectory, no learned segmenter (TrajViT, its
  Table 2): per frame the fused backbone features are mask-pooled per trajectory and sin-cos encodings of the
  frame's box and time are added; a 1-query Perceiver resampler over the trajectory's frames gives its token. The
  same implementation (``trajtok.nn.trajvit_tokens``) is the VLM plugin's ``trajvit`` connector.

Images are videos of T = 1 (ViT3D repeats the frame to fill a tubelet).

Shapes: B batch, T frames, C channels, H x W pixels, h x w grid, N video tokens, L text length, E embedding width.

A checkpoint folder (``save_pretrained``) holds ``trajvit2.json`` (this config, the TrajTok config inside),
``trajvit2.safetensors`` (every weight except TrajTok's), ``text_tokenizer.json`` and, for ``trajtok``, TrajTok's own
``model.safetensors`` + ``config.json`` (``encoder_trained_by = "clip"``), so ``trajtok tokenize``, ``trajtok eval``
and the VLM connector load the co-trained tokenizer from the same folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from trajtok.core.configuration import TrajTokConfig
from trajtok.core.losses import clip_loss, segmentation_loss
from trajtok.core.modeling import WEIGHTS_NAME as TRAJTOK_WEIGHTS
from trajtok.core.modeling import TrajTok
from trajtok.data import TrajectoryClipDataset
from trajtok.io.checkpoints import resolve_checkpoint
from trajtok.io.weights import load_strict
from trajtok.nn.backbone import FeatureBackbone
from trajtok.nn.trajvit_tokens import TrajViTTokens
from trajtok.synth.text import NUMBER_WORDS

logger = logging.getLogger(__name__)

VIDEO_ENCODERS = ("trajtok", "vit3d", "trajvit")
CONFIG_NAME = "trajvit2.json"
WEIGHTS_NAME = "trajvit2.safetensors"
TEXT_TOKENIZER_NAME = "text_tokenizer.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # ids 0..3


@dataclass
class TrajViT2Config:
    video_encoder: str = "trajtok"  # "trajtok" (TrajViT2) | "vit3d" (patch tokens) | "trajvit" (GT trajectories)
    trajtok: dict = field(default_factory=dict)  # TrajTokConfig fields (the tokenizer; its image_size / pixel stats
    # also set the geometry and normalisation of the vit3d and trajvit baselines)
    init_tokenizer: str | None = None  # trajtok only: a TrajTok checkpoint (folder or run) whose weights start the
    # tokenizer (e.g. a segmentation-pretrained segmenter); None = random init, everything learned together
    # --- video transformer ---
    width: int = 128  # width of the video transformer
    depth: int = 2  # transformer layers
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio x width
    embed_dim: int = 64  # width of the shared video-text embedding space
    # --- ViT3D baseline ---
    patch_size: int = 8  # side of a square patch in pixels (image_size must be a multiple)
    tubelet: int = 2  # frames per space-time patch
    max_frames: int = 16  # most frames ViT3D has temporal positions for
    # --- text tower (transformers BERT, random init) ---
    text_width: int = 128  # hidden width of the text transformer
    text_depth: int = 2  # text transformer layers
    text_heads: int = 4  # text attention heads
    text_max_len: int = 96  # captions are truncated to this many word pieces (with [CLS] and [SEP])
    text_vocab_size: int = 2000  # most words the locally trained word-level tokenizer keeps
    # --- contrastive temperature ---
    init_temperature: float = 0.07  # initial softmax temperature of the InfoNCE logits
    min_temperature: float = 0.001  # clamp of the learnable temperature (lower end)
    max_temperature: float = 0.5  # clamp of the learnable temperature (upper end)

    def __post_init__(self) -> None:
        self.trajtok = dict(self.trajtok or {})
        if self.video_encoder not in VIDEO_ENCODERS:
            raise ValueError(f"video_encoder must be one of {VIDEO_ENCODERS}, got {self.video_encoder!r}")
        for name in ("width", "depth", "heads", "embed_dim", "patch_size", "tubelet", "max_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("text_width", "text_depth", "text_heads", "text_vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads or self.text_width % self.text_heads:
            raise ValueError(
                f"width ({self.width}) and text_width ({self.text_width}) must be divisible by heads "
                f"({self.heads}) and text_heads ({self.text_heads})"
            )
        if self.text_max_len < 3:
            raise ValueError(f"text_max_len must be >= 3 ([CLS] word [SEP]), got {self.text_max_len}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0 < self.min_temperature <= self.init_temperature <= self.max_temperature:
            raise ValueError(
                "temperatures must satisfy 0 < min_temperature <= init_temperature <= max_temperature, got "
                f"{self.min_temperature}, {self.init_temperature}, {self.max_temperature}"
            )
        if self.init_tokenizer is not None and self.video_encoder != "trajtok":
            raise ValueError(f"init_tokenizer is for video_encoder='trajtok', got video_encoder={self.video_encoder!r}")
        tok = self.trajtok_config()
        if tok.image_size % self.patch_size:
            raise ValueError(f"image_size ({tok.image_size}) must be a multiple of patch_size ({self.patch_size})")

    def trajtok_config(self) -> TrajTokConfig:
        return TrajTokConfig.from_dict(self.trajtok)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrajViT2Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrajViT2Config fields {unknown}; valid fields: {sorted(names)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------------- text side


class TextTokenizer:
    """A word-level tokenizer (``tokenizers``) trained on the captions: lower case, words and punctuation.

    ``encode(texts)`` gives ``input_ids`` / ``attention_mask`` (B, L) padded to the longest text, truncated to
    ``max_len`` with [CLS] first and [SEP] last.
    """

    def __init__(self, tokenizer: Any, max_len: int):
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    @classmethod
    def train(cls, texts: list[str], vocab_size: int, max_len: int) -> TextTokenizer:
        if not texts:
            raise ValueError("the text tokenizer needs at least one caption to train on, got none")
        tok = Tokenizer(WordLevel(unk_token="[UNK]"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
        trainer = WordLevelTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS))
        tok.train_from_iterator(sorted(set(texts)), trainer)  # sorted: the vocabulary is a function of the texts
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        return cls(tok, max_len)

    @classmethod
    def load(cls, path: str | os.PathLike, max_len: int) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer not found: {path}")
        return cls(Tokenizer.from_file(str(path)), max_len)

    def save(self, path: str | os.PathLike) -> None:
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        if isinstance(texts, str) or not texts:
            raise ValueError(f"texts must be a non-empty list of strings, got {texts!r}")
        enc = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)  # (B, L)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)  # (B, L)
        return ids, mask


class TextTower(nn.Module):
    """input_ids / attention_mask (B, L) -> (B, E): a random-init BERT, masked mean over words, projection."""

    def __init__(self, vocab_size: int, width: int, depth: int, heads: int, max_len: int, embed_dim: int):
        super().__init__()
        cfg = BertConfig(
            vocab_size=vocab_size,
            hidden_size=width,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            intermediate_size=4 * width,
            max_position_embeddings=max_len,
            type_vocab_size=1,
            pad_token_id=0,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, W)
        m = attention_mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, W)
        return self.proj(self.norm(pooled))  # (B, E)


# ------------------------------------------------------------------------------------------------ video side


class VideoTransformer(nn.Module):
    """tokens (B, N, D_in) + valid (B, N) -> [CLS] embedding (B, E), and all output tokens (B, N, W) on request.

    Pre-norm transformer encoder; padded tokens are hidden as keys by the key-padding mask ([CLS] is always
    valid, so no attention row is empty).
    """

    def __init__(self, in_dim: int, width: int, depth: int, heads: int, mlp_ratio: float, embed_dim: int):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.cls = nn.Parameter(torch.randn(width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, tokens: Tensor, valid: Tensor, pos: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b = tokens.shape[0]
        x = self.inp(tokens)  # (B, N, W)
        if pos is not None:
            x = x + pos
        x = torch.cat([self.cls.to(x.dtype).expand(b, 1, -1), x], dim=1)  # (B, 1 + N, W)
        pad = torch.cat([valid.new_zeros(b, 1), ~valid], dim=1)  # (B, 1 + N) True = hidden
        x = self.norm(self.blocks(x, src_key_padding_mask=pad))  # (B, 1 + N, W)
        return self.proj(x[:, 0]), x[:, 1:]


def _normalise(pixel_values: Tensor, cfg: TrajTokConfig) -> Tensor:
    """(B, T, C, H, W) uint8 / [0, 1] float -> float (B, T, C, S, S) normalised with the config's pixel stats."""
    b, t, c, h, w = pixel_values.shape
    x = pixel_values.reshape(b * t, c, h, w).float()
    if pixel_values.dtype == torch.uint8:
        x = x / 255.0
    s = cfg.image_size
    if (h, w) != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(cfg.pixel_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.pixel_std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).view(b, t, c, s, s)


class PatchTokens(nn.Module):
    """ViT3D tokens: (B, T, C, H, W) -> tokens (B, T' * g * g, W) + positions (same shape), T' = ceil(T / tubelet).

    T is padded by repeating the last frame to a multiple of the tubelet (an image, T = 1, fills one tubelet).
    """

    def __init__(self, cfg: TrajTokConfig, patch: int, tubelet: int, max_frames: int, width: int):
        super().__init__()
        self.cfg, self.patch, self.tubelet = cfg, patch, tubelet
        g = cfg.image_size // patch
        self.embed = nn.Conv3d(3, width, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.pos_space = nn.Parameter(torch.randn(g * g, width) * 0.02)
        self.pos_time = nn.Parameter(torch.randn(max(1, -(-max_frames // tubelet)), width) * 0.02)

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor, tuple[int, int, int]]:
        x = _normalise(pixel_values, self.cfg)  # (B, T, C, S, S)
        t = x.shape[1]
        pad = -t % self.tubelet
        if pad:
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        tt = x.shape[1] // self.tubelet
        if tt > self.pos_time.shape[0]:
            raise ValueError(
                f"ViT3D has temporal positions for {self.pos_time.shape[0] * self.tubelet} frames (max_frames), "
                f"got a clip of {t} frames"
            )
        y = self.embed(x.transpose(1, 2))  # (B, W, T', g, g)
        b, w, _, g, _ = y.shape
        tokens = y.flatten(2).transpose(1, 2)  # (B, T' * g * g, W)
        pos = (self.pos_time[:tt, None, :] + self.pos_space[None, :, :]).reshape(1, tt * g * g, w)
        return tokens, pos.expand(b, -1, -1), (tt, g, g)


class GTTrajectoryTokens(TrajViTTokens, nn.Module):
    """TrajViT tokens: one per labelled trajectory of the clip (background included), no learned segmenter.

    The fused backbone features (TrajTok's own backbone fusion, at 1/4 of the input) go through TrajViT's mask
    pooling, box and time encodings and 1-query resampler over time (:class:`trajtok.nn.trajvit_tokens.TrajViTTokens`,
    shared with the VLM plugin's ``trajvit`` connector); resampler heads of width 64 (at least one).
    """

    def __init__(self, cfg: TrajTokConfig):
        super().__init__()
        self.cfg = cfg
        e = cfg.width
        self.features = FeatureBackbone(cfg.backbone, cfg.backbone_config, None, e, cfg.layer_norm_eps)
        heads = max(1, e // 64)
        self.init_trajvit_layers(e, heads if e % heads == 0 else 1)

    def forward(self, pixel_values: Tensor, target_ids: Tensor) -> tuple[Tensor, Tensor]:
        """pixel_values (B, T, C, H, W) and target_ids (B, T, H', W') (-1 unlabeled counts as background 0) ->
        tokens (B, M, E) and valid (B, M), M = the batch's largest id + 1; token m is trajectory id m."""
        x = _normalise(pixel_values, self.cfg)  # (B, T, C, S, S)
        b, t = x.shape[:2]
        feats = self.features(x.flatten(0, 1))  # (B*T, h, w, E)
        _, h, w, e = feats.shape
        feats = feats.view(b, t, h, w, e)
        ids = target_ids.to(feats.device).long().clamp_min(0)  # (B, T, H', W')
        m = int(ids.max()) + 1
        onehot = ids[:, None] == torch.arange(m, device=ids.device)[None, :, None, None, None]  # (B, M, T, H', W')
        valid = onehot.flatten(2).any(-1)  # (B, M)
        tokens = torch.stack([self.trajectory_tokens(feats[i], onehot[i]) for i in range(b)])  # (B, M, E)
        return tokens, valid


# ------------------------------------------------------------------------------------------------- the model


@dataclass
class VideoEmbedding:
    embeds: Tensor  # (B, E) projected [CLS] (not normalised)
    num_tokens: Tensor  # (B,) long: tokens the transformer read
    logits: Tensor | None = None  # (B, K, T, h0, w0) TrajTok assignment logits (trajtok only)
    tokens: Tensor | None = None  # (B, N, W) the transformer's output tokens
    valid: Tensor | None = None  # (B, N) bool
    grid: tuple[int, int, int] | None = None  # (T', h, w) of ViT3D's tokens


class TrajViT2(nn.Module):
    """Video CLIP with TrajTok (or a baseline) as the video tokenizer; see the module docstring."""

    def __init__(self, config: TrajViT2Config, text_tokenizer: TextTokenizer):
        super().__init__()
        if not isinstance(config, TrajViT2Config):
            raise ValueError(f"config must be a TrajViT2Config, got {type(config).__name__}")
        self.config = config
        self.text_tokenizer = text_tokenizer
        tok_cfg = config.trajtok_config()
        self.tok_cfg = tok_cfg
        if config.video_encoder == "trajtok":
            self.trajtok = TrajTok(tok_cfg)
            in_dim = tok_cfg.resolved_output_dim
        elif config.video_encoder == "vit3d":
            self.patches = PatchTokens(tok_cfg, config.patch_size, config.tubelet, config.max_frames, config.width)
            in_dim = config.width
        else:
            self.trajvit = GTTrajectoryTokens(tok_cfg)
            in_dim = tok_cfg.width
        self.video = VideoTransformer(
            in_dim, config.width, config.depth, config.heads, config.mlp_ratio, config.embed_dim
        )
        self.text = TextTower(
            text_tokenizer.vocab_size,
            config.text_width,
            config.text_depth,
            config.text_heads,
            config.text_max_len,
            config.embed_dim,
        )
        self.log_inv_temperature = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    # --- temperature ----------------------------------------------------------------------------------

    def logit_scale(self) -> Tensor:
        """1 / temperature, the temperature clamped to [min_temperature, max_temperature]."""
        c = self.config
        lo, hi = math.log(1.0 / c.max_temperature), math.log(1.0 / c.min_temperature)
        return self.log_inv_temperature.clamp(lo, hi).exp()

    # --- encoders --------------------------------------------------------------------------------------

    def encode_video(
        self,
        pixel_values: Tensor,
        target_ids: Tensor | None = None,
        *,
        tokens_per_trajectory: int | None = None,
    ) -> VideoEmbedding:
        """pixel_values (B, T, C, H, W) (uint8 or [0, 1] float; images: T = 1) -> VideoEmbedding.

        ``target_ids`` (B, T, H', W') trajectory ids are needed by ``trajvit`` (its tokens come from them).
        """
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (B, T, C, H, W), got shape {tuple(pixel_values.shape)}")
        enc = self.config.video_encoder
        if enc == "trajtok":
            out = self.trajtok(pixel_values, tokens_per_trajectory=tokens_per_trajectory)
            emb, toks = self.video(out.tokens, out.valid)
            return VideoEmbedding(emb, out.num_tokens, logits=out.logits, tokens=toks, valid=out.valid)
        if enc == "vit3d":
            tokens, pos, grid = self.patches(pixel_values)
            valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
            emb, toks = self.video(tokens, valid, pos)
            n = torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device)
            return VideoEmbedding(emb, n, tokens=toks, valid=valid, grid=grid)
        if target_ids is None:
            raise ValueError("video_encoder='trajvit' reads ground-truth / pseudo-label trajectories: pass target_ids")
        tokens, valid = self.trajvit(pixel_values, target_ids)
        emb, toks = self.video(tokens, valid)
        return VideoEmbedding(emb, valid.sum(1), tokens=toks, valid=valid)

    def encode_text(self, texts: list[str]) -> Tensor:
        """Captions -> (B, E) (not normalised)."""
        ids, mask = self.text_tokenizer.encode(texts)
        dev = self.log_inv_temperature.device
        return self.text(ids.to(dev), mask.to(dev))

    def training_losses(
        self,
        pixel_values: Tensor,
        captions: list[str],
        target_ids: Tensor,
        *,
        clip_weight: float = 1.0,
        focal_weight: float = 0.5,
        dice_weight: float = 1.0,
        background: str = "trajectory",
        multires: bool = False,
    ) -> dict[str, Tensor]:
        """CLIP x clip_weight + focal x focal_weight + Dice x dice_weight (segmentation terms: trajtok only)."""
        if len(captions) != pixel_values.shape[0]:
            raise ValueError(f"one caption per clip: got {len(captions)} captions for {pixel_values.shape[0]} clips")
        video = self.encode_video(pixel_values, target_ids)
        text = self.encode_text(captions)
        scale = self.logit_scale()
        clip = clip_loss(video.embeds, text, scale)
        out = {"clip": clip, "temperature": (1.0 / scale).detach(), "tokens": video.num_tokens.float().mean()}
        loss = clip_weight * clip
        if video.logits is not None:
            seg = segmentation_loss(
                video.logits.float(),
                target_ids,
                background=background,
                focal_weight=focal_weight,
                dice_weight=dice_weight,
                multires=multires,
            )
            loss = loss + seg["loss"]
            out.update(focal=seg["focal"], dice=seg["dice"])
        out["loss"] = loss
        return out

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """``training_losses`` (so that DDP wraps the model as it is)."""
        return self.training_losses(*args, **kwargs)

    # --- persistence ------------------------------------------------------------------------------------

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the folder described in the module docstring (TrajTok's files only for ``trajtok``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if not k.startswith("trajtok.")}
        save_file(state, str(path / WEIGHTS_NAME), metadata={"format": "pt", "model": "trajvit2"})
        self.text_tokenizer.save(path / TEXT_TOKENIZER_NAME)
        (path / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        if self.config.video_encoder == "trajtok":
            self.trajtok.config = self.trajtok.config.replace(encoder_trained_by="clip")
            self.trajtok.save_pretrained(path)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load the weights of a ``save_pretrained`` folder into this model (strict: every mismatch is listed)."""
        path = Path(path)
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"TrajViT2 weights not found: {weights} (expected a folder from save_pretrained)")
        state = load_file(str(weights))
        if self.config.video_encoder == "trajvit" and "trajvit.box.weight" in state:
            raise ValueError(
                f"{weights}: a trajvit baseline that averaged its per-frame tokens over time (box + mlp layers); "
                "the baseline now uses TrajViT's 1-query resampler over time, which these weights do not fit: "
                "train it again"
            )
        if self.config.video_encoder == "trajtok":
            tok = path / TRAJTOK_WEIGHTS
            if not tok.is_file():
                raise FileNotFoundError(f"TrajTok weights of the TrajViT2 checkpoint not found: {tok}")
            state.update({f"trajtok.{k}": v for k, v in load_file(str(tok)).items()})
        load_strict(self, state, str(path), "TrajViT2")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> TrajViT2:
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"TrajViT2 config not found: {cfg_path} (expected a folder from save_pretrained)")
        try:
            config = TrajViT2Config.from_dict(json.loads(cfg_path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: not valid JSON ({e})") from e
        text = TextTokenizer.load(path / TEXT_TOKENIZER_NAME, config.text_max_len)
        model = cls(config, text)
        model.load_weights(path)
        model.eval()
        return model

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_for_training(fields: dict[str, Any], tokenizer_config: TrajTokConfig, captions: list[str]) -> TrajViT2:
    """A fresh TrajViT2 for ``trajtok train`` (objective ``clip``): the text tokenizer is trained on ``captions``."""
    config = TrajViT2Config.from_dict({**fields, "trajtok": tokenizer_config.to_dict()})
    if not captions:
        raise ValueError(
            "objective 'clip' needs captions: a synth dataset's SPLIT/captions.json or a captions.json (LLaVA format) "
            "beside the labels; the training videos have none"
        )
    text = TextTokenizer.train(captions, config.text_vocab_size, config.text_max_len)
    model = TrajViT2(config, text)
    if config.init_tokenizer is not None:
        path = resolve_checkpoint(config.init_tokenizer) / TRAJTOK_WEIGHTS
        model.trajtok.load_state_dict_strict(load_file(str(path)), source=str(path))
        logger.info("tokenizer initialised from %s", path)
    return model


# ------------------------------------------------------------------------------------------------ evaluation


def retrieval_metrics(video: Tensor, text: Tensor) -> dict[str, float]:
    """R@1/5/10 of paired embeddings (N, E): video i matches text i. Returns r{k}_t2v and r{k}_v2t in percent."""
    if video.ndim != 2 or video.shape != text.shape:
        raise ValueError(f"video and text must both be (N, E), got {tuple(video.shape)} and {tuple(text.shape)}")
    sim = F.normalize(video.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T  # (N, N)
    n = sim.shape[0]
    target = torch.arange(n)
    out = {}
    for name, s in (("t2v", sim.T), ("v2t", sim)):
        # rank of the true item = items scoring strictly higher (ties count in the item's favour)
        rank = (s > s[target, target][:, None]).sum(1)  # (N,)
        for k in (1, 5, 10):
            out[f"r{k}_{name}"] = float((rank < k).float().mean() * 100)
    return out


@torch.no_grad()
def evaluate_clip(
    model: TrajViT2,
    data_root: str | os.PathLike,
    split: str = "test",
    *,
    clip_len: int = 8,
    max_videos: int | None = None,
    batch_size: int = 16,
    count_prompt: str = "{n} objects move over the background.",
) -> dict[str, Any]:
    """Held-out retrieval (each video's first caption), zero-shot object counting by text prompts, tokens, time.

    Zero-shot counting: the prompt ``count_prompt`` with n = one, two, ... (number words) for every count that
    occurs in the split; a video's prediction is the prompt closest to it; the label is the number of objects of
    the video's record (its first caption's cast).
    """
    was_training = model.training
    model.eval()
    data = TrajectoryClipDataset(
        data_root, split, clip_len=clip_len, size=model.tok_cfg.image_size, train=False, max_videos=max_videos
    )
    keep = [i for i, v in enumerate(data.videos) if v.captions]
    if len(keep) < 2:
        raise ValueError(f"retrieval needs at least 2 captioned videos in {data_root} ({split}), got {len(keep)}")
    captions = [data.videos[i].captions[0] for i in keep]
    counts = [_count_from_labels(data.videos[i].ids) for i in keep]
    v_emb, tokens = [], []
    start = time.perf_counter()
    for s in range(0, len(keep), batch_size):
        items = [data.clip(i, max(data.videos[i].num_frames - clip_len, 0) // 2) for i in keep[s : s + batch_size]]
        pixels = torch.stack([x["pixel_values"] for x in items])
        ids = torch.stack([x["target_ids"] for x in items])
        dev = model.log_inv_temperature.device
        out = model.encode_video(pixels.to(dev), ids.to(dev))
        v_emb.append(out.embeds.cpu())
        tokens.append(out.num_tokens.cpu())
    infer = (time.perf_counter() - start) / len(keep)
    video = torch.cat(v_emb)
    text = torch.cat([model.encode_text(captions[s : s + batch_size]).cpu() for s in range(0, len(keep), batch_size)])
    result: dict[str, Any] = retrieval_metrics(video, text)
    classes = sorted(set(counts))
    prompts = [_count_prompt(count_prompt, c, NUMBER_WORDS) for c in classes]
    p_emb = F.normalize(model.encode_text(prompts).cpu().float(), dim=-1)
    pred = (F.normalize(video.float(), dim=-1) @ p_emb.T).argmax(1)
    truth = torch.tensor([classes.index(c) for c in counts])
    result.update(
        videos=len(keep),
        chance_r1=100.0 / len(keep),
        zero_shot_count_accuracy=float((pred == truth).float().mean() * 100),
        zero_shot_count_chance=float(max(counts.count(c) for c in classes) / len(counts) * 100),
        tokens_mean=float(torch.cat(tokens).float().mean()),
        infer_s_per_video=infer,
    )
    model.train(was_training)
    return result


def _count_prompt(template: str, n: int, words: list[str]) -> str:
    if n == 1:  # the captions' own wording for one object
        return "A single object moves over the background."
    text = template.format(n=words[n] if n < len(words) else str(n))
    return text[0].upper() + text[1:]


def _count_from_labels(ids: Any) -> int:
    """Objects of a labelled video: distinct trajectory ids > 0 over all its frames."""
    u = np.unique(ids)
    return int((u > 0).sum())
