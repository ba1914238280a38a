"""The trajtok connector streams a video clip by clip through the tower and TrajTok (one code path with
``TrajTok.tokenize_video``); the external-feature backbone adds no second image model."""

from __future__ import annotations

import torch

from tests.trajvlm.helpers import random_video, tiny_trajtok_config, tiny_trajvlm


def test_tower_and_connector_run_clip_by_clip(tiny_base_path):
    model, proc = tiny_trajvlm(tiny_base_path, trajtok=tiny_trajtok_config(clip_len=4))
    batch = proc(text=["<video>\nDescribe the video."], videos=[random_video(num_frames=10)])
    pixels = batch["pixel_values_videos"]  # (1, 10, 3, 64, 64)
    seen = []
    model.model.vision_tower.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        streamed = model.model.encode_videos(pixels)
        assert seen == [4, 4, 2]  # the tower saw one clip at a time
        full = model.model.video_patch_features(pixels, return_dict=True).pooler_output  # all frames at once
        reference = model.connector(full, pixels, 10)
        tok = model.connector.trajtok.tokenize_video(
            (pixels * 0.5 + 0.5).clamp(0, 1), features=full.view(1, 10, 8, 8, -1), clip_len=4
        )
    torch.testing.assert_close(streamed.tokens[0], reference.tokens[0])
    valid = tok.tokens[0][tok.valid[0]]
    torch.testing.assert_close(streamed.tokens[0], valid, rtol=1e-4, atol=1e-5)
    assert streamed.extra["first_last"].max() >= 8  # time stamps run over the whole video, not per clip
    with torch.no_grad():
        out = model(**batch)
    assert out.visual_token_counts == [streamed.num_tokens[0]]


def test_external_backbone_connector(tiny_base_path):
    model, proc = tiny_trajvlm(
        tiny_base_path, trajtok=tiny_trajtok_config(backbone="external", external_dim=64, clip_len=4)
    )
    trajtok = model.connector.trajtok
    assert trajtok.features is None
    assert not any(name.startswith("features.") for name, _ in trajtok.named_parameters())
    batch = proc(text=["<video>\nWhat moved?"], videos=[random_video(num_frames=8)])
    with torch.no_grad():
        out = model(**batch)
        new = model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert out.visual_token_counts[0] > 0 and new.shape == (1, 2)
