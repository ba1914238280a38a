"""The trajtok connector streams a batch of videos longer than one clip: each clip of the batch is a slice across
frames (not contiguous), and the tower reads it; the tokens are those of each video streamed alone."""

from __future__ import annotations

import torch

from tests.trajvlm.helpers import random_video, tiny_trajtok_config, tiny_trajvlm


def test_a_batch_of_videos_longer_than_a_clip_streams_as_each_alone(tiny_base_path):
    model, proc = tiny_trajvlm(tiny_base_path, trajtok=tiny_trajtok_config(clip_len=4))
    videos = [random_video(num_frames=10, seed=s) for s in (1, 2)]
    pixels = proc(text=["<video>\nA", "<video>\nB"], videos=videos)["pixel_values_videos"]  # (2, 10, 3, 64, 64)
    assert not pixels[:, 0:4].is_contiguous()  # what the tower gets for the first clip of the batch
    with torch.no_grad():
        batch = model.model.encode_videos(pixels)
        alone = [model.model.encode_videos(pixels[i : i + 1]) for i in range(2)]
    for i in range(2):
        torch.testing.assert_close(batch.tokens[i], alone[i].tokens[0], rtol=1e-4, atol=1e-5)
