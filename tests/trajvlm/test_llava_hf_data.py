"""Training data as users bring it: a llava-hf checkpoint's own chat template, LLaVA-Video-178K rows (``<image>``
placeholders, still images, text-only rows), LLaVA-NeXT mixture YAMLs, fps sampling, and ``trajvlm validate``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trajvlm.helpers import random_video, tiny_trajtok_config
from tests.trajvlm.train_fixtures import tiny_trajtok_path  # noqa: F401
from trajvlm.training.data import IGNORE_INDEX, LlavaVideoDataset, load_samples, parse_sampling_strategy, survey

# The chat template of the llava-hf LLaVA-OneVision checkpoints (llava-onevision-qwen2-0.5b-ov-hf), exactly as
# transformers' tests/models/llava_onevision/test_processing_llava_onevision.py holds it. Turns open with
# '<|im_start|>' + role + ' ' (a space) while the generation prompt is '<|im_start|>assistant\n'.
LLAVA_HF_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"  # noqa: E501

# SmolLM2-Instruct's ChatML template (a default system prompt when the conversation has none)
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Meta-Llama-3-Instruct's template: the answer is trimmed and ends with <|eot_id|>
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

NUM_FRAMES = 4
VIDEO_DIR = "liwei_youtube_videos/videos/youtube_video_2024"  # nested relative paths, as in LLaVA-Video-178K


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def llava_hf_base(tmp_path_factory) -> Path:
    """A tiny checkpoint laid out like llava-hf's, written with transformers alone: the model's save_pretrained,
    a tokenizer carrying the exact llava-hf chat template, and llava-hf's processor / preprocessor / template files
    (no TrajVLM processor config)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from trajvlm.training.base import base_config, build_tokenizer

    out = tmp_path_factory.mktemp("llava_hf_base")
    tokenizer = build_tokenizer()
    tokenizer.chat_template = LLAVA_HF_TEMPLATE
    torch.manual_seed(0)
    LlavaOnevisionForConditionalGeneration(base_config(tokenizer)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor_config = {
        "image_token": "<image>",
        "num_image_tokens": 729,
        "processor_class": "LlavaOnevisionProcessor",
        "video_token": "<video>",
        "vision_feature_select_strategy": "full",
    }
    (out / "processor_config.json").write_text(json.dumps(processor_config))
    (out / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": LLAVA_HF_TEMPLATE}))
    return out


def _write_clip(path: Path, seed: int, frames: int = 8, fps: float = 10.0) -> None:
    from trajtok.io.writer import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    video = random_video(num_frames=frames, height=40, width=48, seed=seed).permute(0, 2, 3, 1)  # (T, H, W, C)
    write_video(path, video.numpy(), fps=fps)


def _row(k: int, question: str, answer: str, **media) -> dict:
    return {
        "id": f"row{k}",
        **media,
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
    }


@pytest.fixture(scope="module")
def video178k(tmp_path_factory) -> Path:
    """LLaVA-Video-178K-style rows: ``<image>`` marks the video; a two-turn row, a still image, a text-only row."""
    from PIL import Image

    root = tmp_path_factory.mktemp("video178k")
    for k in range(3):
        _write_clip(root / VIDEO_DIR / f"clip{k}.mp4", seed=k)
    image = random_video(num_frames=1, height=40, width=48, seed=9)[0].permute(1, 2, 0).numpy()  # (H, W, C)
    Image.fromarray(image).save(root / "still.png")
    rows = [
        _row(0, "<image>\nWhat colour is the largest object?", "Red.", video=f"{VIDEO_DIR}/clip0.mp4"),
        {
            "id": "row1",
            "video": f"{VIDEO_DIR}/clip1.mp4",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe the video in detail."},
                {"from": "gpt", "value": "Three blocks move over a dark background."},
                {"from": "human", "value": "How many blocks?"},
                {"from": "gpt", "value": "three"},
            ],
        },
        _row(2, "<image>\nIs the scene still?", "No, the blocks move.", image="still.png"),
        _row(3, "What is two plus two?", "four", video=None),
        _row(4, "<image>\nWhich side does the block leave through?", "the left", video=f"{VIDEO_DIR}/clip2.mp4"),
    ]
    rows[3].pop("video")
    (root / "llava_video_178k.json").write_text(json.dumps(rows))
    return root


def _answers(row: dict) -> list[str]:
    return [t["value"] for t in row["conversations"] if t["from"] == "gpt"]


def _supervised_runs(item: dict) -> list[list[int]]:
    """The contiguous runs of trained tokens of one item."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(item["input_ids"].tolist(), item["labels"].tolist(), strict=True):
        trained = label != IGNORE_INDEX
        if trained:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(label)
        previous = trained
    return runs


def _processor(base: Path, template: str | None = None, **kwargs):
    """The base's processor synced to a pool-connector model config; ``template`` replaces its chat template."""
    from transformers import AutoConfig

    from trajvlm.processing import TrajVLMProcessor

    processor = TrajVLMProcessor.from_pretrained(base, **kwargs).for_model(AutoConfig.from_pretrained(base))
    if template is not None:
        processor.chat_template = template
    return processor


# ---------------------------------------------------------------------------------------------------------------
# label masking with any chat template


def test_llava_hf_template_breaks_prefix_rendering(llava_hf_base):
    """Why masking cannot compare a prompt rendered with the generation prompt against the full conversation."""
    processor = _processor(llava_hf_base)
    assert processor.chat_template == LLAVA_HF_TEMPLATE
    user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}
    answer = {"role": "assistant", "content": [{"type": "text", "text": "A."}]}
    tok = processor.tokenizer
    prompt = tok.apply_chat_template(
        [user], tokenize=False, add_generation_prompt=True, chat_template=LLAVA_HF_TEMPLATE
    )
    full = tok.apply_chat_template([user, answer], tokenize=False, chat_template=LLAVA_HF_TEMPLATE)
    assert full == "<|im_start|>user <video>\nQ?<|im_end|><|im_start|>assistant \nA.<|im_end|>"
    assert not full.startswith(prompt)


@pytest.mark.parametrize("template", ["llava_hf", "smollm2", "llama3"])
def test_only_answers_and_their_end_token_are_trained(llava_hf_base, video178k, template):
    from transformers import AutoTokenizer

    from trajvlm.processing import TrajVLMProcessor

    tokenizer = AutoTokenizer.from_pretrained(llava_hf_base)
    text, end = {"llava_hf": (LLAVA_HF_TEMPLATE, "<|im_end|>"), "smollm2": (SMOLLM2_TEMPLATE, "<|im_end|>")}.get(
        template, (LLAMA3_TEMPLATE, "<|eot_id|>")
    )
    if template == "llama3":
        tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS}, replace_extra_special_tokens=False)
        tokenizer.bos_token = "<|begin_of_text|>"
    processor = TrajVLMProcessor(tokenizer=tokenizer, chat_template=text, image_size=64, patch_size=8, num_frames=4)
    data = video178k / "llava_video_178k.json"
    ds = LlavaVideoDataset(data, video178k, processor, num_frames=NUM_FRAMES)
    assert ds.string_content == (template != "llava_hf")
    rows = json.loads(data.read_text())
    for i, row in enumerate(rows):
        item = ds.build(i)
        runs = _supervised_runs(item)
        expected = (
            [a.strip() + end for a in _answers(row)] if template == "llama3" else [a + end for a in _answers(row)]
        )
        assert [tokenizer.decode(run) for run in runs] == expected, (template, row["id"])
        rendered = tokenizer.decode(item["input_ids"])
        if template == "llava_hf":
            assert "<|im_start|>assistant \n" in rendered  # the template as shipped, with its space
        if template == "smollm2":
            assert "named SmolLM" in rendered  # the template's default system prompt is there, never trained


def _char_tokenizer():
    """A character-level pure-Python (slow) tokenizer: it gives no offset mapping, so masking tokenizes the prompt
    and answer pieces apart."""
    from transformers import PreTrainedTokenizer

    class CharTokenizer(PreTrainedTokenizer):
        def __init__(self, **kwargs):
            self.chars = [chr(c) for c in range(32, 127)] + ["\n"]
            self.vocab = {c: i for i, c in enumerate(self.chars)}
            super().__init__(**kwargs)

        @property
        def vocab_size(self):
            return len(self.chars)

        def get_vocab(self):
            return {**self.vocab, **self.added_tokens_encoder}

        def _tokenize(self, text, **kwargs):
            return list(text)

        def _convert_token_to_id(self, token):
            return self.vocab.get(token, 0)

        def _convert_id_to_token(self, index):
            return self.chars[index]

        def convert_tokens_to_string(self, tokens):
            return "".join(tokens)

    specials = ["<|im_start|>", "<image>", "<video>"]
    return CharTokenizer(eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=specials)


def test_a_slow_tokenizer_masks_the_same_way(video178k):
    from trajvlm.processing import TrajVLMProcessor

    tokenizer = _char_tokenizer()
    assert not tokenizer.is_fast
    processor = TrajVLMProcessor(
        tokenizer=tokenizer, chat_template=LLAVA_HF_TEMPLATE, image_size=64, patch_size=8, num_frames=NUM_FRAMES
    )
    data = video178k / "llava_video_178k.json"
    ds = LlavaVideoDataset(data, video178k, processor, num_frames=NUM_FRAMES)
    for i, row in enumerate(json.loads(data.read_text())):
        item = ds.build(i)
        assert [tokenizer.decode(run) for run in _supervised_runs(item)] == [a + "<|im_end|>" for a in _answers(row)]


def test_generation_tags_agree_with_the_masks(llava_hf_base, video178k):
    """The llava-hf template marks answers with {% generation %}: transformers' own assistant mask (characters of
    '\\n' + answer) covers every token this dataset trains but the end-of-turn token."""
    processor = _processor(llava_hf_base)
    ds = LlavaVideoDataset(video178k / "llava_video_178k.json", video178k, processor, num_frames=NUM_FRAMES)
    tok = processor.tokenizer
    item = ds.build(1)  # two turns
    messages = ds.messages(ds.samples[1], 1)
    out = tok.apply_chat_template(
        messages, chat_template=LLAVA_HF_TEMPLATE, return_assistant_tokens_mask=True, return_dict=True
    )
    video_id = processor.video_token_id
    ids = [t for t in out["input_ids"] if t != video_id]
    mask = [m for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if t != video_id]
    ours = [
        (t, lab != IGNORE_INDEX) for t, lab in zip(item["input_ids"].tolist(), item["labels"].tolist(), strict=True)
    ]
    ours = [(t, trained) for t, trained in ours if t != video_id]
    assert [t for t, _ in ours] == ids
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    for (token, trained), theirs in zip(ours, mask, strict=True):
        if trained and token != end_id:
            assert theirs == 1
        if theirs == 1 and tok.decode([token]) != "\n":
            assert trained


# ---------------------------------------------------------------------------------------------------------------
# LLaVA-Video-178K rows


def test_video178k_rows_image_placeholders_images_and_text(llava_hf_base, video178k, caplog):
    processor = _processor(llava_hf_base)
    ds = LlavaVideoDataset(video178k / "llava_video_178k.json", video178k, processor, num_frames=NUM_FRAMES)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    size = processor.image_size
    video, image, text = ds.build(0), ds.build(2), ds.build(3)
    assert int((video["input_ids"] == processor.video_token_id).sum()) == processor.num_video_tokens(NUM_FRAMES)
    assert video["pixel_values_videos"].shape == (1, NUM_FRAMES, 3, size, size)
    assert image["pixel_values_videos"].shape == (1, 1, 3, size, size)  # a still image is a one-frame video
    assert int((image["input_ids"] == processor.video_token_id).sum()) == processor.num_video_tokens(1)
    assert "pixel_values_videos" not in text and not bool((text["input_ids"] == processor.video_token_id).any())
    for item in (video, image, text):
        assert not bool((item["input_ids"] == image_id).any())  # no literal <image> left behind
    rendered = processor.tokenizer.decode(video["input_ids"])
    assert rendered.startswith("<|im_start|>user <video>") and "<video>\nWhat colour" in rendered
    assert rendered.endswith("<|im_start|>assistant \nRed.<|im_end|>")


def test_missing_files_and_stray_placeholders_are_skipped_and_counted(llava_hf_base, video178k, tmp_path, caplog):
    rows = json.loads((video178k / "llava_video_178k.json").read_text())
    rows[0]["video"] = f"{VIDEO_DIR}/gone.mp4"
    rows[2]["image"] = "gone.png"
    rows[3]["conversations"][0]["value"] = "<image>\nWhat is two plus two?"  # no file: never trained text-only
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(rows))
    ds = LlavaVideoDataset(data, video178k, _processor(llava_hf_base), num_frames=NUM_FRAMES, max_skip_fraction=0.8)
    with caplog.at_level(logging.WARNING, logger="trajvlm.training.data"):
        assert [ds[i]["id"] for i in range(len(rows))] == ["row1", "row1", "row4", "row4", "row4"]
    assert ds.num_skipped == 3
    assert "video not found" in ds.failed[0] and str(video178k / VIDEO_DIR / "gone.mp4") in caplog.text
    assert "image not found" in ds.failed[2] and str(video178k / "gone.png") in caplog.text
    assert "placeholder but no 'video' or 'image'" in ds.failed[3]


# ---------------------------------------------------------------------------------------------------------------
# LLaVA-NeXT mixtures


def test_sampling_strategies_follow_llava_next():
    assert parse_sampling_strategy("all", 7) == ("all", 7)
    assert parse_sampling_strategy("first:50%", 7) == ("first", 4)  # ceil(3.5)
    assert parse_sampling_strategy("end:2", 7) == ("end", 2)
    assert parse_sampling_strategy("random:10%", 7) == ("random", 1)
    assert parse_sampling_strategy("first:100", 7) == ("first", 7)
    for bad in ("firts:10%", "first", "first:0", "end:-3", "random:150%", "all:3", "first:x%"):
        with pytest.raises(ValueError, match="sampling_strategy"):
            parse_sampling_strategy(bad, 7)


def _mixture(tmp_path: Path, video178k: Path) -> Path:
    """A mixture YAML beside a JSON and a JSONL file: the JSON by percentage, the JSONL from its end."""
    rows = json.loads((video178k / "llava_video_178k.json").read_text())
    (tmp_path / "parts").mkdir(exist_ok=True)
    (tmp_path / "parts" / "a.json").write_text(json.dumps(rows[:3]))
    (tmp_path / "parts" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    path = tmp_path / "mix.yaml"
    path.write_text(
        "datasets:\n"
        '  - json_path: parts/a.json\n    sampling_strategy: "first:50%"\n'
        f"  - json_path: {tmp_path / 'parts' / 'b.jsonl'}\n    sampling_strategy: end:1\n"
        "  - json_path: parts/a.json\n    sampling_strategy: random:2\n"
    )
    return path


def test_mixture_yaml(tmp_path, video178k):
    path = _mixture(tmp_path, video178k)
    ids = [s["id"] for s in load_samples(path, seed=3)]
    assert ids[:3] == ["row0", "row1", "row4"]  # first:50% of 3 = 2; end:1 of the JSONL's two rows
    assert len(ids) == 5 and set(ids[3:]) <= {"row0", "row1", "row2"} and len(set(ids[3:])) == 2
    assert [s["id"] for s in load_samples(path, seed=3)] == ids  # the same picks in every process
    cases = {
        "datasets:\n  - sampling_strategy: all\n": "needs a json_path",
        "datasets:\n  - json_path: parts/a.json\n    sampling_strategy: top:5\n": "'top:5' is not one of",
        "datasets:\n  - json_path: parts/nope.json\n": "json_path not found",
        "datasets:\n  - json_path: parts/a.txt\n": "must be a .json or .jsonl",
        "data: []\n": "must hold 'datasets:'",
    }
    for text, needle in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises((ValueError, FileNotFoundError), match=needle) as err:
            load_samples(bad)
        assert "bad.yaml" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# fps + max_frames


def test_fps_with_a_frame_cap(llava_hf_base, tmp_path):
    """LLaVA-Video's video_fps + frames_upbound: 2 fps over a 3.2 s clip gives 7 frames, capped to 5; the metadata
    estimate (validate) matches the decoded count."""
    from trajtok.io.video import probe_video
    from trajvlm.training.data import planned_frames

    _write_clip(tmp_path / "long.mp4", seed=1, frames=32, fps=10.0)
    (tmp_path / "rows.json").write_text(json.dumps([_row(0, "<image>\nWhat?", "A", video="long.mp4")]))
    processor = _processor(llava_hf_base)
    info = probe_video(tmp_path / "long.mp4")
    for fps, cap, want in ((2.0, None, 7), (2.0, 5, 5), (100.0, 12, 12)):
        ds = LlavaVideoDataset(tmp_path / "rows.json", tmp_path, processor, fps=fps, max_frames=cap)
        item = ds.build(0)
        assert item["pixel_values_videos"].shape[1] == want
        assert ds.measure(0)["frames"] == [want] == [planned_frames(info, num_frames=None, fps=fps, max_frames=cap)]
        assert ds.measure(0)["tokens"] == len(item["input_ids"])


def test_train_config_sampling_rules(llava_hf_base, video178k):
    from trajvlm.training.config import TrainConfig

    base = {"base_model": str(llava_hf_base), "train_json": "t.json"}
    assert TrainConfig(**base, fps=1, max_frames=64).max_frames == 64
    bad = [
        ({"fps": 1.0, "num_frames": 8}, "not both"),
        ({"max_frames": 64}, "set fps too"),
        ({"fps": 1.0, "per_device_batch_size": 2}, "per_device_batch_size: 1"),
        ({"fps": 0}, "fps must be a positive number"),
        ({"fps": 1.0, "max_frames": 0}, "max_frames must be a positive integer"),
    ]
    for values, needle in bad:
        with pytest.raises(ValueError, match=needle):
            TrainConfig(**base, **values)


# ---------------------------------------------------------------------------------------------------------------
# trajvlm validate


def _preset(tmp_path: Path, **values) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


def _pool_values(base: Path, data: Path, video_root: Path, tmp_path: Path, **values) -> dict:
    """A preset's values training ``base``'s pool connector on ``data`` (what ``trajvlm validate`` reads)."""
    common = {"connector": "pool", "train_json": str(data), "video_root": str(video_root), "num_frames": NUM_FRAMES}
    return {"base_model": str(base), **common, **values, "output_dir": str(tmp_path / "out")}


def test_validate_reports_tokens_and_what_training_would_skip(llava_hf_base, video178k, tmp_path, capsys):
    from trajvlm.cli import main

    data = video178k / "llava_video_178k.json"
    processor = _processor(llava_hf_base)
    processor.num_frames = NUM_FRAMES
    ds = LlavaVideoDataset(data, video178k, processor, num_frames=NUM_FRAMES)
    lengths = sorted(len(ds.build(i)["input_ids"]) for i in range(len(ds)))
    limit = lengths[2]  # the longest rows are over it
    over = sum(n > limit for n in lengths)
    assert over >= 1
    values = _pool_values(llava_hf_base, data, video178k, tmp_path, max_length=limit, max_skip_fraction=0.5)
    assert main(["validate", str(_preset(tmp_path, **values)), "--samples", "0"]) == 0
    out = capsys.readouterr().out
    assert f"tokens per sample: min {lengths[0]}, median {lengths[2]}, max {lengths[-1]} (max_length {limit})" in out
    assert f"over max_length (skipped in training): {over}" in out and f"samples ok: {5 - over} of 5" in out
    assert "image 1" in out and "text 1" in out and "video 3" in out
    # frames decoded instead of read from the metadata: the same numbers
    assert main(["validate", str(_preset(tmp_path, **values)), "--samples", "0", "--decode"]) == 0
    decoded = capsys.readouterr().out
    assert f"tokens per sample: min {lengths[0]}, median {lengths[2]}, max {lengths[-1]}" in decoded
    assert f"over max_length (skipped in training): {over}" in decoded

    # more skipped than max_skip_fraction allows: exit 2 with the reason, after the report
    assert main(["validate", str(_preset(tmp_path, **{**values, "max_skip_fraction": 0.1}))]) == 2
    captured = capsys.readouterr()
    assert f"over max_length (skipped in training): {over}" in captured.out
    assert "error:" in captured.err and "max_skip_fraction=0.1" in captured.err

    # every sample too long
    assert main(["validate", str(_preset(tmp_path, **{**values, "max_length": 8}))]) == 2
    assert "every one of the 5 samples checked" in capsys.readouterr().err


def test_validate_groups_failures_with_example_paths(llava_hf_base, video178k, tmp_path, capsys):
    from trajvlm.cli import main

    rows = json.loads((video178k / "llava_video_178k.json").read_text())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    rows[0]["video"] = str(broken)
    rows[4]["video"] = str(broken)
    rows[1]["video"] = f"{VIDEO_DIR}/gone.mp4"
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(rows))
    values = _pool_values(llava_hf_base, data, video178k, tmp_path, max_skip_fraction=0.6)
    assert main(["validate", "--config", str(_preset(tmp_path, **values))]) == 0
    out = capsys.readouterr().out
    assert "failed: 3" in out and "samples ok: 2 of 5" in out
    assert "2 x cannot decode <path>" in out and str(broken) in out
    assert "1 x video not found: <path>" in out and str(video178k / VIDEO_DIR / "gone.mp4") in out

    rows = [dict(r, video=str(broken)) for r in rows if "video" in r]
    data.write_text(json.dumps(rows))
    assert main(["validate", str(_preset(tmp_path, **{**values, "max_skip_fraction": 1.0}))]) == 2
    assert "every one of the 3 samples checked" in capsys.readouterr().err


def test_validate_counts_pool_tokens_at_real_geometry(llava_hf_base, video178k):
    """Pool at 384 px / patch 14 and 64 frames is 64 x 14^2 + 1 = 12,545 tokens per video: over max_length 8192."""
    processor = _processor(llava_hf_base)
    processor.image_size, processor.patch_size = 384, 14
    ds = LlavaVideoDataset(video178k / "llava_video_178k.json", video178k, processor, num_frames=64, max_length=8192)
    report = survey(ds, limit=None)
    assert processor.num_video_tokens(64) == 12545
    assert len(report.too_long) == 3 and min(n for _, n in report.too_long) > 12545  # every video row
    assert report.num_ok == 2 and report.problem() is not None  # 3 of 5 skipped: training would stop


# ---------------------------------------------------------------------------------------------------------------
# training from a llava-hf checkpoint on these formats


@pytest.mark.parametrize(
    ("stage", "connector", "source"),
    [
        ("align", "pool", "json"),
        ("finetune", "trajtok", "mixture"),
        ("align", "trajtok", "json"),
        ("finetune", "pool", "mixture"),
    ],
)
def test_train_two_steps_from_a_llava_hf_checkpoint(
    llava_hf_base,
    video178k,
    tmp_path,
    tiny_trajtok_path,  # noqa: F811
    stage,
    connector,
    source,
):
    from trajvlm.training.config import TrainConfig
    from trajvlm.training.trainer import train

    data = _mixture(tmp_path, video178k) if source == "mixture" else video178k / "llava_video_178k.json"
    cfg = TrainConfig(
        base_model=str(llava_hf_base),
        connector=connector,
        trajtok=str(tiny_trajtok_path) if connector == "trajtok" else None,
        stage=stage,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        train_json=str(data),
        video_root=str(video178k),
        num_frames=NUM_FRAMES,
        max_steps=2,
        warmup_ratio=0.0,
        learning_rate=1e-2,
        save_steps=10,
        logging_steps=1,
        output_dir=str(tmp_path / "run"),
        report_to=["jsonl"],
        export_final=False,
    )
    out = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses)
    saved = out / ("adapter" if stage == "finetune" else "final")
    assert (saved / "trajvlm_train_config.json").is_file()
    assert np.isfinite(losses).all()


@pytest.mark.parametrize("connector", ["pool", "trajtok"])
def test_a_still_image_trains_as_a_one_frame_video(llava_hf_base, video178k, connector):
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.training.data import DataCollator

    torch.manual_seed(0)
    kwargs = {"trajtok": tiny_trajtok_config()} if connector == "trajtok" else {}
    model = TrajVLMForConditionalGeneration.from_llava(llava_hf_base, connector=connector, **kwargs)
    processor = _processor(llava_hf_base).for_model(model.config)
    ds = LlavaVideoDataset(video178k / "llava_video_178k.json", video178k, processor, num_frames=NUM_FRAMES)
    batch = DataCollator(processor.tokenizer)([ds.build(2)])  # the still image
    assert batch["pixel_values_videos"].shape[1] == 1
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert any(
        p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.model.multi_modal_projector.parameters()
    )
