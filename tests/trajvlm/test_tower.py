"""Tower pretraining: the sigmoid loss, retrieval metrics, the saved tower, and `build-base --tower` reading it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from trajvlm.training.tower import (
    CaptionEncoder,
    TowerConfig,
    VideoTextModel,
    normalise,
    pretrain_tower,
    retrieval,
)


def small_cfg(**kw) -> TowerConfig:
    base = dict(hidden_size=32, num_layers=1, num_heads=1, text_width=32, text_layers=1, embed_dim=16, frames=2)
    return TowerConfig(**{**base, **kw})


def test_config_rejects_bad_geometry():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TowerConfig(image_size=60, patch_size=8)
    with pytest.raises(ValueError, match="num_heads"):
        TowerConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TowerConfig(lr=-2e-3)
    with pytest.raises(ValueError, match="weight_decay >= 0"):
        TowerConfig(weight_decay=-0.1)
    with pytest.raises(ValueError, match="eval_split must name a held-out split"):
        TowerConfig(eval_split="train")


def test_caption_encoder_maps_unknown_words_and_pads():
    enc = CaptionEncoder(["red", "circle"], small_cfg())
    ids = enc.ids(["Red circle!", "a purple hexagon moves"])
    assert ids.shape == (2, 4)
    assert ids[0, :2].tolist() == [2, 3] and ids[0, 2:].tolist() == [0, 0]  # known words, then padding
    assert ids[1].tolist() == [1, 1, 1, 1]  # unknown words


def test_sigmoid_loss_prefers_matching_pairs_and_training_lowers_it():
    torch.manual_seed(0)
    model = VideoTextModel(["red", "blue", "circle", "square"], small_cfg())
    pixels = torch.randn(4, 2, 3, 64, 64)
    texts = ["red circle", "blue square", "red square", "blue circle"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model.loss(pixels, texts).item()
    for _ in range(40):
        loss = model.loss(pixels, texts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    frames = ((pixels.clamp(-1, 1) * 0.5 + 0.5) * 255).round().to(torch.uint8)
    metrics = retrieval(model, frames, texts)
    assert metrics["num_pairs"] == 4 and metrics["video_to_text_r5"] == 100.0  # 4 candidates: R@5 is trivially 100
    assert metrics["video_to_text_r1"] >= 50.0  # memorised 4 pairs


def test_pretrain_tower_writes_a_loadable_tower_and_metrics(tmp_path):
    from trajtok.synth import write_dataset
    from trajvlm.training.tower import load_tower

    data = tmp_path / "synth"
    write_dataset(data, {"train": 6, "val": 4, "test": 3}, frames=(8, 12), size=64, objects=(2, 3), seed=1)
    shutil.rmtree(data / "test")  # retrieval is measured on val: the tower never reads test
    metrics = pretrain_tower(data, tmp_path / "tower", small_cfg(steps=2, batch_size=4))
    assert metrics["eval_split"] == "val" and "test" not in metrics
    assert set(metrics["val"]) >= {"video_to_text_r1", "video_to_text_r5", "text_to_video_r5", "num_pairs"}
    assert metrics["val"]["num_pairs"] == 4
    saved = json.loads((tmp_path / "tower" / "tower_metrics.json").read_text())
    assert saved["val"] == metrics["val"]
    tower = load_tower(tmp_path / "tower")
    assert tower.config.hidden_size == 32 and tower.config.image_size == 64
    with pytest.raises(FileNotFoundError, match="no tower checkpoint"):
        load_tower(tmp_path / "absent")


def test_word_targets_mark_the_captions_known_words():
    model = VideoTextModel(["blue", "circle", "red"], small_cfg())
    target = model.word_targets(["A red circle.", "blue blue square"])
    assert target.tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]  # vocab order; unknown words ignored


def test_word_loss_teaches_patches_to_name_a_small_objects_colour():
    """One 8x8 coloured square on a grey frame, at a random place: after training, the max over patches of the
    "red" detector is higher on the red videos than on the blue ones (held-out placements)."""
    torch.manual_seed(0)
    colours = {"red": (1.0, -1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}

    def videos(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        pixels, texts = torch.zeros(n, 2, 3, 64, 64), []
        for i in range(n):
            name = "red" if i % 2 == 0 else "blue"
            y, x = torch.randint(0, 56, (2,), generator=g).tolist()
            pixels[i, :, :, y : y + 8, x : x + 8] = torch.tensor(colours[name]).view(1, 3, 1, 1)
            texts.append(f"a {name} square")
        return pixels, texts

    model = VideoTextModel(["a", "blue", "red", "square"], small_cfg(word_weight=20.0))
    pixels, texts = videos(16, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = model.loss(pixels, texts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test, test_texts = videos(8, 1)
    model.eval()
    with torch.no_grad():
        red = model.word_logits(model.patch_features(test))[:, model.text.vocab.index("red")]
    is_red = torch.tensor(["red" in t for t in test_texts])
    assert red[is_red].min() > red[~is_red].max()


def test_word_weight_zero_is_the_sigmoid_loss_alone():
    torch.manual_seed(0)
    model = VideoTextModel(["red", "circle"], small_cfg(word_weight=0.0))
    pixels, texts = torch.randn(2, 2, 3, 64, 64), ["red circle", "circle"]
    loss = model.loss(pixels, texts)
    with torch.no_grad():
        model.word_head.weight.add_(5.0)  # the word head has no part in it
    assert torch.equal(loss.detach(), model.loss(pixels, texts).detach())


def test_overrides_read_numbers_written_as_text():
    from trajvlm.training.tower import parse_overrides

    cfg = parse_overrides(["lr=2e-3", "steps=7", "word_weight=0"])  # 2e-3 is a string to YAML 1.1
    assert (cfg.lr, cfg.steps, cfg.word_weight) == (2e-3, 7, 0)
    with pytest.raises(ValueError, match="bad override 'learning_rate'"):
        parse_overrides(["learning_rate=1"])
    with pytest.raises(ValueError, match="lr must be a number"):
        parse_overrides(["lr=fast"])


def test_patch_labels_name_the_object_covering_most_of_each_patch():
    """A record with a red square (object 0) and a blue ring that turns green (object 1): the labels of each 8 px
    patch follow the mask's majority pixel, the shape and the colour shown in that frame; masks of another size are
    resized to the tower's frames."""
    from trajtok.synth.world import COLOURS, SHAPES
    from trajvlm.training.tower import patch_labels

    record = {
        "objects": [{"shape": "square", "colour": "red"}, {"shape": "ring", "colour": "blue"}],
        "events": [{"type": "colour_change", "objects": [1], "frames": [2, 2], "to": "green"}],
    }
    masks = np.zeros((3, 32, 32), dtype=np.int32)  # half the tower's side: each mask pixel is 2x2 frame pixels
    masks[:, 0:4, 0:4] = 1  # object 0 fills patch (0, 0)
    masks[:, 4:6, 4:7] = 2  # object 1 covers 6 of patch (1, 1)'s 16 mask pixels: background keeps the majority
    masks[:, 8:12, 4:8] = 2  # object 1 fills patch (2, 1)
    labels = patch_labels(record, masks, [0, 2], small_cfg())
    assert labels.shape == (2, 64, 2) and labels.dtype == torch.long
    square, ring = SHAPES.index("square") + 1, SHAPES.index("ring") + 1
    red, blue, green = (COLOURS.index(c) + 1 for c in ("red", "blue", "green"))
    for k, colour in ((0, blue), (1, green)):  # frame 0, then frame 2 after the colour change
        assert labels[k, 0].tolist() == [square, red]
        assert labels[k, 9].tolist() == [0, 0]
        assert labels[k, 17].tolist() == [ring, colour]
        assert int((labels[k, :, 0] > 0).sum()) == 2  # every other patch is background


def test_patch_label_loss_trains_on_a_world_and_needs_its_labels(tmp_path):
    from trajtok.synth import write_dataset
    from trajvlm.training.tower import read_split

    data = tmp_path / "synth"
    write_dataset(data, {"train": 4, "val": 2, "test": 0}, frames=(8, 12), size=64, objects=(2, 3), seed=1)
    cfg = small_cfg(steps=2, batch_size=4, patch_label_weight=1.0)
    frames, texts, labels = read_split(data, "train", cfg, with_patch_labels=True)
    assert labels is not None and labels.shape == (4, cfg.frames, 64, 2)
    assert (labels[..., 0] > 0).any() and (labels[..., 0] == 0).any()  # objects and background
    assert ((labels[..., 0] > 0) == (labels[..., 1] > 0)).all()  # a patch has a shape exactly when it has a colour
    metrics = pretrain_tower(data, tmp_path / "tower", cfg)
    assert math.isfinite(metrics["final_loss"])
    model = VideoTextModel(["a"], cfg)
    with pytest.raises(ValueError, match="needs the patch labels"):
        model.loss(normalise(frames[:2]), texts[:2])
    (data / "train" / f"{Path(sorted((data / 'train').glob('*.mp4'))[0]).stem}.npz").unlink()
    with pytest.raises(FileNotFoundError, match="npz"):
        read_split(data, "train", cfg, with_patch_labels=True)
