"""The ``trajtok`` connector: trajectory tokens from ``trajtok.TrajTok`` reading the projected tower features."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from trajvlm.connectors.base import Connector, ConnectorOutput


def trajtok_config_for(config):
    """The ``TrajTokConfig`` of a TrajVLM config, with ``external_dim = output_dim = `` the LLM width."""
    from trajtok import TrajTokConfig
    from trajtok.core.configuration import LEGACY_DEFAULTS

    width = config.text_config.hidden_size
    data = dict(config.trajtok) if config.trajtok is not None else TrajTokConfig().to_dict()
    # A trajtok dict saved before a field existed gets the value that reproduces that checkpoint (to_dict() always
    # writes every field, so only older configs lack one).
    data = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in data}, **data}
    data["external_dim"] = width
    data["output_dim"] = width
    return TrajTokConfig.from_dict(data)


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
    image_mean: torch.Tensor  # (1, 1, 3, 1, 1) buffers: the tower's normalisation
    image_std: torch.Tensor
    reads_pixels = True
    holds_trajtok = True
    draws_trajectories = True

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


__all__ = ["TrajTokConnector", "trajtok_config_for"]
