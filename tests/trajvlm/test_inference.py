"""trajvlm.inference: loading, multi-turn chat with streaming, batched generation, log-likelihood, context limits."""

from __future__ import annotations

import pytest
import torch

from tests.trajvlm.helpers import random_video, save_tiny_trajvlm
from trajvlm.inference import (
    ContextLengthError,
    VideoChat,
    build_prompt,
    cut_at_stops,
    generate_batch,
    load_model,
    loglikelihood,
    score_choices,
    score_choices_batch,
    split_generation_kwargs,
)


@pytest.fixture(scope="module")
def saved_trajtok(tiny_base_path, tmp_path_factory):
    """A saved TrajVLM with a tiny trajtok connector (adaptive token count) and a 4-frame processor."""
    return save_tiny_trajvlm(tiny_base_path, tmp_path_factory.mktemp("trajvlm_saved"), num_frames=4)


@pytest.fixture(scope="module")
def trajtok(saved_trajtok):
    return load_model(saved_trajtok, device="cpu")


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    from trajtok.io.writer import write_video

    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    frames = random_video(num_frames=6, height=48, width=48, seed=5).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    return write_video(path, frames, fps=10.0)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found: .*nothing"):
        load_model(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        load_model(tmp_path)


def test_load_model_kinds(tiny_base_path, saved_trajtok, trajtok):
    model, processor = trajtok
    assert model.config.connector == "trajtok" and not model.training
    assert (processor.connector, processor.token_mode, processor.num_frames) == ("trajtok", "adaptive", 4)
    base, base_proc = load_model(tiny_base_path, device="cpu", num_frames=2)
    assert base.config.connector == "pool" and base_proc.connector == "pool" and base_proc.num_frames == 2
    assert base_proc.tokenizer.padding_side == "left"
    pooled, _ = load_model(saved_trajtok, device="cpu", connector="pool")  # swap the connector of a saved model
    assert pooled.config.connector == "pool"


def test_pool_answers_match_upstream_generate(tiny_base_path):
    """With the pool connector the shared path answers exactly like the unmodified llava-hf model."""
    from transformers import LlavaOnevisionForConditionalGeneration

    model, processor = load_model(tiny_base_path, device="cpu", num_frames=2)
    upstream = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_base_path).eval()
    videos = [random_video(num_frames=2, seed=s) for s in (0, 1)]
    prompts = ["Describe the video.", "What moved first in the clip?"]
    ours = generate_batch(
        model, processor, [(v, p, {"max_new_tokens": 4}) for v, p in zip(videos, prompts, strict=True)]
    )
    batch = processor(text=[build_prompt(processor, p, 1) for p in prompts], videos=videos)
    with torch.no_grad():
        out = upstream.generate(**batch, max_new_tokens=4, do_sample=False)[:, batch["input_ids"].shape[1] :]
    assert ours == [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]


def test_chat_multi_turn_streams_and_counts(trajtok, video_file):
    model, processor = trajtok
    chat = VideoChat(model, processor, video=video_file)
    assert chat.frames.shape[0] == 4  # the processor's saved sampling
    pieces: list[str] = []
    first = chat.ask("What happens in the video?", max_new_tokens=6, stream_callback=pieces.append)
    assert "".join(pieces).strip() == first.text
    assert 1 <= first.new_tokens <= 6
    assert first.visual_tokens == sum(model.last_visual_token_counts) > 0
    assert 0 < first.time_to_first_token_s <= first.total_s
    second = chat.ask("And then?", max_new_tokens=4)
    assert second.visual_tokens == first.visual_tokens  # the same video, spliced once, in the first user turn
    assert second.prompt_tokens > first.prompt_tokens + first.new_tokens - 1  # the history is in the prompt
    assert chat.num_turns == 2
    prompt = processor.apply_chat_template(chat.messages, add_generation_prompt=False)
    assert prompt.count(processor.video_token) == 1
    chat.reset()
    assert chat.messages == [] and chat.frames is not None
    again = chat.ask("What happens in the video?", max_new_tokens=6)
    assert again.text == first.text  # greedy and stateless after reset


def test_text_only_chat(trajtok):
    model, processor = trajtok
    answer = VideoChat(model, processor).ask("Hello", max_new_tokens=3)
    assert answer.visual_tokens == 0 and answer.new_tokens >= 1


def test_generate_batch_equals_one_by_one(trajtok):
    """Left-padded batches (different prompt lengths, different visual token counts, a text-only row) give the
    same greedy answers as single requests."""
    model, processor = trajtok
    gen = {"max_new_tokens": 5, "temperature": 0}
    requests = [
        (random_video(num_frames=4, seed=0), "Describe the video in detail please.", gen),
        (random_video(num_frames=4, seed=1), "What?", gen),
        (None, "Hi", gen),
    ]
    batched = generate_batch(model, processor, requests)
    counts = list(model.last_visual_token_counts)
    assert len(counts) == 2 and counts[0] != counts[1], "the videos should keep different numbers of tokens"
    single = [generate_batch(model, processor, [r])[0] for r in requests]
    assert batched == single


def test_generate_batch_failures(trajtok, tmp_path):
    from trajtok.io.video import VideoDecodeError

    model, processor = trajtok
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 50)
    gen = {"max_new_tokens": 3}
    requests = [(tmp_path / "missing.mp4", "Q", gen), (random_video(num_frames=4), "Q", gen), (corrupt, "Q", gen)]
    failures: dict[int, str] = {}
    out = generate_batch(model, processor, requests, failures=failures)
    assert sorted(failures) == [0, 2] and out[0] == out[2] == ""
    assert "missing.mp4" in failures[0] and "corrupt.mp4" in failures[2]
    assert out[1] == generate_batch(model, processor, [requests[1]])[0]
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        generate_batch(model, processor, [requests[2]])


def test_context_too_long(trajtok):
    model, processor = trajtok
    chat = VideoChat(model, processor, video=random_video(num_frames=4), max_context=20)
    with pytest.raises(ContextLengthError, match=r"\(\d+ visual \+ \d+ text\).*> 20.*fewer frames \(now 4 per video\)"):
        chat.ask("What happens in the video?", max_new_tokens=8)
    assert chat.messages == []  # the failed turn is not kept
    failures: dict[int, str] = {}
    requests = [
        (random_video(num_frames=4), "What happens in the video?", {"max_new_tokens": 8}),
        (None, "Hi", {"max_new_tokens": 2}),
    ]
    out = generate_batch(model, processor, requests, max_context=30, failures=failures)
    assert list(failures) == [0] and "context too long" in failures[0] and out[0] == ""
    limit = model.config.text_config.max_position_embeddings
    with pytest.raises(ContextLengthError, match=f"> {limit}"):
        generate_batch(model, processor, [(None, "Hi", {"max_new_tokens": limit})])


def test_loglikelihood_matches_model_forward(trajtok):
    model, processor = trajtok
    video = random_video(num_frames=4, seed=2)
    context, continuation = "Which colour?\nA. red\nB. blue", "B"
    ((ll, greedy),) = loglikelihood(model, processor, [(video, context, continuation)])
    text = build_prompt(processor, context, 1) + continuation
    n = len(processor.tokenizer(text)["input_ids"]) - len(processor.tokenizer(text[:-1])["input_ids"])
    batch = processor(text=[text], videos=[video])
    with torch.no_grad():
        logits = model(**batch).logits  # (1, L', V): video spliced in by the model itself
    ids = batch["input_ids"][0, -n:]
    expected = torch.log_softmax(logits[0, -n - 1 : -1], -1).gather(-1, ids[:, None]).sum()
    assert ll == pytest.approx(float(expected), abs=1e-4)
    assert greedy == bool((logits[0, -n - 1 : -1].argmax(-1) == ids).all())
    ((ll_text, _),) = loglikelihood(model, processor, [(None, context, continuation)])
    assert ll_text != ll


@pytest.mark.parametrize("with_video", [True, False])
def test_score_choices_equals_one_request_at_a_time(trajtok, tiny_base_path, with_video):
    """One prompt pass with its KV cache repeated for the options = scoring each (prompt + option) on its own,
    for options of different lengths, for the adaptive trajtok connector and for pool."""
    from trajvlm.inference import load_model as load

    choices = ["red", "the blue square", "3", "The purple square entered the frame"]
    context = "What colour was the object that suddenly appeared?"
    for model, processor in (trajtok, load(tiny_base_path, device="cpu", connector="pool", num_frames=4)):
        video = random_video(num_frames=4, seed=3) if with_video else None
        shared = score_choices(model, processor, video, context, choices)
        alone = loglikelihood(model, processor, [(video, context, c) for c in choices])
        assert len(shared) == len(choices)
        for (a, ga), (b, gb) in zip(shared, alone, strict=True):
            assert a == pytest.approx(b, abs=1e-3) and ga == gb
        assert len({round(a, 3) for a, _ in shared}) == len(choices)  # the options really differ
    assert score_choices(model, processor, None, context, []) == []


@pytest.mark.parametrize("connector", ["trajtok", "pool"])
def test_score_choices_batch_equals_one_question_at_a_time(trajtok, tiny_base_path, connector, tmp_path):
    """Questions batched (left-padded prompts of different lengths, different visual token counts, different
    numbers of choices, a question without video) score as they do one at a time; an unreadable video is
    recorded as that question's failure and the others still score."""
    from trajvlm.inference import load_model as load

    model, processor = trajtok if connector == "trajtok" else load(tiny_base_path, device="cpu", connector="pool")
    processor.num_frames = 4
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    questions = [
        (random_video(num_frames=4, seed=1), "How many objects?", ["1", "2", "3", "4"]),
        (
            random_video(num_frames=4, seed=2),
            "Which object moved first, and where did it go then?",
            ["red", "the blue square"],
        ),
        (None, "Say a colour.", ["red", "green", "a dark striped blue"]),
        (str(broken), "How many objects?", ["1", "2"]),
        (random_video(num_frames=4, seed=5), "What colour?", []),
    ]
    failures: dict[int, str] = {}
    batched = score_choices_batch(model, processor, questions, batch_size=3, failures=failures)
    assert list(failures) == [3] and "broken.mp4" in failures[3]
    assert batched[3] == [] and batched[4] == []
    for q in (0, 1, 2):
        alone = score_choices(model, processor, *questions[q])
        assert len(batched[q]) == len(questions[q][2])
        for (a, ga), (b, gb) in zip(batched[q], alone, strict=True):
            assert a == pytest.approx(b, abs=1e-3) and ga == gb
    with pytest.raises(ValueError, match="broken.mp4"):
        score_choices_batch(model, processor, questions[3:4])


def test_generation_kwargs_and_stops():
    gen, stops = split_generation_kwargs({"until": "\n", "temperature": 0, "top_p": 1.0, "image_aspect_ratio": "pad"})
    assert gen == {"max_new_tokens": 256, "do_sample": False} and stops == ["\n"]
    gen, _ = split_generation_kwargs({"temperature": 0.7, "max_new_tokens": 3, "num_beams": "1"})
    assert gen == {"temperature": 0.7, "max_new_tokens": 3, "do_sample": True, "num_beams": 1}
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        split_generation_kwargs({"max_new_tokens": 0})
    assert cut_at_stops("B. because\n\nmore", ["\n\n", "."]) == "B"
    assert cut_at_stops("no stop", []) == "no stop"
