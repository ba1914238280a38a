"""The vtok connector: key-frame spatial tokens + one residual token per frame, T + S tokens per single-shot video."""

from __future__ import annotations

import pytest
import torch

from tests.trajvlm.connector_checks import batch, build
from tests.trajvlm.helpers import random_video

S = 16  # tiny base: 8x8 patch grid pooled 2x2 -> 4x4 spatial tokens


@pytest.fixture(scope="module")
def vtok(tiny_base_path):
    return build(tiny_base_path, "vtok")


def _cut_video(num_frames: int = 8, cut: int = 3) -> torch.Tensor:
    """Dark noise then bright noise: a hard cut at frame ``cut`` that the key-frame detector finds."""
    video = random_video(num_frames=num_frames, seed=4)
    video[cut:] = 255 - video[cut:] // 3
    return video


def test_exactly_t_plus_s_tokens_per_single_shot_video(vtok):
    model, proc = vtok
    for frames in (4, 6, 10):
        with torch.no_grad():
            out = model(**batch(proc, num_frames=frames))
        assert out.visual_token_counts == [frames + S] * 2
        assert model.model.connector.num_tokens_for(frames) == frames + S


def test_each_shot_has_its_key_frame_tokens(vtok):
    model, proc = vtok
    proc.tokenizer.padding_side = "left"
    inputs = proc(text=["<video>\nWhat?"], videos=[_cut_video(8, 3)])
    merged = model.model.merge_video_tokens(inputs["input_ids"], inputs["pixel_values_videos"])
    assert merged.connector_output.extra["shots"] == [[0, 3]]
    assert merged.visual_token_counts == [2 * S + 8]


def test_residual_token_of_an_unchanged_frame_equals_the_key_frames(vtok):
    model, _ = vtok
    conn = model.model.connector
    g, d = conn.grid, conn.hidden
    torch.manual_seed(0)
    key = torch.randn(g * g, d)
    changed = key.clone()
    changed[:8] += 3.0  # some patches change
    feats = torch.stack([key, key, changed])  # (3, h*w, D): key frame, same frame, changed frame
    with torch.no_grad():
        tokens = conn.frame_tokens(feats, key)  # (3, D)
    torch.testing.assert_close(tokens[1], tokens[0])
    assert (tokens[2] - tokens[0]).abs().max() > 1e-3


def test_single_shot_mode_and_fixed_budget(tiny_base_path):
    model, proc = build(tiny_base_path, "vtok", {"shots": "single"}, token_mode="fixed", video_token_budget=40)
    proc.tokenizer.padding_side = "left"
    inputs = proc(text=["<video>\nWhat?"], videos=[_cut_video(8, 3)])
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 40
    with torch.no_grad():
        out = model(**inputs)
    assert out.visual_token_counts == [8 + S]  # one shot: the cut is ignored; the rest of the budget is padding


def test_bad_kwargs(tiny_base_path):
    with pytest.raises(ValueError, match="vtok shots must be one of"):
        build(tiny_base_path, "vtok", {"shots": "every"})
    with pytest.raises(ValueError, match="unknown connector_kwargs \\['strides'\\] for the 'vtok' connector"):
        build(tiny_base_path, "vtok", {"strides": 2})
    with pytest.raises(ValueError, match="histogram_rule"):
        build(tiny_base_path, "vtok", {"histogram_rule": "loose"})
