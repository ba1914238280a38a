"""trajtok train: the smoke preset runs, resume is exact, pseudo-label folders train, presets validate, DDP works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trajtok import TrajTok
from trajtok.cli import main as trajtok_main
from trajtok.core.modeling import tiny_model
from trajtok.data import TrajectoryClipDataset, collate, find_videos, resize_ids
from trajtok.io.checkpoints import Dist, latest_checkpoint
from trajtok.io.labels import save_labels
from trajtok.io.writer import write_video
from trajtok.synth import generate_video, write_dataset
from trajtok.training.optim import lr_lambda
from trajtok.training.train import SegmentationLogits, TrainConfig, batch_indices, load_config, train

ROOT = Path(__file__).resolve().parents[2]
FAST = ["threads=1", "log_every=1"]  # one thread: the tiny model gains nothing from more, and tests run side by side


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_train")
    write_dataset(root, "train=4,val=2,test=2", frames=8, size=64, objects=(2, 3), seed=0)
    return root


@pytest.fixture(scope="session")
def pseudo(tmp_path_factory) -> Path:
    """A pseudo-label folder: videos elsewhere, npz + labels.json (video path -> npz) as trajtok pseudolabel writes."""
    root = tmp_path_factory.mktemp("pseudo")
    videos = root / "videos"
    labels = root / "labels"
    index = {}
    for seed in range(2):
        v = generate_video(seed, 10, 48, 64, 2)
        path = write_video(videos / f"clip{seed}.mp4", v.frames, fps=10.0)
        save_labels(labels / f"clip{seed}.npz", v.masks, v.graph)
        index[str(path)] = f"clip{seed}.npz"
    (labels / "labels.json").write_text(json.dumps(index))
    return labels


def smoke(data: Path, *overrides: str) -> TrainConfig:
    return load_config("smoke", [f"data={data}", *FAST, *overrides])


def test_smoke_preset_trains_two_steps(synth, tmp_path):
    ckpt = train(smoke(synth), tmp_path / "run")
    assert ckpt == tmp_path / "run" / "checkpoints" / "step_0000002"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert set(r) >= {"step", "loss", "focal", "dice", "lr", "time"} and np.isfinite(r["loss"]) and r["loss"] > 0
    val = [r for r in rows if "val_miou" in r]
    assert len(val) == 1 and 0.0 <= val[0]["val_miou"] <= 1.0
    model = TrajTok.from_pretrained(ckpt)  # the checkpoint is a save_pretrained folder
    assert model.config.clip_len == 8 and model.config.num_queries == 16
    saved = json.loads((ckpt / "train_config.json").read_text())
    assert saved["data"] == str(synth) and saved["steps"] == 2 and saved["threads"] == 1
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp*"))


def test_resume_continues_exactly(synth, tmp_path):
    # streamed training clips (2 x 4 frames with carried queries) included
    common = ["steps=4", "val_split=null", "batch_size=2", "warmup_steps=2", "clip_len=4", "stream_clips=2"]
    train(smoke(synth, *common), tmp_path / "full")
    train(smoke(synth, *common, "stop_at=2"), tmp_path / "split")
    assert latest_checkpoint(tmp_path / "split").name == "step_0000002"
    train(smoke(synth, *common), tmp_path / "split", resume=True)
    a = load_file(str(latest_checkpoint(tmp_path / "full") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "split") / "model.safetensors"))
    assert latest_checkpoint(tmp_path / "split").name == "step_0000004"
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    # and the resumed run did move away from the step-2 weights
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_streamed_training_logits_are_tokenize_video_logits():
    model = tiny_model(seed=0).eval()
    x = torch.rand(1, 8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = SegmentationLogits(model)(x)
        streamed = SegmentationLogits(model, clip_len=4)(x)
        reference = model.tokenize_video(x, clip_len=4, return_masks=True).logits
    torch.testing.assert_close(whole, model(x).logits)
    torch.testing.assert_close(streamed, reference)
    assert streamed.shape == (1, 16, 8, 16, 16)


def test_pseudolabel_folder_trains_two_steps(pseudo, tmp_path):
    items = find_videos(pseudo)
    assert [i.id for i in items] == ["clip0", "clip1"]
    cfg = smoke(pseudo, "val_split=null", "background=ignore", "clip_len=6")
    ckpt = train(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert (ckpt / "model.safetensors").is_file()


def test_plain_folder_of_videos_with_npz(tmp_path):
    v = generate_video(5, 6, 64, 64, 2)
    write_video(tmp_path / "a.mp4", v.frames)
    save_labels(tmp_path / "a.npz", v.masks, v.graph)
    write_video(tmp_path / "unlabelled.mp4", v.frames)  # no npz: not part of the dataset
    data = TrajectoryClipDataset(tmp_path, clip_len=4, size=32, train=False)
    assert len(data) == 1
    s = data[0]
    assert s["pixel_values"].shape == (4, 3, 32, 32) and s["target_ids"].shape == (4, 32, 32)
    np.testing.assert_array_equal(s["target_ids"].numpy(), resize_ids(v.masks, 32)[1:5])  # centre window


def test_dataset_clips_are_seeded_and_in_range(synth):
    data = TrajectoryClipDataset(synth, "train", clip_len=4, size=64, seed=3)
    a, b = data.sample(1, epoch=0), data.sample(1, epoch=0)
    assert a["start"] == b["start"] and torch.equal(a["pixel_values"], b["pixel_values"])
    starts = {data.sample(1, epoch=e)["start"] for e in range(20)}
    assert len(starts) > 1 and starts <= set(range(0, 5))
    px, ids = a["pixel_values"], a["target_ids"]
    assert px.dtype == torch.float32 and 0.0 <= px.min() and px.max() <= 1.0
    assert ids.dtype == torch.long and ids.min() >= 0 and ids.max() <= 3
    batch = collate([a, b])
    assert batch["pixel_values"].shape == (2, 4, 3, 64, 64) and batch["target_ids"].shape == (2, 4, 64, 64)
    short = TrajectoryClipDataset(synth, "train", clip_len=12, size=64, train=False)[0]  # 8-frame video
    assert torch.equal(short["pixel_values"][-1], short["pixel_values"][7])  # last frame repeated


def test_strided_clips_spread_over_the_video_as_a_vlm_samples(synth):
    """max_frame_stride: every k-th frame, k drawn per clip in 1..max (capped so the clip fits); eval stays dense."""
    data = TrajectoryClipDataset(synth, "train", clip_len=3, size=64, seed=3, hflip=False, max_frame_stride=3)
    dense = TrajectoryClipDataset(synth, "train", clip_len=1, size=64, train=False, hflip=False)
    v = data.videos[1]  # 8 frames: strides up to 3 fit (frames start, start+3, start+6 <= 7)
    strides = set()
    for epoch in range(30):
        s = data.sample(1, epoch=epoch)
        k, start = s["stride"], s["start"]
        strides.add(k)
        assert start + k * 2 <= v.num_frames - 1
        for j in range(3):
            np.testing.assert_array_equal(s["target_ids"][j].numpy(), v.ids[start + k * j])
    assert strides == {1, 2, 3}
    assert dense.sample(1)["stride"] == 1
    assert data.sample(1, epoch=0)["stride"] == data.sample(1, epoch=0)["stride"]  # seeded
    with pytest.raises(ValueError, match="max_frame_stride"):
        TrajectoryClipDataset(synth, "train", clip_len=3, size=64, max_frame_stride=0)


def test_corrupt_videos_are_skipped_counted_and_bounded(synth, tmp_path, caplog):
    root = tmp_path / "copy"
    root.mkdir()
    for i, item in enumerate(find_videos(synth, "train")):
        (root / f"v{i}.mp4").write_bytes(item.video.read_bytes())
        (root / f"v{i}.npz").write_bytes(item.labels.read_bytes())
    (root / "v0.mp4").write_bytes(b"not a video")
    data = TrajectoryClipDataset(root, clip_len=4, size=64, max_skip_fraction=0.25)
    assert len(data) == 3 and len(data.skipped) == 1 and data.skipped[0][0].endswith("v0.mp4")
    assert "v0.mp4" in caplog.text
    with pytest.raises(ValueError, match="max_skip_fraction"):
        TrajectoryClipDataset(root, clip_len=4, size=64, max_skip_fraction=0.1)


def test_batches_are_a_function_of_the_step():
    one = batch_indices(5, n=7, batch_size=4, seed=0, dist=Dist())
    assert one == batch_indices(5, n=7, batch_size=4, seed=0, dist=Dist())
    two = [batch_indices(5, 7, 4, 0, Dist(rank=r, world=2)) for r in range(2)]
    assert two[0] + two[1] == one  # two processes split the same global batch
    epoch0 = [i for s in range(7) for i, e in batch_indices(s, 7, 1, 0, Dist()) if e == 0]
    assert sorted(epoch0) == list(range(7))  # every video once per epoch


def test_lr_schedule_warms_up_then_decays():
    assert lr_lambda(0, 4, 100, 0.1) == 0.25 and lr_lambda(3, 4, 100, 0.1) == 1.0
    assert lr_lambda(4, 4, 100, 0.1) == pytest.approx(1.0)
    assert lr_lambda(100, 4, 100, 0.1) == pytest.approx(0.1)
    assert 0.1 < lr_lambda(50, 4, 100, 0.1) < 1.0


@pytest.mark.parametrize("name", ["quickstart", "smoke", "paper"])
def test_shipped_presets_validate(name):
    cfg = load_config(name)
    model = cfg.model_config()
    assert cfg.steps >= 1 and model.clip_len >= 1
    if name == "paper":
        assert (model.width, model.num_queries, model.image_size, cfg.clip_len) == (512, 128, 224, 16)
        assert model.backbone_config["hidden_sizes"] == [96, 192, 384, 768]


def test_bad_configs_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown TrainConfig fields \\['stpes'\\]"):
        load_config("smoke", ["stpes=3"])
    with pytest.raises(ValueError, match="background must be one of"):
        load_config("smoke", ["background=none"])
    with pytest.raises(ValueError, match="unknown TrajTokConfig fields"):
        load_config("smoke", ["model.queries=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config("smoke", ["steps"])
    with pytest.raises(FileNotFoundError, match="shipped preset"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        train(load_config("smoke", [f"data={tmp_path / 'nothing'}"]), tmp_path / "run")


def test_cli_with_overrides(synth, tmp_path, capsys):
    args = ["train", "--config", "smoke", "--out", str(tmp_path / "run"), f"data={synth}", "steps=1", *FAST]
    assert trajtok_main(args + ["val_split=null", "bf16=true"]) == 0  # CPU bf16 autocast runs too
    assert "step_0000001" in capsys.readouterr().out
    # --resume without --config reads the run's train_config.json; the schedule is already complete
    assert trajtok_main(["train", "--out", str(tmp_path / "run"), "--resume"]) == 0


@pytest.mark.slow
def test_ddp_two_processes_gloo(synth, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tokenizer"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "trajtok.cli", "train", "--config", "smoke", "--out", str(tmp_path / "run"), f"data={synth}"]
    cmd += ["val_split=null", "threads=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # one log, from rank 0
    ckpt = latest_checkpoint(tmp_path / "run")
    assert sorted(p.name for p in ckpt.glob("rng_rank*.pt")) == ["rng_rank0.pt", "rng_rank1.pt"]
    TrajTok.from_pretrained(ckpt)
