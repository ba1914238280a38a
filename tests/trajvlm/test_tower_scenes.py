"""Fresh scenes for the tower (trajvlm.training.tower_scenes): the world's settings, what a scene shows and says,
and a tower trained on a mix of videos and scenes."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from trajtok.synth import write_dataset
from trajtok.synth.world import COLOURS, SHAPES
from trajvlm.training.tower import (
    TowerConfig,
    load_video_text_model,
    patch_head_accuracy,
    patch_labels,
    pretrain_tower,
    read_split,
    words,
)
from trajvlm.training.tower_scenes import SceneSampler, scene_batches, scene_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("long")
    write_dataset(out, "train=6,val=3,test=0", frames=(48, 64), size=48, objects=(3, 4), world="long", seed=2)
    return out


def test_settings_are_the_worlds(world):
    gen = json.loads((world / "manifest.json").read_text())["generator"]
    s = scene_settings(world)
    assert (s.height, s.width) == (48, 48)
    assert s.objects == (3, 4)
    assert s.object_size == tuple(gen["config"]["object_size"])
    assert s.noise_std == tuple(gen["config"]["noise_std"]) and s.blur_prob == gen["config"]["blur_prob"]


def test_settings_name_a_missing_or_short_world(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        scene_settings(tmp_path)
    write_dataset(tmp_path / "short", "train=1,val=0,test=0", frames=(8, 8), size=32, objects=(1, 1))
    with pytest.raises(ValueError, match="long world"):
        scene_settings(tmp_path / "short")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"generator": {"world": "lo')
    with pytest.raises(ValueError, match=r"bad/manifest.json is not a `trajtok synth` manifest"):
        scene_settings(tmp_path / "bad")


def test_a_scene_shows_what_its_caption_says(world):
    """Every object the caption names is drawn in some frame (its mask pixels carry its colour), no other object
    is, and the patch labels read from the masks name the same shapes."""
    settings = scene_settings(world)
    sampler = SceneSampler(settings, frames=3, seed=0)
    for _ in range(5):
        frames, masks, record, caption = sampler.scene()
        assert frames.shape == (3, 48, 48, 3) and frames.dtype == np.uint8 and masks.shape == (3, 48, 48)
        objects = record["objects"]
        assert settings.objects[0] <= len(objects) <= settings.objects[1]
        assert len({(o["colour"], o["shape"]) for o in objects}) == len(objects)  # distinct, as in the world
        said = words(caption)
        for i, o in enumerate(objects):
            assert o["colour"] in said and o["shape"] in said
            assert (masks == i + 1).any(), f"object {i} named but never drawn"
        assert masks.max() == len(objects)
        # an unblurred, solid object's pixels show its palette colour up to the world's noise
        labels = patch_labels(record, masks, [0, 1, 2], TowerConfig(image_size=48, patch_size=8, frames=3))
        shown = {SHAPES[int(k) - 1] for k in labels[..., 0].unique() if k > 0}
        assert shown <= {o["shape"] for o in objects}
        colours = {COLOURS[int(k) - 1] for k in labels[..., 1].unique() if k > 0}
        assert colours <= {o["colour"] for o in objects}


def test_draws_are_fresh_and_seeded(world):
    settings = scene_settings(world)
    a, b = SceneSampler(settings, 2, seed=0), SceneSampler(settings, 2, seed=0)
    fa, ca, _ = a.draw(4, 48)
    fb, cb, _ = b.draw(4, 48)
    assert torch.equal(fa, fb) and ca == cb  # the same seed draws the same scenes
    fc, cc, _ = a.draw(4, 48)
    assert not torch.equal(fa, fc) and ca != cc  # the next draw is new
    assert fa.shape == (4, 2, 3, 48, 48) and fa.dtype == torch.uint8
    big, _, labels = SceneSampler(settings, 2, seed=1).draw(2, 64)  # frames resized to the tower's side
    assert big.shape == (2, 2, 3, 64, 64) and labels[0][1].shape == (2, 48, 48)  # masks at the world's size


def test_a_background_worker_renders_the_same_scenes(world):
    settings = scene_settings(world)
    inline = scene_batches(SceneSampler(settings, 2, seed=3), 3, 48, workers=0)
    worker = scene_batches(SceneSampler(settings, 2, seed=3), 3, 48, workers=1)
    for _ in range(2):
        (fa, ca, la, _), (fb, cb, lb, _) = next(inline), next(worker)
        assert torch.equal(fa, fb) and ca == cb
        assert all(np.array_equal(ma, mb) and ra == rb for (ra, ma), (rb, mb) in zip(la, lb, strict=True))
    with pytest.raises(ValueError, match="0 or 1"):
        scene_batches(SceneSampler(settings, 2, seed=3), 3, 48, workers=2)
    # labels are made where the scenes are rendered: the worker's are the patch labels of the scenes it drew
    cfg = TowerConfig(image_size=48, patch_size=8, frames=2)
    label = functools.partial(patch_labels, frames=[0, 1], cfg=cfg)
    _, _, drawn, labels = next(scene_batches(SceneSampler(settings, 2, seed=4), 3, 48, workers=1, label=label))
    assert labels.shape == (3, 2, 36, 2)
    assert torch.equal(labels, torch.stack([patch_labels(r, m, [0, 1], cfg) for r, m in drawn]))


def test_sampler_refuses_bad_settings(world):
    settings = scene_settings(world)
    with pytest.raises(ValueError, match="frames"):
        SceneSampler(settings, 0, seed=0)
    with pytest.raises(ValueError, match="visible_prob"):
        SceneSampler(settings, 2, seed=0, visible_prob=0.0)
    one = SceneSampler(replace(settings, objects=(1, 1)), 4, seed=0)
    _, masks, record, caption = one.scene()
    assert len(record["objects"]) == 1 and caption.startswith("A single object") and (masks == 1).any()


def test_tower_trains_on_videos_and_scenes(world, tmp_path):
    base = dict(hidden_size=32, num_layers=1, num_heads=1, text_width=32, text_layers=1, embed_dim=16, frames=2)
    with pytest.raises(ValueError, match="scene_frac"):
        TowerConfig(scene_frac=1.5)
    cfg = TowerConfig(**base, image_size=48, steps=2, batch_size=4, scene_frac=0.5, patch_label_weight=1.0)
    metrics = pretrain_tower(world, tmp_path / "tower", cfg)
    assert math.isfinite(metrics["final_loss"]) and metrics["config"]["scene_frac"] == 0.5
    # a patch-label tower reports its heads on training videos and on val (the gap is what it memorised)
    heads = metrics["patch_heads"]
    assert set(heads) == {"train_subset", "val"}
    assert all(0.0 <= h[k] <= 100.0 for h in heads.values() for k in ("shape", "colour"))
    assert heads["val"]["object_patches"] > 0
    # the saved tower reads back whole and gives the same numbers
    model = load_video_text_model(tmp_path / "tower")
    frames, _, labels = read_split(world, "val", model.cfg, with_patch_labels=True)
    assert patch_head_accuracy(model, frames, labels) == heads["val"]
    only = TowerConfig(**base, image_size=48, steps=1, batch_size=2, scene_frac=1.0)  # no training video at all
    metrics = pretrain_tower(world, tmp_path / "scenes-only", only)
    assert math.isfinite(metrics["final_loss"]) and "patch_heads" not in metrics
    with pytest.raises(ValueError, match="no patch heads"):
        patch_head_accuracy(load_video_text_model(tmp_path / "scenes-only"), frames, labels)
    with pytest.raises(FileNotFoundError, match="text.pt"):
        load_video_text_model(tmp_path / "absent")
