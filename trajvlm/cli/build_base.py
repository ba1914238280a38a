"""``trajvlm build-base``: build a LLaVA-OneVision base (tiny LLM in code, or ``--llm`` any causal LM) and save it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from trajtok.checks import check_frame_count
from trajvlm.training.base import SIZES, build_llm_base, build_tiny_base, texts_from_dataset

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory (a llava-hf style checkpoint)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="tiny: tests; mid: benchmark geometry")
    parser.add_argument("--vocab-from", type=Path, default=None, help="a `trajtok synth` dataset whose texts to add")
    parser.add_argument("--num-frames", type=int, default=8, help="frames the processor samples per video")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    parser.add_argument(
        "--llm", default=None, help="a causal LM instead of the tiny random one: HF folder, .gguf file, or 'smollm2'"
    )
    parser.add_argument("--tower", type=Path, default=None, help="with --llm: a `trajvlm pretrain-tower` output")


def run(args: argparse.Namespace) -> int:
    check_frame_count("--num-frames (num_frames)", args.num_frames)
    if args.llm is not None:
        if args.vocab_from is not None or args.size != "tiny":
            raise ValueError("--llm keeps the LLM's own tokenizer and size: drop --vocab-from / --size")
        path = build_llm_base(args.out, args.llm, tower=args.tower, num_frames=args.num_frames, seed=args.seed)
        logger.info("base model written to %s", path)
        return 0
    if args.tower is not None:
        raise ValueError("--tower needs --llm (the tiny base builds its own random tower)")
    texts = texts_from_dataset(args.vocab_from) if args.vocab_from is not None else None
    path = build_tiny_base(args.out, vocab_texts=texts, seed=args.seed, num_frames=args.num_frames, **SIZES[args.size])
    logger.info("base model written to %s", path)
    return 0


__all__ = ["add_arguments", "run"]
