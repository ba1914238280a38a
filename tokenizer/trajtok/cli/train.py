"""``trajtok train``: pretrain TrajTok from a YAML preset; the recipe is :mod:`trajtok.training.train`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trajtok.io.checkpoints import CONFIG_NAME
from trajtok.training.train import load_config, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="YAML preset path or shipped preset name (quickstart, smoke, paper)"
    )
    parser.add_argument("--out", default=None, help="run folder (default: the config's out_dir)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 lr=1e-3 model.num_queries=32")


def run(args: argparse.Namespace) -> int:
    if args.config is None:
        saved = Path(args.out or "") / CONFIG_NAME
        if not (args.resume and args.out and saved.is_file()):
            raise ValueError(
                "--config is required (except with --resume and an --out folder that has train_config.json)"
            )
        cfg = load_config(saved, args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
    ckpt = train(cfg, args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {ckpt}")
    return 0
