"""Fixtures and helpers for the training tests: a tiny LLaVA-format video QA set, a tiny TrajTok, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.trajvlm.helpers import random_video

NUM_FRAMES = 4  # frames per video in every training test (the tiny base samples 8 by default)


def write_qa_set(root: Path, samples: list[dict], num_videos: int = 3, seed: int = 0) -> Path:
    """Write ``num_videos`` seeded H.264 clips ``vid{k}.mp4`` (8 frames, 40x48) and ``qa.json`` under ``root``."""
    from trajtok.io.writer import write_video

    root.mkdir(parents=True, exist_ok=True)
    for k in range(num_videos):
        frames = random_video(num_frames=8, height=40, width=48, seed=seed + k).permute(0, 2, 3, 1)  # (T, H, W, C)
        write_video(root / f"vid{k}.mp4", frames.numpy())
    path = root / "qa.json"
    path.write_text(json.dumps(samples))
    return path


def qa_sample(k: int, answer: str = "B") -> dict:
    """One single-turn multiple-choice sample about ``vid{k}.mp4``."""
    question = "How many different objects appear in the video?\nA. 1\nB. 2\nC. 3\nD. 4"
    return {
        "id": f"vid{k}_q0",
        "video": f"vid{k}.mp4",
        "conversations": [
            {"from": "human", "value": f"<video>\n{question}\nAnswer with the option's letter."},
            {"from": "gpt", "value": answer},
        ],
    }


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> Path:
    """A folder with 3 clips and ``qa.json``: 6 samples (two per clip, one of them two-turn)."""
    root = tmp_path_factory.mktemp("train_data")
    samples = []
    for k in range(3):
        samples.append(qa_sample(k, "ABC"[k]))
        samples.append(
            {
                "id": f"vid{k}_chat",
                "video": f"vid{k}.mp4",
                "conversations": [
                    {"from": "human", "value": "<video>\nDescribe the video."},
                    {"from": "gpt", "value": "A red circle moves left."},
                    {"from": "human", "value": "What colour was the circle?"},
                    {"from": "gpt", "value": "red"},
                ],
            }
        )
    write_qa_set(root, samples)
    return root


@pytest.fixture(scope="session")
def tiny_trajtok_path(tmp_path_factory) -> Path:
    """A saved tiny random TrajTok (the connector's pretrained checkpoint in the training tests)."""
    pytest.importorskip("trajtok.core.modeling")
    from trajtok import TrajTok, TrajTokConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trajtok") / "tiny"
    TrajTok(TrajTokConfig.tiny()).save_pretrained(path)
    return path


def make_config(base: Path, data: Path, out: Path, **overrides):
    """A tiny ``TrainConfig``: LoRA r=4, 4 frames, 2 steps, no warm-up, jsonl metrics."""
    from trajvlm.training.config import TrainConfig

    values = {
        "base_model": str(base),
        "connector": "pool",
        "stage": "finetune",
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "train_json": str(data / "qa.json"),
        "video_root": str(data),
        "num_frames": NUM_FRAMES,
        "max_steps": 2,
        "warmup_ratio": 0.0,
        "learning_rate": 1e-2,
        "save_steps": 1,
        "save_total_limit": None,
        "logging_steps": 1,
        "output_dir": str(out),
        "report_to": ["jsonl"],
    }
    values.update(overrides)
    return TrainConfig(**values)


def tiny_batch(processor, data: Path, indices=(0, 1)):
    """A collated batch of ``qa.json`` samples for direct forward / backward checks."""
    from trajvlm.training.data import DataCollator, LlavaVideoDataset

    ds = LlavaVideoDataset(data / "qa.json", data, processor, num_frames=NUM_FRAMES)
    return DataCollator(processor.tokenizer)([ds[i] for i in indices])
