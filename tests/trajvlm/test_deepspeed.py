"""DeepSpeed ZeRO-2 and ZeRO-3 through HF Trainer in TWO processes on CPU (gloo), via the shipped launchers.

The first DeepSpeed run on a machine compiles a communication op (about 40 s, cached afterwards).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.trajvlm.train_fixtures import make_config, train_data  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "zero, launcher",
    [("zero2", "train_deepspeed.sh"), ("zero3", "train_torchrun.sh")],
    ids=["zero2-deepspeed", "zero3-torchrun"],
)
def test_two_process_zero_training(tiny_base_path, train_data, tmp_path, zero, launcher):  # noqa: F811
    out = tmp_path / "run"
    cfg = make_config(tiny_base_path, train_data, out, per_device_batch_size=1)
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump(cfg.to_dict()))
    port = str(_free_port())
    env = {
        **os.environ,
        "DEEPSPEED": str(BIN / "deepspeed"),
        "TORCHRUN": str(BIN / "torchrun"),
        "DS_ARGS": f"--master_port {port}",
        "TORCHRUN_ARGS": f"--master_port {port}",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    cmd = ["bash", str(ROOT / "scripts" / launcher), "2", str(preset), f"deepspeed={zero}", "use_cpu=true"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    # two processes: one RNG state per rank in the checkpoint
    assert {p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["train_batch_size"] == 1
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own (sharded) optimizer state
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")  # gathered from the shards under ZeRO-3
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.numel() > 0 for v in adapter.values()) and any(v.abs().sum() > 0 for v in lora_b)
    assert (out / "final" / "model.safetensors").is_file()
