"""The warm-up's caches of frozen parts: TrajTok's segmentation computed once per video and clip trains the same
weights as running the pixel backbone and segmenter in every step; connector options reach the saved model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.trajvlm.helpers import tiny_warmup_config
from tests.trajvlm.train_fixtures import tiny_trajtok_path  # noqa: F401
from trajvlm.training.warmup import WarmupConfig, warmup


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from trajtok.synth import write_dataset

    root = tmp_path_factory.mktemp("warmup_cache_world")
    write_dataset(root, {"train": 12, "val": 0, "test": 0}, frames=(16, 20), size=64, objects=(2, 3), seed=7)
    return root / "train"


def test_cached_segmentation_trains_the_same_weights(tiny_base_path, world, tmp_path, tiny_trajtok_path):  # noqa: F811
    from safetensors.torch import load_file

    from trajtok import TrajTok

    clip_len = TrajTok.from_pretrained(tiny_trajtok_path).config.clip_len
    frames = 2 * clip_len + 1  # three clips: the cache replays each clip of each video in order
    runs = {}
    for cache in (True, False):
        extra = {"frames": frames, "trajtok": str(tiny_trajtok_path), "tokens_per_trajectory": 2}
        cfg = tiny_warmup_config(3, **extra, cache_segmenter=cache)
        metrics = warmup(tiny_base_path, world / "captions.json", world, tmp_path / str(cache), cfg)
        runs[cache] = metrics, load_file(tmp_path / str(cache) / "model.safetensors")
    (m_cached, w_cached), (m_full, w_full) = runs[True], runs[False]
    assert m_cached["segmenter_cached"] is True and m_full["segmenter_cached"] is False
    assert set(w_cached) == set(w_full)  # the real segmenter and backbone are saved, not their stand-ins
    assert any(".segmenter." in k for k in w_full) and any(".features." in k for k in w_full)
    assert m_cached["first_loss"] == pytest.approx(m_full["first_loss"], abs=1e-5)
    assert m_cached["final_loss"] == pytest.approx(m_full["final_loss"], abs=1e-4)
    for k in w_full:
        torch.testing.assert_close(w_cached[k], w_full[k], atol=1e-4, rtol=1e-4)


def test_pool_stride_reaches_the_warmed_up_model(tiny_base_path, world, tmp_path):
    cfg = WarmupConfig(
        connector="pool", steps=1, batch_size=4, held_out=4, min_doc_freq=0.0, connector_kwargs={"stride": 4}
    )
    warmup(tiny_base_path, world / "captions.json", world, tmp_path / "pool", cfg)
    saved = json.loads((tmp_path / "pool" / "config.json").read_text())
    assert saved["connector"] == "pool" and saved["connector_kwargs"]["stride"] == 4
    with pytest.raises(ValueError, match="connector_kwargs must be a mapping"):
        WarmupConfig(connector_kwargs=[4])
