"""CoordTok: triplane latents, coordinate decoding, save/load, and `trajtok coordtok-train` with exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from trajtok.baselines.coordtok import (
    CoordTok,
    CoordTokConfig,
    PatchAutoencoder,
    from_tubelets,
    psnr,
    to_tubelets,
)


def test_paper_geometry_has_1280_tokens():
    assert CoordTokConfig.paper().num_tokens == 16 * 16 + 2 * 32 * 16 == 1280
    assert CoordTokConfig(kind="patch_ae", tubelet_frames=4, tubelet_size=8).num_tokens == 32 * 16 * 16


def test_shapes_and_any_length():
    torch.manual_seed(0)
    model = CoordTok(CoordTokConfig.tiny()).eval()
    for frames in (8, 5):  # positions are normalised: a shorter video encodes to the same latent set
        video = torch.rand(2, frames, 3, 32, 32)
        latents = model.encode(video)
        assert latents.shape == (2, 48, 4)
        assert model.reconstruct(video).shape == video.shape
    out = model(torch.rand(1, 8, 3, 32, 32))
    assert out.pred.shape == (1, round(0.25 * 8 * 16), 8 * 8 * 3) and out.loss.ndim == 0


def test_tubelets_round_trip_and_psnr():
    video = torch.rand(2, 6, 3, 16, 24)
    x, grid = to_tubelets(video, 4, 8)  # T padded to 8
    assert x.shape == (2, 2 * 2 * 3, 4 * 8 * 8 * 3)
    assert torch.equal(from_tubelets(x, grid, 4, 8, 6), video)
    assert psnr(video, video) > 100 and abs(psnr(torch.zeros(1, 4), torch.full((1, 4), 0.1)) - 20.0) < 1e-6


def test_training_reduces_loss_on_one_video():
    torch.manual_seed(0)
    model = CoordTok(CoordTokConfig.tiny(sample_fraction=1.0))
    video = torch.rand(1, 8, 3, 32, 32) * 0.2 + torch.linspace(0, 0.8, 32)[None, None, None, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(video).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_inputs():
    model = CoordTok(CoordTokConfig.tiny())
    with pytest.raises(ValueError, match="divisible by 8"):
        model.encode(torch.rand(1, 8, 3, 30, 32))
    with pytest.raises(ValueError, match="needs a video \\(B, T, 3, H, W\\)"):
        model.encode(torch.rand(8, 3, 32, 32))
    with pytest.raises(ValueError, match="latents must be \\(B, 48, 4\\)"):
        model.planes(torch.rand(1, 47, 4))
    with pytest.raises(ValueError, match="unknown CoordTokConfig fields \\['planes'\\]"):
        CoordTokConfig.from_dict({"planes": 3})
    with pytest.raises(ValueError, match="image_size 30 must be divisible"):
        CoordTokConfig(image_size=30)


def test_save_load_strict(tmp_path):
    torch.manual_seed(0)
    model = PatchAutoencoder(CoordTokConfig.tiny(kind="patch_ae"))
    model.save_pretrained(tmp_path)
    loaded = PatchAutoencoder.from_pretrained(tmp_path)
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError, match="holds a 'patch_ae' model, not a CoordTok"):
        CoordTok.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CoordTok.from_pretrained(tmp_path / "missing")


def test_cli_train_and_exact_resume(tmp_path):
    from trajtok.cli import main

    args = ["model.kind=coordtok", "model.image_size=32", "model.num_frames=4", "model.tubelet_frames=4",
            "model.tubelet_size=8", "model.plane_size=2", "model.plane_frames=2", "model.latent_dim=4",
            "model.width=16", "model.depth=1", "model.heads=2", "model.plane_dim=8", "model.decoder_width=16",
            "model.decoder_depth=1", "model.decoder_heads=2", "model.sample_fraction=0.5", "batch_size=1",
            "save_every=1", "log_every=1", "keep_checkpoints=5", "threads=1", "objects=[1, 2]"]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["coordtok-train", "--out", str(full), "steps=3", *args]) == 0
    assert main(["coordtok-train", "--out", str(part), "steps=3", *args]) == 0  # same run, then cut back to step 2
    import shutil

    shutil.rmtree(part / "checkpoints" / "step_0000003")
    assert main(["coordtok-train", "--out", str(part), "--resume"]) == 0
    a = load_file(full / "checkpoints" / "step_0000003" / "model.safetensors")
    b = load_file(part / "checkpoints" / "step_0000003" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    step1 = load_file(full / "checkpoints" / "step_0000001" / "model.safetensors")
    assert any(not torch.equal(a[k], step1[k]) for k in a)
    saved = json.loads((full / "train_config.json").read_text())
    assert saved["model"]["plane_size"] == 2 and saved["steps"] == 3
    model = CoordTok.from_pretrained(full / "checkpoints" / "step_0000003")
    assert model.num_tokens == 2 * 2 + 2 * 2 * 2
    assert main(["coordtok-train", "--out", str(full), "steps=3", *args]) == 2  # no silent overwrite


def test_cli_errors(tmp_path, capsys):
    from trajtok.cli import main

    assert main(["coordtok-train", "--out", str(tmp_path / "x"), "model.kind=vq"]) == 2
    assert "error: kind must be one of" in capsys.readouterr().err
    assert main(["coordtok-train", "--out", str(tmp_path / "x"), "data=/nowhere"]) == 2
    assert "error: data folder not found: /nowhere" in capsys.readouterr().err
    assert main(["coordtok-train", "--out", str(tmp_path / "y"), "--resume"]) == 2
    assert "no checkpoint in" in capsys.readouterr().err
