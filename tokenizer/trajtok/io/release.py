"""``trajtok convert-release``: the authors' released segmenter checkpoint (``model.pth``) -> a TrajTok folder.

    trajtok convert-release checkpoints/model.pth runs/release_segmenter
    trajtok tokenize clip.mp4 --checkpoint runs/release_segmenter

The file is read with ``torch.load(weights_only=True)`` (no pickled code runs). Its state dict (``ckpt["model"]``,
``module.`` prefixes stripped) is the segmenter pretraining model: ``vision_encoder.*`` (the segmenter: DINOv3
ConvNeXt backbone, stage projections, query Perceiver, heads) plus the text side of that pretraining
(``text_encoder.*``, ``vision_proj``, ``text_proj``, ``itm_head``, ``temp``), which the segmenter does not use and
is dropped by name. Every other key must map onto ``TrajTokConfig.release()``'s ``features.*`` / ``segmenter.*``:
an unmapped key, a missing target or a shape mismatch fails with the full list. The architecture (widths, depths,
K) is read from the tensor shapes. The trajectory encoder is not part of the release: it is freshly initialised
(``--seed``) and the saved config says so (``encoder_trained_by = None``).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trajtok.core.configuration import TrajTokConfig
from trajtok.core.modeling import TrajTok

logger = logging.getLogger(__name__)

SEG = "vision_encoder."
BACKBONE = SEG + "patch_encoder.backbone."
# the segmenter pretraining's text side: unused by the segmenter, dropped by name
DROPPED_PREFIXES = ("text_encoder.", "vision_proj.", "text_proj.", "itm_head.")
DROPPED_KEYS = ("temp",)

_BLOCK = {"dwconv": "depthwise_conv", "norm": "layer_norm", "pwconv1": "pointwise_conv1", "pwconv2": "pointwise_conv2"}
_PERCEIVER_SUB = {"0": "attn", "1": "mlp"}


def map_key(key: str) -> str | None:
    """Our name of one release key (after ``module.`` stripping); None when it has no place in TrajTok."""
    if key.startswith(BACKBONE):
        rest = key[len(BACKBONE) :]
        m = re.fullmatch(r"downsample_layers\.(\d)\.(\d)\.(weight|bias)", rest)
        if m:
            return f"features.backbone.model.stages.{m[1]}.downsample_layers.{m[2]}.{m[3]}"
        m = re.fullmatch(r"stages\.(\d)\.(\d+)\.(dwconv|norm|pwconv1|pwconv2)\.(weight|bias)", rest)
        if m:
            return f"features.backbone.model.stages.{m[1]}.layers.{m[2]}.{_BLOCK[m[3]]}.{m[4]}"
        m = re.fullmatch(r"stages\.(\d)\.(\d+)\.gamma", rest)
        if m:
            return f"features.backbone.model.stages.{m[1]}.layers.{m[2]}.gamma"
        m = re.fullmatch(r"(norm|norms\.3)\.(weight|bias)", rest)  # norms.3 is the same module as norm
        if m:
            return f"features.final_norm.{m[2]}"
        return None
    m = re.fullmatch(re.escape(SEG) + r"patch_encoder\.(proj\.\d\.(?:weight|bias)|ln\.(?:weight|bias))", key)
    if m:
        return "features." + m[1].replace("ln.", "norm.")
    if not key.startswith(SEG):
        return None
    rest = key[len(SEG) :]
    if rest == "trajectory_perceiver.latents":
        return "segmenter.queries"
    if rest == "log_scale":
        return "segmenter.logit_scale"
    m = re.fullmatch(r"trajectory_perceiver\.layers\.(\d+)\.0\.rotary_emb\.freqs", rest)
    if m:
        return f"segmenter.perceiver.layers.{m[1]}.attn.rotary_freqs"
    m = re.fullmatch(
        r"trajectory_perceiver\.layers\.(\d+)\.([01])\.(norm_media|norm_latents|to_q|to_kv|to_out|norm|gate|up|down)"
        r"\.(weight|bias)",
        rest,
    )
    if m:
        return f"segmenter.perceiver.layers.{m[1]}.{_PERCEIVER_SUB[m[2]]}.{m[3]}.{m[4]}"
    m = re.fullmatch(r"trajectory_perceiver\.(norm_lat|norm_ctx)\.(weight|bias)", rest)
    if m:
        return f"segmenter.perceiver.{m[1]}.{m[2]}"
    heads = {
        "traj_seg_head_low_res": "query_head",
        "patch_decoder_low_res": "feature_head",
        "traj_seg_head_high_res": "hires_query_head",
        "patch_decoder_high_res.conv_up": "hires_decoder",
    }
    for theirs, ours in heads.items():
        m = re.fullmatch(re.escape(theirs) + r"\.(\d)\.(weight|bias)", rest)
        if m:
            return f"segmenter.{ours}.{m[1]}.{m[2]}"
    return None


def is_dropped(key: str) -> bool:
    return key in DROPPED_KEYS or key.startswith(DROPPED_PREFIXES)


def read_release(path: str | os.PathLike) -> dict[str, Tensor]:
    """The release's state dict (``model`` entry, ``module.`` stripped), loaded without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"release checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, IndexError, TypeError, ValueError) as e:
        # a text file or other bytes: the unpickler stumbles with whichever of these its first opcodes give
        raise ValueError(f"{path}: not a weights-only PyTorch checkpoint ({type(e).__name__}: {e})") from e
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (or a dict with a 'model' state dict) of tensors")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def infer_config(state: dict[str, Tensor], **overrides: Any):
    """``TrajTokConfig.release()`` with widths, depths and K read from the release's tensor shapes."""

    def need(key: str) -> Tensor:
        if key not in state:
            raise ValueError(f"release checkpoint has no {key!r}: not the released segmenter layout")
        return state[key]

    latents = need(SEG + "trajectory_perceiver.latents")  # (K, E)
    k, e = latents.shape
    depths, hidden = [], []
    for i in range(4):
        blocks = {int(m[1]) for key in state if (m := re.match(re.escape(BACKBONE) + rf"stages\.{i}\.(\d+)\.", key))}
        if not blocks:
            raise ValueError(f"release checkpoint has no backbone stage {i} (keys {BACKBONE}stages.{i}.*)")
        depths.append(max(blocks) + 1)
        hidden.append(int(need(BACKBONE + f"stages.{i}.0.gamma").shape[0]))
    seg_depth = 1 + max(
        int(m[1]) for key in state if (m := re.match(re.escape(SEG) + r"trajectory_perceiver\.layers\.(\d+)\.", key))
    )
    heads = 8  # the release hard-codes 8 heads of E / 8
    fields: dict[str, Any] = dict(
        backbone_config={"depths": depths, "hidden_sizes": hidden},
        width=int(e),
        num_queries=int(k),
        seg_depth=seg_depth,
        seg_heads=heads,
        seg_head_dim=int(e) // heads,
        enc_heads=heads,
        enc_head_dim=int(e) // heads,
    )
    return TrajTokConfig.release(**{**fields, **overrides})


def convert(path: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, **overrides: Any) -> Path:
    """Convert the release checkpoint at ``path`` into a ``save_pretrained`` folder ``out``; returns ``out``."""
    state = read_release(path)
    mapped: dict[str, Tensor] = {}
    unmapped, dropped = [], 0
    for key, value in state.items():
        target = map_key(key)
        if target is None:
            if is_dropped(key):
                dropped += 1
            else:
                unmapped.append(key)
            continue
        if target in mapped and not torch.equal(mapped[target], value):
            raise ValueError(f"{path}: {key} and another key both map to {target} but hold different values")
        mapped[target] = value
    if unmapped:
        raise ValueError(f"{path}: {len(unmapped)} key(s) have no place in TrajTok: {sorted(unmapped)}")
    config = infer_config(state, **overrides)
    torch.manual_seed(seed)
    model = TrajTok(config, load_backbone_weights=False)
    own = model.state_dict()
    wanted = {k for k in own if k.startswith(("features.", "segmenter."))}
    missing = sorted(wanted - set(mapped))
    extra = sorted(set(mapped) - wanted)
    shapes = sorted(
        f"{k}: release {tuple(mapped[k].shape)} vs TrajTok {tuple(own[k].shape)}"
        for k in wanted & set(mapped)
        if own[k].shape != mapped[k].shape
    )
    if missing or extra or shapes:
        raise ValueError(
            f"{path} does not fill the release layout: missing {missing}, unexpected {extra}, shape mismatches {shapes}"
        )
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in mapped.items()}}, strict=True)
    model.save_pretrained(out)
    logger.info(
        "converted %d release tensors (%d of the text side dropped) into %s; trajectory encoder freshly initialised",
        len(state) - dropped,
        dropped,
        out,
    )
    return Path(out)
