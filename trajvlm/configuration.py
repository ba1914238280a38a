"""``TrajVLMConfig``: a LLaVA-OneVision config plus the choice of vision connector (``pool``, ``trajtok``, ...).

The connector replaces upstream's 2x2 patch pooling between the projector and the LLM (see ``trajvlm.modeling``).
Everything else (SigLIP tower, projector, Qwen2 LLM, token ids) is the llava-hf config unchanged, so an existing
LLaVA-OneVision / LLaVA-Video checkpoint maps onto it key for key (:meth:`TrajVLMConfig.from_llava_config`).
"""

from __future__ import annotations

from typing import Any

from transformers import LlavaOnevisionConfig, PreTrainedConfig

from trajvlm.connectors.registry import connector_class_for, connector_names

# TrajVLMConfig's own fields beyond LlavaOnevisionConfig's (dropped when a config becomes a plain llava_onevision one).
TRAJVLM_FIELDS: tuple[str, ...] = (
    "connector",
    "connector_kwargs",
    "trajtok",
    "token_mode",
    "video_token_budget",
    "tokens_per_trajectory",
)
TOKEN_MODES: tuple[str, ...] = ("adaptive", "fixed")


class TrajVLMConfig(LlavaOnevisionConfig):
    """LLaVA-OneVision config + connector settings. Saved in ``config.json`` with ``model_type: "trajvlm"``.

    Fields beyond ``LlavaOnevisionConfig``:
        connector: registry key of the vision connector: ``pool`` (upstream pooling, identical logits), ``trajtok``
            (trajectory tokens), ``resampler`` (fixed learnable queries), ``vtok`` (key-frame + residual tokens),
            ``tome`` (token merging), ``trajvit`` (external trajectories), ``coordtok`` (triplane latents).
        connector_kwargs: connector options, e.g. ``{"mode": "bilinear", "stride": 2}`` for ``pool``,
            ``{"image_mean": [...], "image_std": [...]}`` (the tower's normalisation) for ``trajtok``.
        trajtok: ``TrajTokConfig.to_dict()`` of the trajtok connector (``external_dim`` / ``output_dim`` = LLM width).
        token_mode: ``adaptive`` (each video's ``<video>`` placeholder becomes exactly its valid tokens inside the
            model: the LLM sequence shrinks with dropped trajectories) or ``fixed`` (``video_token_budget`` tokens per
            video, expanded by the processor; padding tokens are masked out of attention).
        video_token_budget: most trajectory tokens per video (the fixed-mode length; the resampler's query count).
        tokens_per_trajectory: tokens each trajectory emits (1, 2 or 4); None lets TrajTok choose (random in training,
            its ``inference_tokens_per_trajectory`` in eval).
    """

    model_type = "trajvlm"

    connector: str = "pool"
    connector_kwargs: dict | None = None
    trajtok: dict | None = None
    token_mode: str = "adaptive"
    video_token_budget: int = 256
    tokens_per_trajectory: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.connector not in connector_names():
            raise ValueError(f"unknown connector {self.connector!r}; valid connectors: {', '.join(connector_names())}")
        if self.token_mode not in TOKEN_MODES:
            raise ValueError(f"token_mode must be one of {TOKEN_MODES}, got {self.token_mode!r}")
        if int(self.video_token_budget) <= 0:
            raise ValueError(f"video_token_budget must be a positive number of tokens, got {self.video_token_budget}")
        if self.tokens_per_trajectory is not None and self.tokens_per_trajectory not in (1, 2, 4):
            raise ValueError(f"tokens_per_trajectory must be 1, 2, 4 or None, got {self.tokens_per_trajectory}")
        self.connector_kwargs = dict(self.connector_kwargs or {})
        if self.trajtok is not None:
            if not isinstance(self.trajtok, dict):
                raise ValueError(f"trajtok must be a TrajTokConfig.to_dict() dict, got {type(self.trajtok).__name__}")
            assert isinstance(self.text_config, PreTrainedConfig)  # built from a dict by super().__post_init__
            width = self.text_config.hidden_size
            for key in ("external_dim", "output_dim"):
                value = self.trajtok.get(key)
                if value is not None and int(value) != width:
                    raise ValueError(
                        f"trajtok.{key} = {value} but the LLM width is {width}; the trajtok connector reads projected "
                        f"tower features and emits LLM embeddings, so both must equal {width}"
                    )

    @property
    def patch_grid(self) -> int:
        """Side of the tower's patch grid (27 for SigLIP 384 px / patch 14)."""
        assert isinstance(self.vision_config, PreTrainedConfig)  # built from a dict by __post_init__
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def expands_in_model(self) -> bool:
        """True when each video has ONE ``<video>`` placeholder that the model replaces by its N_i tokens."""
        return connector_class_for(self).expands_in_model(self.token_mode)

    @classmethod
    def from_llava_config(cls, llava_config: LlavaOnevisionConfig, **connector_settings: Any) -> TrajVLMConfig:
        """A ``TrajVLMConfig`` with every field of ``llava_config`` plus ``connector_settings`` (connector=..., ...)."""
        data = llava_config.to_dict()
        for key in ("model_type", "architectures", "transformers_version", "auto_map"):
            data.pop(key, None)
        data.update(connector_settings)
        return cls(**data)


def __getattr__(name: str) -> Any:
    if name == "CONNECTOR_NAMES":  # the registry's names, read when asked (register_connector adds to them)
        return connector_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrajVLMConfig", "CONNECTOR_NAMES", "TOKEN_MODES"]  # noqa: F822 (CONNECTOR_NAMES: module __getattr__)
