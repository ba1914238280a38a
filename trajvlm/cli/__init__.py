"""The ``trajvlm`` command line: ``trajvlm COMMAND ...`` for the commands listed below.

Each sub-command is one thin module of this package (``trajvlm.cli.train`` for ``trajvlm train``) holding only its
``add_arguments(parser)`` and ``run(args) -> int``; the work is library code in ``trajvlm.training`` /
``trajvlm.inference`` / ``trajvlm.serve``. Only the chosen command's module is imported.

Ordinary user errors (a bad setting, a missing or unreadable file, a video that does not decode, a dataset whose
samples fail) print one ``error: ...`` line and exit with status 2; ``-v`` adds the traceback. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from trajtok.cli import USER_ERRORS, run_commands

COMMANDS: dict[str, tuple[str, str]] = {
    "build-base": (
        "trajvlm.cli.build_base",
        "build a LLaVA-OneVision base (tiny LLM in code, or --llm any causal LM) and save it",
    ),
    "train": ("trajvlm.cli.train", "train TrajVLM from a YAML preset (stage 1 align / stage 2 LoRA, QLoRA, DeepSpeed)"),
    "validate": ("trajvlm.cli.validate", "check a training preset, its data and its connector without training"),
    "export": ("trajvlm.cli.export", "merge LoRA into a standalone model directory"),
    "chat": ("trajvlm.cli.chat", "chat about a video (interactive, or one-shot with --prompt)"),
    "warmup": (
        "trajvlm.cli.warmup",
        "stage 0: warm a new connector + projector up on the captions' words (no LLM pass)",
    ),
    "pretrain-tower": (
        "trajvlm.cli.pretrain_tower",
        "pretrain the base's SigLIP tower on a synthetic world (sigmoid + word loss)",
    ),
    "serve": ("trajvlm.cli.serve", "serve a model over an OpenAI-compatible HTTP API with a web page"),
}


def is_user_error(error: BaseException) -> bool:
    """A user error (bad input), as opposed to a bug. ValueError covers VideoDecodeError, ContextLengthError and
    json.JSONDecodeError (re-raised with the file name); the training data's skip-limit error counts too."""
    if isinstance(error, USER_ERRORS):
        return True
    data = sys.modules.get("trajvlm.training.data")  # imported only when a command read training data
    return data is not None and isinstance(error, data.SkipLimitError)


def main(argv: list[str] | None = None) -> int:
    return run_commands("trajvlm", __doc__.splitlines()[0], COMMANDS, argv, is_user_error)


if __name__ == "__main__":
    sys.exit(main())
