"""Checks shared by the configs and the command lines of both packages: the declared types of a dataclass config's
fields, the frame-count bound, the device name, unreadable weights and disk-level write failures, each turned into
one clear message (the command lines print it as ``error: ...`` and exit 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeGuard

from safetensors import safe_open

# Most frames any entry point samples from one video. Frames are decoded and held at once (the model's size, 3
# bytes a pixel, plus the model's activations per frame), so a typo such as 100000 grows by gigabytes before
# anything fails; the paper's longest setting is 128 frames, long-video benchmarks sample at most a few hundred.
MAX_FRAMES = 4096

# OSError numbers that say the disk (not the program) is the problem, with the words shown for them.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error",
}


# ---------------------------------------------------------------------------------------------- config fields


def check_field_types(config: Any) -> None:
    """Check (and coerce) every field of a dataclass ``config`` against its declared type, naming the field.

    Declared ``int`` / ``float`` fields accept numbers written as text (YAML 1.1 reads ``3e-3`` as a string) and
    become that number; a float must be finite (``.nan`` and ``.inf`` are refused); ``bool``, ``str``, ``list``,
    ``dict`` and ``tuple`` fields must hold that kind (a list where a number belongs is refused, not cast).
    ``X | None`` fields also take null. Raises ValueError ``"<field> must be <kind>, got <value>"``.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        declared = str(f.type).replace(" ", "")
        kinds = [k.split("[", 1)[0] for k in _split_union(declared)]
        if value is None:
            if "None" in kinds:
                continue
            raise ValueError(f"{f.name} must not be null (expected {declared})")
        setattr(config, f.name, _check_value(f.name, value, [k for k in kinds if k != "None"], declared))


def check_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` for the dataclass ``cls`` checked (and coerced) against the fields' declared types before the
    instance is built (its ``__post_init__`` would compare a list with a number); the same rules and messages as
    :func:`check_field_types`. Unknown names pass through (the caller reports them)."""
    declared = {f.name: str(f.type).replace(" ", "") for f in dataclasses.fields(cls)}
    out = {}
    for name, value in values.items():
        if name not in declared or value is None:
            out[name] = value
            continue
        kinds = [k.split("[", 1)[0] for k in _split_union(declared[name])]
        out[name] = _check_value(name, value, [k for k in kinds if k != "None"], declared[name])
    return out


def _split_union(declared: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(declared):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(declared[start:i])
            start = i + 1
    parts.append(declared[start:])
    return parts


def _check_value(name: str, value: Any, kinds: list[str], declared: str) -> Any:
    if "Any" in kinds or not kinds:
        return value
    if "float" in kinds:
        number = _as_number(value, float)
        if number is not None:
            if not math.isfinite(number):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            return number
    if "int" in kinds:
        number = _as_number(value, int)
        if number is not None:
            return number
    if "bool" in kinds and isinstance(value, bool):
        return value
    if "str" in kinds and isinstance(value, str):
        return value
    if "list" in kinds and isinstance(value, (list, tuple)):
        return list(value)
    if "tuple" in kinds and isinstance(value, (list, tuple)):
        return tuple(value)
    if "dict" in kinds and isinstance(value, dict):
        return value
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
    words |= {"list": "a list", "tuple": "a list", "dict": "a mapping"}
    expected = " or ".join(words.get(k, k) for k in kinds) + (" or null" if "None" in declared else "")
    return _raise(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")


def _as_number(value: Any, kind: type) -> int | float | None:
    """``value`` as an int / float, or None when it is not one (bools, lists, words are not numbers)."""
    if isinstance(value, bool):
        return None
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value.strip())
    return None


def _raise(message: str) -> Any:
    raise ValueError(message)


# ------------------------------------------------------------------------------------------------------ frames


def check_frame_count(name: str, value: Any, *, limit: int = MAX_FRAMES) -> None:
    """Raise ValueError unless ``value`` is None or an int in ``1..limit`` (frames sampled from one video)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (frames per video), got {value!r}")
    if value > limit:
        raise ValueError(
            f"{name} must be at most {limit} frames per video (trajtok.checks.MAX_FRAMES: every sampled frame is "
            f"held in memory at once), got {value}"
        )


def check_rate(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is None or a finite positive number (frames per second)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number (frames per second), got {value!r}")


# ------------------------------------------------------------------------------------------------------- paths


def missing_reason(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be opened although it may be listed: a symlink loop, a broken symlink, or not found."""
    path = Path(path)
    if not path.is_symlink():
        return "not found"
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop (the link points, through other links, back to itself)"
    return f"broken symlink (its target {os.readlink(path)!r} does not exist)"


def check_input_exists(path: str | os.PathLike, what: str = "video") -> None:
    """FileNotFoundError ``cannot read <what> '<path>': not found`` (or ``symlink loop`` / ``broken symlink``)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"cannot read {what} {str(path)!r}: {missing_reason(path)}")


# ------------------------------------------------------------------------------------------------------ device


def check_device(device: str | None) -> str | None:
    """``device`` as torch reads it, or ValueError naming it: unknown names, CUDA on a machine without one."""
    if device is None or device == "auto":
        return device
    import torch  # not at the top: the dispatcher imports checks, and `trajtok --help` must not import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r} ({e}); expected cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but no CUDA GPU is available; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif resolved.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")
    return device


# ----------------------------------------------------------------------------------------------------- weights


def is_corrupt_weights_error(error: BaseException) -> bool:
    """A failure to read a weights or state file: safetensors' header / size errors, a damaged torch pickle."""
    if type(error).__name__ == "SafetensorError":
        return True
    if isinstance(error, (pickle.UnpicklingError, EOFError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("PytorchStreamReader" in text or "zip archive" in text)


@contextlib.contextmanager
def reading_weights(
    path: str | os.PathLike, what: str = "checkpoint", also: tuple[str | os.PathLike | None, ...] = ()
) -> Iterator[None]:
    """Around loading ``path``: a corrupt or truncated weights file becomes ValueError naming ``path`` and, found
    among the ``.safetensors`` files of ``path`` and ``also`` (other folders the load reads, e.g. a TrajTok
    checkpoint the model config points to), the file itself; a model folder without weights (transformers'
    OSError) becomes FileNotFoundError naming it."""
    try:
        yield
    except Exception as e:
        if is_corrupt_weights_error(e):
            bad = first_unreadable_safetensors([path, *also])
            which = f" ({bad})" if bad else ""
            raise ValueError(
                f"{what} {str(path)!r}: a weights file{which} is corrupt or truncated ({type(e).__name__}: {e}); "
                "save or copy the checkpoint again"
            ) from e
        if type(e) is OSError and e.errno is None and "no file named" in str(e):
            raise FileNotFoundError(f"{what} {str(path)!r} has no weights: {e}") from e
        raise


def first_unreadable_safetensors(paths: list[str | os.PathLike | None]) -> Path | None:
    """The first ``.safetensors`` file (in these folders, or these files) whose header safetensors refuses: garbage,
    a truncated copy, an empty file. Only headers are read."""
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path] if path.suffix == ".safetensors" else []
        for file in files:
            try:
                with safe_open(str(file), "pt"):
                    pass
            except Exception:  # safetensors' own error type (or an OSError): whatever it refuses is the answer
                return file
    return None


# ------------------------------------------------------------------------------------------------- disk errors


def is_disk_error(error: BaseException) -> TypeGuard[OSError]:
    return isinstance(error, OSError) and error.errno in DISK_ERRORS


def disk_error_message(error: OSError) -> str:
    """``cannot write '<file>': no space left on the device [...]`` for an OSError of :data:`DISK_ERRORS`."""
    where = f" {error.filename!r}" if error.filename else ""
    reason = DISK_ERRORS.get(error.errno or 0, error.strerror or str(error))
    return f"cannot write{where}: {reason} ({error})"


class DiskWriteError(OSError):
    """Writing an output failed at the disk (full, quota, read-only); the message says what was kept."""

    def __init__(self, number: int | None, message: str):
        super().__init__(number, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, kept: str | None = None) -> Iterator[Path]:
    """Write a folder atomically: yields ``.tmp_<name>`` beside ``target``, renamed to ``target`` when the block
    ends without error (an existing ``target`` is replaced only then). On any error the temporary folder is removed
    and ``target`` is untouched; a disk error becomes :class:`DiskWriteError` saying so (``kept`` names what
    remains usable, e.g. the previous checkpoint)."""
    target = Path(target)
    tmp = target.parent / f".tmp_{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_error(e):
            left = f"; {kept}" if kept else f"; {target} was left as it was"
            raise DiskWriteError(e.errno, f"{disk_error_message(e)} while writing {target}{left}") from e
        raise
    replace_directory(tmp, target)


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the complete folder ``source`` to ``target``, replacing an existing ``target`` (moved aside first,
    deleted after: at every moment one complete version is in place or being renamed)."""
    source, target = Path(source), Path(target)
    old = target.parent / f".old_{target.name}"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(folder: str | os.PathLike, prefix: str = ".tmp_", keep: Path | None = None) -> list[Path]:
    """Delete ``prefix*`` folders in ``folder`` that a killed save left behind (never ``keep``); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(prefix) and p.is_dir() and p != keep]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


__all__ = [
    "MAX_FRAMES",
    "DiskWriteError",
    "atomic_directory",
    "check_device",
    "check_input_exists",
    "check_field_types",
    "check_frame_count",
    "check_rate",
    "check_values",
    "disk_error_message",
    "first_unreadable_safetensors",
    "is_corrupt_weights_error",
    "is_disk_error",
    "missing_reason",
    "reading_weights",
    "remove_stale_temporaries",
    "replace_directory",
]
