"""The ``trajtok`` command line: ``trajtok COMMAND ...`` for the commands listed below.

Each command is a thin file with ``add_arguments(parser)`` and ``run(args) -> int`` (``trajtok/cli/<name>.py``;
``synth`` and ``pseudolabel`` keep theirs in their packages) calling the library; only the chosen command's file is
imported, so ``trajtok synth`` never imports the model and ``trajtok --help`` does not import torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback
from collections.abc import Callable

from trajtok.checks import DiskWriteError, disk_error_message, is_corrupt_weights_error, is_disk_error

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("trajtok.synth.cli", "generate the synthetic long-video world (mp4 + masks/graph npz + events + QA)"),
    "train": ("trajtok.cli.train", "pretrain TrajTok from a YAML preset"),
    "tokenize": (
        "trajtok.cli.tokenize",
        "tokenize a video with a checkpoint; print trajectories/tokens, write an overlay",
    ),
    "eval": (
        "trajtok.cli.evaluate",
        "space-time mIoU / association / token counts of a checkpoint on labelled videos",
    ),
    "pseudolabel": ("trajtok.pseudolabel.cli", "trajectory pseudo-labels for real video (key frames, segment, track)"),
    "convert-release": (
        "trajtok.cli.convert_release",
        "convert the authors' released segmenter model.pth into a TrajTok folder",
    ),
    "coordtok-train": (
        "trajtok.cli.coordtok_train",
        "pretrain CoordTok (triplane video latents) by patch reconstruction",
    ),
    "viz": ("trajtok.cli.viz", "draw trajectory ids of a label npz over its video (PNG contact sheet, GIF/MP4)"),
}

# Ordinary user errors: a bad flag value or setting (ValueError; VideoDecodeError and json.JSONDecodeError are
# ValueErrors), a missing or unusable path. main() prints them as one ``error: ...`` line and exits 2; anything
# else is a bug and keeps its traceback. ``-v`` shows the traceback of user errors too.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FileExistsError,
)


def is_environment_error(error: BaseException) -> bool:
    """Failures of the files and the disk rather than of the program: a full or read-only disk, a corrupt or
    truncated weights file, a symlink loop. Shown as one ``error:`` line like user errors."""
    return (
        is_disk_error(error)
        or is_corrupt_weights_error(error)
        or (isinstance(error, OSError) and error.errno == errno.ELOOP)
    )


def error_message(error: BaseException) -> str:
    """The one line shown for a user error: its message, with the disk's reason spelled out for OSErrors."""
    if isinstance(error, DiskWriteError):
        return str(error)
    if is_disk_error(error):
        return disk_error_message(error)
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return f"cannot read {error.filename!r}: symlink loop (the link points, through other links, back to itself)"
    if is_corrupt_weights_error(error):
        return f"a weights file is corrupt or truncated ({type(error).__name__}: {error})"
    if isinstance(error, OSError) and error.filename and str(error).startswith("[Errno"):
        # the operating system's own wording ("[Errno 17] File exists: 'x'"): the path first, then the reason
        hint = " (a file is in the way of a folder)" if error.errno in (errno.EEXIST, errno.ENOTDIR) else ""
        return f"cannot use {str(error.filename)!r}: {(error.strerror or str(error)).lower()}{hint}"
    return str(error)


def report_error(error: BaseException, verbose: bool) -> int:
    """Print a user error as ``error: <message>`` on stderr (its traceback first with ``-v``); returns exit status 2."""
    if verbose:
        traceback.print_exception(error)
    print(f"error: {error_message(error)}", file=sys.stderr)
    return 2


def run_commands(
    prog: str,
    description: str,
    commands: dict[str, tuple[str, str]],
    argv: list[str] | None = None,
    is_user_error: Callable[[BaseException], bool] = lambda e: isinstance(e, USER_ERRORS),
) -> int:
    """A command line of sub-commands, each in the module that implements it (``add_arguments(parser)``,
    ``run(args) -> int``); only the chosen command's module is imported. User errors (``is_user_error``) print one
    ``error: ...`` line and return 2; anything else is a bug and keeps its traceback. Shared by ``trajvlm``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    # Build only the chosen sub-parser (imports its module); list all in --help.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in commands.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # -v also after the command (trajtok tokenize clip.mp4 -v); SUPPRESS keeps the top-level value otherwise
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
        return int(importlib.import_module(commands[args.command][0]).run(args) or 0)
    except Exception as e:
        if not (is_user_error(e) or is_environment_error(e)):
            raise
        return report_error(e, args.verbose)


def main(argv: list[str] | None = None) -> int:
    return run_commands("trajtok", __doc__.splitlines()[0], COMMANDS, argv)
