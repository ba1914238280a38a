"""``trajtok eval``: space-time mIoU / association / token counts of a checkpoint on labelled videos
(:mod:`trajtok.training.evaluate`)."""

from __future__ import annotations

import argparse
import logging

from trajtok.checks import check_device, reading_weights
from trajtok.core.modeling import TrajTok
from trajtok.io.checkpoints import resolve_checkpoint
from trajtok.training.evaluate import evaluate_model, format_table, write_json

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint folder (save_pretrained) or training run folder"
    )
    parser.add_argument("--data", required=True, help="dataset folder (synth manifest, labels.json or videos + npz)")
    parser.add_argument("--split", default="test", help="split of a synth dataset (default: test)")
    parser.add_argument("--json", default=None, help="write the results here (per-video rows included)")
    parser.add_argument("--clip-len", type=int, default=None, help="frames per streamed clip (default: the model's)")
    parser.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N videos")
    parser.add_argument("--label-size", type=int, default=None, help="metric resolution (default: model image_size)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument(
        "--ids",
        choices=("rows", "queries"),
        default="rows",
        help="what a predicted trajectory is: a token row (default; a released query seen again is a new one) or a "
        "query (its segments count as one, the definition before rows)",
    )
    parser.add_argument("--release-after", type=int, default=None, help="override the model's release_after")
    parser.add_argument(
        "--merge-returning", type=float, default=None, help="override the model's merge_returning (0 = off)"
    )


def run(args: argparse.Namespace) -> int:
    for flag, value in (
        ("--max-videos", args.max_videos),
        ("--clip-len", args.clip_len),
        ("--label-size", args.label_size),
    ):
        if value is not None and value < 1:  # --max-videos -1 used to drop the last video (a Python slice)
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    check_device(args.device)
    ckpt = resolve_checkpoint(args.checkpoint)
    overrides = {
        name: value
        for name, value in (("release_after", args.release_after), ("merge_returning", args.merge_returning))
        if value is not None
    }
    with reading_weights(ckpt, "TrajTok checkpoint"):
        model = TrajTok.from_pretrained(ckpt, **overrides).to(args.device)
    logger.info("evaluating %s on %s (%s)", ckpt, args.data, args.split)
    result = evaluate_model(
        model,
        args.data,
        args.split,
        clip_len=args.clip_len,
        max_videos=args.max_videos,
        label_size=args.label_size,
        progress=True,
        by=args.ids,
    )
    result["checkpoint"] = str(ckpt)
    result["ids"] = args.ids
    result |= {f"override_{name}": value for name, value in overrides.items()}
    result["split"] = args.split
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        logger.info("wrote %s", args.json)
    return 0
