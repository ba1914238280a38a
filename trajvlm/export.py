"""Merge a LoRA checkpoint into a standalone model directory that ``from_pretrained`` loads.

    trajvlm export --checkpoint runs/stage2_lora/checkpoint-500 --out runs/stage2_lora/merged
    trajvlm export --checkpoint runs/stage2_qlora/adapter --out runs/qlora-merged --precision bf16

The checkpoint (a Trainer ``checkpoint-N`` or the run's ``adapter/``) holds the peft adapter, the fully trained
connector + projector (peft ``modules_to_save``), the processor and the resolved ``trajvlm_train_config.json``.
Export rebuilds the base model from that config *without* quantisation (a QLoRA adapter merges into full-precision
weights, as QLoRA intends), loads the adapter, ``merge_and_unload``s it and saves model + processor + config.
A checkpoint without an adapter (stage 1, full fine-tune) is loaded and saved again as a standalone directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from trajvlm.train_config import CONFIG_NAME, PRECISIONS, TrainConfig

logger = logging.getLogger(__name__)


def is_adapter_checkpoint(path: str | Path) -> bool:
    """True when ``path`` holds a peft adapter (``adapter_config.json``)."""
    return (Path(path) / "adapter_config.json").is_file()


def load_trained(checkpoint: str | Path, *, merge: bool = False, precision: str | None = None):
    """A trained model from a checkpoint directory: the PeftModel (``merge=False``) or the merged model.

    ``precision`` overrides the saved config's (``fp32``, ``bf16``, ``fp16``). The model is built unquantised.
    """
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.train import DTYPES, build_model

    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {ckpt}")
    cfg = TrainConfig.from_json(ckpt)
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        cfg = dataclasses.replace(cfg, precision=precision)
    if not is_adapter_checkpoint(ckpt):
        return TrajVLMForConditionalGeneration.from_pretrained(ckpt, dtype=DTYPES[cfg.precision]).eval()
    from peft import PeftModel

    base = build_model(dataclasses.replace(cfg, quantization="none"), quantize=False)
    model = PeftModel.from_pretrained(base, ckpt).eval()
    return model.merge_and_unload() if merge else model


def export(checkpoint: str | Path, out_dir: str | Path, *, precision: str | None = None) -> Path:
    """Write ``out_dir``: the merged standalone model, the processor and the training config; returns ``out_dir``."""
    from trajvlm.processing import TrajVLMProcessor
    from trajvlm.train import record_encoder_training

    ckpt, out = Path(checkpoint), Path(out_dir)
    model = load_trained(ckpt, merge=True, precision=precision)
    cfg = TrainConfig.from_json(ckpt)
    record_encoder_training(model.config, cfg)  # the merged model is rebuilt from the base's config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    has_processor = (ckpt / "processor_config.json").is_file()
    processor = TrajVLMProcessor.from_pretrained(ckpt if has_processor else cfg.base_model).for_model(model.config)
    processor.save_pretrained(out)
    cfg.save(out)
    logger.info("exported %s -> %s (%s)", ckpt, out, type(model).__name__)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help=f"checkpoint dir with {CONFIG_NAME}")
    parser.add_argument("--out", required=True, type=Path, help="output directory (standalone model + processor)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help="weight dtype (default: the config's)")


def run(args: argparse.Namespace) -> int:
    path = export(args.checkpoint, args.out, precision=args.precision)
    logger.info("load it with TrajVLMForConditionalGeneration.from_pretrained(%r)", str(path))
    return 0
