"""``trajvlm validate``: check a training preset, its data and its connector without training.

    trajvlm validate --config trajvlm/presets/stage2_lora.yaml                 # check a preset, print it resolved
    trajvlm validate trajvlm/presets/demo_pool.yaml max_steps=4 --samples 50   # with key=value overrides

The checks are :class:`~trajvlm.training.config.TrainConfig`'s own and
:func:`~trajvlm.training.data.validate_data`; any problem is one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from trajvlm.training.config import TrainConfig
from trajvlm.training.data import validate_data

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML preset (see trajvlm/presets); or give it first, bare")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of TrainConfig fields (values are YAML)")
    parser.add_argument("--no-files", action="store_true", help="only the settings: no model, data or connector")
    parser.add_argument(
        "--samples",
        type=int,
        default=200,
        help="samples of each data file rendered through the chat template and the connector's token count, "
        "evenly spaced (default 200; 0 = all)",
    )
    parser.add_argument("--decode", action="store_true", help="decode the sampled videos' frames (else metadata)")
    parser.add_argument("--strict", action="store_true", help="fail on any unusable row, not only past the skip limit")


def run(args: argparse.Namespace) -> int:
    """Raises the first problem found (``trajvlm`` prints it as ``error: ...`` and exits 2)."""
    config, overrides = args.config, list(args.overrides)
    if config is None:
        if not overrides or "=" in overrides[0]:
            raise ValueError("give the preset: trajvlm validate CONFIG.yaml [key=value ...] (or --config CONFIG.yaml)")
        config = Path(overrides.pop(0))
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0 (0 = all), got {args.samples}")
    cfg = TrainConfig.from_yaml(config, overrides)
    if not args.no_files:
        cfg.check_files()
        counts = cfg.check_data(strict=args.strict)
        connector = cfg.check_connector()
    sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if not args.no_files:
        validate_data(cfg, samples=args.samples or None, decode=args.decode)
        logger.info("%s: data %s, connector %s builds", config, counts, connector)
    logger.info("%s: ok", config)
    return 0


__all__ = ["add_arguments", "run"]
