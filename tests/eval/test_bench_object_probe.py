"""eval/bench/bench_object_probe.py: mask geometry, the grid, the probe, and one run on a small world."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_object_probe.py")


def test_mask_geometry_tells_a_square_from_a_triangle(bench):
    square = torch.zeros(2, 32, 32, dtype=torch.bool)
    square[:, 4:20, 8:24] = True  # 16 x 16
    triangle = torch.zeros(1, 32, 32, dtype=torch.bool)
    for i in range(16):
        triangle[0, 4 + i, 8 : 8 + i + 1] = True  # a right triangle in a 16 x 16 box
    fill, aspect, side = bench.mask_geometry(square).tolist()
    assert (fill, aspect) == (1.0, 1.0) and side == pytest.approx(16 / 32)
    fill, aspect, _ = bench.mask_geometry(triangle).tolist()
    assert fill == pytest.approx(136 / 256) and aspect == 1.0
    # frames without the object do not count; an object never present gives zeros
    with_gap = torch.cat([square[:1], torch.zeros(1, 32, 32, dtype=torch.bool)])
    assert torch.equal(bench.mask_geometry(with_gap), bench.mask_geometry(square))
    assert torch.equal(bench.mask_geometry(torch.zeros(3, 8, 8, dtype=torch.bool)), torch.zeros(3))


def test_a_grid_cell_is_the_objects_from_half_of_it(bench):
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 0:2, 0:2] = True  # all of cell (0, 0)
    mask[0, 0:2, 2] = True  # half of cell (0, 1)
    mask[0, 2, 0] = True  # a quarter of cell (1, 0)
    grid = bench.on_grid(mask, 4)
    assert grid.shape == (1, 4, 4)
    assert grid[0, 0, 0] and grid[0, 0, 1] and not grid[0, 1, 0] and grid.sum() == 2


def test_probe_names_classes_from_informative_features_and_not_from_noise(bench):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    informative = torch.cat([F_one_hot(y, 4) + 0.3 * torch.randn(400, 4, generator=g), torch.randn(400, 4)], 1)
    noise = torch.randn(400, 8, generator=g)
    assert bench.probe_accuracy(informative[:300], y[:300], informative[300:], y[300:], 4) > 90
    assert bench.probe_accuracy(noise[:300], y[:300], noise[300:], y[300:], 4) < 45


def F_one_hot(y: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, n).float()


def test_run_on_a_small_world_with_a_tower_and_trajtok(bench, tmp_path, capsys):
    from trajtok.core.modeling import tiny_model
    from trajtok.synth import write_dataset
    from trajvlm.training.tower import TowerConfig, pretrain_tower

    data = tmp_path / "synth"
    write_dataset(data, {"train": 8, "val": 2, "test": 4}, frames=(8, 10), size=64, objects=(2, 3), seed=3)
    cfg = TowerConfig(hidden_size=32, num_layers=1, num_heads=1, text_width=32, text_layers=1, embed_dim=16, frames=2)
    cfg.steps, cfg.batch_size = 2, 4
    pretrain_tower(data, tmp_path / "tower", cfg)
    tiny_model(image_size=64).save_pretrained(tmp_path / "trajtok")
    out = tmp_path / "probe.json"
    args = ["--data", str(data), "--tower", str(tmp_path / "tower"), "--trajtok", str(tmp_path / "trajtok")]
    assert bench.main([*args, "--frames", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["grid"] == 16 and result["train_objects"] >= 16 and result["test_objects"] >= 8
    expected = {"colour", "mask, 64 px", "mask, 16 x 16 grid", f"tower {tmp_path / 'tower'}"}
    expected |= {f"trajtok backbone {tmp_path / 'trajtok'}", "trajtok masks"}
    assert set(result["rows"]) == expected
    for row in result["rows"].values():
        assert 0.0 <= row["shape"] <= 100.0 and 0.0 <= row["colour"] <= 100.0
    # mean RGB names the colour of most held-out objects (flat colours; a texture or a dark background aside)
    assert result["rows"]["colour"]["colour"] > result["chance"]["colour"]
    assert "| colour | 3 |" in capsys.readouterr().out
    assert result["split"] == "test"
    # --split val scores the val split's objects instead (2 videos of 2-3 objects each)
    assert bench.main(["--data", str(data), "--frames", "2", "--split", "val", "--json", str(out)]) == 0
    val = json.loads(out.read_text())
    assert (
        val["split"] == "val"
        and 4 <= val["test_objects"] <= 6
        and set(val["rows"]) == {"colour", "mask, 64 px", "mask, 16 x 16 grid"}
    )
    assert f"{val['test_objects']} val objects" in capsys.readouterr().out
    assert bench.main([*args, "--grid", "8"]) == 2  # TrajTok's masks are on its own grid
    assert "16 x 16 grid" in capsys.readouterr().err
    assert bench.main(["--data", str(tmp_path / "absent")]) == 2
    assert "no .mp4 videos" in capsys.readouterr().err
