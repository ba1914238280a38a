"""TrajVLM: LLaVA-OneVision with a pluggable vision connector in place of patch pooling.

The transformers classes are subclassed and only the seam is overridden: ``TrajVLMModel.get_video_features``
runs the SigLIP tower and the projector exactly as upstream, then hands the projected patch features to the
connector chosen by ``config.connector`` (``trajvlm.connectors``) instead of ``apply_pooling``.

Where ``<video>`` becomes visual tokens:

- ``pool`` (and ``fixed`` token mode): the processor already expanded each ``<video>`` to the connector's fixed
  count; the model scatters the tokens into those positions (fixed mode masks padding tokens out of attention).
- ``adaptive``: each video has ONE ``<video>`` token; :meth:`TrajVLMModel.merge_video_tokens` splices in the
  video's N_i tokens and re-pads the batch on the side the input used (detected from the attention mask), building
  a new ``attention_mask``, ``position_ids`` and ``labels`` (-100 on visual positions). Dropped trajectories really
  shorten the LLM input.

``generate`` always builds the prompt embeddings first (connector + splice) and calls the parent ``generate`` with
``inputs_embeds``, so for every connector the returned sequences hold ONLY the newly generated tokens (the prompt is
not echoed). The number of visual tokens the LLM saw per video is kept in ``model.last_visual_token_counts`` and
returned by ``forward`` as ``visual_token_counts``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import transformers
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionModel,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.models.llava_onevision import modeling_llava_onevision as _upstream
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionCausalLMOutputWithPast,
    LlavaOnevisionPreTrainedModel,
)
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import select_hidden_states

from trajtok import TrajTok, TrajTokConfig
from trajvlm.configuration import TRAJVLM_FIELDS, TrajVLMConfig
from trajvlm.connectors.base import Connector, ConnectorOutput
from trajvlm.connectors.registry import build_connector, connector_class_for, get_connector_class
from trajvlm.processing import TrajVLMProcessor, checkpoint_image_stats

logger = logging.getLogger(__name__)

CONNECTOR_PREFIX = "model.connector."


def _slices_by_mask() -> bool:
    """Whether the installed transformers takes a boolean (B, L) ``logits_to_keep`` (keep the True positions)."""
    fn = getattr(_upstream, "slice_logits_to_keep", None)
    if fn is None:
        return False
    try:
        out = fn(torch.zeros(1, 3, 2), torch.tensor([[True, False, True]]))
    except (TypeError, IndexError, RuntimeError):
        return False
    return tuple(out.shape) == (2, 2)


SLICES_BY_MASK = _slices_by_mask()


@dataclass
class TrajVLMCausalLMOutputWithPast(LlavaOnevisionCausalLMOutputWithPast):
    r"""
    visual_token_counts (`list[int]`, *optional*):
        Visual tokens the LLM attended to per video of the batch (valid tokens only in fixed mode).
    """

    visual_token_counts: list[int] | None = None


@dataclass
class MergedInputs:
    """LLM inputs after the videos' tokens were put in place of their placeholders."""

    inputs_embeds: torch.Tensor  # (B, L', D)
    attention_mask: torch.Tensor  # (B, L') long
    position_ids: torch.Tensor  # (B, L') long, counting attended tokens only
    labels: torch.Tensor | None  # (B, L') with -100 on visual and padding positions
    visual_token_counts: list[int]  # per video
    padding_side: str  # "left" or "right": the side the batch was (re-)padded on
    connector_output: ConnectorOutput | None = None


def padding_side_of(attention_mask: torch.Tensor) -> str:
    """'left' if some row starts with padding, else 'right' (also for unpadded batches)."""
    if attention_mask.shape[1] and bool((attention_mask[:, 0] == 0).any()) and bool((attention_mask[:, -1] != 0).all()):
        return "left"
    return "right"


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) -> positions counting attended tokens only (padding gets 0), as ``generate`` builds them."""
    position_ids = attention_mask.long().cumsum(-1) - 1
    return position_ids.masked_fill(attention_mask == 0, 0)


if TYPE_CHECKING:  # the mixin's super() is the PreTrainedModel it is mixed into
    _InitMixinBase = PreTrainedModel
else:
    _InitMixinBase = object


class _ConnectorInitMixin(_InitMixinBase):
    """Keeps ``transformers``' default initialisation away from connector modules.

    ``from_pretrained`` builds on the meta device and re-initialises tensors the checkpoint lacks through
    ``_init_weights``; the connector fills those from a freshly constructed copy of itself instead.
    """

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, Connector):
            module.fill_uninitialized_()
            return
        if getattr(module, "_trajvlm_in_connector", False):
            return
        super()._init_weights(module)

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # For custom code transformers skips a module whose own (non-recursive) tensors are all loaded, which a
        # connector holding its layers only in sub-modules always looks like (it has no own tensors): its sub-modules'
        # fresh tensors would stay as allocated. The connector's fill runs whatever its own tensors.
        if isinstance(module, Connector) and not getattr(module, "_is_hf_initialized", False):
            self._init_weights(module)
            module._is_hf_initialized = True
            return
        super()._initialize_weights(module, is_custom_code)


class TrajVLMModel(_ConnectorInitMixin, LlavaOnevisionModel):
    """``LlavaOnevisionModel`` whose video features go through ``self.connector`` instead of ``apply_pooling``."""

    config_class = TrajVLMConfig
    config: TrajVLMConfig

    def __init__(self, config: TrajVLMConfig) -> None:
        super().__init__(config)
        # from_pretrained builds models under a meta-device context; connectors may hold plain tensors (rotary
        # tables) that loading never fills, so they are always built on a real device.
        real = torch.device("cpu") if torch.get_default_device().type == "meta" else contextlib.nullcontext()
        with real:
            self.connector = build_connector(config)
        for module in self.connector.modules():
            if module is not self.connector:
                module._trajvlm_in_connector = True  # type: ignore[assignment]  # a plain flag, not a submodule
        self.last_visual_token_counts: list[int] = []

    # ------------------------------------------------------------------------------------------------------------
    # the seam

    @merge_with_config_defaults
    @can_return_tuple
    @select_hidden_states("vision_feature_layer")
    def video_patch_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Any,
    ):
        """Tower + projector, as upstream: ``pooler_output`` = projected features (V*T, h*w, D)."""
        vision_outputs, selected = self._tower_features(
            pixel_values_videos, vision_feature_layer, vision_feature_select_strategy, **kwargs
        )
        vision_outputs.pooler_output = self.multi_modal_projector(selected)  # (V*T, h*w, D)
        return vision_outputs

    def _tower_features(self, pixel_values_videos, vision_feature_layer, vision_feature_select_strategy, **kwargs):
        batch_size, frames, channels, height, width = pixel_values_videos.shape
        # reshape: a streamed clip of several videos is a slice across frames, not contiguous
        flat = pixel_values_videos.reshape(batch_size * frames, channels, height, width)  # (V*T, C, H, W)
        vision_outputs = self.vision_tower(flat, return_dict=True, **kwargs)
        if isinstance(vision_feature_layer, int):
            selected = vision_outputs.hidden_states[vision_feature_layer]
        else:
            selected = torch.cat([vision_outputs.hidden_states[i] for i in vision_feature_layer], dim=-1)
        if vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        return vision_outputs, selected

    @torch.no_grad()
    @merge_with_config_defaults
    @select_hidden_states("vision_feature_layer")
    def tower_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """(V, T, C, H, W) -> the tower's selected features (V, T, h*w, D_tower) that the projector reads.

        What ``encode_videos(..., tower_features=)`` takes: a frozen tower run once per video and reused (the
        warm-up trains the projector and connector for many steps on the same videos)."""
        _, selected = self._tower_features(
            pixel_values_videos, vision_feature_layer, vision_feature_select_strategy, **kwargs
        )
        return selected.view(*pixel_values_videos.shape[:2], *selected.shape[1:])

    def encode_videos(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        tower_features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ConnectorOutput:
        """(V, T, C, H, W) normalised videos -> the connector's tokens per video.

        ``tower_features``: the same videos' :meth:`tower_features` (V, T, h*w, D_tower), computed earlier; the tower
        then does not run (the projector and the connector do, as always)."""
        if pixel_values_videos.ndim != 5:
            raise ValueError(
                f"pixel_values_videos must be (V, T, C, H, W), got shape {tuple(pixel_values_videos.shape)}"
            )
        if tower_features is not None and (
            tower_features.ndim != 4 or tuple(tower_features.shape[:2]) != tuple(pixel_values_videos.shape[:2])
        ):
            raise ValueError(
                f"tower_features must be (V, T, h*w, D) for videos {tuple(pixel_values_videos.shape[:2])}, "
                f"got shape {tuple(tower_features.shape)}"
            )

        def patch_features(videos: torch.Tensor) -> torch.Tensor:
            return self.video_patch_features(
                videos,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                return_dict=True,
                **kwargs,
            ).pooler_output

        streaming = getattr(self.connector, "encode_streaming", None)
        if streaming is not None and tower_features is None:
            # the connector runs the tower clip by clip: memory bounded by one clip
            out = streaming(pixel_values_videos, patch_features, newline=self.image_newline)
        else:
            features = (
                patch_features(pixel_values_videos)
                if tower_features is None
                else self.multi_modal_projector(tower_features.flatten(0, 1))  # (V*T, h*w, D)
            )
            out = self.connector(
                features, pixel_values_videos, pixel_values_videos.shape[1], newline=self.image_newline
            )
        self.last_visual_token_counts = list(out.extra.get("valid_counts", out.num_tokens))
        return out

    @merge_with_config_defaults
    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Any,
    ):
        """Upstream API: ``pooler_output`` (V, N, D) when all videos have N tokens, else a list of (N_i, D)."""
        kwargs.pop("return_dict", None)
        features = self.video_patch_features(
            pixel_values_videos,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            return_dict=True,
            **kwargs,
        )
        out = self.connector(
            features.pooler_output, pixel_values_videos, pixel_values_videos.shape[1], newline=self.image_newline
        )
        self.last_visual_token_counts = list(out.extra.get("valid_counts", out.num_tokens))
        stacked = out.extra.get("stacked")
        features.pooler_output = stacked if stacked is not None else out.tokens
        return features

    # ------------------------------------------------------------------------------------------------------------
    # placing the visual tokens

    def merge_video_tokens(
        self,
        input_ids: torch.LongTensor,
        pixel_values_videos: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        padding_side: str | None = None,
    ) -> MergedInputs:
        """Embed ``input_ids`` (B, L) and put each video's tokens in place of its ``<video>`` placeholder(s).

        Videos are matched to placeholders in reading order over the batch (sample 0's videos first). With
        ``config.expands_in_model`` each video has exactly one placeholder and the batch is rebuilt with the
        videos' N_i tokens spliced in, re-padded on ``padding_side`` (default: the side the input used, read from
        its attention mask; an unpadded input counts as right-padded, so generation must ask for "left": rows whose
        videos took fewer tokens than others' would otherwise end in padding); otherwise each video has exactly N
        placeholders and the tokens are scattered into them (padding tokens of fixed mode get attention 0).
        """
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be 'left', 'right' or None, got {padding_side!r}")
        if input_ids is None:
            raise ValueError("videos need input_ids with <video> placeholders (inputs_embeds alone cannot be expanded)")
        inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, L, D)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encode_videos(
            pixel_values_videos,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
        )
        placeholder = input_ids == self.config.video_token_id  # (B, L)
        n_placeholders = int(placeholder.sum())
        if self.config.expands_in_model:
            if n_placeholders != len(out.tokens):
                raise ValueError(
                    f"Video placeholders and videos do not match, tokens: {n_placeholders}, videos: "
                    f"{len(out.tokens)} (adaptive mode needs one <video> token per video; use processor.for_model)"
                )
            merged = self._splice(input_ids, inputs_embeds, attention_mask, labels, out, padding_side)
        else:
            merged = self._scatter(inputs_embeds, attention_mask, labels, placeholder, out)
        merged.connector_output = out
        return merged

    def _scatter(self, inputs_embeds, attention_mask, labels, placeholder, out: ConnectorOutput) -> MergedInputs:
        features = torch.cat(out.tokens, dim=0).to(inputs_embeds.device, inputs_embeds.dtype)  # (sum N, D)
        n_placeholders = int(placeholder.sum())
        if n_placeholders != features.shape[0]:
            raise ValueError(
                f"Video features and video tokens do not match, tokens: {n_placeholders}, features: "
                f"{features.shape[0]} (the processor must expand <video> for connector {self.config.connector!r} "
                f"in {self.config.token_mode!r} mode; use processor.for_model(model.config))"
            )
        mask3 = placeholder.unsqueeze(-1).expand_as(inputs_embeds)
        inputs_embeds = inputs_embeds.masked_scatter(mask3, features)
        attention_mask = attention_mask.clone()
        valid = out.extra.get("valid")
        if valid is not None:  # fixed mode: padding tokens are not attended to
            attention_mask[placeholder] = valid.reshape(-1).to(attention_mask.dtype)
        if labels is not None:
            labels = labels.masked_fill(placeholder, -100)
        counts = list(out.extra.get("valid_counts", out.num_tokens))
        return MergedInputs(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            labels=labels,
            visual_token_counts=counts,
            padding_side=padding_side_of(attention_mask),
        )

    def _splice(
        self, input_ids, inputs_embeds, attention_mask, labels, out: ConnectorOutput, side: str | None = None
    ) -> MergedInputs:
        side = side or padding_side_of(attention_mask)
        video_id = self.config.video_token_id
        rows_e: list[torch.Tensor] = []
        rows_m: list[torch.Tensor] = []
        rows_l: list[torch.Tensor] = []
        v = 0
        for b in range(input_ids.shape[0]):
            real = attention_mask[b].nonzero().flatten()
            start, stop = (int(real[0]), int(real[-1]) + 1) if real.numel() else (0, 0)  # strip padding
            ids, emb, msk = input_ids[b, start:stop], inputs_embeds[b, start:stop], attention_mask[b, start:stop]
            lab = labels[b, start:stop] if labels is not None else None
            pieces_e, pieces_m, pieces_l = [], [], []
            prev = 0
            for p in (ids == video_id).nonzero().flatten().tolist():
                tok = out.tokens[v].to(emb.device, emb.dtype)  # (N_v, D)
                n = tok.shape[0]
                pieces_e += [emb[prev:p], tok]
                pieces_m += [msk[prev:p], msk.new_ones(n)]
                if lab is not None:
                    pieces_l += [lab[prev:p], lab.new_full((n,), -100)]
                prev, v = p + 1, v + 1
            pieces_e.append(emb[prev:])
            pieces_m.append(msk[prev:])
            rows_e.append(torch.cat(pieces_e))
            rows_m.append(torch.cat(pieces_m))
            if lab is not None:
                pieces_l.append(lab[prev:])
                rows_l.append(torch.cat(pieces_l))
        length = max(r.shape[0] for r in rows_e)

        def pad(row: torch.Tensor, value: float) -> torch.Tensor:
            extra = length - row.shape[0]
            if not extra:
                return row
            filler = row.new_full((extra, *row.shape[1:]), value)
            return torch.cat([filler, row] if side == "left" else [row, filler])

        embeds = torch.stack([pad(r, 0.0) for r in rows_e])  # (B, L', D)
        mask = torch.stack([pad(r, 0) for r in rows_m])  # (B, L')
        new_labels = torch.stack([pad(r, -100) for r in rows_l]) if labels is not None else None
        return MergedInputs(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids_from_mask(mask),
            labels=new_labels,
            visual_token_counts=list(out.num_tokens),
            padding_side=side,
        )


class TrajVLMForConditionalGeneration(_ConnectorInitMixin, LlavaOnevisionForConditionalGeneration):
    """LLaVA-OneVision + connector. ``forward`` / ``generate`` take the upstream arguments.

    ``generate`` returns only the newly generated tokens, for every connector (see the module docstring).
    """

    config_class = TrajVLMConfig
    config: TrajVLMConfig

    def __init__(self, config: TrajVLMConfig) -> None:
        # The parent's __init__ hard-codes LlavaOnevisionModel; build the same three parts with ours.
        LlavaOnevisionPreTrainedModel.__init__(self, config)
        self.model = TrajVLMModel(config)
        assert isinstance(config.text_config, PreTrainedConfig)  # built from a dict by the config
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @property
    def connector(self) -> Connector:
        return self.model.connector

    @property
    def last_visual_token_counts(self) -> list[int]:
        """Visual tokens per video of the last forward / generate call."""
        return self.model.last_visual_token_counts

    def _merge_for_llm(
        self, input_ids, pixel_values_videos, attention_mask, labels, padding_side=None, **vision_kwargs
    ) -> MergedInputs:
        return self.model.merge_video_tokens(
            input_ids=input_ids,
            pixel_values_videos=pixel_values_videos,
            attention_mask=attention_mask,
            labels=labels,
            padding_side=padding_side,
            **{k: v for k, v in vision_kwargs.items() if v is not None},
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_sizes_videos: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        vision_aspect_ratio: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> TrajVLMCausalLMOutputWithPast:
        """Upstream ``forward``. With videos the processor did not expand, the LLM inputs are rebuilt first
        (:meth:`TrajVLMModel.merge_video_tokens`): ``position_ids`` are then recomputed from the new attention mask
        and ``labels`` gain -100 on visual positions; the loss uses those labels.
        """
        kwargs.pop("return_dict", None)
        counts = None
        # Videos whose placeholders the processor expanded go through the parent's own video path, which records the
        # counts on the model; no output field is read for this (their names and deprecations move between
        # transformers releases).
        upstream_path = connector_class_for(self.config).expands_in_processor
        upstream_videos = pixel_values_videos is not None and upstream_path
        if past_key_values is not None:  # transformers < 5.24 name; later releases pass `cache` in kwargs
            kwargs["past_key_values"] = past_key_values
        if pixel_values_videos is not None and not upstream_path:
            if inputs_embeds is not None:
                raise ValueError("pass input_ids (with <video> placeholders), not inputs_embeds, together with videos")
            merged = self._merge_for_llm(
                input_ids,
                pixel_values_videos,
                attention_mask,
                labels,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
            )
            input_ids, pixel_values_videos = None, None
            inputs_embeds, attention_mask = merged.inputs_embeds, merged.attention_mask
            position_ids, labels = merged.position_ids, merged.labels
            counts = merged.visual_token_counts
        if labels is not None and self.training and SLICES_BY_MASK and isinstance(logits_to_keep, int):
            if logits_to_keep == 0 and "shift_labels" not in kwargs:
                # Training: project onto the vocabulary only where a label is predicted. The LM head is about a fifth
                # of a small LLM's FLOPs per token and most positions (video, question) carry no label; the loss is
                # the same (the upstream loss on the kept positions' logits and their shifted labels).
                shifted = nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
                logits_to_keep = shifted != -100
                kwargs["shift_labels"] = shifted[logits_to_keep]
        out = super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            pixel_values_videos=pixel_values_videos,
            image_sizes_videos=image_sizes_videos,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            vision_aspect_ratio=vision_aspect_ratio,
            batch_num_images=batch_num_images,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            return_dict=True,
            **kwargs,
        )
        if upstream_videos:
            counts = list(self.model.last_visual_token_counts)
        return TrajVLMCausalLMOutputWithPast(**out, visual_token_counts=counts)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """Greedy/sampled generation with a KV cache; returns ONLY the new tokens (B, new) for every connector.

        The prompt (videos spliced in) is embedded first and passed to the parent ``generate`` as
        ``inputs_embeds`` with the matching ``attention_mask``; ``model.last_visual_token_counts`` tells how
        many visual tokens each video took.
        """
        vision_kwargs = {
            k: kwargs.pop(k) for k in ("vision_feature_layer", "vision_feature_select_strategy") if k in kwargs
        }
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("generate needs input_ids (or inputs_embeds without videos)")
            if pixel_values_videos is not None:
                # generation continues every row from its last position: the merged batch must be left padded
                merged = self._merge_for_llm(
                    input_ids, pixel_values_videos, attention_mask, None, padding_side="left", **vision_kwargs
                )
                inputs_embeds, attention_mask = merged.inputs_embeds, merged.attention_mask
            else:
                inputs_embeds = self.get_input_embeddings()(input_ids)
                self.model.last_visual_token_counts = []
        elif pixel_values_videos is not None:
            raise ValueError("pass input_ids (with <video> placeholders), not inputs_embeds, together with videos")
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        return super().generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)

    # ------------------------------------------------------------------------------------------------------------
    # loading an existing llava-hf checkpoint

    @classmethod
    def from_llava(
        cls,
        path: str | Path,
        *,
        connector: str = "trajtok",
        trajtok: Any = None,
        token_mode: str = "adaptive",
        attn_implementation: str = "sdpa",
        dtype: torch.dtype | str | None = None,
        quantization_config: Any = None,
        **config_kwargs: Any,
    ) -> TrajVLMForConditionalGeneration:
        """Load a llava-hf LLaVA-OneVision / LLaVA-Video checkpoint and add a connector.

        Tower, projector, newline and LLM weights come from ``path``; the connector is new (``trajtok=None`` or a
        ``TrajTokConfig``) or a pretrained TrajTok (``trajtok=`` a directory written by ``TrajTok.save_pretrained``).
        Loading is strict: any missing key outside the connector, any unexpected or mis-shaped key raises with the
        key lists. ``config_kwargs`` go to :class:`TrajVLMConfig` (``video_token_budget``, ``connector_kwargs``, ...).
        """
        path = Path(path)
        trajtok_state = None
        if isinstance(trajtok, (str, Path)):
            if not get_connector_class(connector).holds_trajtok:
                raise ValueError(
                    f"trajtok={str(trajtok)!r}: a pretrained TrajTok loads into a connector that holds one (trajtok); "
                    f"connector {connector!r} holds none"
                )
            trajtok, trajtok_state = _load_pretrained_trajtok(trajtok)
        config = trajvlm_config_for_base(path, connector, trajtok=trajtok, token_mode=token_mode, **config_kwargs)
        load_kwargs: dict[str, Any] = {"attn_implementation": attn_implementation}
        if dtype is not None:
            load_kwargs["dtype"] = dtype
        if quantization_config is not None:  # bitsandbytes (QLoRA); the connector is listed in its skip modules
            load_kwargs["quantization_config"] = quantization_config
        # with output_loading_info, from_pretrained returns (model, loading info)
        model, info = cast(
            "tuple[TrajVLMForConditionalGeneration, dict[str, Any]]",
            cls.from_pretrained(path, config=config, output_loading_info=True, **load_kwargs),
        )
        missing = sorted(k for k in info["missing_keys"] if not k.startswith(CONNECTOR_PREFIX))
        unexpected = sorted(k for k in info["unexpected_keys"] if not k.startswith(CONNECTOR_PREFIX))
        mismatched = sorted(str(k) for k in info.get("mismatched_keys", []))
        if missing or unexpected or mismatched:
            raise ValueError(
                f"checkpoint {path} does not match LLaVA-OneVision + connector {connector!r}: "
                f"missing keys {missing}; unexpected keys {unexpected}; mismatched keys {mismatched}"
            )
        if trajtok_state is not None:
            _load_trajtok_state(model.model.connector, trajtok_state)
        n_new = sum(p.numel() for p in model.model.connector.parameters())
        logger.info("loaded %s with a new %r connector (%.2fM parameters)", path, connector, n_new / 1e6)
        return model


def trajvlm_config_for_base(
    path: str | Path, connector: str, *, trajtok: Any = None, token_mode: str = "adaptive", **config_kwargs: Any
) -> TrajVLMConfig:
    """The :class:`TrajVLMConfig` of a llava-hf checkpoint (or a saved TrajVLM's backbone) with ``connector`` added.

    ``trajtok``: None (default TrajTok config for the trajtok connector), a ``TrajTokConfig`` or its dict. Pixel-reading
    connectors get the checkpoint's own image mean / std (``connector_kwargs``) unless given.
    """

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}: expected a llava-hf LLaVA-OneVision checkpoint dir")
    llava_config = AutoConfig.from_pretrained(path)
    if not isinstance(llava_config, LlavaOnevisionConfig):
        raise ValueError(
            f"{path} holds a {type(llava_config).__name__} ({llava_config.model_type}); expected a "
            "LLaVA-OneVision / LLaVA-Video config (model_type llava_onevision)"
        )
    assert isinstance(llava_config.text_config, PreTrainedConfig)  # built from a dict by the config
    width = llava_config.text_config.hidden_size
    trajtok_dict = _resolve_trajtok(trajtok, width)
    connector_class = get_connector_class(connector)
    if connector_class.holds_trajtok and trajtok_dict is None:
        trajtok_dict = _with_width(TrajTokConfig().to_dict(), width)
    base = llava_config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "auto_map"):
        base.pop(key, None)
    if isinstance(llava_config, TrajVLMConfig):  # re-attaching a connector to a saved TrajVLM's backbone
        for key in TRAJVLM_FIELDS:
            base.pop(key, None)
    stats = checkpoint_image_stats(path)
    if connector_class.reads_pixels and stats is not None:
        kwargs = dict(config_kwargs.get("connector_kwargs") or {})
        kwargs.setdefault("image_mean", stats[0])
        kwargs.setdefault("image_std", stats[1])
        config_kwargs = {**config_kwargs, "connector_kwargs": kwargs}
    base.update(connector=connector, token_mode=token_mode, trajtok=trajtok_dict, **config_kwargs)
    return TrajVLMConfig(**base)


def _with_width(data: dict, width: int) -> dict:
    """A TrajTok config dict for a new connector: the LLM's width in and out, and the tower's features read on the
    segmenter's finer grid (the coarse patch grid dropped small objects' trajectories: README, the main job)."""
    return {**data, "external_dim": width, "output_dim": width, "external_grid": "segmenter"}


def _load_pretrained_trajtok(path: str | Path) -> tuple[Any, dict]:
    """(TrajTokConfig, state dict) of a ``TrajTok.save_pretrained`` directory."""

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained TrajTok not found at {path} (a TrajTok.save_pretrained directory)")
    pretrained = TrajTok.from_pretrained(path)
    return pretrained.config, pretrained.state_dict()


def _resolve_trajtok(trajtok: Any, width: int) -> dict | None:
    """The connector's TrajTok config dict (LLM width set) for ``trajtok`` = None, a dict or a ``TrajTokConfig``."""
    if trajtok is None:
        return None
    if isinstance(trajtok, dict):
        return _with_width(trajtok, width)
    if hasattr(trajtok, "to_dict"):
        return _with_width(trajtok.to_dict(), width)
    raise ValueError(f"trajtok must be None, a TrajTokConfig, a dict or a path, got {type(trajtok).__name__}")


def _load_trajtok_state(connector: Connector, state: dict[str, torch.Tensor]) -> None:
    """Copy a pretrained TrajTok's weights into the connector: unexpected keys raise, new layers stay fresh."""
    trajtok = cast(nn.Module, connector.trajtok)  # where a holds_trajtok connector keeps its TrajTok
    target = trajtok.state_dict()
    unexpected = sorted(k for k in state if k not in target)
    if unexpected:
        raise ValueError(f"pretrained TrajTok has keys the connector lacks: {unexpected}")
    fresh = sorted(k for k in target if k not in state or state[k].shape != target[k].shape)
    usable = {k: v for k, v in state.items() if k not in fresh}
    trajtok.load_state_dict(usable, strict=False)
    if fresh:
        logger.info("TrajTok layers newly initialised for external features / LLM width: %s", fresh)


class _AtLeast1d(ConversionOps):
    """Loads a 0-dim checkpoint tensor as shape (1,): TrajTok's segmenter scale and gate were 0-dim before DeepSpeed
    ZeRO needed every parameter 1-dim. Saving writes the (1,) tensor as it is (the reverse is a pass-through)."""

    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        key, value = next(iter(input_dict.items()))
        tensor = value[0] if isinstance(value, list) else value
        return {target_patterns[0]: tensor.reshape(1) if tensor.dim() == 0 else tensor}

    @property
    def reverse_op(self) -> ConversionOps:
        return _AtLeast1d()


# TrajTok segmenter parameters that older TrajVLM checkpoints hold 0-dim (trajtok.nn.segmenter.SCALAR_PARAMETERS)
_SCALAR_CONVERTERS = [
    WeightConverter(f"segmenter.{name}", f"segmenter.{name}", [_AtLeast1d()]) for name in ("logit_scale", "carry_gate")
]


def register() -> None:
    """Register ``trajvlm`` with transformers' Auto classes (idempotent)."""
    AutoConfig.register("trajvlm", TrajVLMConfig, exist_ok=True)
    AutoModel.register(TrajVLMConfig, TrajVLMModel, exist_ok=True)
    AutoModelForImageTextToText.register(TrajVLMConfig, TrajVLMForConditionalGeneration, exist_ok=True)

    if hasattr(transformers, "AutoModelForVision2Seq"):
        transformers.AutoModelForVision2Seq.register(TrajVLMConfig, TrajVLMForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(TrajVLMConfig, TrajVLMProcessor, exist_ok=True)
    # llava-hf checkpoints store legacy key names (language_model.*, vision_tower.*); load them the same way.
    mapping = get_checkpoint_conversion_mapping("llava_onevision") or []
    register_checkpoint_conversion_mapping("trajvlm", [*mapping, *_SCALAR_CONVERTERS], overwrite=True)


register()

__all__ = [
    "MergedInputs",
    "TrajVLMCausalLMOutputWithPast",
    "TrajVLMForConditionalGeneration",
    "TrajVLMModel",
    "padding_side_of",
    "position_ids_from_mask",
    "register",
]
