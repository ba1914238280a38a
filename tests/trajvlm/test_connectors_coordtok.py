"""The coordtok connector: a CoordTok encoder's triplane latents as the visual tokens."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.trajvlm.connector_checks import batch, build

# default CoordTok of the tiny base (64 px): 4x4 xy + 2 x 4x4 time planes
TOKENS = 4 * 4 + 2 * 4 * 4


@pytest.fixture(scope="module")
def coordtok(tiny_base_path):
    return build(tiny_base_path, "coordtok")


def test_token_count_is_fixed_whatever_the_frames(coordtok):
    model, proc = coordtok
    for frames in (3, 8):
        with torch.no_grad():
            out = model(**batch(proc, num_frames=frames))
        assert out.visual_token_counts == [TOKENS] * 2


def test_pretrained_checkpoint_is_loaded_and_saved_with_the_model(tiny_base_path, tmp_path):
    from trajtok.baselines.coordtok import CoordTok, CoordTokConfig
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    torch.manual_seed(5)
    pretrained = CoordTok(CoordTokConfig.tiny(image_size=64, tubelet_size=8, plane_size=2, plane_frames=2))
    pretrained.save_pretrained(tmp_path / "ct")
    model, proc = build(tiny_base_path, "coordtok", {"checkpoint": str(tmp_path / "ct")})
    inner = model.model.connector.coordtok.state_dict()
    assert all(torch.equal(inner[k], v) for k, v in pretrained.state_dict().items())
    inputs = batch(proc, side="right")
    model.train()
    out = model(**inputs, labels=inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100))
    out.loss.backward()  # a pretrained encoder is frozen by default: only the projection gets gradients
    assert all(p.grad is None for p in model.model.connector.coordtok.parameters())
    assert model.model.connector.proj[0].weight.grad is not None
    assert out.visual_token_counts == [2 * 2 + 2 * 2 * 2] * 2
    model.save_pretrained(tmp_path / "vlm")
    shutil.rmtree(tmp_path / "ct")  # the saved model carries the architecture and the weights
    loaded = TrajVLMForConditionalGeneration.from_pretrained(tmp_path / "vlm")
    assert torch.equal(loaded.model.connector.coordtok.queries, pretrained.queries)


def test_bad_checkpoint_and_kind(tiny_base_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        build(tiny_base_path, "coordtok", {"checkpoint": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="needs a kind='coordtok' model"):
        build(tiny_base_path, "coordtok", {"coordtok": {"kind": "patch_ae", "image_size": 64}})
