"""DeepSpeed ZeRO-2 and ZeRO-3 through HF Trainer in TWO processes on CPU (gloo), via the shipped launchers, for every
registered connector; and the parameter shapes ZeRO needs (no 0-dim parameter anywhere).

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
import torch
import yaml
from safetensors.torch import load_file, save_file

from tests.trajvlm.helpers import tiny_trajtok_config
from tests.trajvlm.train_fixtures import make_config, tiny_trajtok_path, train_data  # noqa: F401
from trajvlm.configuration import CONNECTOR_NAMES

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# (ZeRO config, launcher script): each ZeRO stage through one of the README's two launchers
ZERO_LAUNCHERS = [("zero2", "train_deepspeed.sh"), ("zero3", "train_torchrun.sh")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connector_settings(connector: str, trajtok: Path) -> dict:
    """TrainConfig fields of one connector in these runs: the tiny pretrained TrajTok for trajtok (a fixed token
    count per trajectory: TrajTok otherwise draws one per step, from each rank's own random state)."""
    if connector == "trajtok":
        return {"connector": "trajtok", "trajtok": str(trajtok), "tokens_per_trajectory": 2}
    if connector == "tome":
        return {"connector": "tome", "connector_kwargs": {"budget": 12}}
    return {"connector": connector}


def _launch(launcher: str, zero: str, presets: list[Path]) -> subprocess.CompletedProcess:
    """``bash scripts/<launcher> 2 first.yaml --config second.yaml ... deepspeed=<zero> use_cpu=true``: the README's
    command, training the presets one after another in the one launch (``trajvlm train`` takes several)."""
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
    more = [arg for preset in presets[1:] for arg in ("--config", str(preset))]
    cmd = ["bash", str(ROOT / "scripts" / launcher), "2", str(presets[0]), *more, f"deepspeed={zero}", "use_cpu=true"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


# ---------------------------------------------------------------------------------------------------------------
# shapes ZeRO can partition


@pytest.mark.parametrize("connector", CONNECTOR_NAMES)
def test_no_connector_has_a_0_dim_parameter(tiny_base_path, connector):
    """ZeRO's broadcast views every parameter as bytes, which a 0-dim tensor cannot do (`self.dim() cannot be 0`)."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    kwargs = {"trajtok": tiny_trajtok_config(extent_encoding=True)} if connector == "trajtok" else {}
    model = TrajVLMForConditionalGeneration.from_llava(tiny_base_path, connector=connector, **kwargs)
    zero_dim = [n for n, p in model.named_parameters() if p.dim() == 0]
    assert not zero_dim, f"{connector}: 0-dim parameters break DeepSpeed ZeRO: {zero_dim}"
    weightless = ("pool", "tome")  # upstream pooling and token merging have no weights
    assert (connector in weightless) != any(".connector." in n for n, _ in model.named_parameters())


def test_trajvlm_checkpoint_with_0_dim_segmenter_scalars_loads(tiny_base_path, tmp_path):
    """A TrajVLM model saved while TrajTok's scale and gate were 0-dim loads (as (1,)), and saves back as (1,)."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    torch.manual_seed(0)
    model = TrajVLMForConditionalGeneration.from_llava(
        tiny_base_path, connector="trajtok", trajtok=tiny_trajtok_config()
    )
    with torch.no_grad():
        model.model.connector.trajtok.segmenter.logit_scale.fill_(1.7)
    model.save_pretrained(tmp_path / "old")
    weights = tmp_path / "old" / "model.safetensors"
    state = load_file(weights)
    keys = [k for k in state if k.endswith(("segmenter.logit_scale", "segmenter.carry_gate"))]
    assert len(keys) == 2
    save_file({k: v.reshape(()) if k in keys else v for k, v in state.items()}, weights, metadata={"format": "pt"})

    loaded = TrajVLMForConditionalGeneration.from_pretrained(tmp_path / "old")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loaded.save_pretrained(tmp_path / "new")
    resaved = load_file(tmp_path / "new" / "model.safetensors")
    assert all(resaved[k].shape == (1,) for k in keys)
    scale = next(k for k in keys if k.endswith("logit_scale"))
    assert resaved[scale].item() == pytest.approx(1.7)


# ---------------------------------------------------------------------------------------------------------------
# two processes through the launchers: every connector, ZeRO-2 and ZeRO-3

# Same global batch of 2: two ranks x 1 sample (ZeRO) against one process x 2 samples (no DeepSpeed), from the same
# weights: each connector's stage-1 run (connector + projector trained) starts from a saved TrajVLM model, since
# ZeRO-3 initialises new weights (a new connector's, LoRA's) in its partitioned way, not as one process does. Both
# runs see the same samples in each step (the Trainer's seeded sampler, sharded across ranks) and average the loss
# over the batch's tokens, so step 1's loss differs only by the order of floating-point sums and step 2's by one
# AdamW update from gradients reduced in another order. Measured: ZeRO-2 within 1e-5 relative, ZeRO-3 within 3e-5.
# 1e-3 leaves room for other machines' summation orders; other starting weights (ZeRO-3's own initialisation of a new
# connector or LoRA, before these runs started from a saved model) moved the losses by 2.7e-3 to 1.5e-2.
REL_TOL = 1e-3


@pytest.fixture(scope="module")
def saved_models(tiny_base_path, tiny_trajtok_path, tmp_path_factory):  # noqa: F811
    """connector -> a saved TrajVLM model (tiny base + that connector, initialised once) with its processor."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    models = {}
    for connector in CONNECTOR_NAMES:
        settings = _connector_settings(connector, tiny_trajtok_path)
        settings.pop("connector")
        torch.manual_seed(0)
        model = TrajVLMForConditionalGeneration.from_llava(tiny_base_path, connector=connector, **settings)
        models[connector] = tmp_path_factory.mktemp(f"model-{connector}")
        model.save_pretrained(models[connector])
        TrajVLMProcessor.from_pretrained(tiny_base_path).for_model(model.config).save_pretrained(models[connector])
    return models


def _config(connector: str, base: Path, data: Path, out: Path, batch: int):
    """2 steps of stage 1 (align) from a saved TrajVLM model: no checkpoints (the launch measures training)."""
    return make_config(
        base, data, out, connector=connector, stage="align", per_device_batch_size=batch, save_steps=1000
    )


@pytest.fixture(scope="module")
def one_process_losses(saved_models, train_data, tmp_path_factory):  # noqa: F811
    """connector -> the logged losses of its 2-step single-process run with batch 2, no DeepSpeed."""
    from trajvlm.training.trainer import train

    losses = {}
    for connector, base in saved_models.items():
        out = tmp_path_factory.mktemp(f"one-{connector}")
        train(_config(connector, base, train_data, out, batch=2))
        losses[connector] = _losses(out)
    return losses


@pytest.fixture(scope="module", params=ZERO_LAUNCHERS, ids=["zero2-deepspeed", "zero3-torchrun"])
def two_process_runs(request, saved_models, tiny_base_path, train_data, tmp_path_factory):  # noqa: F811
    """One 2-process launch per (ZeRO stage, launcher) training every connector in turn, then pool's LoRA run with
    checkpoints and the merged export (the save path under ZeRO); name -> run folder. (A launch per connector costs
    ~20 s of process start-up each: 14 of them did not fit the test budget.)"""
    zero, launcher = request.param
    root = tmp_path_factory.mktemp(f"two-{zero}")
    configs = {c: _config(c, base, train_data, root / c, batch=1) for c, base in saved_models.items()}
    configs["pool-lora"] = make_config(tiny_base_path, train_data, root / "pool-lora", per_device_batch_size=1)
    presets = []
    for name, cfg in configs.items():
        presets.append(root / f"{name}.yaml")
        presets[-1].write_text(yaml.safe_dump(cfg.to_dict()))
    _launch(launcher, zero, presets)
    return zero, {name: Path(cfg.output_dir) for name, cfg in configs.items()}


@pytest.mark.slow
def test_two_process_zero_trains_every_connector_like_one_process(two_process_runs, one_process_losses):
    zero, runs = two_process_runs
    assert set(CONNECTOR_NAMES) <= set(runs)
    for connector in CONNECTOR_NAMES:
        losses, reference = _losses(runs[connector]), one_process_losses[connector]
        assert len(losses) == 2 and all(math.isfinite(x) for x in losses), (connector, losses)
        assert losses == pytest.approx(reference, rel=REL_TOL), f"{connector} {zero}: {losses} vs 1 process {reference}"


@pytest.mark.slow
def test_two_process_zero_saves_checkpoints_adapter_and_final_model(two_process_runs, saved_models):
    """pool's LoRA run in full: per-rank RNG states, DeepSpeed's sharded optimizer state, the adapter gathered from
    the ZeRO-3 shards, the merged final model; every connector's final model holds its weights whole."""
    zero, runs = two_process_runs
    out = runs["pool-lora"]
    assert {p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["train_batch_size"] == 1
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own (sharded) optimizer state
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")  # gathered from the shards under ZeRO-3
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.numel() > 0 for v in adapter.values()) and any(v.abs().sum() > 0 for v in lora_b)
    assert (out / "final" / "model.safetensors").is_file()
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    for connector in CONNECTOR_NAMES:
        final = load_file(runs[connector] / "final" / "model.safetensors")
        start = load_file(saved_models[connector] / "model.safetensors")
        trained = [k for k in start if ".connector." in k or "multi_modal_projector." in k]
        assert trained and all(k in final and final[k].shape == start[k].shape for k in trained), (zero, connector)
        assert any(not torch.equal(final[k], start[k]) for k in trained), (zero, connector)
        assert TrajVLMForConditionalGeneration.from_pretrained(runs[connector] / "final").config.connector == connector
