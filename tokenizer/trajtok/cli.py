"""The ``trajtok`` command line: ``trajtok {synth,train,tokenize,eval,pseudolabel,viz} ...``.

Each sub-command lives in the module that implements it and exposes ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``trajtok synth`` never imports the
model and ``trajtok --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("trajtok.synth.cli", "generate the synthetic long-video world (mp4 + masks/graph npz + events + QA)"),
    "train": ("trajtok.train", "pretrain TrajTok from a YAML preset"),
    "tokenize": ("trajtok.tokenize", "tokenize a video with a checkpoint; print trajectories/tokens, write an overlay"),
    "eval": ("trajtok.evaluate", "space-time mIoU / association / token counts of a checkpoint on labelled videos"),
    "pseudolabel": ("trajtok.pseudolabel.cli", "trajectory pseudo-labels for real video (key frames, segment, track)"),
    "convert-release": ("trajtok.release", "convert the authors' released segmenter model.pth into a TrajTok folder"),
    "viz": ("trajtok.viz", "draw trajectory ids of a label npz over its video (PNG contact sheet, GIF/MP4)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trajtok", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    # Build only the chosen sub-parser (imports its module); list all in --help.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
