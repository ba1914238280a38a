"""Fixtures for the lmms-eval tests: a saved tiny TrajVLM (trajtok connector), a tiny synthetic world, a cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.eval.helpers import write_world
from tests.trajvlm.helpers import save_tiny_trajvlm, tiny_base

NUM_FRAMES = 4


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved TrajVLM (tiny base + tiny TrajTok connector, random weights) whose processor samples 4 frames."""
    out = tmp_path_factory.mktemp("tiny_trajvlm")
    return save_tiny_trajvlm(tiny_base(tmp_path_factory), out, num_frames=NUM_FRAMES, fps=None)


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory) -> Path:
    """`trajtok synth` output with one 12-frame 48x48 test video and its questions."""
    return write_world(tmp_path_factory.mktemp("synth"), "train=0,val=0,test=1", seed=3)


@pytest.fixture(scope="session")
def datasets_cache(tmp_path_factory) -> Path:
    """lmms-eval's datasets cache for in-process task loading, kept out of the user's HF cache."""
    path = tmp_path_factory.mktemp("hf_datasets")
    os.environ.setdefault("LMMS_EVAL_DATASETS_CACHE", str(path))
    return Path(os.environ["LMMS_EVAL_DATASETS_CACHE"])
