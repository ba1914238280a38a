"""The tome connector: bipartite soft matching of the tower's space-time patches down to a budget, training-free."""

from __future__ import annotations

import pytest
import torch

from tests.trajvlm.connector_checks import batch, build
from trajvlm.connectors.tome import merge_tokens


@pytest.fixture(scope="module")
def tome(tiny_base_path):
    return build(tiny_base_path, "tome", {"budget": 10})


@pytest.mark.parametrize("window", [4, 4096])
def test_merging_meets_the_budget_and_conserves_mass(window):
    torch.manual_seed(0)
    x = torch.randn(101, 8, dtype=torch.float64)
    merged, size = merge_tokens(x, budget=7, window=window)
    assert merged.shape == (7, 8) and size.shape == (7,)
    assert float(size.sum()) == 101.0  # every patch is in exactly one merged token
    # size-weighted averages: the sum of the merged tokens weighted by their sizes is the sum of all patches
    torch.testing.assert_close((merged * size[:, None].to(merged.dtype)).sum(0), x.sum(0))


def test_identical_neighbours_merge_first():
    groups = torch.eye(4) * 5  # four distinct directions
    x = groups.repeat_interleave(4, dim=0)  # (16, 4): AAAA BBBB CCCC DDDD, in space-time order
    merged, size = merge_tokens(x, budget=4)
    assert size.tolist() == [4.0, 4.0, 4.0, 4.0]
    torch.testing.assert_close(merged, groups)  # each group collapsed to itself, order kept


def test_connector_counts_order_and_no_weights(tome):
    model, proc = tome
    assert sum(p.numel() for p in model.model.connector.parameters()) == 0  # training-free
    inputs = batch(proc, num_frames=3)
    with torch.no_grad():
        out = model(**inputs)
    assert out.visual_token_counts == [10, 10]
    merged = model.model.merge_video_tokens(
        inputs["input_ids"], inputs["pixel_values_videos"], inputs["attention_mask"]
    )
    sizes = merged.connector_output.extra["sizes"]
    assert [float(s.sum()) for s in sizes] == [3 * 64.0] * 2  # T * h * w patches per video


def test_bad_budget(tiny_base_path):
    with pytest.raises(ValueError, match="tome budget must be a positive"):
        build(tiny_base_path, "tome", {"budget": 0})
