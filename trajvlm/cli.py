"""The ``trajvlm`` command line: ``trajvlm {build-base,train,validate,export,chat,bench} ...``.

Each sub-command lives in the module that implements it and exposes ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen command's module is imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "build-base": ("trajvlm.base", "build a tiny LLaVA-OneVision-compatible base model in code and save it"),
    "train": ("trajvlm.train", "train TrajVLM from a YAML preset (stage 1 align / stage 2 LoRA, QLoRA, DeepSpeed)"),
    "validate": ("trajvlm.train_config", "check a training preset without building the model"),
    "export": ("trajvlm.export", "merge LoRA into a standalone model directory"),
    "chat": ("trajvlm.chat", "chat about a video (interactive, or one-shot with --prompt)"),
    "serve": ("trajvlm.serve.cli", "serve a model over an OpenAI-compatible HTTP API with a web page"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trajvlm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
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
