"""``trajvlm pretrain-tower``: pretrain the base's SigLIP tower on a synthetic world (sigmoid + word loss)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from trajvlm.training.tower import parse_overrides, pretrain_tower


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="a `trajtok synth --out` folder (train + val)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (vision/, text.pt, metrics)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of TowerConfig fields (values are YAML)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    metrics = pretrain_tower(args.data, args.out, parse_overrides(args.overrides))
    print(json.dumps({"split": metrics["eval_split"], **metrics[metrics["eval_split"]]}))
    return 0


__all__ = ["add_arguments", "run"]
