import numpy as np
import pytest

from trajtok.io.labels import TrajectoryLabels, load_labels, save_labels


def _labels():
    masks = np.zeros((3, 4, 5), dtype=np.int32)
    masks[0, :2, :2] = 1
    masks[1, :2, :2] = 2  # same object, other instance id in frame 1
    masks[2, 2:, 3:] = 1  # a second object appears in frame 2
    graph = np.array([[1, 2, 0], [0, 0, 1]], dtype=np.int32)
    return masks, graph


def test_round_trip(tmp_path):
    masks, graph = _labels()
    save_labels(tmp_path / "v.npz", masks, graph)
    lab = load_labels(tmp_path / "v.npz")
    np.testing.assert_array_equal(lab.masks, masks)
    np.testing.assert_array_equal(lab.graph, graph)
    assert not list(tmp_path.glob("*.tmp"))


def test_trajectory_ids_follow_graph():
    masks, graph = _labels()
    ids = TrajectoryLabels(masks, graph).trajectory_ids()
    assert (ids[0, :2, :2] == 1).all() and (ids[1, :2, :2] == 1).all()
    assert (ids[2, 2:, 3:] == 2).all()
    assert ids.sum() == 4 * 1 + 4 * 1 + 4 * 2


def test_subsample_drops_absent_trajectories():
    masks, graph = _labels()
    sub = TrajectoryLabels(masks, graph).subsample(np.array([0, 1]))
    assert sub.graph.shape == (1, 2)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_labels(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        load_labels(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"\(M, T\)"):
        TrajectoryLabels(np.zeros((2, 3, 3)), np.zeros((1, 5)))
