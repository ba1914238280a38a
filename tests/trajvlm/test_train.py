"""The training recipe: presets and config checks, what each stage trains, QLoRA on CPU, save -> resume."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trajvlm.train_fixtures import make_config, tiny_batch, tiny_trajtok_path, train_data  # noqa: F401
from trajvlm.training.config import PRESET_DIR, TrainConfig

PRESETS = sorted(PRESET_DIR.glob("*.yaml"))


# ---------------------------------------------------------------------------------------------------------------
# config


def test_presets_are_shipped():
    names = {p.stem for p in PRESETS}
    assert {"stage1_align", "stage2_lora", "stage2_qlora", "stage2_full", "demo_trajtok", "demo_pool"} <= names
    assert {p.stem for p in (PRESET_DIR / "deepspeed").glob("*.json")} == {
        "zero2",
        "zero2_offload",
        "zero3",
        "zero3_offload",
    }


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_validates(preset, capsys):
    from trajvlm.cli import main

    cfg = TrainConfig.from_yaml(preset)
    header = preset.read_text().split("\nbase_model")[0]
    assert re.search(rf"(trajvlm train --config|scripts/train_\w+\.sh \d+) trajvlm/presets/{preset.name}", header)
    assert main(["validate", "--config", str(preset), "--no-files"]) == 0
    assert f"stage: {cfg.stage}" in capsys.readouterr().out


def test_deepspeed_configs_use_auto_values_and_gather_on_save():
    for path in (PRESET_DIR / "deepspeed").glob("*.json"):
        ds = json.loads(path.read_text())
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
        assert "optimizer" not in ds  # the Trainer's torch optimizer (param groups, no CPU Adam build)
        zero = ds["zero_optimization"]
        assert zero["stage"] == (3 if path.stem.startswith("zero3") else 2)
        if zero["stage"] == 3:
            assert zero["stage3_gather_16bit_weights_on_model_save"] is True
        if "offload" in path.stem:
            assert zero["offload_optimizer"]["device"] == "cpu" and ds["zero_force_ds_cpu_optimizer"] is False


BAD = [
    ({"stage": "finetune", "full_finetune": True, "quantization": "4bit"}, ValueError, "full_finetune"),
    ({"stage": "finetune", "quantization": "4bit", "deepspeed": "zero3"}, ValueError, "ZeRO-3"),
    ({"stage": "align", "full_finetune": True}, ValueError, "stage: finetune"),
    ({"connector": "patches"}, ValueError, "connector must be one of"),
    ({"connector": "pool", "trajtok": "x"}, ValueError, "connector is 'pool'"),
    ({"quantization": "2bit"}, ValueError, "quantization must be one of"),
    ({"deepspeed": "zero9"}, FileNotFoundError, "shipped configs"),
    ({"lora_r": 0}, ValueError, "lora_r must be a positive"),
    ({"max_skip_fraction": 1.5}, ValueError, "max_skip_fraction"),
    ({"report_to": ["mlflow"]}, ValueError, "report_to"),
]


def test_numbers_written_as_yaml_1_1_reads_them(tmp_path):
    """`learning_rate=2e-3` on the command line is a string to YAML 1.1: it is read as the number it means."""
    preset = tmp_path / "p.yaml"
    preset.write_text("base_model: b\ntrain_json: t\nlearning_rate: 1e-4\n")
    cfg = TrainConfig.from_yaml(preset, ["connector_learning_rate=2e-3", "max_steps=7"])
    assert (cfg.learning_rate, cfg.connector_learning_rate, cfg.max_steps) == (1e-4, 2e-3, 7)
    with pytest.raises(ValueError, match="learning_rate must be a number, got 'fast'"):
        TrainConfig.from_yaml(preset, ["learning_rate=fast"])


@pytest.mark.parametrize("overrides, error, match", BAD, ids=[m for _, _, m in BAD])
def test_config_rejects_bad_values_and_combinations(overrides, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(base_model="b", train_json="t", **overrides)


def test_config_errors_for_flash_attention_unknown_fields_and_bad_json(tmp_path):
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ValueError, match="pip install 'trajvlm\\[gpu\\]'"):
            TrainConfig(base_model="b", train_json="t", attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="unknown TrainConfig fields \\['lora_rank'\\]"):
        TrainConfig.from_dict({"base_model": "b", "train_json": "t", "lora_rank": 8})
    bad = tmp_path / "ds.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig(base_model="b", train_json="t", deepspeed=str(bad))
    preset = tmp_path / "p.yaml"
    preset.write_text("base_model: b\ntrain_json: t\n")
    cfg = TrainConfig.from_yaml(preset, ["max_steps=7", "report_to=[jsonl, tensorboard]", "deepspeed=zero2"])
    assert cfg.max_steps == 7 and cfg.report_to == ["jsonl", "tensorboard"]
    assert Path(cfg.deepspeed) == PRESET_DIR / "deepspeed" / "zero2.json"
    with pytest.raises(FileNotFoundError, match="base_model has no config.json"):
        cfg.check_files()


def test_validate_cli_fails_on_missing_files(tmp_path):
    from trajvlm.cli import main

    preset = tmp_path / "p.yaml"
    preset.write_text(f"base_model: {tmp_path / 'missing'}\ntrain_json: t\n")
    assert main(["validate", "--config", str(preset)]) == 2
    assert main(["validate", "--config", str(preset), "--no-files"]) == 0


# ---------------------------------------------------------------------------------------------------------------
# what each stage trains


def _model(cfg):
    from trajvlm.training.trainer import build_model, setup_trainable

    return setup_trainable(build_model(cfg), cfg)


def _trajtok_config(base: Path, data: Path, out: Path, trajtok: Path, **overrides):
    """``make_config`` for the tiny TrajTok connector (``trajtok``: its checkpoint)."""
    return make_config(base, data, out, connector="trajtok", trajtok=str(trajtok), **overrides)


def _processor(cfg, model):
    from trajvlm.training.data import load_processor

    return load_processor(cfg, model.config)


@pytest.fixture(params=["pool", "trajtok"])
def connector_overrides(request):
    if request.param == "pool":
        return {"connector": "pool"}
    return {"connector": "trajtok", "trajtok": str(request.getfixturevalue("tiny_trajtok_path"))}


@pytest.mark.parametrize("stage", ["align", "finetune"])
def test_frozen_modules_keep_the_segmenter(tiny_base_path, train_data, tmp_path, tiny_trajtok_path, stage, caplog):  # noqa: F811
    from trajvlm.training.trainer import trainable_parameter_names

    cfg = _trajtok_config(
        tiny_base_path, train_data, tmp_path, tiny_trajtok_path, stage=stage, frozen_modules=["segmenter"]
    )
    names = trainable_parameter_names(_model(cfg))
    assert names and not any(".segmenter." in n for n in names)
    assert any(".trajtok.encoder." in n for n in names)  # the rest of the connector still trains
    pool = make_config(tiny_base_path, train_data, tmp_path, connector="pool", frozen_modules=["segmenter"])
    with caplog.at_level("WARNING"):
        assert trainable_parameter_names(_model(pool))  # one recipe for every connector: a no-op, said so
    assert "matched no trainable parameter" in caplog.text
    with pytest.raises(ValueError, match="frozen_modules"):
        make_config(tiny_base_path, train_data, tmp_path, frozen_modules="segmenter")


@pytest.mark.parametrize("preset", ["demo_stage1.yaml", "demo_stage2.yaml"])
def test_demo_stages_keep_trajtoks_segmentation_as_pretrained(
    tiny_base_path,
    train_data,  # noqa: F811
    tmp_path,
    tiny_trajtok_path,  # noqa: F811
    preset,
):
    """The main job's stages 1-2 train TrajTok's trajectory encoder but neither its segmenter nor its pixel backbone:
    with the backbone trainable, the language loss moved the trajectories the warm-up had learned to read."""
    from trajvlm.training.trainer import trainable_parameter_names

    cfg = TrainConfig.from_yaml(
        PRESET_DIR / preset,
        [
            f"base_model={tiny_base_path}",
            "connector=trajtok",
            f"trajtok={tiny_trajtok_path}",
            f"train_json={train_data / 'qa.json'}",
            f"video_root={train_data}",
            f"output_dir={tmp_path / 'run'}",
        ],
    )
    model = _model(cfg)
    names = trainable_parameter_names(model)
    trajtok = [n for n, _ in model.named_parameters() if ".trajtok." in n]
    assert any(".trajtok.features." in n for n in trajtok)  # the tiny TrajTok has a pixel backbone to keep
    assert not any(".trajtok.segmenter." in n or ".trajtok.features." in n for n in names)
    assert any(".trajtok.encoder." in n for n in names)


def test_tokens_per_trajectory_reaches_the_connector_and_survives_saving(
    tiny_base_path,
    train_data,  # noqa: F811
    tmp_path,
    tiny_trajtok_path,  # noqa: F811
):
    """One count in training and inference alike: the connector gets it, and a saved model keeps it."""
    cfg = _trajtok_config(tiny_base_path, train_data, tmp_path, tiny_trajtok_path, tokens_per_trajectory=4)
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.training.trainer import build_model

    model = build_model(cfg)
    assert model.config.tokens_per_trajectory == 4
    assert model.model.connector.tokens_per_trajectory == 4
    model.save_pretrained(tmp_path / "saved")

    assert TrajVLMForConditionalGeneration.from_pretrained(tmp_path / "saved").config.tokens_per_trajectory == 4
    assert make_config(tiny_base_path, train_data, tmp_path, connector="pool").tokens_per_trajectory is None
    with pytest.raises(ValueError, match="tokens_per_trajectory must be 1, 2, 4 or null"):
        make_config(tiny_base_path, train_data, tmp_path, tokens_per_trajectory=3)


def test_lora_trains_only_adapters_connector_and_projector(tiny_base_path, train_data, tmp_path, connector_overrides):  # noqa: F811
    from trajvlm.training.trainer import trainable_parameter_names

    cfg = make_config(tiny_base_path, train_data, tmp_path, **connector_overrides)
    model = _model(cfg)
    names = trainable_parameter_names(model)
    lora = [n for n in names if ".lora_" in n]
    saved = [n for n in names if ".modules_to_save." in n]
    assert sorted(lora + saved) == sorted(names)
    assert lora and all(".language_model." in n for n in lora)  # never the tower or the connector
    assert all(".vision_tower." not in n for n in names)
    assert any(".multi_modal_projector.modules_to_save." in n for n in saved)
    if cfg.connector == "trajtok":
        assert any(".connector.modules_to_save." in n for n in saved)
    # one optimizer step changes exactly trainable tensors, never a frozen one
    batch = tiny_batch(_processor(cfg, model), train_data)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= set(names), sorted(changed - set(names))
    assert any(".lora_B." in k for k in changed) and any(
        ".multi_modal_projector.modules_to_save." in k for k in changed
    )


def test_stage_align_freezes_llm_and_tower(tiny_base_path, train_data, tmp_path, tiny_trajtok_path):  # noqa: F811
    from trajvlm.training.trainer import trainable_parameter_names

    cfg = _trajtok_config(tiny_base_path, train_data, tmp_path, tiny_trajtok_path, stage="align")
    model = _model(cfg)
    names = trainable_parameter_names(model)
    assert names and all(n.startswith(("model.multi_modal_projector.", "model.connector.")) for n in names)
    assert any(n.startswith("model.connector.") for n in names)
    n_connector = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.connector."))
    n_proj = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.multi_modal_projector."))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n_connector + n_proj


def test_full_finetune_trains_llm_but_not_tower(tiny_base_path, train_data, tmp_path):  # noqa: F811
    from trajvlm.training.trainer import trainable_parameter_names

    cfg = make_config(tiny_base_path, train_data, tmp_path, full_finetune=True)
    names = set(trainable_parameter_names(_model(cfg)))
    assert "lm_head.weight" in names and "model.language_model.embed_tokens.weight" in names
    assert not any(".lora_" in n or "vision_tower" in n for n in names)
    assert any(n.startswith("model.multi_modal_projector.") for n in names)


def test_connector_gets_its_own_learning_rate(tiny_base_path, train_data, tmp_path):  # noqa: F811
    from trajvlm.training.trainer import TrajVLMTrainer, present_trainable_modules, training_arguments

    cfg = make_config(tiny_base_path, train_data, tmp_path, learning_rate=1e-3, connector_learning_rate=5e-5)
    model = _model(cfg)
    trainer = TrajVLMTrainer(
        model=model,
        args=training_arguments(cfg),
        connector_modules=present_trainable_modules(model, cfg),
        connector_lr=cfg.connector_learning_rate,
    )
    optimizer = trainer.create_optimizer()
    by_lr: dict[float, set[int]] = {}
    for group in optimizer.param_groups:
        by_lr.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    named = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert set(by_lr) == {1e-3, 5e-5}
    assert {named[i] for i in by_lr[5e-5]} == {n for n in named.values() if "multi_modal_projector" in n}
    assert all(".lora_" in named[i] for i in by_lr[1e-3])
    assert set().union(*by_lr.values()) == set(named)


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_lora_forward_backward_on_cpu(tiny_base_path, train_data, tmp_path, bits):  # noqa: F811
    import bitsandbytes as bnb

    cfg = make_config(tiny_base_path, train_data, tmp_path, quantization=bits)
    from trajvlm.training.trainer import build_model, setup_trainable

    base = build_model(cfg)
    quant_cls = bnb.nn.Linear4bit if bits == "4bit" else bnb.nn.Linear8bitLt
    q_proj = base.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, quant_cls)
    for module in (base.model.multi_modal_projector.linear_1, base.lm_head):
        assert type(module) is torch.nn.Linear  # kept unquantised
    assert not any(isinstance(m, quant_cls) for m in base.model.vision_tower.modules())
    model = setup_trainable(base, cfg)
    batch = tiny_batch(_processor(cfg, model), train_data)
    model.train()  # no no-grad forward first: bitsandbytes' CPU 4-bit layers with a bias fail after one
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(".lora_B." in n and g.abs().sum() > 0 for n, g in grads.items())
    assert any("multi_modal_projector.modules_to_save" in n and g.abs().sum() > 0 for n, g in grads.items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only path: with a GPU, bf16 and fp16 run on it")
def test_bf16_trains_on_a_machine_without_a_gpu_and_fp16_is_refused(tiny_base_path, train_data, tmp_path):  # noqa: F811
    from trajvlm.training.trainer import train, training_arguments

    cfg = make_config(tiny_base_path, train_data, tmp_path / "bf16", precision="bf16", max_steps=1)
    assert training_arguments(cfg).use_cpu  # without it the Trainer refuses bf16 on a machine without a GPU
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        training_arguments(make_config(tiny_base_path, train_data, tmp_path / "fp16", precision="fp16"))


# ---------------------------------------------------------------------------------------------------------------
# a real run: checkpoints, resume, final model


def _adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "adapter_model.safetensors")


def test_train_save_resume_round_trip(tiny_base_path, train_data, tmp_path, tiny_trajtok_path):  # noqa: F811
    from trajvlm.inference.loading import is_adapter_checkpoint
    from trajvlm.training.config import CONFIG_NAME
    from trajvlm.training.trainer import train

    run_a = tmp_path / "a"
    cfg = _trajtok_config(tiny_base_path, train_data, run_a, tiny_trajtok_path, max_steps=3, lora_dropout=0.1)
    train(cfg)
    for step in (1, 2, 3):
        ckpt = run_a / f"checkpoint-{step}"
        assert is_adapter_checkpoint(ckpt) and (ckpt / CONFIG_NAME).is_file()
        assert (ckpt / "processor_config.json").is_file() and (ckpt / "optimizer.pt").is_file()
        keys = _adapter(ckpt).keys()
        assert any("connector" in k for k in keys) and any("multi_modal_projector" in k for k in keys)
    assert (run_a / "final" / "config.json").is_file() and (run_a / "final" / CONFIG_NAME).is_file()
    assert not is_adapter_checkpoint(run_a / "final")
    records = [json.loads(line) for line in (run_a / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]

    # resume from step 2 in a fresh run dir: step 3 must reproduce the uninterrupted run exactly; a newer
    # checkpoint-3 whose save was cut short (a full disk: config written, weights truncated, no state) is skipped
    run_b = tmp_path / "b"
    run_b.mkdir()
    shutil.copytree(run_a / "checkpoint-2", run_b / "checkpoint-2")
    (run_b / "checkpoint-3").mkdir()
    shutil.copy(run_a / "checkpoint-3" / "adapter_config.json", run_b / "checkpoint-3")
    (run_b / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    train(dataclasses.replace(cfg, output_dir=str(run_b), export_final=False), resume=True)
    a3, b3 = _adapter(run_a / "checkpoint-3"), _adapter(run_b / "checkpoint-3")
    assert a3.keys() == b3.keys()
    a2 = _adapter(run_a / "checkpoint-2")
    assert any(not torch.equal(a2[k], a3[k]) for k in a3)  # step 3 did change the weights
    for key in a3:
        torch.testing.assert_close(b3[key], a3[key], rtol=1e-5, atol=1e-6, msg=key)


def test_resume_without_checkpoint_fails(tiny_base_path, train_data, tmp_path):  # noqa: F811
    from trajvlm.training.trainer import train

    with pytest.raises(FileNotFoundError, match="no checkpoint-N directory"):
        train(make_config(tiny_base_path, train_data, tmp_path / "empty"), resume=True)


def test_resume_picks_the_newest_complete_checkpoint(tmp_path, caplog):
    from trajvlm.training.config import CONFIG_NAME
    from trajvlm.training.trainer import resume_checkpoint

    def checkpoint(step: int, complete: bool) -> None:
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "config.json").write_text("{}")
        if complete:
            (path / "trainer_state.json").write_text("{}")
            (path / CONFIG_NAME).write_text("{}")

    checkpoint(30, complete=False)
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(tmp_path) is None  # nothing complete: train from the start
    assert "checkpoint-30: incomplete" in caplog.text and "training from the start" in caplog.text
    checkpoint(9, complete=True)
    checkpoint(10, complete=True)  # numeric order: 10 is newer than 9, and 30 is skipped
    assert resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


def test_stage_align_run_writes_a_loadable_final_model(tiny_base_path, train_data, tmp_path):  # noqa: F811
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.training.trainer import train

    cfg = make_config(
        tiny_base_path,
        train_data,
        tmp_path,
        stage="align",
        max_steps=1,
        save_steps=10,
        eval_json=str(train_data / "qa.json"),
        eval_steps=1,
    )
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(math.isfinite(r.get("eval_loss", math.nan)) for r in records)
    model = TrajVLMForConditionalGeneration.from_pretrained(tmp_path / "final")
    base = TrajVLMForConditionalGeneration.from_llava(tiny_base_path, connector="pool")
    trained, start = model.state_dict(), base.state_dict()
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)


@pytest.mark.parametrize("target, step", [(2.4, 2), (2.6, 3), (0.1, 1), (9.0, None)])
def test_snapshot_callback_saves_once_at_the_step_nearest_the_time(monkeypatch, target, step):
    """Steps of 1 s each: the snapshot goes to the step whose end is nearest ``target`` seconds, once."""
    import trajvlm.training.trainer as train_mod

    now = {"t": 0.0}
    monkeypatch.setattr(train_mod.time, "perf_counter", lambda: now["t"])
    saved = []
    callback = train_mod.SnapshotCallback(target, lambda s, elapsed: saved.append((s, elapsed)))
    state = type("State", (), {"global_step": 0})()
    callback.on_train_begin(None, state, None)
    for n in range(1, 5):
        now["t"], state.global_step = float(n), n
        callback.on_step_end(None, state, None)
    assert [s for s, _ in saved] == ([] if step is None else [step])
    assert all(elapsed == s for s, elapsed in saved)


def test_snapshot_at_seconds_saves_the_model_of_that_step(tiny_base_path, train_data, tmp_path):  # noqa: F811
    """A LoRA run with a snapshot due at once: snapshot/ holds step 1's adapter (equal to checkpoint-1) merged
    into a loadable snapshot/final, and the run goes on to its last step."""
    from trajvlm.inference.loading import is_adapter_checkpoint
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.training.trainer import train

    cfg = make_config(tiny_base_path, train_data, tmp_path, max_steps=3, snapshot_at_seconds=1e-3)
    train(cfg)
    record = json.loads((tmp_path / "snapshot" / "snapshot.json").read_text())
    assert record["step"] == 1 and record["train_s"] > 0 and record["target_s"] == 1e-3
    snap, first, last = (
        _adapter(p)
        for p in (tmp_path / "snapshot" / "adapter", *map(tmp_path.joinpath, ["checkpoint-1", "checkpoint-3"]))
    )
    assert snap.keys() == first.keys()
    for key in snap:
        torch.testing.assert_close(snap[key], first[key], msg=key)
    assert any(not torch.equal(snap[k], last[k]) for k in snap)
    assert not is_adapter_checkpoint(tmp_path / "snapshot" / "final")
    TrajVLMForConditionalGeneration.from_pretrained(tmp_path / "snapshot" / "final")
    with pytest.raises(ValueError, match="snapshot_at_seconds"):
        make_config(tiny_base_path, train_data, tmp_path, snapshot_at_seconds=0)
