"""Checks every connector of the registry must pass, shared by the per-connector test files.

Each takes the tiny base checkpoint and the connector's ``connector_kwargs``: bad feature shapes raise a clear
error, a save / load round trip through ``from_pretrained`` keeps weights and logits, a padded batch generates with
the KV cache exactly as the no-cache greedy loop, and a 2-step LoRA training run writes loadable checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from tests.trajvlm.helpers import random_video
from tests.trajvlm.train_fixtures import make_config

TEXTS = ["<video>\nDescribe the video.", "<video>\nHow many objects?"]


def build(base: Path, connector: str, kwargs: dict | None = None, seed: int = 0, **config):
    """(model, processor) on the tiny base with ``connector``, in eval mode, the processor synced."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    torch.manual_seed(seed)
    model = TrajVLMForConditionalGeneration.from_llava(
        base, connector=connector, connector_kwargs=dict(kwargs or {}), **config
    ).eval()
    return model, TrajVLMProcessor.from_pretrained(base).for_model(model.config)


def batch(proc, num_frames: int = 6, side: str = "left", seeds=(0, 1)):
    proc.tokenizer.padding_side = side
    videos = [random_video(num_frames=num_frames, seed=s) for s in seeds]
    return proc(text=TEXTS[: len(seeds)], videos=videos)


def check_shape_errors(model) -> None:
    """Features that do not match (V*T, h*w, D) raise a ValueError naming the connector and the expected shape."""
    conn = model.model.connector
    grid, d = conn.grid, conn.hidden
    pixels = torch.zeros(2, 3, 3, 8, 8)
    with pytest.raises(ValueError, match=rf"{conn.name} connector: features of shape \(5, {grid * grid}, {d}\)"):
        conn(torch.zeros(5, grid * grid, d), pixels, 3)
    with pytest.raises(ValueError, match="expected \\(V\\*T, h\\*w, D\\)"):
        conn(torch.zeros(6, grid * grid + 1, d), pixels, 3)


def check_round_trip(model, proc, tmp_path: Path) -> None:
    """save_pretrained -> Auto from_pretrained: same class, same connector, equal state and logits."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["connector"] == model.config.connector
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is TrajVLMForConditionalGeneration
    assert type(loaded.model.connector) is type(model.model.connector)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    inputs = batch(proc)
    with torch.no_grad():
        ref, out = model(**inputs), loaded(**inputs)
    assert out.visual_token_counts == ref.visual_token_counts
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=0)


def check_generate_with_cache(model, proc, steps: int = 3) -> list[int]:
    """Cached ``generate`` on a left-padded batch equals, row by row, the greedy loop re-running the full forward on
    that row alone (no padding, so the reference reads each row's true last position even when the videos took
    different numbers of tokens: an unpadded batch is re-padded on the right by ``forward``)."""
    inputs = batch(proc)
    with torch.no_grad():
        new = model.generate(**inputs, max_new_tokens=steps, do_sample=False)
        counts = list(model.last_visual_token_counts)
        for row, seed in enumerate((0, 1)):
            single = proc(text=[TEXTS[row]], videos=[random_video(num_frames=6, seed=seed)])
            ids, mask = single["input_ids"], single["attention_mask"]
            for _ in range(steps):
                logits = model(
                    input_ids=ids,
                    attention_mask=mask,
                    pixel_values_videos=single["pixel_values_videos"],
                    use_cache=False,
                ).logits[:, -1]
                ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            assert model.last_visual_token_counts == [counts[row]]
            assert torch.equal(new[row], ids[0, -steps:]), f"row {row} (visual tokens {counts})"
    assert new.shape == (2, steps)
    return counts


def check_two_step_training(base: Path, data: Path, out: Path, connector: str, kwargs: dict | None = None) -> None:
    """``trajvlm train`` recipe, LoRA stage, 2 steps: checkpoints each step, loss finite, final model loads."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.training.trainer import train

    cfg = make_config(base, data, out, connector=connector, connector_kwargs=dict(kwargs or {}), max_steps=2)
    train(cfg)
    assert (out / "checkpoint-1").is_dir() and (out / "checkpoint-2").is_dir()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(v)) for v in losses)
    final = TrajVLMForConditionalGeneration.from_pretrained(out / "final")
    assert final.config.connector == connector
