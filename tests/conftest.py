"""Shared fixtures: paths to ../shared/data (skipped with a reason when absent) and seeded temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRAJVLM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real clips of ../shared/data; tests that need them skip on a user's fresh clone."""
    if not (SHARED_DATA / "manifest.json").is_file():
        pytest.skip(f"real-video test data not found at {SHARED_DATA} (set TRAJVLM_SHARED_DATA to its path)")
    return SHARED_DATA
