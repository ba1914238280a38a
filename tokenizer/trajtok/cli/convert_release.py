"""``trajtok convert-release``: the authors' released segmenter ``model.pth`` -> a TrajTok folder
(:mod:`trajtok.io.release`)."""

from __future__ import annotations

import argparse

from trajtok.io.release import convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="the release's model.pth (segmenter)")
    parser.add_argument("out", help="output folder (TrajTok save_pretrained format: model.safetensors + config.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh trajectory encoder")


def run(args: argparse.Namespace) -> int:
    out = convert(args.checkpoint, args.out, seed=args.seed)
    print(f"converted: {out}")
    return 0
