"""Shared by the evaluation tests: a small synthetic world, and lmms-eval's own command line run on it offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_world(out: Path, num_videos: str, seed: int) -> Path:
    """``trajtok synth`` output in ``out``: 12-frame 48x48 videos with 2 objects each, ``num_videos`` per split
    (``"train=1,val=0,test=1"``), and their questions."""
    from trajtok.cli import main

    args = ["synth", "--out", str(out), "--num-videos", num_videos, "--frames", "12", "--size", "48"]
    assert main([*args, "--objects", "2", "--seed", str(seed)]) == 0
    return out


def run_lmms_eval(model_args: str, tasks: str, out: Path, cwd: Path, env: dict[str, str], *extra: str) -> dict:
    """``python -m lmms_eval --model trajvlm`` on the repository's tasks, offline (``HF_HOME`` under ``cwd``), samples
    logged in ``out``: its ``results`` ({task: {metric: value}}). The test fails with the end of the log when the run
    fails, including when lmms-eval exits 0 after an evaluation error (it does)."""
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "trajvlm", "--model_args", model_args, "--tasks", tasks,
           *extra, "--include_path", str(ROOT / "eval" / "tasks"), "--output_path", str(out), "--log_samples"]  # fmt: skip
    offline = {"HF_HOME": str(cwd / "hf"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    run_env = {**os.environ, **env, **offline, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=cwd, env=run_env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Error during evaluation" not in log, log[-3000:]  # lmms-eval exits 0 even when evaluation fails
    (results_file,) = out.rglob("*_results.json")
    return json.loads(results_file.read_text())["results"]


def logged_samples(out: Path, task: str) -> list[dict]:
    """The samples lmms-eval logged for ``task`` in ``out`` (``--log_samples``)."""
    (path,) = out.rglob(f"*_samples_{task}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]
