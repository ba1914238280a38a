"""Shared fixtures: paths to ../shared/data (skipped with a reason when absent) and seeded temp dirs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRAJVLM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _load_script(relpath: str):
    """A fresh module from a script of the repository (``scripts/demo.py``, ``eval/bench/...``), which are not
    packages: its functions are tested as the script runs them."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script("scripts/demo.py")`` -> the script as a fresh module."""
    return _load_script


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real clips of ../shared/data; tests that need them skip on a user's fresh clone."""
    if not (SHARED_DATA / "manifest.json").is_file():
        pytest.skip(f"real-video test data not found at {SHARED_DATA} (set TRAJVLM_SHARED_DATA to its path)")
    return SHARED_DATA
