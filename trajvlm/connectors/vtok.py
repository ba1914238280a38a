"""The ``vtok`` connector: VTok's understanding tokens (arXiv 2602.04202), O(T + S) instead of O(T x S).

A video is cut into shots by the project's key-frame detector (``trajtok.pseudolabel.keyframes``: a key frame
where at least 2 of 3 shot detectors fire; one key frame per shot, the first frame of each shot). Each shot gives

- **S spatial tokens**: its key frame's projected tower patches, pooled 2x2 on the patch grid exactly as the
  ``pool`` connector (bilinear to ``ceil(g / stride)``; S = 196 for SigLIP at 384 px, 16 for the tiny base);
- **one token per frame** of the shot: a learned attention pooling over the patches of
  ``W_res (f_t - f_key) + W_abs f_t`` followed by an MLP. For a later frame it encodes that frame's change
  relative to the key frame (the residual); for the key frame itself, where the residual is zero, it is a
  summary token of the key frame that opens the shot.

Tokens are ordered in time: ``[S key-frame tokens, T_1 frame tokens]`` for shot 1, then shot 2, ... A video of
T frames and n shots gives ``n * S + T`` tokens: exactly **T + S** for a single-shot video.

Choices the paper leaves open, made here:

- *key frames*: the project's 2-of-3 shot detector on the raw frames at the tower's resolution (kwarg
  ``shots="detect"``, default), or one shot for the whole video (``shots="single"``, no OpenCV needed); each shot's
  key frame is its first frame (the paper picks "a key frame", not which);
- *spatial tokens*: the tower's own projected patches, pooled as upstream LLaVA-OneVision pools them (no
  separate spatial tokenizer is trained), so the key frame reads exactly as in the ``pool`` connector;
- *residual token*: difference of projected features (not of pixels), pooled by a learned query (one head) so
  that the token concentrates on the patches that changed; the absolute term keeps the key frame's own token and
  disambiguates equal residuals of different content;
- *how many residual tokens*: one per frame, also for the key frame (the opener) - hence T + S, not T - 1 + S;
- *order and time*: the LLM reads the tokens in time order; no extra time embedding (the LLM's own positions
  carry the order, as for the ``pool`` connector).

kwargs: ``shots`` (``"detect"`` / ``"single"``), ``stride`` (2), ``content_threshold`` / ``intensity_threshold`` /
``histogram_rule`` / ``min_votes`` of the key-frame detector, ``image_mean`` / ``image_std`` (the tower's
normalisation, SigLIP 0.5 / 0.5). In ``fixed`` token mode the tokens are padded / truncated to
``video_token_budget``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trajvlm.connectors.base import Connector, ConnectorOutput
from trajvlm.token_budget import check_kwargs, finish_tokens, raw_frames, to_uint8_frames

logger = logging.getLogger(__name__)

SHOT_MODES = ("detect", "single")
DETECTOR_KEYS = ("content_threshold", "intensity_threshold", "histogram_rule", "histogram_threshold", "min_votes")


def detect_shots(frames: torch.Tensor, **detector: Any) -> list[int]:
    """First frame of every shot of one video ``frames`` (T, 3, H, W) RGB in [0, 1]; always starts with 0."""
    from trajtok.pseudolabel.keyframes import KeyframeConfig, detect_keyframes

    result = detect_keyframes(to_uint8_frames(frames), KeyframeConfig(**detector))
    return list(result.cuts)


class VTokConnector(Connector):
    """Key-frame spatial tokens + one residual token per frame, per shot (see the module docstring)."""

    name = "vtok"
    reads_pixels = True
    strides_patch_grid = True

    def __init__(self, config) -> None:
        super().__init__(config)
        check_kwargs(self.name, self.kwargs, {"shots", "stride", *DETECTOR_KEYS})
        self.shots = self.kwargs.get("shots", "detect")
        if self.shots not in SHOT_MODES:
            raise ValueError(f"vtok shots must be one of {SHOT_MODES}, got {self.shots!r}")
        self.stride = int(self.kwargs.get("stride", 2))
        if self.stride < 1:
            raise ValueError(f"vtok stride must be >= 1, got {self.stride}")
        self.detector = {k: self.kwargs[k] for k in DETECTOR_KEYS if k in self.kwargs}
        if self.shots == "detect":
            from trajtok.pseudolabel.keyframes import KeyframeConfig, require

            require("cv2", "pip install opencv-python-headless (or use connector_kwargs shots: single)")
            KeyframeConfig(**self.detector)  # validates the detector settings now, not at the first video
        self.side = math.ceil(self.grid / self.stride)  # pooled grid side
        self.token_mode = config.token_mode
        self.budget = int(config.video_token_budget)
        d = self.hidden
        self.res_proj = nn.Linear(d, d)
        self.abs_proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.query = nn.Parameter(torch.randn(d) * d**-0.5)
        self.out = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    @property
    def spatial_tokens(self) -> int:
        """S: spatial tokens of one key frame."""
        return self.side * self.side

    def num_tokens_for(self, num_frames: int, num_shots: int = 1) -> int:
        """Tokens of a video with ``num_frames`` frames in ``num_shots`` shots: ``num_shots * S + T``."""
        return num_shots * self.spatial_tokens + num_frames

    def pool_keyframe(self, feats: torch.Tensor) -> torch.Tensor:
        """(h*w, D) -> (S, D): 2-D pooling of one key frame's patch grid (upstream bilinear)."""
        x = feats.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)  # (1, D, h, w)
        x = F.interpolate(x, size=[self.side, self.side], mode="bilinear")
        return x.permute(0, 2, 3, 1).reshape(self.side * self.side, -1)  # (S, D)

    def frame_tokens(self, feats: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """(t, h*w, D) frames of a shot and (h*w, D) its key frame -> (t, D), one token per frame."""
        x = self.norm(self.res_proj(feats - key[None]) + self.abs_proj(feats))  # (t, h*w, D)
        weights = torch.softmax(x @ self.query.to(x.dtype) / math.sqrt(x.shape[-1]), dim=-1)  # (t, h*w)
        pooled = torch.einsum("tp,tpd->td", weights, x)  # (t, D)
        return pooled + self.out(pooled)

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None) -> ConnectorOutput:
        num_videos = self._check(features, pixel_values_videos, num_frames)
        feats = features.view(num_videos, num_frames, self.grid * self.grid, -1)  # (V, T, h*w, D)
        frames = raw_frames(pixel_values_videos, self.kwargs) if self.shots == "detect" else None
        per_video, all_shots = [], []
        for v in range(num_videos):
            starts = detect_shots(frames[v], **self.detector) if frames is not None else [0]
            bounds = [*starts, num_frames]
            pieces = []
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                key = feats[v, start]  # (h*w, D)
                pieces += [self.pool_keyframe(key), self.frame_tokens(feats[v, start:stop], key)]
            per_video.append(torch.cat(pieces))  # (n_shots * S + T, D)
            all_shots.append(starts)
        return finish_tokens(self.name, per_video, self.token_mode, self.budget, {"shots": all_shots})


__all__ = ["VTokConnector", "detect_shots"]
