"""``trajtok coordtok-train``: pretrain CoordTok by patch reconstruction; the recipe is
:mod:`trajtok.baselines.coordtok_train`."""

from __future__ import annotations

import argparse
from pathlib import Path

from trajtok.baselines.coordtok_train import CONFIG_NAME, load_config, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML/JSON mapping of coordtok-train fields (optional)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 model.image_size=64")


def run(args: argparse.Namespace) -> int:
    config = args.config
    if config is None and args.resume and (Path(args.out) / CONFIG_NAME).is_file():
        config = Path(args.out) / CONFIG_NAME
    cfg = load_config(config, args.overrides)  # bad settings: ValueError / FileNotFoundError (the CLI prints them)
    ckpt = train(cfg, args.out, resume=args.resume)
    print(f"checkpoint: {ckpt}")
    return 0
