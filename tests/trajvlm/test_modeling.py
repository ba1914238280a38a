"""TrajVLM model: pool parity with upstream, adaptive splicing (batches, padding, KV cache), fixed mode, loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    LlavaOnevisionForConditionalGeneration,
)

from tests.trajvlm.helpers import random_video, tiny_trajtok_config, tiny_trajvlm
from trajvlm.configuration import TrajVLMConfig
from trajvlm.connectors import CONNECTORS, build_connector
from trajvlm.modeling import TrajVLMForConditionalGeneration, padding_side_of
from trajvlm.processing import TrajVLMProcessor


@pytest.fixture(scope="module")
def adaptive(tiny_base_path):
    return tiny_trajvlm(tiny_base_path)


def _inputs(proc, texts, videos, side="left"):
    proc.tokenizer.padding_side = side
    return proc(text=texts, videos=videos)


def test_pool_logits_identical_to_upstream(tiny_base_path):
    upstream = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_base_path).eval()
    ours = TrajVLMForConditionalGeneration.from_llava(tiny_base_path, connector="pool").eval()
    proc = TrajVLMProcessor.from_pretrained(tiny_base_path).for_model(ours.config)
    batch = proc(
        text=["<video>\nDescribe the video.", "<video>\nWhat moved?"], videos=[random_video(), random_video(seed=1)]
    )
    with torch.no_grad():
        ref = upstream(**batch).logits
        out = ours(**batch)
    assert torch.equal(out.logits, ref)
    assert out.visual_token_counts == [4 * 16 + 1] * 2
    new_ref = upstream.generate(**batch, max_new_tokens=3, do_sample=False)[:, batch["input_ids"].shape[1] :]
    assert torch.equal(ours.generate(**batch, max_new_tokens=3, do_sample=False), new_ref)  # only new tokens


def test_adaptive_lengths_and_counts(adaptive):
    model, proc = adaptive
    batch = _inputs(
        proc, ["<video>\nDescribe the video.", "<video>\nWhat?"], [random_video(seed=0), random_video(seed=1)]
    )
    text_len = (batch["attention_mask"].sum(-1) - 1).tolist()  # minus the one placeholder per sample
    merged = model.model.merge_video_tokens(batch["input_ids"], batch["pixel_values_videos"], batch["attention_mask"])
    counts = merged.visual_token_counts
    assert counts[0] != counts[1], "the two videos should keep different numbers of trajectories"
    assert merged.attention_mask.sum(-1).tolist() == [t + n for t, n in zip(text_len, counts, strict=True)]
    assert merged.inputs_embeds.shape[1] == max(t + n for t, n in zip(text_len, counts, strict=True))
    with torch.no_grad():
        out = model(**batch)
    assert out.visual_token_counts == counts == model.last_visual_token_counts
    assert out.logits.shape[1] == merged.inputs_embeds.shape[1]


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_single_runs(adaptive, side):
    model, proc = adaptive
    texts = ["<video>\nWhich object left the frame first?", "<video>\nHow many?"]
    videos = [random_video(seed=0), random_video(seed=1)]
    batch = _inputs(proc, texts, videos, side)
    with torch.no_grad():
        out = model(**batch)
        for b in range(2):
            single = model(**_inputs(proc, [texts[b]], [videos[b]], side))
            length = single.logits.shape[1]
            real = out.logits[b, -length:] if side == "left" else out.logits[b, :length]
            torch.testing.assert_close(real, single.logits[0], atol=1e-4, rtol=0)
            assert single.visual_token_counts[0] == out.visual_token_counts[b]


def test_generation_of_unpadded_prompts_is_left_padded_after_splicing(adaptive):
    # Identical prompts need no padding, but their videos keep different numbers of trajectories: the spliced
    # batch must be left padded for generation (a right-padded row would continue from a pad and answer nothing).
    from trajvlm.inference import generate_batch

    model, proc = adaptive
    texts = ["<video>\nDescribe the video."] * 2
    videos = [random_video(seed=0), random_video(seed=1)]
    batch = _inputs(proc, texts, videos)
    assert bool(batch["attention_mask"].all()), "identical prompts: no padding before the videos are spliced in"
    merged = model.model.merge_video_tokens(
        batch["input_ids"], batch["pixel_values_videos"], batch["attention_mask"], padding_side="left"
    )
    counts = merged.visual_token_counts
    assert counts[0] != counts[1]
    assert merged.padding_side == "left" and bool(merged.attention_mask[:, -1].all())
    assert not bool(merged.attention_mask[:, 0].all())  # the shorter row starts with padding
    with pytest.raises(ValueError, match="padding_side"):
        model.model.merge_video_tokens(batch["input_ids"], batch["pixel_values_videos"], padding_side="middle")
    gen = {"max_new_tokens": 4, "do_sample": False}
    requests = [(video, "Describe the video.", gen) for video in videos]
    assert generate_batch(model, proc, requests) == [generate_batch(model, proc, [r])[0] for r in requests]


def test_multiple_videos_and_text_only_samples(adaptive):
    model, proc = adaptive
    videos = [random_video(seed=s) for s in range(3)]
    batch = _inputs(proc, ["<video> and <video>: compare", "just text, no video", "<video>"], videos)
    merged = model.model.merge_video_tokens(batch["input_ids"], batch["pixel_values_videos"], batch["attention_mask"])
    counts = merged.visual_token_counts
    assert len(counts) == 3
    text_len = batch["attention_mask"].sum(-1) - torch.tensor([2, 0, 1])
    assert (
        merged.attention_mask.sum(-1).tolist()
        == (text_len + torch.tensor([counts[0] + counts[1], 0, counts[2]])).tolist()
    )
    with torch.no_grad():
        text_only = model(**_inputs(proc, ["just text, no video"], None))
        batched = model(**batch)
    n = text_only.logits.shape[1]
    torch.testing.assert_close(batched.logits[1, -n:], text_only.logits[0], atol=1e-4, rtol=0)


def test_labels_mask_visual_positions_and_gradients_reach_the_connector(adaptive):
    model, proc = adaptive
    batch = _inputs(
        proc, ["<video>\nA red star.", "<video>\nIt bounces."], [random_video(seed=0), random_video(seed=1)], "right"
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    merged = model.model.merge_video_tokens(
        batch["input_ids"], batch["pixel_values_videos"], batch["attention_mask"], labels
    )
    assert (merged.labels[merged.attention_mask == 0] == -100).all()
    assert int((merged.labels != -100).sum()) == int((labels != -100).sum()) - 2  # the placeholders are gone
    model.train()
    try:
        out = model(**batch, labels=labels)
        out.loss.backward()
    finally:
        model.eval()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.model.connector.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)


def test_generate_with_cache_equals_no_cache_loop(adaptive):
    model, proc = adaptive
    batch = _inputs(
        proc, ["<video>\nDescribe the video.", "<video>\nWhat?"], [random_video(seed=0), random_video(seed=1)], "left"
    )
    steps = 3
    with torch.no_grad():
        new = model.generate(**batch, max_new_tokens=steps, do_sample=False)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        for _ in range(steps):
            logits = model(
                input_ids=ids, attention_mask=mask, pixel_values_videos=batch["pixel_values_videos"], use_cache=False
            ).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert new.shape == (2, steps)
    assert torch.equal(new, ids[:, -steps:])


def test_fixed_budget_mode(tiny_base_path):
    torch.manual_seed(0)
    model = TrajVLMForConditionalGeneration.from_llava(
        tiny_base_path, trajtok=tiny_trajtok_config(), token_mode="fixed", video_token_budget=12
    ).eval()
    proc = TrajVLMProcessor.from_pretrained(tiny_base_path).for_model(model.config)
    batch = _inputs(proc, ["<video>\nWhat?"], [random_video()])
    assert int((batch["input_ids"] == model.config.video_token_id).sum()) == 12
    merged = model.model.merge_video_tokens(batch["input_ids"], batch["pixel_values_videos"], batch["attention_mask"])
    assert merged.inputs_embeds.shape[1] == batch["input_ids"].shape[1]
    valid = int(merged.attention_mask.sum()) - (batch["input_ids"].shape[1] - 12)
    assert merged.visual_token_counts == [valid] and 0 < valid <= 12
    with torch.no_grad():
        out = model(**batch)
        new = model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert out.visual_token_counts == [valid] and new.shape == (1, 2)
    bad = _inputs(
        proc.for_model(TrajVLMConfig.from_llava_config(model.config, connector="trajtok", token_mode="adaptive")),
        ["<video>"],
        [random_video()],
    )
    with pytest.raises(ValueError, match="Video features and video tokens do not match"):
        model(**bad)


def test_save_load_round_trip_and_auto_classes(adaptive, tmp_path):
    model, proc = adaptive
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "trajvlm"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is TrajVLMForConditionalGeneration
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    auto_proc = AutoProcessor.from_pretrained(tmp_path)
    assert type(auto_proc) is TrajVLMProcessor and auto_proc.connector == "trajtok"
    batch = _inputs(auto_proc, ["<video>\nDescribe the video."], [random_video()])
    with torch.no_grad():
        # freshly allocated and loaded tensors may differ in memory alignment (SIMD paths): equal to float noise
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=1e-6, rtol=0)


def test_from_llava_keeps_base_weights(tiny_base_path, adaptive):
    model, _ = adaptive
    upstream = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_base_path).state_dict()
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("model.connector.")}
    assert ours.keys() == upstream.keys()
    assert all(torch.equal(ours[k], upstream[k]) for k in ours)
    assert model.config.trajtok["external_dim"] == model.config.text_config.hidden_size
    assert model.config.trajtok["external_grid"] == "segmenter"  # a new connector reads the tower on the finer grid
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("defect", ["extra", "missing"])
def test_from_llava_strict_on_bad_checkpoint(tiny_base_path, tmp_path, defect):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_base_path, bad)
    weights = load_file(bad / "model.safetensors")
    if defect == "extra":
        weights["multi_modal_projector.linear_3.weight"] = torch.zeros(2, 2)
        expected = "multi_modal_projector.linear_3.weight"
    else:
        del weights["multi_modal_projector.linear_2.bias"]
        expected = "model.multi_modal_projector.linear_2.bias"
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=expected.replace(".", r"\.")):
        TrajVLMForConditionalGeneration.from_llava(bad, connector="pool")


def test_from_llava_with_pretrained_trajtok(tiny_base_path, tmp_path):
    from trajtok import TrajTok

    torch.manual_seed(1)
    standalone = TrajTok(tiny_trajtok_config())  # pretrained on its own features: no external projection yet
    standalone.save_pretrained(tmp_path / "trajtok")
    model = TrajVLMForConditionalGeneration.from_llava(tiny_base_path, trajtok=tmp_path / "trajtok")
    inner = model.model.connector.trajtok.state_dict()
    shared = {k: v for k, v in standalone.state_dict().items() if k in inner and inner[k].shape == v.shape}
    assert shared and all(torch.equal(inner[k], v) for k, v in shared.items())
    assert any(k.startswith("external_proj") for k in inner)
    with pytest.raises(FileNotFoundError):
        TrajVLMForConditionalGeneration.from_llava(tiny_base_path, trajtok=tmp_path / "nowhere")


def test_registry_and_config_errors(tiny_base_path):
    from transformers import LlavaOnevisionConfig

    llava = LlavaOnevisionConfig.from_pretrained(tiny_base_path)
    with pytest.raises(ValueError, match="valid connectors: pool, trajtok, resampler"):
        TrajVLMConfig.from_llava_config(llava, connector="patches")
    with pytest.raises(ValueError, match="token_mode"):
        TrajVLMConfig.from_llava_config(llava, token_mode="sometimes")
    with pytest.raises(ValueError, match="LLM width"):
        TrajVLMConfig.from_llava_config(llava, connector="trajtok", trajtok={"output_dim": 7})
    cfg = TrajVLMConfig.from_llava_config(llava)
    cfg.connector = "patches"
    with pytest.raises(ValueError, match="valid connectors"):
        build_connector(cfg)
    assert set(CONNECTORS) == {"pool", "trajtok", "resampler", "vtok", "tome", "trajvit", "coordtok"}
    assert padding_side_of(torch.tensor([[0, 1, 1], [1, 1, 1]])) == "left"
    assert padding_side_of(torch.tensor([[1, 1, 0], [1, 1, 1]])) == "right"


def test_resampler_connector(tiny_base_path):
    torch.manual_seed(0)
    model = TrajVLMForConditionalGeneration.from_llava(
        tiny_base_path, connector="resampler", video_token_budget=5
    ).eval()
    proc = TrajVLMProcessor.from_pretrained(tiny_base_path).for_model(model.config)
    batch = _inputs(proc, ["<video>\nWhat?", "text"], [random_video()])
    with torch.no_grad():
        out = model(**batch)
    assert out.visual_token_counts == [5]
    assert out.logits.shape[1] == batch["input_ids"].shape[1] + 4


@pytest.mark.parametrize("connector", ["pool", "trajtok"])
def test_training_loss_projects_only_labelled_positions_and_equals_the_full_loss(tiny_base_path, connector):
    """In training the LM head runs only where a label is predicted; loss and gradients equal the full-logits loss."""
    from trajvlm import modeling

    assert modeling.SLICES_BY_MASK  # the installed transformers takes a boolean logits_to_keep
    model, proc = tiny_trajvlm(tiny_base_path, connector=connector)
    if connector == "trajtok":  # one token per trajectory in training too, so both passes see the same tokens
        model.model.connector.trajtok.config.tokens_per_trajectory = [1]
    batch = _inputs(
        proc,
        ["<video>\nA red star.", "<video>\nIt bounces off the wall."],
        [random_video(seed=0), random_video(seed=1)],
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    labels[:, : labels.shape[1] // 2] = -100  # only the answer half is supervised
    results = {}
    for mode in ("train", "eval"):  # train: labelled positions only; eval: every position (upstream path)
        getattr(model, mode)()
        model.zero_grad(set_to_none=True)
        out = model(**batch, labels=labels)
        out.loss.backward()
        grad = model.lm_head.weight.grad.clone()
        results[mode] = (out.loss.detach(), grad, out.logits.shape)
    model.eval()
    torch.testing.assert_close(results["train"][0], results["eval"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results["train"][1], results["eval"][1], atol=1e-5, rtol=1e-4)
    assert results["train"][2][0] == int((labels[:, 1:] != -100).sum())  # (labelled positions, V) logits
    assert len(results["eval"][2]) == 3  # (B, L, V)


@pytest.mark.parametrize("connector", ["pool", "trajtok"])
def test_encode_videos_from_cached_tower_features(tiny_base_path, connector):
    """A frozen tower run once (``tower_features``) and fed back gives the tokens the whole pass gives."""
    model, proc = tiny_trajvlm(tiny_base_path, connector=connector)
    px = proc.preprocess_videos([random_video(seed=0), random_video(seed=1)])  # (2, T, C, H, W)
    with torch.no_grad():
        full = model.model.encode_videos(px)
        cached = model.model.tower_features(px)
        again = model.model.encode_videos(px, tower_features=cached)
    assert cached.shape[:2] == px.shape[:2] and cached.ndim == 4
    assert again.num_tokens == full.num_tokens
    for a, b in zip(again.tokens, full.tokens, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="tower_features must be"):
        model.model.encode_videos(px, tower_features=cached[:1])
