"""eval/bench/bench_probe.py: the linear probe, the colour histogram, and one run on a small world with a tower."""

from __future__ import annotations

import json
import math

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_probe.py")


def test_probe_reads_informative_features_and_not_noise(bench):
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(300, 3, generator=g) > 0.5).float()
    informative = torch.cat([labels + 0.3 * torch.randn(300, 3, generator=g), torch.randn(300, 5, generator=g)], 1)
    noise = torch.randn(300, 8, generator=g)
    good = bench.probe_auc(informative[:200], labels[:200], informative[200:], labels[200:])
    bad = bench.probe_auc(noise[:200], labels[:200], noise[200:], labels[200:])
    assert min(good) > 0.95
    assert max(bad) < 0.7


def test_auc_counts_ties_half_and_is_nan_for_one_class(bench):
    assert bench.auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])) == 0.5
    assert bench.auc(torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.0])) == 1.0
    assert math.isnan(bench.auc(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])))


def test_colour_histogram_puts_a_red_frame_in_the_red_bin(bench):
    frames = torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8)
    frames[:, :, 0] = 255  # pure red
    hist = bench.colour_histogram(frames)
    assert hist.shape == (1, 64) and torch.isclose(hist.sum(), torch.tensor(1.0))
    assert hist[0, 3 * 16] == 1.0  # red level 3, green 0, blue 0


def test_run_on_a_small_world_with_a_tower_and_a_vlm(bench, tiny_model_dir, tmp_path, capsys):
    from trajtok.synth import write_dataset
    from trajvlm.training.tower import TowerConfig, pretrain_tower

    data = tmp_path / "synth"
    write_dataset(data, {"train": 10, "val": 0, "test": 6}, frames=(8, 10), size=64, objects=(2, 3), seed=3)
    cfg = TowerConfig(hidden_size=32, num_layers=1, num_heads=1, text_width=32, text_layers=1, embed_dim=16, frames=2)
    cfg.steps, cfg.batch_size, cfg.eval_split = 2, 4, "test"  # this world has no val split
    pretrain_tower(data, tmp_path / "tower", cfg)
    out = tmp_path / "probe.json"
    args = ["--data", str(data), "--tower", str(tmp_path / "tower"), "--vlm", str(tiny_model_dir), "--frames", "2"]
    assert bench.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["train_videos"], result["test_videos"]) == (10, 6)
    names = set(result["rows"])
    tower = tmp_path / "tower"
    assert names == {"pixels", f"tower {tower}", f"tower detectors {tower}", f"tokens {tiny_model_dir}"}
    for row in result["rows"].values():
        aucs = [a for a in row["per_word"].values() if a is not None and not math.isnan(a)]
        assert aucs and all(0.0 <= a <= 1.0 for a in aucs)
    assert "| pixels |" in capsys.readouterr().out
    assert bench.main(["--data", str(tmp_path / "absent")]) == 2
    assert "no .mp4 videos" in capsys.readouterr().err
