"""``trajvlm warmup``: stage 0, warm a new connector + projector up on the captions' words (no LLM pass)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from trajvlm.training.warmup import parse_overrides, warmup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, type=Path, help="a llava-hf base (or a TrajVLM model) folder")
    parser.add_argument("--train-json", required=True, type=Path, help="LLaVA-format captions (one per video)")
    parser.add_argument("--video-root", required=True, type=Path, help="folder the samples' videos are relative to")
    parser.add_argument("--out", required=True, type=Path, help="output TrajVLM model folder")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of WarmupConfig fields (values are YAML)")
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML preset of WarmupConfig fields (trajvlm/presets/warmup/); overrides apply after",
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = parse_overrides(args.overrides, args.config)
    metrics = warmup(args.base, args.train_json, args.video_root, args.out, cfg)
    keys = ("held_out_word_auc_before", "held_out_word_auc_after", "words_read", "train_s")
    print(json.dumps({k: metrics[k] for k in keys}))
    return 0


__all__ = ["add_arguments", "run"]
