"""The ``Connector`` base class: the contract every vision connector keeps, and the capabilities it declares.

A connector turns projected tower features into the visual tokens the LLM reads::

    connector(features, pixel_values_videos, num_frames, newline=...) -> ConnectorOutput

- ``features``: (V*T, h*w, D) tower features after the projector (D = LLM width), frames of video v at rows
  ``v*T .. v*T+T-1``, patches row-major on the ``h x w`` grid (h = w = image_size // patch_size).
- ``pixel_values_videos``: (V, T, C, H, W) the tower's normalised input (connectors that look at pixels undo it).
- returns one (N_i, D) tensor per video, its count N_i, and connector-specific extras.

Code outside ``trajvlm.connectors`` never compares a connector's name: it asks the class (``get_connector_class``)
for one of the capabilities below, so a new connector declares what it does here and works everywhere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


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
    """Base class: holds the VLM config; subclasses implement :meth:`forward` and declare their capabilities."""

    name: ClassVar[str] = ""
    _is_hf_initialized: bool  # set by transformers' weight initialisation (see trajvlm.modeling)

    # ---- capabilities (class-level, so they can be asked without building the connector) ------------------------
    # The token count of a video follows from its frame count and the config alone, so the processor writes all of
    # a video's placeholders and the tokens fill them in place, through upstream LLaVA-OneVision's own video path
    # (whatever the token mode); the class then implements :meth:`tokens_per_video`. False: the count depends on
    # the content, and the model expands one placeholder per video (``adaptive``) or fills ``video_token_budget``
    # placeholders (``fixed``).
    expands_in_processor: ClassVar[bool] = False
    # Looks at the video's pixels (undoing the tower's normalisation with connector_kwargs image_mean / image_std),
    # so a base checkpoint's own image statistics are written into its connector_kwargs.
    reads_pixels: ClassVar[bool] = False
    # Built from ``config.trajtok`` (a TrajTokConfig dict) and holds the TrajTok at ``.trajtok``: a pretrained
    # tokenizer's weights load into it, and training it trains that trajectory encoder.
    holds_trajtok: ClassVar[bool] = False
    # Its output's ``extra["assignment"]`` assigns every pixel to a trajectory (what trajectory overlays draw).
    draws_trajectories: ClassVar[bool] = False
    # Takes a connector_kwargs ``stride`` (default 2) that pools each frame's patch grid stride x stride: the knob
    # that trades tokens per frame for detail.
    strides_patch_grid: ClassVar[bool] = False

    @classmethod
    def tokens_per_video(cls, num_frames: int, *, grid: int, connector_kwargs: dict[str, Any]) -> int:
        """Tokens of one video of ``num_frames`` frames (``expands_in_processor`` connectors only)."""
        raise NotImplementedError(
            f"the {cls.name!r} connector ({cls.__qualname__}) sets expands_in_processor but does not implement "
            "tokens_per_video"
        )

    @classmethod
    def placeholder_count(
        cls, num_frames: int, *, grid: int, token_mode: str, video_token_budget: int, connector_kwargs: dict[str, Any]
    ) -> int:
        """``<video>`` placeholder tokens one video of ``num_frames`` frames takes in the text."""
        if cls.expands_in_processor:
            return cls.tokens_per_video(num_frames, grid=grid, connector_kwargs=connector_kwargs)
        if token_mode == "fixed":
            return int(video_token_budget)
        return 1  # adaptive: expanded inside the model

    @classmethod
    def expands_in_model(cls, token_mode: str) -> bool:
        """True when each video has ONE placeholder that the model replaces by its N_i tokens."""
        return not cls.expands_in_processor and token_mode == "adaptive"

    @classmethod
    def upstream_problem(cls, connector_kwargs: dict[str, Any]) -> str | None:
        """Why a model with this connector is not upstream LLaVA-OneVision (None when it is, so that it can be
        written as a plain ``llava_onevision`` checkpoint)."""
        return f"its connector is {cls.name!r}; only 'pool' is upstream LLaVA-OneVision behaviour"

    # ---- the module --------------------------------------------------------------------------------------------

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
                tensor._is_hf_initialized = True  # type: ignore[attr-defined]  # transformers' flag on tensors
                continue
            if tensor.is_meta or tensor.shape != ref.shape:
                raise ValueError(
                    f"connector tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(ref.shape)}"
                )
            tensor.copy_(ref.to(device=tensor.device, dtype=tensor.dtype))
            tensor._is_hf_initialized = True  # type: ignore[attr-defined]  # transformers' flag on tensors


__all__ = ["Connector", "ConnectorOutput"]
