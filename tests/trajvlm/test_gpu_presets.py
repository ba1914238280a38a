"""The GPU presets run their recipe for 2 steps on CPU: warm-up -> stage 1 -> stage 2 (LoRA, full, QLoRA).

Only sizes and places are overridden (base model, data paths, frames, sequence length, fp32 on the CPU, no DeepSpeed,
output folders, 2 steps logged each, the warm-up's video counts); everything the recipe says (which modules train and which stay
frozen, tokens per trajectory, learning rates, accumulation, gradient checkpointing, optimizer, schedule) is the
preset's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.trajvlm.train_fixtures import NUM_FRAMES, tiny_trajtok_path, train_data  # noqa: F401
from trajvlm.training.config import PRESET_DIR, TrainConfig

WARMUP = PRESET_DIR / "warmup" / "stage0_warmup.yaml"
STAGE2 = ["stage2_lora.yaml", "stage2_full.yaml", "stage2_qlora.yaml"]


def _size(train_data: Path, out: Path, base: Path) -> list[str]:  # noqa: F811
    """The overrides for size and place only."""
    return [
        f"base_model={base}",
        f"train_json={train_data / 'qa.json'}",
        f"video_root={train_data}",
        f"num_frames={NUM_FRAMES}",
        "max_length=1024",
        "precision=fp32",
        "deepspeed=null",
        f"output_dir={out}",
        "max_steps=2",
        "save_steps=1000",
        "logging_steps=1",
    ]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small synthetic world: captioned videos for the warm-up."""
    from trajtok.synth import write_dataset

    root = tmp_path_factory.mktemp("gpu_preset_world")
    write_dataset(root, {"train": 12, "val": 0, "test": 0}, frames=(8, 10), size=64, objects=(2, 3), seed=3)
    return root / "train"


@pytest.fixture(scope="module")
def stage1(tiny_base_path, world, train_data, tiny_trajtok_path, tmp_path_factory):  # noqa: F811
    """The warm-up preset on the tiny base, then the stage 1 preset from its output; the stage 1 run folder."""
    from trajvlm.cli import main
    from trajvlm.training.warmup import parse_overrides

    root = tmp_path_factory.mktemp("gpu_presets")
    sizes = ["steps=2", "batch_size=4", "max_videos=12", "held_out=4", "min_doc_freq=0.0", "frames=4", "device=cpu"]
    cfg = parse_overrides([f"trajtok={tiny_trajtok_path}", *sizes], WARMUP)
    recipe = yaml.safe_load(WARMUP.read_text())
    assert cfg.frozen_modules == recipe["frozen_modules"] == ["segmenter", "features"]
    assert cfg.tokens_per_trajectory == recipe["tokens_per_trajectory"] == 4
    warm = root / "warmup"
    argv = ["warmup", "--config", str(WARMUP), "--base", str(tiny_base_path), "--out", str(warm)]
    argv += ["--train-json", str(world / "captions.json"), "--video-root", str(world), f"trajtok={tiny_trajtok_path}"]
    assert main([*argv, *sizes]) == 0
    config = json.loads((warm / "config.json").read_text())
    assert config["connector"] == "trajtok" and config["tokens_per_trajectory"] == 4
    assert config["video_token_budget"] == recipe["video_token_budget"]

    run = root / "stage1"
    preset = PRESET_DIR / "stage1_align.yaml"
    assert TrainConfig.from_yaml(preset).base_model == "runs/stage0_warmup"  # the recipe continues from the warm-up
    assert main(["train", "--config", str(preset), *_size(train_data, run, warm)]) == 0
    return run


def test_stage1_preset_trains_from_the_warmup_with_trajtoks_segmentation_frozen(stage1, train_data, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    losses = _losses(stage1)
    assert len(losses) == 2 and all(x == x for x in losses)
    final = load_file(stage1 / "final" / "model.safetensors")
    warm = load_file(stage1.parent / "warmup" / "model.safetensors")
    changed = {k for k in warm if not (warm[k] == final[k]).all()}
    assert any(".trajtok.encoder." in k for k in changed) and any("multi_modal_projector." in k for k in changed)
    assert not any(".segmenter." in k or ".trajtok.features." in k or ".language_model." in k for k in changed)
    saved = TrainConfig.from_json(stage1 / "final")
    assert saved.frozen_modules == ["segmenter", "features"] and "tensorboard" in saved.report_to


@pytest.mark.parametrize("preset", STAGE2)
def test_stage2_presets_train_from_stage1(stage1, train_data, tmp_path, preset):  # noqa: F811
    from trajvlm.cli import main
    from trajvlm.training.trainer import build_model, setup_trainable, trainable_parameter_names

    out = tmp_path / "run"
    overrides = _size(train_data, out, stage1 / "final")
    cfg = TrainConfig.from_yaml(PRESET_DIR / preset, overrides)
    assert cfg.frozen_modules == ["segmenter", "features"] and cfg.gradient_accumulation_steps > 1
    names = trainable_parameter_names(setup_trainable(build_model(cfg, quantize=False), cfg))
    assert any(".trajtok.encoder." in n for n in names)
    assert not any(".trajtok.segmenter." in n or ".trajtok.features." in n for n in names)
    assert main(["train", "--config", str(PRESET_DIR / preset), *overrides]) == 0
    losses = _losses(out)
    assert len(losses) == 2 and all(x == x for x in losses)
    assert (out / "final" / "config.json").is_file()
    assert list(out.glob("**/events.out.tfevents.*"))  # report_to: tensorboard wrote its event file


def test_missing_logger_package_is_a_config_error(monkeypatch):
    """report_to naming a logger whose package is absent fails at validation with the pip extra, not in training."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(  # stands in for a machine without tensorboard (installed here by the tensorboard extra)
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a),
    )
    with pytest.raises(ValueError, match=r"pip install 'trajvlm\[tensorboard\]'"):
        TrainConfig.from_yaml(PRESET_DIR / "stage2_lora.yaml")
    assert TrainConfig.from_yaml(PRESET_DIR / "stage2_lora.yaml", ["report_to=[jsonl]"]).report_to == ["jsonl"]


def test_train_takes_several_presets_and_resume_only_one(tmp_path, capsys):
    """`trajvlm train --config A --config B` checks every preset before training any (a bad second preset stops the
    launch before the first trains); --resume takes one preset."""
    from trajvlm.cli import main

    good, bad = tmp_path / "a.yaml", tmp_path / "b.yaml"
    good.write_text(f"base_model: {tmp_path / 'missing'}\ntrain_json: t.json\noutput_dir: {tmp_path / 'a'}\n")
    bad.write_text("base_model: b\ntrain_json: t.json\nlora_r: 0\n")
    assert main(["train", "--config", str(good), "--config", str(bad)]) == 2
    assert "lora_r must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["train", "--config", str(good), "--config", str(good), "--resume"]) == 2
    assert "--resume takes one --config, got 2" in capsys.readouterr().err


def test_warmup_device_setting():
    import torch

    from trajvlm.training.warmup import WarmupConfig

    assert WarmupConfig(device="cpu").torch_device() == torch.device("cpu")
    assert WarmupConfig().torch_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        WarmupConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            WarmupConfig(device="cuda:1").torch_device()
