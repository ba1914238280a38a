"""Losses against brute force and hand-computed values; segmentation-loss contracts on tiny label maps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trajtok.core.losses import (
    LearnableTemperature,
    clip_loss,
    dice_loss,
    hungarian_match,
    mask_iou_matrix,
    segmentation_loss,
    softmax_focal_loss,
)


@pytest.mark.parametrize("m, k", [(3, 3), (3, 5), (5, 3), (1, 4)])
def test_hungarian_matches_brute_force(m, k):
    g = torch.Generator().manual_seed(10 * m + k)
    for _ in range(5):
        cost = torch.rand(m, k, generator=g)
        rows, cols = hungarian_match(cost)
        assert len(rows) == len(cols) == min(m, k)
        assert torch.equal(rows, rows.sort().values) and len(set(cols.tolist())) == len(cols)
        got = cost[rows, cols].sum()
        if m <= k:
            best = min(sum(cost[i, p[i]] for i in range(m)) for p in itertools.permutations(range(k), m))
        else:
            best = min(sum(cost[p[j], j] for j in range(k)) for p in itertools.permutations(range(m), k))
        torch.testing.assert_close(got, torch.as_tensor(best))


def test_hungarian_rejects_bad_cost():
    with pytest.raises(ValueError, match=r"\(M, K\), got shape \(3,\)"):
        hungarian_match(torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        hungarian_match(torch.tensor([[float("nan")]]))


def test_mask_iou_matrix_hand_computed():
    pred = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.5, 0.5, 1.0]])  # (K=2, P=4)
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])  # (M=2, P=4)
    iou = mask_iou_matrix(pred, target)
    expected = torch.tensor([[1 / 2, 0 / 3], [0 / 4, 1.5 / 2.5]])
    torch.testing.assert_close(iou, expected)
    valid = torch.tensor([True, False, True, True])  # drop pixel 1
    expected_valid = torch.tensor([[1 / 1, 0 / 2.5], [0 / 3, 1.5 / 2.0]])
    torch.testing.assert_close(mask_iou_matrix(pred, target, valid), expected_valid)


def test_dice_hand_computed():
    pred = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # row 0: 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3; row 1: 1 - (2 + 1) / (1 + 1 + 1) = 0
    torch.testing.assert_close(dice_loss(pred, target), torch.tensor(1 / 6))
    assert dice_loss(torch.zeros(0, 3), torch.zeros(0, 3)).item() == 0.0


def test_focal_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (0.5, 0.5), (0.75, 0.25)
    target = torch.tensor([0, 1])
    # pixel 0: -(0.5^2) log 0.5; pixel 1: -(0.75^2) log 0.25
    expected = (-(0.5**2) * math.log(0.5) - (0.75**2) * math.log(0.25)) / 2
    torch.testing.assert_close(softmax_focal_loss(logits, target, gamma=2.0), torch.tensor(expected))
    # gamma 0 is cross-entropy
    torch.testing.assert_close(
        softmax_focal_loss(logits, target, gamma=0.0), torch.nn.functional.cross_entropy(logits, target)
    )


def label_map() -> torch.Tensor:
    """(B=1, T=2, 8, 8) ids: background 0, trajectory 3 (left block), 7 (right block), a row unlabeled (-1)."""
    ids = torch.zeros(1, 2, 8, 8, dtype=torch.long)
    ids[:, :, 2:5, 0:3] = 3
    ids[:, :, 4:8, 5:8] = 7
    ids[:, 1, 0, :] = -1
    return ids


def logits_for(ids: torch.Tensor, k: int, mapping: dict[int, int], scale: float = 20.0) -> torch.Tensor:
    """Logits (B, K, T, h, w) that put each id's pixels on query mapping[id]."""
    onehot = torch.zeros(ids.shape[0], k, *ids.shape[1:])
    for gid, q in mapping.items():
        onehot[:, q][ids == gid] = 1.0
    return onehot * scale


def test_segmentation_loss_perfect_vs_random():
    ids = label_map()
    perfect = logits_for(ids, k=6, mapping={0: 4, 3: 1, 7: 2})  # any permutation is matched
    out = segmentation_loss(perfect, ids)
    assert set(out) == {"loss", "focal", "dice", "num_matched"}
    assert out["num_matched"].item() == 3 and out["loss"].item() < 1e-3
    torch.manual_seed(0)
    rand = torch.randn(1, 6, 2, 8, 8, requires_grad=True)
    bad = segmentation_loss(rand, ids)
    assert bad["loss"].item() > 0.3
    torch.testing.assert_close(bad["loss"], bad["focal"] + 2 * bad["dice"])
    bad["loss"].backward()
    assert rand.grad.abs().sum() > 0


def test_segmentation_loss_ignores_unlabeled_and_background():
    ids = label_map()
    torch.manual_seed(1)
    logits = torch.randn(1, 5, 2, 8, 8)
    base = segmentation_loss(logits, ids)
    changed = logits.clone()
    changed[:, :, 1, 0, :] = torch.randn(5, 8) * 10  # only the unlabeled row
    torch.testing.assert_close(segmentation_loss(changed, ids)["loss"], base["loss"])
    ign = segmentation_loss(logits, ids, background="ignore")
    assert ign["num_matched"].item() == 2
    bg_changed = logits.clone()
    bg_changed[:, :, ids[0] == 0] = torch.randn(5, int((ids[0] == 0).sum())) * 10
    torch.testing.assert_close(segmentation_loss(bg_changed, ids, background="ignore")["loss"], ign["loss"])
    assert not torch.allclose(segmentation_loss(bg_changed, ids)["loss"], base["loss"])


def test_segmentation_loss_more_gt_than_queries_and_no_labels():
    ids = label_map()
    out = segmentation_loss(torch.randn(1, 2, 2, 8, 8), ids)  # 3 GT trajectories, 2 queries
    assert out["num_matched"].item() == 2 and torch.isfinite(out["loss"])
    logits = torch.randn(1, 4, 2, 8, 8, requires_grad=True)
    empty = segmentation_loss(logits, torch.full((1, 2, 8, 8), -1))
    assert empty["loss"].item() == 0.0 and empty["num_matched"].item() == 0
    empty["loss"].backward()  # keeps the graph


def test_segmentation_loss_label_resolution_and_multires():
    ids = label_map()
    hi = ids.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # labels at 32 x 32, logits at 8 x 8
    perfect = logits_for(ids, k=4, mapping={0: 0, 3: 1, 7: 2})
    low = segmentation_loss(perfect, hi)
    torch.testing.assert_close(low["loss"], segmentation_loss(perfect, ids)["loss"])
    multi = segmentation_loss(perfect, hi, multires=True)
    assert multi["num_matched"].item() == 3 and multi["loss"].item() < 0.05
    torch.manual_seed(2)
    rand = torch.randn(1, 4, 2, 8, 8)
    assert not torch.allclose(segmentation_loss(rand, hi, multires=True)["loss"], segmentation_loss(rand, hi)["loss"])


def test_segmentation_loss_batch_is_mean_of_videos():
    ids = torch.cat([label_map(), label_map().flip(-1)], dim=0)
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 2, 8, 8)
    both = segmentation_loss(logits, ids)
    singles = [segmentation_loss(logits[i : i + 1], ids[i : i + 1])["loss"] for i in range(2)]
    torch.testing.assert_close(both["loss"], (singles[0] + singles[1]) / 2)
    assert both["num_matched"].item() == 6


def test_segmentation_loss_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B, K, T, h, w\), got shape \(4, 8, 8\)"):
        segmentation_loss(torch.zeros(4, 8, 8), label_map())
    with pytest.raises(ValueError, match=r"\(1, 3, H', W'\), got shape \(1, 2, 8, 8\)"):
        segmentation_loss(torch.zeros(1, 4, 3, 8, 8), label_map())
    with pytest.raises(ValueError, match="background must be one of"):
        segmentation_loss(torch.zeros(1, 4, 2, 8, 8), label_map(), background="drop")


def test_clip_loss_hand_computed():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scale = 2.0
    cos = torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]) * scale  # (video, text)
    rows = -(cos.diag() - cos.logsumexp(dim=1)).mean()
    cols = -(cos.diag() - cos.logsumexp(dim=0)).mean()
    torch.testing.assert_close(clip_loss(v, t, scale), (rows + cols) / 2)
    assert clip_loss(torch.eye(4), torch.eye(4), 100.0).item() < 1e-6
    with pytest.raises(ValueError, match=r"\(B, E\)"):
        clip_loss(torch.zeros(2, 3), torch.zeros(3, 3), 1.0)


def test_learnable_temperature():
    temp = LearnableTemperature()
    torch.testing.assert_close(temp(), torch.tensor(1 / 0.07))
    with torch.no_grad():
        temp.log_scale.fill_(10.0)
    torch.testing.assert_close(temp(), torch.tensor(100.0))
    fresh = LearnableTemperature()
    clip_loss(torch.randn(3, 4), torch.randn(3, 4), fresh()).backward()
    assert fresh.log_scale.grad is not None and fresh.log_scale.grad.abs() > 0
