"""`trajvlm chat`: one-shot and interactive (stdin) on the tiny model, the trajectory overlay, and bad input."""

from __future__ import annotations

import io
import re

import pytest

from tests.trajvlm.helpers import random_video, save_tiny_trajvlm
from trajvlm.cli import main

STATS = re.compile(r"\[(\d+) visual tokens, \d+ prompt tokens; first token after \d+\.\d+ s; \d+ new tokens")


@pytest.fixture(scope="module")
def model_dir(tiny_base_path, tmp_path_factory):
    return save_tiny_trajvlm(tiny_base_path, tmp_path_factory.mktemp("chat_model"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from trajtok.io.writer import write_video

    frames = random_video(num_frames=6, height=48, width=48, seed=7).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    return write_video(tmp_path_factory.mktemp("chat_video") / "clip.mp4", frames)


def _chat(*args: str) -> int:
    return main(["chat", *args])


def test_one_shot(model_dir, video, capsys):
    rc = _chat("--model", str(model_dir), "--video", str(video), "--prompt", "What happens?", "--max-new-tokens", "4",
               "--num-frames", "3")  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert f"video: {video} (3 frames, 48x48)" in out
    stats = STATS.findall(out)
    assert len(stats) == 1 and int(stats[0]) > 0


def test_interactive(model_dir, video, capsys, monkeypatch):
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("What happens?\n\n/reset\nAnd the colour?\n/bogus\n/quit\nNever read\n")
    )
    rc = _chat("--model", str(model_dir), "--video", str(video), "--max-new-tokens", "3", "--num-frames", "3")
    out = capsys.readouterr().out
    assert rc == 0
    assert len(STATS.findall(out)) == 2  # two questions answered; nothing after /quit
    assert "(conversation reset)" in out and "unknown command '/bogus'" in out


def test_interactive_ends_at_eof_and_survives_overlong_turn(model_dir, video, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n" + "long question " * 30 + "\n"))
    rc = _chat("--model", str(model_dir), "--video", str(video), "--max-new-tokens", "2", "--num-frames", "2",
               "--max-context", "60")  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert len(STATS.findall(out)) == 1
    assert "error: context too long" in out and "/reset starts a new conversation" in out


def test_viz_writes_overlay(model_dir, video, tmp_path, capsys):
    from PIL import Image

    gif = tmp_path / "traj.gif"
    rc = _chat("--model", str(model_dir), "--video", str(video), "--prompt", "Hi", "--max-new-tokens", "1",
               "--num-frames", "3", "--viz", str(gif))  # fmt: skip
    assert rc == 0 and f"trajectory overlay: {gif}" in capsys.readouterr().out
    with Image.open(gif) as image:
        assert image.n_frames == 3 and image.size == (48, 48)
    sheet = tmp_path / "traj.png"
    assert _chat("--model", str(model_dir), "--video", str(video), "--prompt", "Hi", "--max-new-tokens", "1",
                 "--num-frames", "2", "--viz", str(sheet)) == 0  # fmt: skip
    assert sheet.stat().st_size > 0


def test_viz_needs_trajtok(tiny_base_path, video, tmp_path, capsys):
    rc = _chat(
        "--model", str(tiny_base_path), "--video", str(video), "--prompt", "Hi", "--viz", str(tmp_path / "a.gif")
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--viz needs the trajtok connector" in err and "'pool'" in err


@pytest.mark.parametrize("problem", ["missing_model", "missing_video", "corrupt_video", "too_long"])
def test_errors_exit_2_without_traceback(problem, model_dir, video, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 300)
    args = {
        "missing_model": ["--model", str(tmp_path / "no_model"), "--video", str(video)],
        "missing_video": ["--model", str(model_dir), "--video", str(tmp_path / "no.mp4")],
        "corrupt_video": ["--model", str(model_dir), "--video", str(corrupt)],
        "too_long": ["--model", str(model_dir), "--video", str(video), "--max-context", "10"],
    }[problem]
    rc = _chat(*args, "--prompt", "What happens?", "--max-new-tokens", "2")
    err = capsys.readouterr().err
    expected = {
        "missing_model": f"model directory not found: {tmp_path / 'no_model'}",
        "missing_video": f"video not found: {tmp_path / 'no.mp4'}",
        "corrupt_video": f"cannot read video '{corrupt}'",
        "too_long": "context too long",
    }[problem]
    assert rc == 2
    assert any(line.startswith("error: ") and expected in line for line in err.splitlines()), err
    assert "Traceback" not in err
