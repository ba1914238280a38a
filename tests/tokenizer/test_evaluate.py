"""trajtok eval: the space-time metrics on hand-built masks, and the CLI's JSON on a tiny synthetic dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trajtok.cli import main as trajtok_main
from trajtok.core.modeling import tiny_model
from trajtok.synth import write_dataset
from trajtok.training.evaluate import (
    association_quality,
    coverage,
    iou_matrix,
    overlap_matrix,
    spacetime_miou,
    summarize,
)


def two_objects() -> np.ndarray:
    """(T=2, 4, 4) ids: object 1 = left half, object 2 = top-right quarter, background elsewhere."""
    gt = np.zeros((2, 4, 4), dtype=np.int64)
    gt[:, :, :2] = 1
    gt[:, :2, 2:] = 2
    return gt


def test_identical_prediction_scores_one_whatever_the_ids():
    gt = two_objects()
    pred = np.choose(gt, [7, 3, 5])  # same partition, other ids (background -> 7)
    assert spacetime_miou(gt, pred) == 1.0
    assert association_quality(gt, pred) == 1.0
    assert coverage(gt, pred) == 1.0


def test_disjoint_prediction_scores_zero():
    gt = np.zeros((2, 4, 4), dtype=np.int64)
    gt[:, :2] = 1  # the object fills the top half
    pred = np.zeros_like(gt)
    pred[:, 2:] = 1  # predicted trajectory 1: the bottom half, disjoint from the object
    assert iou_matrix(gt, pred)[0].tolist() == [1.0, 0.0]  # (the object is all of predicted trajectory 0)
    # one prediction for two objects: the Hungarian match gives it to one of them, the other scores 0
    gt2 = gt.copy()
    gt2[:, 2:] = 2
    merged = np.zeros_like(gt)
    assert spacetime_miou(gt2, merged) == pytest.approx(0.25)  # (IoU 0.5 + unmatched 0) / 2
    only_second = np.where(gt2 == 2, 3, 4)  # both objects predicted, but swap which cluster holds what: still exact
    assert spacetime_miou(gt2, only_second) == 1.0
    assert iou_matrix(gt2, only_second).tolist() == [[0.0, 1.0], [1.0, 0.0]]  # columns: ids 3, 4


def test_partial_overlap_gives_hand_computed_iou():
    gt = np.zeros((2, 4, 4), dtype=np.int64)
    gt[:, :2, :2] = 1  # 8 pixels over two frames
    pred = np.zeros_like(gt)
    pred[0, :2, :2] = 1  # frame 0: exact
    pred[1, :2, 1:3] = 1  # frame 1: shifted by one column -> 2 of 4 pixels overlap, 2 extra
    # space-time: inter = 4 + 2 = 6, union = 8 + 8 - 6 = 10
    assert spacetime_miou(gt, pred) == pytest.approx(0.6)
    inter, gt_sizes, pred_sizes = overlap_matrix(gt, pred)
    assert inter.tolist() == [[2, 6]] and gt_sizes.tolist() == [8] and pred_sizes.tolist() == [24, 8]


def test_unmatched_gt_counts_zero_and_background_is_not_averaged():
    gt = two_objects()  # per frame: object 1 = 8 px, object 2 = 4 px, background = 4 px
    pred = np.where(gt == 1, 1, 0)  # object 1 exact; object 2 merged with the background in cluster 0
    # IoU(object 2, cluster 0) = 8 / 16 over the two frames; the background is not a GT trajectory
    assert spacetime_miou(gt, pred) == pytest.approx((1.0 + 0.5) / 2)
    assert spacetime_miou(gt, np.zeros_like(gt)) == pytest.approx((16 / 32 + 0.0) / 2)  # object 2 unmatched
    assert math.isnan(spacetime_miou(np.zeros_like(gt), pred))  # no object: no score


def test_split_trajectory_halves_association_and_coverage():
    gt = np.zeros((4, 2, 2), dtype=np.int64)
    gt[:] = 1
    pred = np.zeros_like(gt)
    pred[2:] = 1  # the trajectory is cut in time into two predicted trajectories of equal size
    assert association_quality(gt, pred) == pytest.approx(0.5)
    assert coverage(gt, pred) == pytest.approx(0.5)
    assert spacetime_miou(gt, pred) == pytest.approx(0.5)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="same shape"):
        spacetime_miou(np.zeros((1, 2, 2), int), np.zeros((1, 2, 3), int))
    with pytest.raises(ValueError, match=">= 0"):
        spacetime_miou(np.ones((1, 2, 2), int), -np.ones((1, 2, 2), int))


def test_summary_groups_tokens_by_length():
    rows = [
        {"num_frames": 8, "miou": 1.0, "association": 1.0, "coverage": 1.0, "tokens": 4, "gt_objects": 2},
        {
            "num_frames": 8,
            "miou": math.nan,
            "association": math.nan,
            "coverage": math.nan,
            "tokens": 2,
            "gt_objects": 0,
        },
        {"num_frames": 16, "miou": 0.5, "association": 0.25, "coverage": 0.5, "tokens": 6, "gt_objects": 3},
    ]
    s = summarize(rows)
    assert s["miou"] == 0.75 and s["association"] == 0.625
    assert s["tokens_vs_length"] == {"8": 3.0, "16": 6.0}
    assert s["tokens_mean"] == 4.0 and s["gt_objects_mean"] == pytest.approx(5 / 3)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_eval")
    write_dataset(root, "train=0,val=0,test=3", frames=(8, 12), size=64, objects=(2, 3), seed=1)
    return root


def test_eval_cli_writes_the_documented_json(synth, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    tiny_model(seed=0, clip_len=4).save_pretrained(ckpt)
    out = tmp_path / "eval.json"
    assert trajtok_main(["eval", "--checkpoint", str(ckpt), "--data", str(synth), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("miou", "association", "tokens_mean", "gt_objects_mean", "videos", "tokens_vs_length"):
        assert key in result
    assert len(result["videos"]) == 3
    for row in result["videos"]:
        assert set(row) >= {"num_frames", "miou", "association", "tokens", "gt_objects"}
        assert 0.0 <= row["miou"] <= 1.0 and 0.0 <= row["association"] <= 1.0
        assert row["tokens"] >= 1 and row["gt_objects"] >= 2 and row["num_frames"] in range(8, 13)
    assert sum(len(v) for v in [result["tokens_vs_length"]]) >= 1
    assert "| miou |" in capsys.readouterr().out


def test_perfect_model_output_scores_one(synth):
    """The eval path (labels decoded at the model size) scores 1 when the prediction is the label itself."""
    from trajtok.data import TrajectoryClipDataset

    data = TrajectoryClipDataset(synth, "test", clip_len=1, size=64, train=False)
    for v in data.videos:
        gt = v.ids.astype(np.int64)
        assert spacetime_miou(gt, gt) == 1.0 and association_quality(gt, torch.as_tensor(gt).numpy()) == 1.0


def test_predicted_trajectories_are_token_rows_unless_asked_for_queries():
    """A query released and seen again is two trajectories (two token rows) in the metrics, one by query."""
    from trajtok.training.evaluate import predict_ids

    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(24, 3, 64, 64, generator=g) * 255).to(torch.uint8)  # noise: queries come and go
    model = tiny_model(seed=0, release_after=1, clip_len=2).eval()
    with torch.no_grad():
        rows, tokens, present = predict_ids(model, frames, (16, 16))
        queries, tokens_q, _ = predict_ids(model, frames, (16, 16), by="queries")
        out = model.tokenize_video(frames)
    assert tokens == tokens_q and present == int(out.present[0].sum()) > 16  # rows re-opened
    assert queries.max() < 16 <= rows.max()  # later segments are rows past the K queries'
    # every row id is one query's: mapping a row back to its query gives the query ids
    row_query = out.trajectory_query[0].numpy()
    assert (row_query[rows] == queries).all()
    with pytest.raises(ValueError, match="by must be"):
        predict_ids(model, frames, (16, 16), by="tracks")


def test_eval_cli_overrides_release_and_merge(synth, tmp_path):
    ckpt = tmp_path / "ckpt"
    tiny_model(seed=0, clip_len=4).save_pretrained(ckpt)
    out = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(ckpt), "--data", str(synth), "--json", str(out), "--ids", "queries"]
    assert trajtok_main([*argv, "--release-after", "1", "--merge-returning", "0.9"]) == 0
    result = json.loads(out.read_text())
    assert result["ids"] == "queries" and result["override_release_after"] == 1
    assert result["override_merge_returning"] == 0.9
