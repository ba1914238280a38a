"""Every other-tokenizer connector trains (2 LoRA steps) and evaluates through the real lmms-eval CLI on the world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trajvlm.helpers import tiny_base
from tests.trajvlm.train_fixtures import make_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory, "connector_base")


@pytest.mark.slow
@pytest.mark.parametrize("connector", ["vtok", "tome", "trajvit", "coordtok"])
def test_connector_trains_and_evaluates_through_lmms_eval(connector, base, synth_world, tmp_path):
    from trajvlm.train import train

    split = synth_world / "test"
    run = tmp_path / "run"
    cfg = make_config(base, split, run, connector=connector, max_steps=2, save_steps=10)
    cfg.train_json = str(split / "qa.json")  # the world's questions, LLaVA format, answers as gpt turns
    train(cfg)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "TRAJWORLD_DIR": str(synth_world),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "trajvlm", "--model_args",
           f"pretrained={run / 'final'},num_frames=4,batch_size=2", "--tasks", "trajworld", "--limit", "4",
           "--include_path", str(ROOT / "eval" / "tasks"), "--output_path", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Error during evaluation" not in log, log[-3000:]
    (results_file,) = out.rglob("*_results.json")
    results = json.loads(results_file.read_text())["results"]["trajworld"]
    assert results["failed,none"] == 0  # every question went through the connector
    assert 0.0 <= results["accuracy,none"] <= 100.0
    assert json.loads((run / "final" / "config.json").read_text())["connector"] == connector
