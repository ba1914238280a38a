"""trajvlm test fixtures: the tiny base checkpoint is built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trajvlm.helpers import tiny_base


@pytest.fixture(scope="session")
def tiny_base_path(tmp_path_factory) -> Path:
    """Path of a tiny llava-hf style LLaVA-OneVision checkpoint (random weights), shared by all trajvlm tests."""
    return tiny_base(tmp_path_factory)
