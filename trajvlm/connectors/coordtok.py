"""The ``coordtok`` connector: CoordTok's triplane latents (``trajtok.baselines.coordtok``) become the visual tokens.

CoordTok encodes a whole video into a fixed set of factorised triplane latents (xy, yt, xt planes; 1,280 tokens
of 8 channels for the paper's 128-frame 128x128 geometry) that its decoder can reconstruct any (t, x, y) patch
from. As a connector, the raw frames (recovered from the tower's normalised input and resized to the CoordTok's
``image_size``) go through the CoordTok encoder; each latent, with a learned embedding of its plane position, is
mapped by an MLP to the LLM width. The token count is fixed (``S^2 + 2 T_p S``) whatever the number of frames.
The tower's patch features are not used by this connector (CoordTok is its own video encoder); the tower still
runs in the model's video path.

kwargs: ``checkpoint`` (a ``trajtok coordtok-train`` checkpoint folder or a ``CoordTok.save_pretrained`` folder:
its config builds the encoder and its weights are loaded), ``coordtok`` (a ``CoordTokConfig`` dict for a randomly
initialised CoordTok; default ``CoordTokConfig.tiny()`` at the tower's image size), ``freeze_encoder`` (True with a
checkpoint: the pretrained encoder stays as reconstruction made it; only the projection trains),
``image_mean`` / ``image_std``. A checkpoint's weights are copied in when the connector is built, and saved with
the TrajVLM, so a saved model loads without the checkpoint folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trajvlm.connectors.base import Connector, ConnectorOutput
from trajvlm.token_budget import check_kwargs, finish_tokens, raw_frames

logger = logging.getLogger(__name__)


def coordtok_config_for(config, kwargs: dict):
    """The ``CoordTokConfig`` of the connector: the ``coordtok`` dict (written into the saved config when the
    connector is built), else the checkpoint's ``config.json``, else tiny at the tower's image size."""
    from trajtok.baselines.coordtok import CONFIG_NAME, CoordTokConfig

    if kwargs.get("coordtok") is not None:
        return CoordTokConfig.from_dict(dict(kwargs["coordtok"]))
    checkpoint = kwargs.get("checkpoint")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"coordtok checkpoint {path} has no {CONFIG_NAME} (a `trajtok coordtok-train` checkpoints/step_N "
                "folder or a CoordTok.save_pretrained folder)"
            )
        return CoordTokConfig.from_dict(json.loads((path / CONFIG_NAME).read_text()))
    size = config.vision_config.image_size
    tub = 8 if size % 8 == 0 else size
    return CoordTokConfig.tiny(image_size=size, tubelet_size=tub, patch_size=tub)


class CoordTokConnector(Connector):
    """Triplane latents of a CoordTok encoder -> MLP -> LLM tokens (see the module docstring)."""

    name = "coordtok"
    reads_pixels = True

    def __init__(self, config) -> None:
        super().__init__(config)
        from trajtok.baselines.coordtok import CoordTok

        check_kwargs(self.name, self.kwargs, {"checkpoint", "coordtok", "freeze_encoder"})
        ct_config = coordtok_config_for(config, self.kwargs)
        if ct_config.kind != "coordtok":
            raise ValueError(f"the coordtok connector needs a kind='coordtok' model, got {ct_config.kind!r}")
        self.coordtok = CoordTok(ct_config)
        checkpoint = self.kwargs.get("checkpoint")
        # A checkpoint's weights are copied in when the folder exists (a saved TrajVLM carries them itself, and its
        # config the architecture, so it loads without the folder).
        weights = Path(checkpoint) / "model.safetensors" if checkpoint is not None else None
        if weights is not None and "coordtok" not in self.kwargs and not weights.is_file():
            raise FileNotFoundError(f"coordtok checkpoint weights not found: {weights}")
        if weights is not None and weights.is_file():
            from safetensors.torch import load_file

            self.coordtok.load_state_dict_strict(load_file(str(weights)), source=str(weights))
        if config.connector_kwargs is not None:
            config.connector_kwargs["coordtok"] = ct_config.to_dict()  # saved with the model's config
        self.freeze = bool(self.kwargs.get("freeze_encoder", checkpoint is not None))
        if self.freeze:
            self.coordtok.requires_grad_(False)
        d, c = self.hidden, ct_config.latent_dim
        self.position = nn.Parameter(torch.zeros(self.coordtok.num_tokens, d))
        self.proj = nn.Sequential(nn.Linear(c, d), nn.GELU(), nn.Linear(d, d))
        self.token_mode = config.token_mode
        self.budget = int(config.video_token_budget)

    @property
    def num_video_tokens(self) -> int:
        return self.coordtok.num_tokens

    def forward(self, features, pixel_values_videos, num_frames, *, newline=None) -> ConnectorOutput:
        num_videos = self._check(features, pixel_values_videos, num_frames)
        size = self.coordtok.config.image_size
        frames = raw_frames(pixel_values_videos, self.kwargs)  # (V, T, 3, H, W) in [0, 1]
        if frames.shape[-2:] != (size, size):
            flat = F.interpolate(frames.flatten(0, 1).float(), size=(size, size), mode="bilinear", antialias=True)
            frames = flat.view(num_videos, num_frames, 3, size, size)
        dtype = next(self.proj.parameters()).dtype
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            latents = self.coordtok.encode(frames.to(dtype))  # (V, N, C)
        tokens = self.proj(latents) + self.position.to(dtype)  # (V, N, D)
        return finish_tokens(self.name, list(tokens.unbind(0)), self.token_mode, self.budget, {"latents": latents})


__all__ = ["CoordTokConnector", "coordtok_config_for"]
