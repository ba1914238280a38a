"""eval/bench/bench_stream_identity.py: scenes whose objects never change, and the split of trajectory rows into a
query's first row and the rows it re-opens after a release."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trajtok.core.modeling import tiny_model
from trajtok.synth import generate_video


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_stream_identity.py")


def test_constant_world_keeps_every_object_in_view_throughout(bench):
    video = generate_video(10_000, 96, 64, 64, 4, config=bench.constant_world())
    present = [(video.masks == o).any(axis=(1, 2)).mean() for o in range(1, 5)]
    assert min(present) > 0.8, present  # occlusion may hide one briefly; none leaves or arrives


def test_rows_split_into_first_and_reopened_and_release_zero_reopens_none(bench):
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(24, 3, 64, 64, generator=g) * 255).to(torch.uint8)  # noise: queries come and go
    released = bench.stream_rows(tiny_model(seed=0, release_after=1, clip_len=2).eval(), frames)
    kept = bench.stream_rows(tiny_model(seed=0, release_after=0, clip_len=2).eval(), frames)
    for r in (released, kept):
        assert r["tokens"] == r["first_rows"] + r["reopened_rows"]  # n = 1 token per trajectory row
        assert len(r["reopened_pixels"]) == r["reopened_rows"] and all(p >= 1 for p in r["reopened_pixels"])
    assert kept["reopened_rows"] == 0 and kept["first_rows"] <= 16
    assert released["reopened_rows"] > 0  # with release after one absent clip, noise re-opens rows


def test_bad_arguments_name_the_option(bench, tmp_path):
    with pytest.raises(SystemExit, match="--frames must be a comma list"):
        bench.main(["--checkpoint", str(tmp_path), "--frames", "32,x"])
    with pytest.raises(SystemExit, match="not a TrajTok folder"):
        bench.main(["--checkpoint", str(tmp_path)])


def test_merge_returning_takes_re_opened_rows_back_into_earlier_trajectories(bench):
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(24, 3, 64, 64, generator=g) * 255).to(torch.uint8)
    split = bench.stream_rows(tiny_model(seed=0, release_after=1, clip_len=2).eval(), frames)
    joined = bench.stream_rows(tiny_model(seed=0, release_after=1, clip_len=2, merge_returning=0.5).eval(), frames)
    assert joined["tokens"] == joined["first_rows"] + joined["reopened_rows"]
    assert joined["reopened_rows"] < split["reopened_rows"] and joined["tokens"] < split["tokens"]
    with pytest.raises(SystemExit, match="--merge-returning"):
        bench.main(["--checkpoint", "x", "--merge-returning", "2"])


def test_world_videos_are_sampled_as_the_connector_samples_them(bench, tmp_path):
    from trajtok.io.video import load_video
    from trajtok.synth import write_dataset

    write_dataset(tmp_path, "train=0,val=2,test=0", frames=(40, 48), size=64, objects=(2, 3), world="long")
    args = bench.argparse.Namespace(data=tmp_path, split="val", videos=1, frames=[4, 8], seeds=[], objects=0)
    got = list(bench.scenes(args, 64))
    assert [(name, f, tuple(x.shape)) for name, f, x, _ in got] == [
        ("val_00000", 4, (4, 3, 64, 64)),
        ("val_00000", 8, (8, 3, 64, 64)),
    ]
    video = load_video(tmp_path / "val" / "val_00000.mp4", num_frames=8, size=(64, 64))
    assert torch.equal(got[1][2], video.frames)
    from trajtok.io.labels import load_labels

    labels = load_labels(tmp_path / "val" / "val_00000.npz").masks
    assert np.array_equal(got[1][3], labels[video.indices.numpy()])  # the labels of the decoded frames
    (tmp_path / "val" / "val_00001.mp4").write_bytes(b"not a video")
    bad = bench.argparse.Namespace(data=tmp_path, split="val", videos=2, frames=[4], seeds=[], objects=0)
    with pytest.raises(SystemExit, match="val_00001.mp4"):
        list(bench.scenes(bad, 64))
    with pytest.raises(SystemExit, match="no .mp4 videos"):
        list(bench.scenes(bench.argparse.Namespace(data=tmp_path, split="test", videos=1, frames=[4]), 64))
