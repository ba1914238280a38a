"""scripts/install_flash_attn.sh refuses, with one clear line and status 2, where flash-attn cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_flash_attn.sh"


def _run(tmp_path: Path, python: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the script with ``python`` behind a shim that logs every call, so a pip call would show."""
    log = tmp_path / "calls.log"
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {python} "$@"\n')
    shim.chmod(0o755)
    full_env = {**os.environ, "PYTHON": str(shim), "PIP_NO_INDEX": "1", **env}  # no index: nothing can download
    proc = subprocess.run(["bash", str(SCRIPT)], env=full_env, capture_output=True, text=True, timeout=120)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_refuses_on_a_cpu_build_of_torch(tmp_path):
    import torch

    if torch.version.cuda is not None:
        pytest.skip("this torch is a CUDA build: the script would go on to build flash-attn")
    proc, calls = _run(tmp_path, sys.executable)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: torch ") and "is a CPU build" in lines[0]
    assert 'attn_implementation="sdpa"' in lines[0]
    assert not any("pip" in call for call in calls), calls  # refused before any install was attempted


def test_refuses_without_a_python(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT)], env={**os.environ, "PYTHON": str(tmp_path / "nope")}, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no python at {tmp_path / 'nope'}; run `make install` first or set " + (
        "PYTHON=/path/to/venv/bin/python"
    )
