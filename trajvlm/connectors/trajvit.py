"""The ``trajvit`` connector: one token per trajectory from an external pipeline (TrajViT, ICCV 2025).

TrajViT's video encoder (its Table 2) turns trajectories found *outside* the model (SAM + SAM2 in the paper) into
tokens: per frame, the features under the trajectory's mask are pooled; a sinusoidal encoding of the per-frame
bounding box is added; a small Perceiver resampler with one query attends over the trajectory's frames and gives
one token. This is the "trajectories without a learned segmenter" baseline the TrajTok paper improves on. Here the
features are the projected tower patches (the paper: a ResNet-18 pyramid at 56x56); masks are resized to the
tower's patch grid as coverage fractions (area pooling), so a patch half covered by the object counts half. The
pooling, encodings and resampler are ``trajtok.nn.trajvit_tokens`` (shared with TrajViT2's ``trajvit`` baseline);
this module adds where the masks come from, the token budget and the order.

How the masks reach the connector (kwarg ``mask_source``):

- ``"pseudolabel"`` (default): the connector runs the project's external CPU pipeline
  (``trajtok.pseudolabel``: key frames -> segmentation -> optical-flow tracking -> IoU merging) on the raw frames it
  recovers from the tower's input, without gradients, as TrajViT runs SAM/SAM2 on every video. Every entry point
  that passes only pixel values (training, ``trajvlm chat``, lmms-eval, the demo) works with the registry name
  alone. The pipeline's processing size is ``label_size`` (default: the tower's image size).
- ``"input"``: the caller gives the trajectories, e.g. the synthetic world's ground truth or a pseudo-label npz
  written by ``trajtok pseudolabel`` (:func:`load_trajectory_masks` reads and subsamples one). Pass them to the
  connector directly (``connector(..., trajectory_masks=masks)``) or around a model call
  (``with model.model.connector.use_masks(masks): model.generate(...)``). Without masks the connector raises a
  ``ValueError`` that says how to provide them. Plumbing a ``trajectory_masks`` field through the dataset, the
  collator and the lmms-eval model (a label file next to each video) is the natural next step; it is not done here.

Masks: per video a (T, H', W') integer tensor of trajectory ids (0 = none, m + 1 = trajectory m, the layout of
``trajtok.io.labels.TrajectoryLabels.trajectory_ids``); any resolution. Tokens are ordered by first appearance; when a
video has more trajectories than ``video_token_budget``, the largest (most pixels over the video) are kept.

kwargs: ``mask_source``, ``label_size``, ``min_pixels`` (a trajectory needs at least this many mask pixels in the
whole video, default 1), ``heads`` (resampler heads, default D // 64 or 1), ``image_mean`` / ``image_std``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trajtok.io.video import sample_indices
from trajtok.nn.trajvit_tokens import TrajViTTokens, boxes_of, sinusoidal
from trajvlm.connectors.base import Connector, ConnectorOutput
from trajvlm.token_budget import check_kwargs, finish_tokens, raw_frames, to_uint8_frames

if TYPE_CHECKING:
    from trajtok.pseudolabel.pipeline import PseudoLabeler

logger = logging.getLogger(__name__)

MASK_SOURCES = ("pseudolabel", "input")


def load_trajectory_masks(path: str | Path, num_frames: int | None = None) -> torch.Tensor:
    """A label npz (``masks`` + ``graph``) -> trajectory ids (T, H, W) long, uniformly subsampled to ``num_frames``.

    The subsampling matches ``trajtok.io.video.load_video(num_frames=...)`` on a video with the same frame count.
    """
    from trajtok.io.labels import load_labels

    labels = load_labels(path)
    if num_frames is not None:
        total = labels.masks.shape[0]
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        labels = labels.subsample(sample_indices(total, num_frames))
    return torch.from_numpy(labels.trajectory_ids()).long()


class TrajViTConnector(TrajViTTokens, Connector):
    """Mask-pooled features + box encoding per frame -> 1-query Perceiver over time -> one token per trajectory.

    The layers come from :class:`trajtok.nn.trajvit_tokens.TrajViTTokens` as this module's own attributes, so the
    state-dict keys (``box_proj.*``, ``time_proj.*``, ``norm_kv.*``, ``query``, ``attn.*``, ``norm_out.*``,
    ``mlp.*``) are those of every checkpoint saved before the implementation moved to trajtok.
    """

    name = "trajvit"
    reads_pixels = True

    def __init__(self, config) -> None:
        super().__init__(config)
        check_kwargs(self.name, self.kwargs, {"mask_source", "label_size", "min_pixels", "heads"})
        self.mask_source = self.kwargs.get("mask_source", "pseudolabel")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"trajvit mask_source must be one of {MASK_SOURCES}, got {self.mask_source!r}")
        self.label_size = int(self.kwargs.get("label_size", config.vision_config.image_size))
        self.min_pixels = int(self.kwargs.get("min_pixels", 1))
        if self.mask_source == "pseudolabel":
            from trajtok.pseudolabel.keyframes import require

            require("cv2")
        d = self.hidden
        heads = int(self.kwargs.get("heads", max(1, d // 64)))
        if d % heads:
            raise ValueError(f"trajvit heads ({heads}) must divide the LLM width {d}")
        self.token_mode = config.token_mode
        self.budget = int(config.video_token_budget)
        self.init_trajvit_layers(d, heads)
        self._given: torch.Tensor | list[torch.Tensor] | None = None
        self._labeler: PseudoLabeler | None = None

    @contextlib.contextmanager
    def use_masks(self, masks: torch.Tensor | list[torch.Tensor]) -> Iterator[None]:
        """Within the block, every forward uses ``masks`` (one (T, H', W') id tensor per video of the batch)."""
        previous, self._given = self._given, masks
        try:
            yield
        finally:
            self._given = previous

    def pseudolabel(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) RGB in [0, 1] -> trajectory ids (T, h', w') from the project's CPU pipeline."""
        if self._labeler is None:
            from trajtok.pseudolabel.pipeline import PseudoLabelConfig, PseudoLabeler

            self._labeler = PseudoLabeler(PseudoLabelConfig(size=self.label_size))
        result = self._labeler(to_uint8_frames(frames))
        return torch.from_numpy(result.masks).long()  # instance id = trajectory number + 1

    def _masks(self, given, pixel_values_videos: torch.Tensor, num_videos: int, num_frames: int) -> list[torch.Tensor]:
        if given is None and self.mask_source == "input":
            raise ValueError(
                "trajvit connector with mask_source='input' got no trajectory masks: pass trajectory_masks= "
                "(one (T, H, W) trajectory-id tensor per video, e.g. trajvlm.connectors.trajvit.load_trajectory_masks("
                "'video.npz', num_frames)) or wrap the call in `with connector.use_masks(masks):`; "
                "connector_kwargs mask_source: pseudolabel computes them from the frames instead"
            )
        if given is None:
            frames = raw_frames(pixel_values_videos, self.kwargs)
            with torch.no_grad():
                return [self.pseudolabel(frames[v]) for v in range(num_videos)]
        masks = list(given.unbind(0)) if isinstance(given, torch.Tensor) and given.ndim == 4 else list(given)
        if len(masks) != num_videos:
            raise ValueError(f"trajvit connector: {len(masks)} trajectory masks for {num_videos} videos")
        for i, m in enumerate(masks):
            if m.ndim != 3 or m.shape[0] != num_frames or m.is_floating_point():
                raise ValueError(
                    f"trajvit connector: trajectory masks of video {i} must be integer ids (T={num_frames}, H, W), "
                    f"got {m.dtype} {tuple(m.shape)}"
                )
        return masks

    def encode(self, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(T, h*w, D) features and (T, H', W') ids of one video -> (M, D) trajectory tokens."""
        num_frames, _, d = feats.shape
        ids = ids.to(feats.device)
        present = torch.unique(ids)
        present = present[present > 0]
        if present.numel() == 0:
            return feats.new_zeros(0, d)
        onehot = ids[None] == present[:, None, None, None]  # (M, T, H', W')
        pixels = onehot.flatten(1).sum(-1)  # (M,)
        keep = pixels >= self.min_pixels
        if int(keep.sum()) > self.budget:  # the largest trajectories fit the budget
            keep &= pixels >= pixels[keep].topk(self.budget).values[-1]
            keep &= torch.cumsum(keep.long(), 0) <= self.budget
        onehot = onehot[keep]
        if onehot.shape[0] == 0:
            return feats.new_zeros(0, d)
        first = onehot.flatten(2).any(-1).float().argmax(-1)  # (M,) first frame of each trajectory
        onehot = onehot[first.argsort(stable=True)]  # ordered by first appearance
        grid = feats.reshape(num_frames, self.grid, self.grid, d)  # (T, h, w, D)
        return self.trajectory_tokens(grid, onehot)  # (M, D)

    def forward(
        self, features, pixel_values_videos, num_frames, *, newline=None, trajectory_masks=None
    ) -> ConnectorOutput:
        num_videos = self._check(features, pixel_values_videos, num_frames)
        feats = features.view(num_videos, num_frames, self.grid * self.grid, -1)  # (V, T, h*w, D)
        given: Any = trajectory_masks if trajectory_masks is not None else self._given
        masks = self._masks(given, pixel_values_videos, num_videos, num_frames)
        per_video = [self.encode(feats[v], masks[v]) for v in range(num_videos)]
        return finish_tokens(self.name, per_video, self.token_mode, self.budget, {"trajectory_masks": masks})


__all__ = ["TrajViTConnector", "boxes_of", "load_trajectory_masks", "sinusoidal"]
