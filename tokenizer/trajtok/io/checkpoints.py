"""Training checkpoints of a run folder, shared by ``trajtok train`` and ``trajtok coordtok-train``.

A run folder holds ``checkpoints/step_XXXXXXX/``: the model's ``save_pretrained`` files (``model.safetensors`` +
``config.json``), ``train_state.pt`` (step, optimizer, scheduler, number of processes), ``rng_rank{r}.pt`` (the
Python / NumPy / torch RNG states of rank r) and ``train_config.json`` (the resolved run config). Each checkpoint is
written to ``checkpoints/.tmp_step_XXXXXXX`` and renamed when complete, so a folder named ``step_*`` with its
``train_state.pt`` is always whole; only the newest ``keep`` are kept.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from trajtok.checks import DiskWriteError, disk_error_message, is_disk_error, remove_stale_temporaries

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # sub-folder of a run folder
STATE_NAME = "train_state.pt"
CONFIG_NAME = "train_config.json"
WEIGHTS_FILE = "model.safetensors"  # the weights file of a save_pretrained folder
TMP_PREFIX = ".tmp_step_"
LEGACY_RNG_NAME = "rng.pt"  # the torch-only RNG file of coordtok-train checkpoints written before rng_rank{r}.pt


@dataclass
class Dist:
    """Process-group facts (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch (and CUDA, when present) RNG states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (a state with only ``torch`` restores torch's)."""
    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders of interrupted saves are ignored)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_NAME).is_file())


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run folder, or None."""
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A ``save_pretrained`` folder, or a training run folder (its newest checkpoint)."""
    path = Path(path)
    if (path / WEIGHTS_FILE).is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(
            f"no TrajTok checkpoint at {path}: expected {WEIGHTS_FILE} there or a run folder with {CHECKPOINTS}/"
        )
    return ckpt


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    config: dict[str, Any],
    keep: int,
    dist: Dist | None = None,
) -> Path:
    """Write ``checkpoints/step_{step}`` atomically: everything goes to a temp folder renamed at the end.

    ``model`` has ``save_pretrained(folder)``; ``config`` is the resolved run config (written as
    ``train_config.json``); the newest ``keep`` checkpoints are kept. Every rank of ``dist`` calls it (each writes
    its own RNG states). A full or read-only disk raises :class:`~trajtok.checks.DiskWriteError`, the previous
    checkpoint intact.
    """
    dist = dist or Dist()
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    final = root / f"step_{step:07d}"
    tmp = root / f"{TMP_PREFIX}{step:07d}"
    try:
        if dist.main:
            # the temporary folders of saves cut short (a kill, a full disk) are never read: clear them
            remove_stale_temporaries(root, TMP_PREFIX)
            tmp.mkdir(parents=True)
            model.save_pretrained(tmp)
            state = {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "world": dist.world,
            }
            torch.save(state, tmp / STATE_NAME)
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        dist.barrier()
        torch.save(rng_state(), tmp / f"rng_rank{dist.rank}.pt")  # every rank: its own RNG streams
    except OSError as e:
        if not is_disk_error(e):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise DiskWriteError(e.errno, f"{disk_error_message(e)} while saving checkpoint step {step}; {kept}") from e
    dist.barrier()
    if dist.main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved %s", final)
    dist.barrier()
    return final


def load_checkpoint(
    path: str | os.PathLike, model: Any, optimizer: Any, scheduler: Any, dist: Dist | None = None
) -> int:
    """Restore model, optimizer, scheduler and this rank's RNG states; returns the step to continue from.

    ``model`` has ``load_state_dict_strict(state_dict, source=...)`` (TrajTok, CoordTok) or ``load_weights(folder)``
    (TrajViT2, whose checkpoint holds its own files).
    """
    dist = dist or Dist()
    path = Path(path)
    if hasattr(model, "load_state_dict_strict"):
        model.load_state_dict_strict(load_file(str(path / WEIGHTS_FILE)), source=str(path))
    else:
        model.load_weights(path)
    state = torch.load(path / STATE_NAME, map_location="cpu", weights_only=False)
    if state.get("world", 1) != dist.world:
        logger.warning("checkpoint was written by %d process(es), resuming with %d", state.get("world"), dist.world)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = path / f"rng_rank{dist.rank}.pt"
    if not rng.is_file() and (path / LEGACY_RNG_NAME).is_file():
        rng = path / LEGACY_RNG_NAME
    if rng.is_file():
        set_rng_state(torch.load(rng, map_location="cpu", weights_only=False))
    else:
        logger.warning("%s missing: RNG streams restart from the seed", rng)
    return int(state["step"])
