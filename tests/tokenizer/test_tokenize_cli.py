"""trajtok tokenize: prints the trajectory / token counts of a video and writes the overlay."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from trajtok.cli import main as trajtok_main
from trajtok.core.modeling import tiny_model
from trajtok.io.writer import write_video
from trajtok.synth import generate_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenize")
    v = generate_video(3, 12, 64, 64, 3)
    path = write_video(root / "clip.mp4", v.frames, fps=10.0)
    ckpt = root / "ckpt"
    tiny_model(seed=0, clip_len=4).save_pretrained(ckpt)
    return path, ckpt


def test_tokenize_prints_counts_and_writes_gif(clip, tmp_path, capsys):
    video, ckpt = clip
    gif = tmp_path / "tokens.gif"
    assert trajtok_main(["tokenize", str(video), "--checkpoint", str(ckpt), "--viz", str(gif)]) == 0
    out = capsys.readouterr().out
    trajectories = int(re.search(r"trajectories: (\d+)", out).group(1))
    tokens = int(re.search(r"tokens: (\d+) \(([\d.]+) per frame\)", out).group(1))
    assert 1 <= trajectories <= 16 and tokens == trajectories  # inference: one token per trajectory
    assert "12 frames" in out
    with Image.open(gif) as im:
        assert im.size == (64, 64) and im.n_frames == 12


def test_tokenize_png_sheet_and_frame_sampling(clip, tmp_path, capsys):
    video, ckpt = clip
    png = tmp_path / "sheet.png"
    args = ["tokenize", str(video), "--checkpoint", str(ckpt), "--viz", str(png), "--num-frames", "6"]
    assert trajtok_main(args + ["--tokens-per-trajectory", "2"]) == 0
    out = capsys.readouterr().out
    trajectories = int(re.search(r"trajectories: (\d+)", out).group(1))
    assert f"tokens: {2 * trajectories} " in out and "6 frames" in out
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 64


def test_tokenize_missing_checkpoint_names_the_path(clip, tmp_path, capsys):
    video, _ = clip
    assert trajtok_main(["tokenize", str(video), "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert f"error: no TrajTok checkpoint at {tmp_path / 'nowhere'}" in err and "Traceback" not in err
