"""``trajvlm export``: merge LoRA into a standalone model directory (formats: :mod:`trajvlm.training.export`)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from trajtok.checks import reading_weights
from trajvlm.inference.loading import CONFIG_NAME, PRECISIONS
from trajvlm.training.export import FORMATS, export

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help=f"checkpoint dir with {CONFIG_NAME}")
    parser.add_argument("--out", required=True, type=Path, help="output directory (standalone model + processor)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help="weight dtype (default: the config's)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="llava_onevision: plain llava-hf checkpoint (pool only; transformers/vLLM/SGLang load it); remote_code: "
        "TrajVLM + its code for trust_remote_code=True; trajvlm: needs the trajvlm package; auto (default): "
        "llava_onevision for pool, else remote_code",
    )


def run(args: argparse.Namespace) -> int:
    with reading_weights(args.checkpoint, "checkpoint"):  # a corrupt or truncated weights file: one error line
        path = export(args.checkpoint, args.out, precision=args.precision, format=args.format)
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") == "llava_onevision":
        logger.info("load it with LlavaOnevisionForConditionalGeneration.from_pretrained(%r)", str(path))
    elif "auto_map" in config:
        logger.info("load it with AutoModelForImageTextToText.from_pretrained(%r, trust_remote_code=True)", str(path))
    else:
        logger.info("load it with TrajVLMForConditionalGeneration.from_pretrained(%r)", str(path))
    return 0


__all__ = ["add_arguments", "run"]
