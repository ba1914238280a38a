"""The tiny LLaVA-OneVision base: built in code, saved like a llava-hf checkpoint, loaded with from_pretrained."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

from tests.trajvlm.helpers import IMAGE_SIZE, LLM_HIDDEN, PATCH_SIZE
from trajvlm.processing import TrajVLMProcessor
from trajvlm.training.base import SPECIAL_TOKENS, build_tokenizer, texts_from_dataset


def test_base_loads_as_llava_onevision(tiny_base_path):
    config = LlavaOnevisionConfig.from_pretrained(tiny_base_path)
    assert config.model_type == "llava_onevision"
    assert config.vision_feature_layer == -1
    assert config.vision_aspect_ratio == "anyres_max_9"
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (IMAGE_SIZE, PATCH_SIZE)
    assert config.text_config.hidden_size == LLM_HIDDEN
    tok = AutoTokenizer.from_pretrained(tiny_base_path)
    assert tok.convert_tokens_to_ids("<video>") == config.video_token_id
    assert tok.convert_tokens_to_ids("<image>") == config.image_token_id
    assert config.text_config.vocab_size == len(tok)
    model, info = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_base_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = tok("<|im_start|>user\nhello<|im_end|>", return_tensors="pt").input_ids
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))


def test_tokenizer_specials_and_chat_template(tiny_base_path):
    tok = AutoTokenizer.from_pretrained(tiny_base_path)
    for special in SPECIAL_TOKENS:
        assert len(tok(special, add_special_tokens=False).input_ids) == 1, special
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What colour is it?"}]}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n<video>\nWhat colour is it?<|im_end|>\n<|im_start|>assistant\n"
    plain = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert plain == "<|im_start|>user\nhi<|im_end|>\n"
    # byte-level BPE: unseen text round-trips, and the synthetic world's words are single tokens
    assert tok.decode(tok("Zürich ß 42!", add_special_tokens=False).input_ids) == "Zürich ß 42!"
    assert len(tok(" circle", add_special_tokens=False).input_ids) == 1


def test_vocab_texts_extend_the_vocabulary():
    word = " quokka"
    plain = build_tokenizer()
    extended = build_tokenizer(["a quokka hops past the quokka"] * 20)
    n_plain = len(plain(word, add_special_tokens=False).input_ids)
    n_ext = len(extended(word, add_special_tokens=False).input_ids)
    assert n_ext < n_plain


def test_processor_saved_with_base(tiny_base_path):
    proc = TrajVLMProcessor.from_pretrained(tiny_base_path)
    assert (proc.image_size, proc.patch_size, proc.connector) == (IMAGE_SIZE, PATCH_SIZE, "pool")
    assert proc.chat_template is not None
    saved = json.loads((tiny_base_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "TrajVLMProcessor"


def test_cli_build_base(tmp_path):
    from trajvlm.cli import main

    out = tmp_path / "base"
    assert main(["build-base", "--out", str(out), "--num-frames", "6", "--seed", "1"]) == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert TrajVLMProcessor.from_pretrained(out).num_frames == 6


def test_texts_from_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions.json"):
        texts_from_dataset(tmp_path)
    (tmp_path / "train").mkdir()
    sample = {
        "id": "v",
        "video": "v.mp4",
        "conversations": [{"from": "human", "value": "<video>\nQ?"}, {"from": "gpt", "value": "A red star."}],
    }
    (tmp_path / "train" / "captions.json").write_text(json.dumps([sample]))
    assert texts_from_dataset(tmp_path) == ["\nQ?", "A red star."]


def test_same_seed_same_weights(tmp_path):
    from trajvlm.training.base import build_tiny_base

    a = build_tiny_base(tmp_path / "a", seed=3, llm_layers=1)
    b = build_tiny_base(tmp_path / "b", seed=3, llm_layers=1)
    wa = LlavaOnevisionForConditionalGeneration.from_pretrained(a).state_dict()
    wb = LlavaOnevisionForConditionalGeneration.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
