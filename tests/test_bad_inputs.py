"""A corpus of bad inputs through every public entry point: each gives one ``error: ...`` line naming the input and
the reason, exit status 2 and no traceback (``-v`` adds it); nothing bad costs a trained checkpoint.

Entry points: ``trajtok`` synth / train / tokenize / eval / pseudolabel / viz, ``trajvlm`` build-base / train /
validate / export / chat, the lmms-eval model's construction, and ``trajtok.io.video.load_video``. Most cases call the
CLIs' ``main([...])`` in this process (the same code path as the console scripts); a few run the real console
entry (``python -m ...``) to prove what a user's terminal shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trajvlm.helpers import random_video, save_tiny_trajvlm, tiny_base
from trajtok.cli import main as trajtok_main
from trajvlm.cli import main as trajvlm_main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The tiny llava-hf style base (random weights), as `trajvlm build-base` writes it."""
    return tiny_base(tmp_path_factory, "bad_inputs_base")


@pytest.fixture(scope="module")
def vlm(base, tmp_path_factory) -> Path:
    """A saved TrajVLM with a tiny TrajTok connector."""
    return save_tiny_trajvlm(base, tmp_path_factory.mktemp("bad_inputs_vlm"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad files: a clip, a larger clip, an image, garbage bytes, a tokenizer checkpoint, labels."""
    from PIL import Image

    from trajtok.core.modeling import tiny_model
    from trajtok.io.labels import save_labels
    from trajtok.io.writer import write_video
    from trajtok.synth import generate_video

    root = tmp_path_factory.mktemp("bad_inputs_files")
    v = generate_video(1, 6, 64, 64, 2)
    clip = write_video(root / "clip.mp4", v.frames, fps=10.0)
    save_labels(root / "clip.npz", v.masks, v.graph)
    big = random_video(num_frames=4, height=240, width=320, seed=3).permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 300)
    image = root / "still.png"
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(image)
    tokenizer = root / "tokenizer"
    tiny_model(seed=0, clip_len=4).save_pretrained(tokenizer)
    malformed = root / "malformed.json"
    malformed.write_text('[{"id": 1, "video": "clip.mp4",')
    other = generate_video(2, 3, 64, 64, 2)  # another video's labels: 3 frames where the clip has 6
    save_labels(root / "other.npz", other.masks, other.graph)
    square = generate_video(3, 4, 64, 64, 2)  # 4 frames like big.mp4, but square where it is 320x240
    save_labels(root / "square.npz", square.masks, square.graph)
    loop = root / "loop.mp4"
    loop.symlink_to(root / "loop2.mp4")
    (root / "loop2.mp4").symlink_to(loop)
    return {
        "clip": clip,
        "labels": root / "clip.npz",
        "big": write_video(root / "big.mp4", big, fps=10.0),
        "corrupt": corrupt,
        "image": image,
        "tokenizer": tokenizer,
        "malformed": malformed,
        "missing": root / "no_such_file.mp4",
        "other_labels": root / "other.npz",
        "square_labels": root / "square.npz",
        "loop": loop,
    }


def _run(main, argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *needles: object) -> None:
    """Exit 2, an ``error: `` line holding every needle (the input and the reason), no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines, err
    for needle in needles:
        assert any(str(needle) in line for line in lines), (needle, err)


# --------------------------------------------------------------------------------------------------- trajtok


def test_trajtok_errors(files, tmp_path, capsys):
    f = files
    cases = [
        (["synth", "--out", str(tmp_path / "s"), "--objects", "0"], ["--objects", "0-0", "no questions"]),
        (["train", "--config", str(tmp_path / "nope.yaml")], ["nope.yaml", "not found"]),
        (["train", "--config", "smoke", "steps=-1"], ["steps must be >= 1", "-1"]),
        (["train", "--config", "smoke", "--out", str(tmp_path / "r"), f"data={tmp_path / 'nodata'}"], ["nodata"]),
        (["tokenize", str(f["missing"]), "--checkpoint", str(f["tokenizer"])], [f["missing"], "not found"]),
        (["tokenize", str(f["corrupt"]), "--checkpoint", str(f["tokenizer"])], [f["corrupt"], "not a readable"]),
        (["tokenize", str(f["clip"]), "--checkpoint", str(tmp_path / "ck")], [tmp_path / "ck", "no TrajTok"]),
        (["tokenize", str(f["clip"]), "--checkpoint", str(f["tokenizer"]), "--num-frames", "0"], ["num_frames", "0"]),
        (["eval", "--checkpoint", str(f["tokenizer"]), "--data", str(tmp_path / "nodata")], ["nodata"]),
        (["pseudolabel", str(f["malformed"]), "--out", str(tmp_path / "pl")], [f["malformed"], "not valid JSON"]),
        (["pseudolabel", str(f["clip"]), "--out", str(tmp_path / "pl"), "--workers", "0"], ["--workers", "0"]),
        (
            ["viz", "--video", str(f["missing"]), "--labels", str(f["labels"]), "--out", str(tmp_path / "a.gif")],
            [f["missing"], "not found"],
        ),  # fmt: skip
        (
            ["viz", "--video", str(f["clip"]), "--labels", str(tmp_path / "no.npz"), "--out", str(tmp_path / "a.gif")],
            [tmp_path / "no.npz"],
        ),  # fmt: skip
        (
            ["viz", "--video", str(f["clip"]), "--labels", str(f["labels"]), "--out", str(tmp_path / "a.xyz")],
            ["a.xyz", "use .gif or .mp4"],
        ),  # fmt: skip
    ]
    for argv, needles in cases:
        rc, _, err = _run(trajtok_main, argv, capsys)
        assert_user_error(rc, err, *needles)
    assert not (tmp_path / "s" / "manifest.json").exists()  # --objects 0 wrote nothing


def _corrupt_copy(src: Path, dst: Path, content: bytes | None = None) -> Path:
    """A copy of the checkpoint folder ``src`` whose ``model.safetensors`` is truncated (or holds ``content``)."""
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2] if content is None else content)
    return dst


def _huge_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    import struct
    import zlib

    from PIL import Image

    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + width, height (4 bytes each) + 5 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_trajtok_more_errors(files, tmp_path, capsys):
    """Frame bounds, flags checked before any work, unknown devices, corrupt weights, another video's labels,
    YAML mistakes, a text file given as a release checkpoint, symlink loops, decompression bombs."""
    f = files
    ck = str(f["tokenizer"])
    corrupt = str(_corrupt_copy(f["tokenizer"], tmp_path / "corrupt_ck"))
    garbage = str(_corrupt_copy(f["tokenizer"], tmp_path / "garbage_ck", b"\x00garbage" * 30))
    text = tmp_path / "notes.pth"
    text.write_text("these are my notes, not a checkpoint\n")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("steps: 2\nlr: [1e-3\n")
    list_yaml = tmp_path / "list.yaml"
    list_yaml.write_text("data: d\nsteps: [1, 2]\n")
    bomb, big_png = tmp_path / "bomb", tmp_path / "big_png"
    bomb.mkdir()
    big_png.mkdir()
    _huge_png(bomb / "000.png")  # Pillow's own guard refuses it at open
    _huge_png(big_png / "000.png", 10_000, 10_000)  # under Pillow's limit, over trajtok's
    gif = str(tmp_path / "a.gif")
    cases = [
        (["tokenize", str(f["clip"]), "--checkpoint", ck, "--num-frames", "100000"], ["num_frames", "at most 4096", "got 100000"]),
        (["tokenize", str(f["clip"]), "--checkpoint", ck, "--max-frames", "5000"], ["max_frames", "at most 4096", "got 5000"]),
        (["tokenize", str(f["clip"]), "--checkpoint", ck, "--fps", "nan"], ["--fps", "nan"]),
        (["tokenize", str(f["clip"]), "--checkpoint", ck, "--fps", "-2"], ["--fps", "-2"]),
        (["tokenize", str(f["clip"]), "--checkpoint", ck, "--device", "tpu9"], ["'tpu9'", "unknown device"]),
        (["tokenize", str(f["clip"]), "--checkpoint", ck, "--viz", "x.avi"], ["x.avi", ".png, .gif or .mp4"]),
        (["tokenize", str(f["clip"]), "--checkpoint", corrupt], [corrupt, "corrupt or truncated"]),
        (["tokenize", str(f["clip"]), "--checkpoint", garbage], [garbage, "corrupt or truncated"]),
        (["tokenize", str(f["loop"]), "--checkpoint", ck], [f["loop"], "symlink loop"]),
        (["tokenize", str(bomb), "--checkpoint", ck], [bomb / "000.png", "decompression bomb"]),
        (["tokenize", str(big_png), "--checkpoint", ck], [big_png / "000.png", "10000x10000", "over the limit"]),
        (["eval", "--checkpoint", ck, "--data", str(tmp_path), "--max-videos", "-1"], ["--max-videos", "-1"]),
        (["eval", "--checkpoint", ck, "--data", str(tmp_path), "--device", "tpu9"], ["'tpu9'", "unknown device"]),
        (["eval", "--checkpoint", corrupt, "--data", str(tmp_path)], [corrupt, "corrupt or truncated"]),
        (["train", "--config", "smoke", "steps=ten"], ["steps must be an integer", "'ten'"]),
        (["train", "--config", "smoke", "lr=.nan"], ["lr must be a finite number", "nan"]),
        (["train", "--config", "smoke", "lr=.inf"], ["lr must be a finite number", "inf"]),
        (["train", "--config", "smoke", "lr=[1, 2]"], ["lr must be a number", "[1, 2]"]),
        (["train", "--config", "smoke", "model=[4]"], ["model must be a mapping", "[4]"]),
        (["train", "--config", "smoke", "model.num_queries=ten"], ["model.num_queries must be an integer", "'ten'"]),
        (["train", "--config", "smoke", "clip_len=100000"], ["clip_len", "at most 4096", "100000"]),
        (["train", "--config", "smoke", "steps=[1,"], ["'[1,'", "not valid YAML"]),
        (["train", "--config", str(bad_yaml)], ["bad.yaml", "not valid YAML"]),
        (["train", "--config", str(list_yaml)], ["steps must be an integer", "[1, 2]"]),
        (["convert-release", str(text), str(tmp_path / "rel")], [text, "not a weights-only PyTorch checkpoint"]),
        (["synth", "--out", str(tmp_path / "s"), "--num-videos", "train=ten"], ["--num-videos", "'train=ten'"]),
        (["viz", "--video", str(f["clip"]), "--labels", str(f["other_labels"]), "--out", gif],
         [f["other_labels"], "3 frames", "the video 6"]),
        (["viz", "--video", str(f["big"]), "--labels", str(f["square_labels"]), "--out", gif],
         [f["square_labels"], "64x64", "320x240"]),
        (["viz", "--video", str(f["loop"]), "--labels", str(f["labels"]), "--out", gif], [f["loop"], "symlink loop"]),
        (["viz", "--video", str(f["clip"]), "--labels", str(f["labels"]), "--out", gif, "--fps", "inf"], ["--fps"]),
    ]  # fmt: skip
    for argv, needles in cases:
        rc, out, err = _run(trajtok_main, argv, capsys)
        assert_user_error(rc, err, *needles)
    assert not (tmp_path / "rel").exists() and not Path(gif).exists()
    # the labels that belong to the clip still draw
    rc, _, err = _run(trajtok_main, ["viz", "--video", str(f["clip"]), "--labels", str(f["labels"]), "--out", gif],
                      capsys)  # fmt: skip
    assert rc == 0 and Path(gif).is_file(), err


def test_tokenize_samples_at_most_the_frames_the_source_has(files, capsys):
    """--num-frames past the clip's 6 frames used to repeat frames (memory grew by gigabytes for 100000)."""
    argv = ["tokenize", str(files["clip"]), "--checkpoint", str(files["tokenizer"]), "--num-frames", "50"]
    rc, out, err = _run(trajtok_main, argv, capsys)
    assert rc == 0, err
    assert f"note: {files['clip']} has 6 frames: sampling all 6, not 50" in out
    assert "(6 frames at" in out


def test_trajtok_train_disk_full_keeps_the_checkpoint_and_stale_temporaries_go(tmp_path, capsys, monkeypatch):
    """A full disk while saving: one error line saying the previous checkpoint is intact, no half-written folder;
    the temporary folder a killed save leaves is removed at the next save and by --resume."""
    import errno

    import safetensors.torch

    from trajtok.core.modeling import TrajTok
    from trajtok.io.checkpoints import latest_checkpoint
    from trajtok.synth import write_dataset

    data = tmp_path / "synth"
    write_dataset(data, "train=2,val=1,test=1", frames=8, size=64, objects=(2, 2), seed=0)
    run = tmp_path / "run"
    opts, overrides = ["--config", "smoke", "--out", str(run)], [f"data={data}", "val_split=null", "threads=1"]
    rc, _, err = _run(trajtok_main, ["train", *opts, *overrides], capsys)
    assert rc == 0, err
    ckpt = run / "checkpoints" / "step_0000002"
    before = (ckpt / "model.safetensors").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1]) if len(args) > 1 else None)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    rc, _, err = _run(trajtok_main, ["train", *opts, "--resume", *overrides, "steps=3"], capsys)
    assert_user_error(rc, err, "no space left on the device", "step 3", f"previous checkpoint {ckpt} is intact")
    assert latest_checkpoint(run) == ckpt and (ckpt / "model.safetensors").read_bytes() == before
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp_")]
    TrajTok.from_pretrained(ckpt)  # still loads

    monkeypatch.undo()
    stale = run / "checkpoints" / ".tmp_step_0000009"  # what a kill in the middle of a save leaves
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    rc, _, err = _run(trajtok_main, ["train", *opts, "--resume", *overrides, "steps=3"], capsys)
    assert rc == 0, err
    assert latest_checkpoint(run).name == "step_0000003" and not stale.exists()


def test_trajtok_bad_flag_type_is_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        trajtok_main(["synth", "--out", "x", "--frames", "many"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "error: " in err and "'many'" in err and "Traceback" not in err


def test_trajtok_train_corrupt_npz_keeps_checkpoint_and_resumes(tmp_path, capsys):
    """Training skips a corrupt label file; the final validation reading it again fails, but only after the final
    checkpoint was saved; the run reports it and `--resume` continues from that checkpoint."""
    from trajtok.io.checkpoints import latest_checkpoint
    from trajtok.synth import write_dataset

    data = tmp_path / "synth"
    write_dataset(data, "train=4,val=1,test=1", frames=8, size=64, objects=(2, 2), seed=0)
    bad = sorted((data / "train").glob("*.npz"))[0]
    bad.write_bytes(b"not an npz")
    run = tmp_path / "run"
    common = [f"data={data}", "val_split=train", "eval_videos=2", "max_skip_fraction=0.3", "threads=1"]
    rc, out, err = _run(trajtok_main, ["train", "--config", "smoke", "--out", str(run), *common], capsys)
    assert rc == 0, err
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "step_0000002" and (ckpt / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    failed = [r for r in rows if "val_error" in r]
    assert failed and failed[-1]["step"] == 2 and bad.name in failed[-1]["val_error"]
    rc, out, err = _run(trajtok_main, ["train", "--config", "smoke", "--out", str(run), "--resume", "steps=3", *common],
                        capsys)  # fmt: skip
    assert rc == 0, err
    assert latest_checkpoint(run).name == "step_0000003"


def test_trajtok_verbose_shows_traceback(files, capsys):
    ckpt = str(files["tokenizer"])
    rc, _, err = _run(trajtok_main, ["-v", "tokenize", str(files["missing"]), "--checkpoint", ckpt], capsys)
    assert rc == 2 and "Traceback" in err and f"error: cannot read video '{files['missing']}'" in err
    rc, _, err = _run(trajtok_main, ["tokenize", str(files["missing"]), "--checkpoint", ckpt, "-v"], capsys)
    assert rc == 2 and "Traceback" in err


def test_tokenize_large_source_decodes_at_model_size(files, capsys):
    rc, out, _ = _run(trajtok_main, ["tokenize", str(files["big"]), "--checkpoint", str(files["tokenizer"])], capsys)
    assert rc == 0
    assert "320x240, decoded at 85x64" in out  # shorter side = the model's 64 px, aspect kept


def test_tokenize_still_image_says_so(files, capsys):
    argv = ["tokenize", str(files["image"]), "--checkpoint", str(files["tokenizer"]), "--num-frames", "4"]
    rc, out, _ = _run(trajtok_main, argv, capsys)
    assert rc == 0 and f"note: {files['image']} is a still image (1 frame): tokenized as 4 copies" in out


def test_default_trajtok_config_builds():
    """transformers' ConvNextConfig defaults are tuples; the default TrajTok config must hand it lists."""
    from trajtok import TrajTok, TrajTokConfig

    config = TrajTokConfig()
    assert config.backbone_config["hidden_sizes"] == [96, 192, 384, 768]
    with torch.device("meta"):
        model = TrajTok(config)
    assert sum(p.numel() for p in model.parameters()) > 40e6  # the paper-size tokenizer
    tupled = TrajTokConfig(backbone_config={"hidden_sizes": (8, 16, 32, 64), "depths": (1, 1, 1, 1)}, image_size=64)
    assert tupled.backbone_config["hidden_sizes"] == [8, 16, 32, 64]
    TrajTok(tupled.replace(width=32, seg_head_dim=16, enc_head_dim=16, num_queries=4))


# ---------------------------------------------------------------------------------------------------- trajvlm


def test_trajvlm_help_lists_only_real_commands(capsys):
    with pytest.raises(SystemExit):
        trajvlm_main(["--help"])
    out = capsys.readouterr().out
    assert "bench" not in out
    for name in ("build-base", "train", "validate", "export", "chat"):
        assert name in out


def test_build_base_rejects_zero_frames(tmp_path, capsys):
    rc, _, err = _run(trajvlm_main, ["build-base", "--out", str(tmp_path / "b"), "--num-frames", "0"], capsys)
    assert_user_error(rc, err, "num_frames", "0")
    assert not (tmp_path / "b").exists()


def _preset(tmp_path: Path, base: Path, data: Path, root: Path, **extra) -> Path:
    values = {
        "base_model": str(base),
        "connector": "pool",
        "train_json": str(data),
        "video_root": str(root),
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        **extra,
    }
    path = tmp_path / "preset.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


def _sample(video: str | None = "clip.mp4", **overrides) -> dict:
    sample = {
        "id": "s0",
        "video": video,
        "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "A"}],
    }
    sample.update(overrides)
    return {k: v for k, v in sample.items() if v is not None}


def test_validate_reports_bad_data(base, files, tmp_path, capsys):
    root = files["clip"].parent
    bad = {
        "malformed": (files["malformed"], ["malformed.json", "not valid JSON"]),
        "empty": ([], ["empty list"]),
        "no_conversations": ([_sample(conversations=None)], ["no 'conversations'"]),
        "missing_video": ([_sample(video="gone.mp4")], ["video not found", "gone.mp4"]),
        "not_object": (["just a string"], ["row 0 is a str"]),
    }
    for name, (content, needles) in bad.items():
        data = content if isinstance(content, Path) else tmp_path / f"{name}.json"
        if not isinstance(content, Path):
            data.write_text(json.dumps(content))
        rc, out, err = _run(trajvlm_main, ["validate", "--config", str(_preset(tmp_path, base, data, root))], capsys)
        assert_user_error(rc, err, data.name, *needles)
        assert ": ok" not in err
    good = tmp_path / "good.json"
    good.write_text(json.dumps([_sample()]))
    rc, _, err = _run(trajvlm_main, ["validate", "--config", str(_preset(tmp_path, base, good, root))], capsys)
    assert rc == 0, err


def test_validate_refuses_bad_values_naming_the_field(base, files, tmp_path, capsys):
    """Values that used to train silently (max_steps -4 ran a whole epoch, a nan learning rate) or crash later."""
    root = files["clip"].parent
    good = tmp_path / "good.json"
    good.write_text(json.dumps([_sample()]))
    cases = [
        ({"max_steps": -4}, ["max_steps", "-4"]),
        ({"learning_rate": float("nan")}, ["learning_rate must be a finite number", "nan"]),
        ({"learning_rate": float("inf")}, ["learning_rate must be a finite number", "inf"]),
        ({"connector_learning_rate": float("-inf")}, ["connector_learning_rate", "inf"]),
        ({"num_frames": 100000}, ["num_frames", "at most 4096", "got 100000"]),
        ({"max_steps": [1, 2]}, ["max_steps must be an integer", "[1, 2]"]),
        ({"lora_r": {"a": 1}}, ["lora_r must be an integer", "{'a': 1}"]),
        ({"per_device_batch_size": "ten"}, ["per_device_batch_size must be an integer", "'ten'"]),
        ({"base_model": ["a", "b"]}, ["base_model must be a string", "['a', 'b']"]),
        ({"max_grad_norm": -1.0}, ["max_grad_norm", "-1.0"]),
    ]
    for extra, needles in cases:
        preset = _preset(tmp_path, base, good, root, **extra)
        rc, _, err = _run(trajvlm_main, ["validate", "--config", str(preset)], capsys)
        assert_user_error(rc, err, *needles)
    preset = _preset(tmp_path, base, good, root)
    for override, needles in (
        ("max_steps=-4", ["max_steps", "-4"]),
        ("learning_rate=.nan", ["learning_rate", "nan"]),
        ("num_frames=[8]", ["num_frames must be an integer", "[8]"]),
        ("max_steps=[1,", ["max_steps=[1,", "not valid YAML"]),
    ):
        rc, _, err = _run(trajvlm_main, ["validate", "--config", str(preset), override], capsys)
        assert_user_error(rc, err, *needles)
    broken = tmp_path / "broken.yaml"
    broken.write_text(preset.read_text() + "max_steps: [1\n")
    rc, _, err = _run(trajvlm_main, ["validate", "--config", str(broken)], capsys)
    assert_user_error(rc, err, "broken.yaml", "not valid YAML")
    assert len([line for line in err.splitlines() if line]) == 1  # the parser's message on the same line
    # a video that does not decode: validate used to say ok
    shutil.copy(files["corrupt"], tmp_path / "broken.mp4")
    data = tmp_path / "broken_video.json"
    data.write_text(json.dumps([_sample(video="broken.mp4")]))
    rc, _, err = _run(trajvlm_main, ["validate", "--config", str(_preset(tmp_path, base, data, tmp_path))], capsys)
    assert_user_error(rc, err, "broken_video.json", "not a readable video")
    # a number where the video path belongs: named by validate (and train, which checks the data first)
    data = tmp_path / "numeric_video.json"
    data.write_text(json.dumps([_sample(video=123)]))
    for command in ("validate", "train"):
        rc, _, err = _run(trajvlm_main, [command, "--config", str(_preset(tmp_path, base, data, root))], capsys)
        assert_user_error(rc, err, "numeric_video.json", "123")


def test_trajvlm_chat_and_build_base_more_errors(vlm, files, tmp_path, capsys):
    chat = ["chat", "--prompt", "hi", "--max-new-tokens", "1", "--model", str(vlm)]
    corrupt = _corrupt_copy(vlm, tmp_path / "corrupt_vlm")
    no_weights = tmp_path / "no_weights"
    shutil.copytree(vlm, no_weights)
    (no_weights / "model.safetensors").unlink()
    cases = [
        (["--temperature", "-1"], ["--temperature", "-1"]),
        (["--temperature", "nan"], ["--temperature", "nan"]),
        (["--max-new-tokens", "0"], ["--max-new-tokens", "0"]),
        (["--num-frames", "100000"], ["num_frames", "at most 4096", "got 100000"]),
        (["--max-frames", "9999"], ["max_frames", "at most 4096", "got 9999"]),
        (["--video", str(files["loop"])], [files["loop"], "symlink loop"]),
        (["--model", str(corrupt)], [corrupt, "corrupt or truncated"]),
        (["--model", str(no_weights)], [no_weights, "has no weights"]),
    ]
    for args, needles in cases:
        rc, _, err = _run(trajvlm_main, [*chat, *args], capsys)
        assert_user_error(rc, err, *needles)
    warmup = ["warmup", "--base", str(vlm), "--train-json", "x.json", "--video-root", ".", "--out", str(tmp_path / "w")]
    for override, needles in (("steps=[1]", ["steps must be an integer", "[1]"]), ("lr=.nan", ["lr", "nan"])):
        rc, _, err = _run(trajvlm_main, [*warmup, override], capsys)
        assert_user_error(rc, err, *needles)
    (tmp_path / "a_file").write_text("x")
    rc, _, err = _run(trajvlm_main, ["build-base", "--out", str(tmp_path / "a_file")], capsys)
    assert_user_error(rc, err, f"cannot use '{tmp_path / 'a_file'}': file exists")
    rc, _, err = _run(trajvlm_main, ["build-base", "--out", str(tmp_path / "b"), "--num-frames", "5000"], capsys)
    assert_user_error(rc, err, "num_frames", "at most 4096")
    assert not (tmp_path / "b").exists()
    rc, _, err = _run(trajvlm_main, ["export", "--checkpoint", str(corrupt), "--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and "Traceback" not in err, err
    data = tmp_path / "good.json"
    data.write_text(json.dumps([_sample()]))
    preset = _preset(tmp_path, corrupt, data, files["clip"].parent, connector="trajtok")
    rc, _, err = _run(trajvlm_main, ["train", "--config", str(preset)], capsys)
    assert_user_error(rc, err, f"base_model '{corrupt}'", corrupt / "model.safetensors", "corrupt or truncated")


def test_trajvlm_train_names_the_corrupt_trajtok_checkpoint(base, files, tmp_path, capsys):
    """The model loads two folders (the base and the TrajTok checkpoint); the error names the file that is bad."""
    tokenizer = _corrupt_copy(files["tokenizer"], tmp_path / "tok")
    data = tmp_path / "good.json"
    data.write_text(json.dumps([_sample()]))
    preset = _preset(tmp_path, base, data, files["clip"].parent, connector="trajtok", trajtok=str(tokenizer))
    rc, _, err = _run(trajvlm_main, ["train", "--config", str(preset)], capsys)
    assert_user_error(rc, err, tokenizer / "model.safetensors", "corrupt or truncated")


def test_trajvlm_train_disk_full_keeps_final(base, files, tmp_path, capsys, monkeypatch):
    """A full disk while final/ is written: one error line, and the earlier final/ is whole (it used to be left
    without weights, silently); no temporary folder stays."""
    import errno

    import transformers.modeling_utils

    from trajvlm.modeling import TrajVLMForConditionalGeneration

    data = tmp_path / "good.json"
    data.write_text(json.dumps([_sample()]))
    preset = _preset(tmp_path, base, data, files["clip"].parent, num_frames=2, save_steps=100, report_to=["none"])
    rc, _, err = _run(trajvlm_main, ["train", "--config", str(preset)], capsys)
    assert rc == 0, err
    final = tmp_path / "out" / "final"
    before = (final / "model.safetensors").read_bytes()

    write = transformers.modeling_utils.safe_save_file  # the weights writer of save_pretrained

    def full_disk(state, filename, *args, **kwargs):  # the disk fills up when final/'s weights are written
        if ".tmp_final" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return write(state, filename, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_disk)
    rc, _, err = _run(trajvlm_main, ["train", "--config", str(preset)], capsys)
    assert_user_error(rc, err, "no space left on the device", str(final), "left as it was")
    monkeypatch.undo()
    assert (final / "model.safetensors").read_bytes() == before
    assert not [p.name for p in final.parent.iterdir() if p.name.startswith((".tmp_", ".old_"))]
    TrajVLMForConditionalGeneration.from_pretrained(final)


def test_validate_builds_the_connector(base, files, tmp_path, capsys):
    root = files["clip"].parent
    data = tmp_path / "good.json"
    data.write_text(json.dumps([_sample()]))
    # the default TrajTok config (no pretrained tokenizer) used to pass validate and crash at build time
    preset = _preset(tmp_path, base, data, root, connector="trajtok")
    rc, _, err = _run(trajvlm_main, ["validate", "--config", str(preset)], capsys)
    assert rc == 0, err
    preset = _preset(tmp_path, base, data, root, connector_kwargs={"mode": "median"})
    rc, _, err = _run(trajvlm_main, ["validate", "--config", str(preset)], capsys)
    assert_user_error(rc, err, "median")


def test_train_names_malformed_json_before_building_the_model(base, files, tmp_path, capsys, monkeypatch):
    import trajvlm.training.trainer

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(trajvlm.training.trainer, "build_model", no_model)
    preset = _preset(tmp_path, base, files["malformed"], files["clip"].parent)
    rc, _, err = _run(trajvlm_main, ["train", "--config", str(preset)], capsys)
    assert_user_error(rc, err, files["malformed"], "not valid JSON")
    rc, _, err = _run(trajvlm_main, ["train", "--config", str(tmp_path / "none.yaml")], capsys)
    assert_user_error(rc, err, "none.yaml", "not found")


def test_skip_limit_counts_the_samples_tried(base, files, tmp_path):
    """Every row broken: the error says how many were tried, not "1 of 12"."""
    from trajvlm.processing import TrajVLMProcessor
    from trajvlm.training.data import LlavaVideoDataset, SkipLimitError

    shutil.copy(files["corrupt"], tmp_path / "c.mp4")
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([_sample(video="c.mp4", id=f"s{i}") for i in range(12)]))
    dataset = LlavaVideoDataset(data, tmp_path, TrajVLMProcessor.from_pretrained(base), max_skip_fraction=0.05)
    with pytest.raises(SkipLimitError) as error:
        dataset[0]
    assert "1 of the 1 samples tried so far failed (every sample tried failed)" in str(error.value)
    assert "12 samples" in str(error.value) and "c.mp4" in str(error.value)


def test_export_missing_checkpoint(tmp_path, capsys):
    rc, _, err = _run(trajvlm_main, ["export", "--checkpoint", str(tmp_path / "adapter"), "--out", "x"], capsys)
    assert_user_error(rc, err, tmp_path / "adapter")


def test_chat_errors(vlm, files, capsys):
    chat = ["chat", "--prompt", "hi", "--max-new-tokens", "1"]
    cases = [
        (["--model", str(files["tokenizer"])], [files["tokenizer"], "TrajTok tokenizer checkpoint"]),
        (["--model", str(vlm), "--device", "cuda"] if not torch.cuda.is_available() else None, ["'cuda'", "CUDA"]),
        (["--model", str(vlm), "--device", "tpu9"], ["'tpu9'", "unknown device"]),
        (["--model", str(vlm), "--num-frames", "0"], ["num_frames", "0"]),
        (["--model", str(vlm), "--fps", "-1"], ["fps", "-1"]),
        (["--model", str(vlm), "--video", str(files["corrupt"])], [files["corrupt"], "not a readable"]),
        (["--model", str(vlm), "--video", str(files["missing"])], [files["missing"], "not found"]),
    ]
    for args, needles in cases:
        if args is None:
            continue
        rc, _, err = _run(trajvlm_main, [*chat, *args], capsys)
        assert_user_error(rc, err, *needles)


def test_chat_still_image_and_large_source(vlm, files, capsys):
    rc, out, err = _run(trajvlm_main, ["chat", "--model", str(vlm), "--video", str(files["image"]), "--prompt", "hi",
                                       "--max-new-tokens", "1", "--num-frames", "3"], capsys)  # fmt: skip
    assert rc == 0, err
    assert f"note: {files['image']} is a still image: the model sees 3 copies of it" in out
    rc, out, err = _run(trajvlm_main, ["chat", "--model", str(vlm), "--video", str(files["big"]), "--prompt", "hi",
                                       "--max-new-tokens", "1", "--num-frames", "2"], capsys)  # fmt: skip
    assert rc == 0, err
    assert "(2 frames, 320x240, decoded at 64x64)" in out  # resized by the decoder to the tower's 64 px


def test_chat_default_trajtok_connector_on_a_base(base, files, capsys):
    """`trajvlm chat --model BASE --connector trajtok` used to crash on the default TrajTok config's tuple."""
    argv = ["chat", "--model", str(base), "--connector", "trajtok", "--prompt", "hi", "--max-new-tokens", "1"]
    rc, out, err = _run(trajvlm_main, [*argv, "--video", str(files["clip"]), "--num-frames", "2"], capsys)
    assert rc == 0, err
    assert "visual tokens" in out


def test_llava_hf_checkpoint_image_stats(base, tmp_path):
    """A llava-hf checkpoint's own image mean / std (preprocessor_config.json) are used, not SigLIP's 0.5."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    hf = tmp_path / "hf"
    shutil.copytree(base, hf)
    config = json.loads((hf / "processor_config.json").read_text())
    config.pop("image_mean")
    config.pop("image_std")
    (hf / "processor_config.json").write_text(json.dumps(config))
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (hf / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    processor = TrajVLMProcessor.from_pretrained(hf)
    assert processor.image_mean == mean and processor.image_std == std
    frames = torch.full((1, 3, 64, 64), 255, dtype=torch.uint8)
    pixels = processor.video_processor_(frames)
    assert torch.allclose(pixels[0, :, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))
    from tests.trajvlm.helpers import tiny_trajtok_config

    model = TrajVLMForConditionalGeneration.from_llava(hf, connector="trajtok", trajtok=tiny_trajtok_config())
    assert model.config.connector_kwargs["image_mean"] == mean
    assert torch.allclose(model.model.connector.image_mean.flatten(), torch.tensor(mean))


# ---------------------------------------------------------------------------------------------- lmms-eval model


def test_lmms_eval_model_rejects_bad_settings(vlm, files, tmp_path):
    pytest.importorskip("lmms_eval")
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    with pytest.raises(ValueError, match="num_frames must be a positive integer .* got 0"):
        TrajVLMLmms(pretrained=str(vlm), num_frames="0")
    with pytest.raises(ValueError, match="fps must be a number, got 'fast'"):
        TrajVLMLmms(pretrained=str(vlm), fps="fast")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        TrajVLMLmms(pretrained=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="TrajTok tokenizer checkpoint"):
        TrajVLMLmms(pretrained=str(files["tokenizer"]))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' requested"):
            TrajVLMLmms(pretrained=str(vlm), device="cuda")
    cases = [
        ({"num_frames": "-1"}, "num_frames must be a positive integer .* got -1"),
        ({"num_frames": "abc"}, "num_frames must be an integer, got 'abc'"),
        ({"num_frames": "100000"}, "num_frames must be at most 4096 frames .* got 100000"),
        ({"max_frames": "0"}, "max_frames must be a positive integer"),
        ({"fps": "nan"}, "fps must be a positive finite number .* got nan"),
        ({"batch_size": "0"}, "batch_size must be a positive integer, got '0'"),  # used to become 1
        ({"max_context": "-5"}, "max_context must be a positive integer"),
        ({"device": "tpu9"}, "unknown device 'tpu9'"),
        ({"frames": "8"}, r"unknown model_args for trajvlm: \['frames'\]"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            TrajVLMLmms(pretrained=str(vlm), **args)
    with pytest.raises(ValueError, match="pretrained=PATH is required"):
        TrajVLMLmms(num_frames="4")


def test_lmms_eval_model_corrupt_or_missing_weights(vlm, tmp_path):
    pytest.importorskip("lmms_eval")
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    broken = tmp_path / "vlm"
    shutil.copytree(vlm, broken)
    weights = broken / "model.safetensors"
    whole = weights.read_bytes()
    for content in (whole[: len(whole) // 2], b"\x00garbage" * 30):  # truncated copy, not a safetensors file
        weights.write_bytes(content)
        with pytest.raises(ValueError, match=f"'{broken}': a weights file \\({weights}\\) is corrupt or truncated"):
            TrajVLMLmms(pretrained=str(broken))
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=f"'{broken}' has no weights"):
        TrajVLMLmms(pretrained=str(broken))


def test_lmms_eval_model_args_exit_2_with_one_line(vlm, tmp_path, capsys):
    """lmms-eval's CLI catches every exception of a run and exits 0; bad model_args leave through SystemExit(2)."""
    pytest.importorskip("lmms_eval")
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    for arg_string, needles in (
        (f"pretrained={vlm},num_frames=abc", ["num_frames", "'abc'"]),
        (f"pretrained={vlm},batch_size=0", ["batch_size must be a positive integer", "got 0"]),
        (f"pretrained={tmp_path / 'none'}", [tmp_path / "none", "not found"]),
        (f"pretrained={vlm},bogus=1", ["unknown model_args", "bogus"]),
        ("num_frames=4", ["pretrained=PATH is required"]),
        (f"pretrained={vlm},num_frames", ["key=value"]),
    ):
        with pytest.raises(SystemExit) as exit_:
            TrajVLMLmms.create_from_arg_string(arg_string, {"batch_size": 1, "device": None})
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err, err
        (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
        assert f"trajvlm model_args {arg_string!r}" in line
        for needle in needles:
            assert str(needle) in line, (needle, line)
    model = TrajVLMLmms.create_from_arg_string(f"pretrained={vlm},num_frames=2", {"batch_size": 3, "device": "cpu"})
    assert model.batch_size == 3 and model.processor.num_frames == 2


def test_lmms_eval_cli_exits_nonzero_on_bad_model_args(vlm, tmp_path):
    """The real `python -m lmms_eval` with a bad model_args: exit 2 and one error line, not exit 0."""
    pytest.importorskip("lmms_eval")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tokenizer"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "trajvlm", "--model_args", f"pretrained={vlm},num_frames=-1",
           "--tasks", "trajworld", "--include_path", str(ROOT / "eval" / "tasks"), "--output_path", str(tmp_path / "o")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: trajvlm model_args" in proc.stderr and "num_frames must be a positive integer" in proc.stderr
    assert "got -1" in proc.stderr


def test_lmms_eval_failed_samples_file_is_per_run(vlm, tmp_path):
    pytest.importorskip("lmms_eval")
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    failures = tmp_path / "failed_samples.jsonl"
    first = TrajVLMLmms(pretrained=str(vlm), failures_path=str(failures))
    first.record_failure("generate_until", "t", "test", 0, ["a.mp4"], "cannot read video 'a.mp4'")
    assert len(failures.read_text().splitlines()) == 1
    second = TrajVLMLmms(pretrained=str(vlm), failures_path=str(failures))
    assert not failures.exists()  # the earlier run's rows are gone
    second.record_failure("generate_until", "t", "test", 1, ["b.mp4"], "cannot read video 'b.mp4'")
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == [1]


# -------------------------------------------------------------------------------------------------- load_video


def test_load_video_errors(files, tmp_path):
    from trajtok.io.video import VideoDecodeError, VideoNotFoundError, load_video

    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoNotFoundError, match=f"'{files['missing']}': not found"):
        load_video(files["missing"])
    with pytest.raises(VideoNotFoundError, match=f"'{files['loop']}': symlink loop"):
        load_video(files["loop"])
    dangling = tmp_path / "dangling.mp4"
    dangling.symlink_to(tmp_path / "moved.mp4")
    with pytest.raises(VideoNotFoundError, match="broken symlink .*moved.mp4' does not exist"):
        load_video(dangling)
    with pytest.raises(VideoDecodeError, match=f"'{files['corrupt']}': not a readable video container"):
        load_video(files["corrupt"])
    with pytest.raises(VideoDecodeError, match="directory has no images"):
        load_video(tmp_path / "empty")
    with pytest.raises(ValueError, match="num_frames must be a positive int, got 0"):
        load_video(files["clip"], num_frames=0)
    with pytest.raises(ValueError, match="size must be a positive int"):
        load_video(files["clip"], size=(0, 4))


def test_still_image_is_a_one_frame_video(files, caplog):
    from trajtok.io.video import load_video

    video = load_video(files["image"], num_frames=5, size=24)
    assert video.frames.shape == (5, 3, 24, 32) and video.num_source_frames == 1
    assert "is a still image, not a video: read as 5 copies" in caplog.text


# ------------------------------------------------------------------------------------------- console scripts


def _console(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tokenizer"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def test_console_scripts_print_error_lines(files, tmp_path):
    proc = _console("trajtok.cli", "synth", "--out", str(tmp_path / "s"), "--objects", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: --objects must be N >= 1" in proc.stderr
    proc = _console("trajtok.cli", "-v", "synth", "--out", str(tmp_path / "s"), "--objects", "0")
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    proc = _console("trajvlm.cli", "chat", "--model", str(files["tokenizer"]), "--device", "cuda", "--prompt", "hi")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {files['tokenizer']} is a TrajTok tokenizer checkpoint" in proc.stderr
