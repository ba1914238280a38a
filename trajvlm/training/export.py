"""Merge a LoRA checkpoint into a standalone model directory that other tools load.

    trajvlm export --checkpoint runs/stage2_lora/checkpoint-500 --out runs/stage2_lora/merged
    trajvlm export --checkpoint runs/stage2_qlora/adapter --out runs/qlora-merged --precision bf16
    trajvlm export --checkpoint runs/pool/adapter --out runs/pool-trajvlm --format trajvlm

The checkpoint (a Trainer ``checkpoint-N`` or the run's ``adapter/``) holds the peft adapter, the fully trained
connector + projector (peft ``modules_to_save``), the processor and the resolved ``trajvlm_train_config.json``.
Export rebuilds the base model from that config *without* quantisation (a QLoRA adapter merges into full-precision
weights, as QLoRA intends), loads the adapter, ``merge_and_unload``s it and saves model + processor + config.
A checkpoint without an adapter (stage 1, full fine-tune) is loaded and saved again as a standalone directory.

Formats (``--format``; docs/export.md):

- ``llava_onevision``: a plain llava-hf LLaVA-OneVision checkpoint (``model_type: llava_onevision``, upstream weight
  names, a ``LlavaOnevisionProcessor`` layout). Only the ``pool`` connector with upstream pooling is upstream
  behaviour, so only such a model can be written this way; transformers alone loads it, and so can vLLM / SGLang.
- ``remote_code``: the TrajVLM format plus the model's code (the project's modules rewritten to relative imports,
  :mod:`trajvlm.training.remote_code`) and an ``auto_map``, so ``from_pretrained(path, trust_remote_code=True)`` loads it
  where neither ``trajvlm`` nor ``trajtok`` is installed.
- ``trajvlm``: the TrajVLM format alone (``model_type: trajvlm``; needs ``trajvlm`` installed). What training writes
  to ``final/``.
- ``auto`` (the command's default): ``llava_onevision`` for a ``pool`` model with upstream pooling, else
  ``remote_code``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

from trajvlm.configuration import TRAJVLM_FIELDS
from trajvlm.connectors.registry import connector_class_for, get_connector_class
from trajvlm.inference.loading import load_trained
from trajvlm.processing import TrajVLMProcessor
from trajvlm.training.config import TrainConfig
from trajvlm.training.remote_code import AUTO_MAP, remove_remote_code, write_remote_code

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("auto", "llava_onevision", "remote_code", "trajvlm")
LLAVA_PROCESSOR = "LlavaOnevisionProcessor"


def trains_trajectory_encoder(cfg: TrainConfig) -> bool:
    """Whether this recipe trains a TrajTok connector's trajectory encoder (its config then records it)."""
    if not get_connector_class(cfg.connector).holds_trajtok:
        return False
    trained = any(m in ("connector", "trajtok", "encoder") for m in cfg.trainable_modules) or cfg.full_finetune
    return trained and not any(m in ("connector", "trajtok", "encoder") for m in cfg.frozen_modules)


def record_encoder_training(model_config: Any, cfg: TrainConfig) -> None:
    """``trajtok.encoder_trained_by = "vlm"`` in a TrajVLM config when ``cfg`` trained the trajectory encoder."""
    if trains_trajectory_encoder(cfg) and isinstance(getattr(model_config, "trajtok", None), dict):
        model_config.trajtok = {**model_config.trajtok, "encoder_trained_by": "vlm"}


def plain_pooling_problem(config) -> str | None:
    """Why a TrajVLM config cannot be written as a plain llava_onevision model (None when it can)."""
    return connector_class_for(config).upstream_problem(getattr(config, "connector_kwargs", None) or {})


def resolve_format(config, format: str) -> str:
    """The concrete format for ``format`` (``auto`` -> ``llava_onevision`` or ``remote_code``); validates it."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    problem = plain_pooling_problem(config)
    if format == "auto":
        return "remote_code" if problem else "llava_onevision"
    if format == "llava_onevision" and problem:
        raise ValueError(
            f"cannot export as a plain llava_onevision checkpoint: {problem}. Use --format remote_code (loads with "
            "trust_remote_code=True) or --format trajvlm"
        )
    return format


def export(
    checkpoint: str | Path, out_dir: str | Path, *, precision: str | None = None, format: str = "trajvlm"
) -> Path:
    """Write ``out_dir``: the merged standalone model, the processor and the training config; returns ``out_dir``.

    ``format``: one of :data:`FORMATS` (see the module docstring). The default, ``trajvlm``, is what training writes
    to ``final/``; the ``trajvlm export`` command defaults to ``auto``.
    """

    ckpt, out = Path(checkpoint), Path(out_dir)
    if format not in FORMATS:  # before the (slow) merge
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    model = load_trained(ckpt, merge=True, precision=precision)
    cfg = TrainConfig.from_json(ckpt)
    record_encoder_training(model.config, cfg)  # the merged model is rebuilt from the base's config
    has_processor = (ckpt / "processor_config.json").is_file()
    processor = TrajVLMProcessor.from_pretrained(ckpt if has_processor else cfg.base_model).for_model(model.config)
    chosen = save_model(model, processor, out, format=format)
    cfg.save(out)
    logger.info("exported %s -> %s (%s, format %s)", ckpt, out, type(model).__name__, chosen)
    return out


def save_model(model, processor, out_dir: str | Path, *, format: str = "auto") -> str:
    """Save a (merged) TrajVLM and its processor to ``out_dir`` in ``format``; returns the concrete format."""
    out = Path(out_dir)
    chosen = resolve_format(model.config, format)
    out.mkdir(parents=True, exist_ok=True)
    remove_remote_code(out)  # an earlier export's code must not outlive its model
    if chosen == "llava_onevision":
        save_llava_onevision(model, processor, out)
        return chosen
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if chosen == "remote_code":
        add_remote_code(out)
    return chosen


def add_remote_code(out_dir: str | Path) -> None:
    """Write the model's code into a saved TrajVLM folder and point the Auto classes at it (``auto_map``)."""
    out = Path(out_dir)
    write_remote_code(out)
    _update_json(out / "config.json", auto_map=dict(AUTO_MAP))
    _update_json(out / "processor_config.json", auto_map={"AutoProcessor": AUTO_MAP["AutoProcessor"]})


def _update_json(path: Path, **values: Any) -> None:
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def llava_onevision_config(config):
    """The plain ``LlavaOnevisionConfig`` of a TrajVLM config (every upstream field, none of the connector's)."""
    data = config.to_dict()
    for key in (*TRAJVLM_FIELDS, "model_type", "architectures", "transformers_version", "auto_map"):
        data.pop(key, None)
    return LlavaOnevisionConfig(**data)


def save_llava_onevision(model, processor, out_dir: str | Path) -> None:
    """Write a ``pool`` TrajVLM as a plain llava-hf LLaVA-OneVision checkpoint (model, tokenizer, processor files).

    The upstream model is built on the meta device and given the TrajVLM's own tower, projector, newline, LLM and
    LM head modules (no copy of the weights), so the saved tensors and their names are exactly upstream's.
    """
    problem = plain_pooling_problem(model.config)
    if problem:
        raise ValueError(f"cannot write a plain llava_onevision checkpoint: {problem}")
    out = Path(out_dir)
    with torch.device("meta"):
        plain = LlavaOnevisionForConditionalGeneration(llava_onevision_config(model.config))
    for name, _ in list(plain.model.named_children()):
        setattr(plain.model, name, getattr(model.model, name))
    for name, _ in list(plain.model.named_parameters(recurse=False)):
        setattr(plain.model, name, getattr(model.model, name))
    plain.lm_head = model.lm_head
    leftover = sorted(k for k, v in plain.state_dict().items() if v.is_meta)
    ours = {k for k in model.state_dict() if not k.startswith("model.connector.")}
    if leftover or set(plain.state_dict()) != ours:
        raise ValueError(
            f"the TrajVLM's weights do not map onto LlavaOnevisionForConditionalGeneration: unfilled {leftover}, "
            f"only upstream {sorted(set(plain.state_dict()) - ours)}, only TrajVLM {sorted(ours - set(plain.state_dict()))}"
        )
    plain.config.dtype = model.dtype
    plain.generation_config = model.generation_config
    plain.eval().save_pretrained(out)
    save_llava_processor(processor, model.config, out)


def save_llava_processor(processor, config, out_dir: str | Path) -> None:
    """Write the tokenizer, chat template and llava-hf processor configs of a plain LLaVA-OneVision checkpoint.

    The layout of the llava-hf repositories: ``processor_config.json`` (processor settings),
    ``preprocessor_config.json`` (image processor), ``video_preprocessor_config.json`` (video processor),
    ``chat_template.jinja`` and the tokenizer files. Videos are resized to the tower's square input (bicubic),
    rescaled by 1/255 and normalised with the processor's mean / std, as the TrajVLM processor does.
    """
    out = Path(out_dir)
    processor.tokenizer.save_pretrained(out)
    _update_json(out / "tokenizer_config.json", processor_class=LLAVA_PROCESSOR)
    if processor.chat_template:
        (out / "chat_template.jinja").write_text(processor.chat_template)
    grid = config.vision_config.image_size // config.vision_config.patch_size
    strategy = config.vision_feature_select_strategy
    settings = {
        "processor_class": LLAVA_PROCESSOR,
        "image_token": processor.image_token,
        "video_token": processor.video_token,
        # patch features per frame: upstream expands a video to T * ceil(sqrt(n) / 2)^2 + 1 tokens
        "num_image_tokens": grid * grid + (1 if strategy == "default" else 0),
        "vision_feature_select_strategy": strategy,
        "vision_aspect_ratio": config.vision_aspect_ratio,
    }
    (out / "processor_config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    size = {"height": config.vision_config.image_size, "width": config.vision_config.image_size}
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std),
        "processor_class": LLAVA_PROCESSOR,
        "resample": 3,  # bicubic
        "rescale_factor": 1 / 255,
        "size": size,
    }
    image = {
        **common,
        "do_pad": True,
        "image_grid_pinpoints": config.image_grid_pinpoints,
        "image_processor_type": "LlavaOnevisionImageProcessor",
    }
    (out / "preprocessor_config.json").write_text(json.dumps(image, indent=2, sort_keys=True) + "\n")
    video = {**common, "video_processor_type": "LlavaOnevisionVideoProcessor", "do_sample_frames": False}
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True) + "\n")
