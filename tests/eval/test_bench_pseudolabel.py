"""eval/bench/bench_pseudolabel.py: the J protocol, and the held-out clip kept apart from the tuned ones."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_pseudolabel.py")


def test_j_is_the_space_time_iou_of_the_best_trajectory(bench):
    """Two annotated frames of one object at 8x8; trajectory 1 covers it exactly in frame 0 and half of it in frame
    1, trajectory 2 covers the other half of frame 1. Predictions at 4x4 are resized (nearest) to the annotation."""
    gt = {0: np.zeros((8, 8), np.int32), 1: np.zeros((8, 8), np.int32)}
    gt[0][:4, :4] = 1
    gt[1][:4, :4] = 1
    pred = np.zeros((2, 4, 4), np.int64)
    pred[0, :2, :2] = 1
    pred[1, :2, :1] = 1
    pred[1, :2, 1:2] = 2
    best, union, used = bench.j_stats(pred, gt)[1]
    assert best == pytest.approx((16 + 8) / 32)  # trajectory 1: 24 of the object's 32 pixels, nothing outside
    assert union == pytest.approx(1.0) and used == 2  # both lie inside the object: together they are it
    assert bench.j_scores(pred, gt) == {1: best}


def test_the_held_out_clip_is_read_with_its_first_frame_mask(bench, shared_data):
    clips = list(bench.held_out_clips(shared_data))
    assert [c[0] for c in clips] == ["apple"]
    _, video, gt = clips[0]
    assert video.is_file() and list(gt) == [0]
    mask = gt[0]
    assert mask.shape == (720, 1296) and set(np.unique(mask).tolist()) == {0, 1}
    assert 0.02 < mask.mean() < 0.3  # one object, a few per cent of the frame
    assert {c[0] for c in clips}.isdisjoint(bench.DAVIS)  # never one of the clips the settings were chosen on


def test_held_out_clips_skip_what_is_absent(bench, tmp_path):
    assert list(bench.held_out_clips(tmp_path)) == []
