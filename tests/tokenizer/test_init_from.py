"""``init_from``: a new training run (step 0, fresh optimizer and schedule) that starts from another run's weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trajtok.io.checkpoints import latest_checkpoint
from trajtok.synth import write_dataset
from trajtok.training.train import TrainConfig, load_config, train

FAST = ["threads=1", "log_every=1", "val_split=null", "batch_size=2", "clip_len=4"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    """(synthetic data folder, a finished 3-step run folder)."""
    root = tmp_path_factory.mktemp("init_from")
    write_dataset(root / "synth", "train=2,val=1,test=1", frames=6, size=64, objects=(2, 2), seed=0)
    train(load_config("smoke", [f"data={root / 'synth'}", *FAST, "steps=3", "warmup_steps=1"]), root / "src")
    return root / "synth", root / "src"


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run) / "model.safetensors"))


def test_new_run_starts_from_the_checkpoint_weights_with_a_fresh_schedule(source, tmp_path):
    data, src = source
    # lr so small that one step cannot move a weight by 1e-6: the run's weights are then the ones it started from
    tiny = [f"data={data}", *FAST, "steps=1", "warmup_steps=0", "lr=1e-10"]
    train(load_config("smoke", [*tiny, f"init_from={src}"]), tmp_path / "init")
    train(load_config("smoke", tiny), tmp_path / "scratch")
    start, init, scratch = weights(src), weights(tmp_path / "init"), weights(tmp_path / "scratch")
    assert init.keys() == start.keys()
    for k in start:
        torch.testing.assert_close(init[k], start[k], rtol=0, atol=1e-6, msg=f"{k} did not start from init_from")
    moved = [k for k in start if start[k].is_floating_point() and not torch.allclose(scratch[k], start[k], atol=1e-4)]
    assert moved, "a run without init_from should start from its own initialisation, not the source weights"
    # a new run: its own step count and schedule, and its config records the checkpoint folder it read
    ckpt = latest_checkpoint(tmp_path / "init")
    assert ckpt.name == "step_0000001"
    state = torch.load(ckpt / "train_state.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 1 and state["scheduler"]["last_epoch"] == 1
    saved = json.loads((tmp_path / "init" / "train_config.json").read_text())
    assert saved["init_from"] == str(latest_checkpoint(src))
    rows = [json.loads(x) for x in (tmp_path / "init" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["lr"] == pytest.approx(1e-10)


def test_init_from_a_missing_or_incompatible_checkpoint_says_which(source, tmp_path):
    data, src = source
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"init_from: no TrajTok checkpoint at .*nowhere"):
        train(load_config("smoke", [f"data={data}", *FAST, "steps=1", f"init_from={missing}"]), tmp_path / "a")
    other = [f"data={data}", *FAST, "steps=1", f"init_from={src}", "model.num_queries=8"]
    with pytest.raises(ValueError, match=r"init_from .*step_0000003.* does not fit this run's model"):
        train(load_config("smoke", other), tmp_path / "b")
    with pytest.raises(ValueError, match="init_from must be"):
        TrainConfig(data=str(data), init_from=" ")
