"""TrajVLMProcessor: video preprocessing, <video> expansion per connector mode, padding, save/load."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trajvlm.helpers import IMAGE_SIZE, PATCH_SIZE, random_video
from trajvlm.configuration import TrajVLMConfig
from trajvlm.processing import TrajVLMProcessor, TrajVLMVideoProcessor


@pytest.fixture()
def proc(tiny_base_path) -> TrajVLMProcessor:
    return TrajVLMProcessor.from_pretrained(tiny_base_path)


def _count(ids: torch.Tensor, proc: TrajVLMProcessor) -> list[int]:
    return (ids == proc.video_token_id).sum(-1).tolist()


def test_pool_expansion_matches_upstream_count(proc):
    video = random_video(num_frames=3)
    out = proc(text=["<video>\nDescribe the video."], videos=[video])
    pooled = math.ceil((IMAGE_SIZE // PATCH_SIZE) / 2)
    assert _count(out["input_ids"], proc) == [3 * pooled * pooled + 1]
    assert out["pixel_values_videos"].shape == (1, 3, 3, IMAGE_SIZE, IMAGE_SIZE)
    proc.pool_mode = "average"
    proc.pool_stride = 3
    out = proc(text=["<video>"], videos=[video])
    assert _count(out["input_ids"], proc) == [3 * (8 // 3) ** 2 + 1]


def test_adaptive_and_fixed_expansion(proc):
    videos = [random_video(seed=0), random_video(seed=1), random_video(seed=2)]
    texts = ["<video>\nfirst <video>\nsecond", "no video here", "<video> third"]
    proc.connector, proc.token_mode = "trajtok", "adaptive"
    out = proc(text=texts, videos=videos)
    assert _count(out["input_ids"], proc) == [2, 0, 1]
    assert out["pixel_values_videos"].shape[0] == 3
    proc.token_mode, proc.video_token_budget = "fixed", 7
    out = proc(text=texts, videos=[[videos[0], videos[1]], [], [videos[2]]])  # one list per sample works too
    assert _count(out["input_ids"], proc) == [14, 0, 7]


def test_for_model_syncs_connector_settings(proc, tiny_base_path):
    from transformers import LlavaOnevisionConfig

    llava = LlavaOnevisionConfig.from_pretrained(tiny_base_path)
    cfg = TrajVLMConfig.from_llava_config(llava, connector="trajtok", token_mode="fixed", video_token_budget=9)
    proc.for_model(cfg)
    assert (proc.connector, proc.token_mode, proc.video_token_budget) == ("trajtok", "fixed", 9)
    assert proc.num_video_tokens(5) == 9
    proc.for_model(TrajVLMConfig.from_llava_config(llava, connector="pool", connector_kwargs={"stride": 4}))
    assert proc.num_video_tokens(2) == 2 * 2 * 2 + 1
    proc.for_model(llava)  # a plain llava config means upstream pooling
    assert proc.connector == "pool" and proc.num_video_tokens(1) == 17


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side(proc, side):
    proc.connector = "trajtok"
    proc.tokenizer.padding_side = side
    out = proc(text=["<video>\na much longer question with many words in it", "short"], videos=[random_video()])
    mask = out["attention_mask"]
    assert mask.shape == out["input_ids"].shape
    assert mask[0].all()
    column = 0 if side == "left" else -1
    assert mask[1, column] == 0
    assert (out["input_ids"][1][mask[1] == 0] == proc.tokenizer.pad_token_id).all()


def test_video_layouts_and_normalisation():
    vp = TrajVLMVideoProcessor(32)
    video = random_video(num_frames=2, height=40, width=48)
    chw = vp(video)
    hwc = vp(video.permute(0, 2, 3, 1).numpy())
    assert chw.shape == (2, 3, 32, 32)
    assert torch.equal(chw, hwc)
    assert chw.min() >= -1.0 and chw.max() <= 1.0
    same_size = vp(random_video(num_frames=1, height=32, width=32, seed=4))
    raw = random_video(num_frames=1, height=32, width=32, seed=4).float() / 255.0
    assert torch.allclose(vp.unnormalize(same_size), raw, atol=1e-6)
    gray = vp(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    assert gray.shape == (2, 3, 32, 32) and torch.allclose(gray, torch.full_like(gray, -1.0))


def test_bad_inputs_raise(proc):
    with pytest.raises(ValueError, match="2 <video> placeholders but 1 videos"):
        proc(text=["<video><video>"], videos=[random_video()])
    with pytest.raises(ValueError, match="same number of frames"):
        proc(text=["<video>", "<video>"], videos=[random_video(num_frames=2), random_video(num_frames=3)])
    with pytest.raises(ValueError, match="4 dims"):
        proc(text=["<video>"], videos=[torch.zeros(3, 8, 8)])
    with pytest.raises(ValueError, match="images are not supported"):
        proc(images=[torch.zeros(3, 8, 8)], text=["x"])
    with pytest.raises(ValueError, match="token_mode"):
        TrajVLMProcessor(tokenizer=proc.tokenizer, token_mode="sometimes")


def test_save_load_keeps_settings(proc, tmp_path):
    proc.num_frames, proc.fps, proc.max_frames = None, 2.0, 12
    proc.connector, proc.token_mode, proc.video_token_budget = "trajtok", "fixed", 33
    proc.save_pretrained(tmp_path)
    back = TrajVLMProcessor.from_pretrained(tmp_path)
    for name in (
        "num_frames",
        "fps",
        "max_frames",
        "connector",
        "token_mode",
        "video_token_budget",
        "image_size",
        "patch_size",
        "pool_stride",
        "pool_mode",
        "image_mean",
        "image_std",
    ):
        assert getattr(back, name) == getattr(proc, name), name
    assert back.chat_template == proc.chat_template
    text = "<video>\nhello"
    assert torch.equal(
        back(text=[text], videos=[random_video()])["input_ids"], proc(text=[text], videos=[random_video()])["input_ids"]
    )


def test_video_path_uses_sampling_settings(proc, tmp_path):
    from trajtok.io.writer import write_video

    path = tmp_path / "clip.mp4"
    write_video(path, random_video(num_frames=12, height=48, width=64).permute(0, 2, 3, 1).numpy(), fps=10.0)
    proc.num_frames = 5
    assert proc.load_video(path).shape[0] == 5
    assert proc.load_video(path, num_frames=3).shape[0] == 3
    out = proc(text=["<video>"], videos=[str(path)])
    assert out["pixel_values_videos"].shape == (1, 5, 3, IMAGE_SIZE, IMAGE_SIZE)
