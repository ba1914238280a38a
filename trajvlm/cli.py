"""The ``trajvlm`` command line: ``trajvlm COMMAND ...`` for the commands listed below.

Each sub-command lives in the module that implements it and exposes ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen command's module is imported. Ordinary user errors (a bad setting, a missing
or unreadable file, a video that does not decode, a dataset whose samples fail) print one ``error: ...`` line and
exit with status 2; ``-v`` adds the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

COMMANDS: dict[str, tuple[str, str]] = {
    "build-base": ("trajvlm.base", "build a tiny LLaVA-OneVision-compatible base model in code and save it"),
    "train": ("trajvlm.train", "train TrajVLM from a YAML preset (stage 1 align / stage 2 LoRA, QLoRA, DeepSpeed)"),
    "validate": ("trajvlm.train_config", "check a training preset, its data and its connector without training"),
    "export": ("trajvlm.export", "merge LoRA into a standalone model directory"),
    "chat": ("trajvlm.chat", "chat about a video (interactive, or one-shot with --prompt)"),
    "serve": ("trajvlm.serve.cli", "serve a model over an OpenAI-compatible HTTP API with a web page"),
}

# ValueError covers VideoDecodeError, ContextLengthError and json.JSONDecodeError (re-raised with the file name).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FileExistsError,
)


def is_user_error(error: BaseException) -> bool:
    """A user error (bad input), as opposed to a bug; includes the training data's skip-limit error."""
    if isinstance(error, USER_ERRORS):
        return True
    data = sys.modules.get("trajvlm.data")  # imported only when a command read training data
    return data is not None and isinstance(error, data.SkipLimitError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trajvlm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # -v also after the command; SUPPRESS keeps the top-level value when it is not given here
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except Exception as e:
        if not is_user_error(e):
            raise
        if args.verbose:
            traceback.print_exception(e)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
