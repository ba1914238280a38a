"""LlavaVideoDataset (label masking, skipping bad videos) and DataCollator (padding on both sides)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tests.trajvlm.train_fixtures import NUM_FRAMES, qa_sample, train_data, write_qa_set  # noqa: F401
from trajvlm.training.data import IGNORE_INDEX, DataCollator, LlavaVideoDataset


@pytest.fixture(scope="module")
def processor(tiny_base_path):
    from trajvlm.processing import TrajVLMProcessor

    return TrajVLMProcessor.from_pretrained(tiny_base_path)


def test_only_answers_and_their_end_token_are_supervised(processor, train_data):  # noqa: F811
    ds = LlavaVideoDataset(train_data / "qa.json", train_data, processor, num_frames=NUM_FRAMES)
    tok = processor.tokenizer
    single, multi = ds[0], ds[1]
    for item in (single, multi):
        supervised = item["labels"] != IGNORE_INDEX
        assert torch.equal(item["labels"][supervised], item["input_ids"][supervised])
        n_video = int((item["input_ids"] == processor.video_token_id).sum())
        assert n_video == processor.num_video_tokens(NUM_FRAMES)
        assert not bool(supervised[item["input_ids"] == processor.video_token_id].any())
        assert item["pixel_values_videos"].shape == (1, NUM_FRAMES, 3, processor.image_size, processor.image_size)
    assert tok.decode(single["input_ids"][single["labels"] != IGNORE_INDEX]) == "A<|im_end|>"
    # two assistant turns: both answers (each with its end token) and nothing of the prompts or the user turns
    labels = multi["labels"]
    spans = []
    for k in range(len(labels)):
        if labels[k] != IGNORE_INDEX and (k == 0 or labels[k - 1] == IGNORE_INDEX):
            spans.append(k)
    assert len(spans) == 2
    assert tok.decode(multi["input_ids"][labels != IGNORE_INDEX]) == "A red circle moves left.<|im_end|>red<|im_end|>"
    # the supervised text follows the chat template's assistant header
    text = tok.decode(multi["input_ids"])
    assert text.count("<|im_start|>assistant\n") == 2 and text.startswith("<|im_start|>user\n<video>")


def test_placeholder_added_when_missing_and_count_checked(processor, tmp_path):
    sample = qa_sample(0)
    sample["conversations"][0]["value"] = "How many objects?"
    bad = qa_sample(1)
    bad["conversations"][0]["value"] = "<video><video>\nHow many objects?"
    write_qa_set(tmp_path, [sample, bad], num_videos=2)
    ds = LlavaVideoDataset(tmp_path / "qa.json", tmp_path, processor, num_frames=NUM_FRAMES, max_skip_fraction=1.0)
    item = ds[0]
    assert processor.tokenizer.decode(item["input_ids"]).startswith("<|im_start|>user\n<video>")
    assert ds[1]["id"] == sample["id"]  # the two-placeholder sample is skipped, the next good one returned
    assert ds.num_skipped == 1 and "placeholders" in ds.failed[1]


def test_missing_and_corrupt_videos_are_skipped_counted_and_logged(processor, tmp_path, caplog):
    samples = [qa_sample(0), qa_sample(5), qa_sample(1), qa_sample(2)]  # vid5.mp4 does not exist
    write_qa_set(tmp_path, samples, num_videos=3)
    (tmp_path / "vid1.mp4").write_bytes(b"\x00\x01not a video" * 100)  # corrupt
    ds = LlavaVideoDataset(tmp_path / "qa.json", tmp_path, processor, num_frames=NUM_FRAMES, max_skip_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="trajvlm.training.data"):
        item = ds[1]  # missing -> corrupt -> the next good sample
    assert item["id"] == "vid2_q0"
    assert ds.num_skipped == 2
    assert "video not found" in ds.failed[1] and str(tmp_path / "vid5.mp4") in ds.failed[1]
    assert "cannot decode" in ds.failed[2] and str(tmp_path / "vid1.mp4") in ds.failed[2]
    assert str(tmp_path / "vid5.mp4") in caplog.text and str(tmp_path / "vid1.mp4") in caplog.text
    assert ds[2]["id"] == "vid2_q0" and ds.num_skipped == 2  # a failed index is not decoded again

    strict = LlavaVideoDataset(tmp_path / "qa.json", tmp_path, processor, num_frames=NUM_FRAMES, max_skip_fraction=0.25)
    assert strict[0]["id"] == "vid0_q0"
    with pytest.raises(RuntimeError, match="max_skip_fraction=0.25"):
        strict[1]  # the missing video (1 of 4 is allowed), then the corrupt one: 2 of 4 is too many
    assert strict.num_skipped == 2


def test_too_long_samples_are_skipped(processor, train_data):  # noqa: F811
    ds = LlavaVideoDataset(
        train_data / "qa.json", train_data, processor, num_frames=NUM_FRAMES, max_length=10, max_skip_fraction=0.5
    )
    with pytest.raises(RuntimeError, match="more than max_skip_fraction"):
        for i in range(len(ds)):
            ds[i]
    assert all("max_length=10" in reason for reason in ds.failed.values())


@pytest.mark.parametrize("side", ["left", "right"])
def test_collator_pads_on_the_tokenizer_side(processor, train_data, side):  # noqa: F811
    ds = LlavaVideoDataset(train_data / "qa.json", train_data, processor, num_frames=NUM_FRAMES)
    tok = processor.tokenizer
    old = tok.padding_side
    tok.padding_side = side
    try:
        short, long = sorted((ds[0], ds[1]), key=lambda item: len(item["input_ids"]))
        batch = DataCollator(tok)([short, long])
    finally:
        tok.padding_side = old
    n_short, n_long = len(short["input_ids"]), len(long["input_ids"])
    assert n_short < n_long
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, n_long)
    real = slice(n_long - n_short, n_long) if side == "left" else slice(0, n_short)
    pad = slice(0, n_long - n_short) if side == "left" else slice(n_short, n_long)
    assert torch.equal(batch["input_ids"][0, real], short["input_ids"])
    assert torch.equal(batch["labels"][0, real], short["labels"])
    assert bool((batch["input_ids"][0, pad] == tok.pad_token_id).all())
    assert bool((batch["labels"][0, pad] == IGNORE_INDEX).all())
    assert batch["attention_mask"][0].sum() == n_short and bool(batch["attention_mask"][0, real].all())
    assert bool(batch["attention_mask"][1].all())
    assert batch["pixel_values_videos"].shape == (2, NUM_FRAMES, 3, processor.image_size, processor.image_size)
    assert torch.equal(batch["pixel_values_videos"][1], long["pixel_values_videos"][0])


def test_collator_rejects_mixed_frame_counts(processor):
    a = {
        "input_ids": torch.tensor([1, 2]),
        "labels": torch.tensor([1, 2]),
        "pixel_values_videos": torch.zeros(1, 4, 3, 8, 8),
    }
    b = {"input_ids": torch.tensor([1]), "labels": torch.tensor([1]), "pixel_values_videos": torch.zeros(1, 2, 3, 8, 8)}
    with pytest.raises(ValueError, match="same number of frames"):
        DataCollator(processor.tokenizer)([a, b])


def test_jsonl_and_missing_file(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        LlavaVideoDataset(tmp_path / "nope.json", tmp_path, processor)
    write_qa_set(tmp_path, [], num_videos=1)
    (tmp_path / "qa.jsonl").write_text(json.dumps(qa_sample(0)) + "\n")
    ds = LlavaVideoDataset(tmp_path / "qa.jsonl", tmp_path, processor, num_frames=NUM_FRAMES)
    assert len(ds) == 1 and ds[0]["id"] == "vid0_q0"


PARTS_ONLY_TEMPLATE = (  # llava-hf style: message content must be a list of {"type": ...} parts
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_parts_only_chat_template_gives_the_same_tokens(processor, train_data):  # noqa: F811
    plain = LlavaVideoDataset(train_data / "qa.json", train_data, processor, num_frames=NUM_FRAMES)
    old = processor.chat_template  # a llava-hf checkpoint's template is the processor's (chat_template.json)
    processor.chat_template = PARTS_ONLY_TEMPLATE
    try:
        parts = LlavaVideoDataset(train_data / "qa.json", train_data, processor, num_frames=NUM_FRAMES)
        assert plain.string_content and not parts.string_content
        for i in (0, 1):
            a, b = plain[i], parts[i]
            assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    finally:
        processor.chat_template = old
