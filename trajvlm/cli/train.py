"""``trajvlm train``: train TrajVLM from a YAML preset (stage 1 align / stage 2 LoRA, QLoRA, DeepSpeed).

    trajvlm train --config trajvlm/presets/demo_trajtok.yaml                    # quick start, CPU, minutes
    trajvlm train --config trajvlm/presets/stage2_lora.yaml max_steps=100       # key=value overrides
    trajvlm train --config trajvlm/presets/stage2_lora.yaml --resume            # continue from the last checkpoint

The recipe itself is :func:`trajvlm.training.trainer.train`; its module docstring says what each stage trains.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from trajvlm.training.config import TrainConfig
from trajvlm.training.trainer import train

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        action="append",
        help="YAML preset (see trajvlm/presets); repeat it to train several presets one after another in this launch "
        "(e.g. stage 1 then stage 2: one start-up of the processes; the overrides apply to each)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of TrainConfig fields (values are YAML)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")


def run(args: argparse.Namespace) -> int:
    if args.resume and len(args.config) > 1:
        raise ValueError(f"--resume takes one --config, got {len(args.config)}: resume each run on its own")
    configs = [TrainConfig.from_yaml(path, args.overrides) for path in args.config]  # every preset checked first
    for cfg in configs:
        out = train(cfg, resume=args.resume)
        logger.info("outputs in %s", out)
    return 0


__all__ = ["add_arguments", "run"]
