"""trajvlm export: the merged standalone model gives the adapter model's logits and loads with from_pretrained."""

from __future__ import annotations

import pytest
import torch

from tests.trajvlm.train_fixtures import make_config, tiny_batch, tiny_trajtok_path, train_data  # noqa: F401


@pytest.fixture(scope="module")
def lora_checkpoint(tiny_base_path, train_data, tiny_trajtok_path, tmp_path_factory):  # noqa: F811
    """A 2-step LoRA run with the trajtok connector (its lora_B weights are no longer zero)."""
    from trajvlm.training.trainer import train

    out = tmp_path_factory.mktemp("export_run")
    cfg = make_config(
        tiny_base_path, train_data, out, connector="trajtok", trajtok=str(tiny_trajtok_path), export_final=False
    )
    train(cfg)
    return out / "checkpoint-2"


def test_merged_export_matches_adapter_logits(lora_checkpoint, train_data, tmp_path):  # noqa: F811
    from transformers import AutoModelForImageTextToText

    from trajvlm.inference.loading import load_trained
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor
    from trajvlm.training.export import export

    out = export(lora_checkpoint, tmp_path / "merged")
    adapter_model = load_trained(lora_checkpoint)
    lora_b = [p for n, p in adapter_model.named_parameters() if ".lora_B." in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # the merge has something to merge
    merged = TrajVLMForConditionalGeneration.from_pretrained(out).eval()
    auto = AutoModelForImageTextToText.from_pretrained(out).eval()
    assert type(auto) is TrajVLMForConditionalGeneration
    assert not any("lora" in n or "modules_to_save" in n for n, _ in merged.named_parameters())
    processor = TrajVLMProcessor.from_pretrained(out)
    assert processor.connector == "trajtok" and processor.num_frames == 4
    assert merged.config.trajtok["encoder_trained_by"] == "vlm"  # the connector trained: its config says so
    batch = tiny_batch(processor, train_data, indices=(0, 1, 2))
    batch.pop("labels")
    with torch.no_grad():
        want = adapter_model(**batch).logits
        got = merged(**batch).logits
        got_auto = auto(**batch).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_auto, want, rtol=1e-4, atol=1e-5)
    # and the merge really carries the training: the model without its adapter gives other logits
    with torch.no_grad(), adapter_model.disable_adapter():
        other = adapter_model(**batch).logits  # adaptive mode: the untrained connector may give other lengths
    assert other.shape != want.shape or not torch.allclose(other, want, atol=1e-4)


def test_encoder_provenance_follows_the_recipe(tiny_base_path, train_data, tmp_path):  # noqa: F811
    from trajvlm.training.export import record_encoder_training, trains_trajectory_encoder

    def cfg(**kw):
        return make_config(tiny_base_path, train_data, tmp_path, **{"connector": "trajtok", **kw})

    assert trains_trajectory_encoder(cfg())
    assert trains_trajectory_encoder(cfg(frozen_modules=["segmenter"]))  # the encoder still trains
    assert not trains_trajectory_encoder(cfg(frozen_modules=["connector"]))
    assert not trains_trajectory_encoder(cfg(trainable_modules=["multi_modal_projector"]))
    assert not trains_trajectory_encoder(cfg(connector="pool"))

    class Config:
        trajtok = {"encoder_trained_by": None, "num_slots": 8}

    config = Config()
    record_encoder_training(config, cfg())
    assert config.trajtok == {"encoder_trained_by": "vlm", "num_slots": 8}


def test_export_cli_and_errors(lora_checkpoint, tmp_path):
    from trajvlm.cli import main
    from trajvlm.training.export import export

    assert main(["export", "--checkpoint", str(lora_checkpoint), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "model.safetensors").is_file() and (tmp_path / "cli" / "tokenizer.json").is_file()
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        export(tmp_path / "nope", tmp_path / "x")
    # a full-model directory (no adapter) is re-saved as it is
    assert export(tmp_path / "cli", tmp_path / "again") == tmp_path / "again"
    assert (tmp_path / "again" / "config.json").is_file()
