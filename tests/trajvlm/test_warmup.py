"""Stage 0 (`trajvlm warmup`): target words, the word scorer, and a warm-up run on the tiny base."""

from __future__ import annotations

import json

import pytest
import torch

from tests.trajvlm.helpers import tiny_warmup_config
from tests.trajvlm.train_fixtures import tiny_trajtok_path  # noqa: F401
from trajvlm.training.warmup import WarmupConfig, WordScorer, parse_overrides, target_words, warmup, word_targets


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from trajtok.synth import write_dataset

    root = tmp_path_factory.mktemp("warmup_world")
    write_dataset(root, {"train": 14, "val": 0, "test": 0}, frames=(8, 10), size=64, objects=(2, 3), seed=5)
    return root / "train"


def test_target_words_keep_informative_one_token_words(tiny_base_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base_path)
    captions = ["a red circle", "a blue circle", "a red square", "a red square 3"]
    words, ids = target_words(captions, tok, min_df=0.25, max_df=0.7)
    assert words == ["blue", "circle", "square"]  # "a" (all) and "red" (3 of 4) too common, "3" a digit
    assert ids == [tok.encode(" " + w, add_special_tokens=False)[0] for w in words]
    assert word_targets(["A blue square!"], words).tolist() == [[1.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="no caption word"):
        target_words(captions, tok, min_df=0.9, max_df=0.95)


def test_word_scorer_takes_the_best_token_per_word():
    emb = torch.eye(3, 8)  # three words along the first three axes
    scorer = WordScorer(emb, init_scale=10.0)
    tokens = [torch.stack([torch.eye(8)[0], torch.eye(8)[2]]), torch.eye(8)[1:2]]  # video 0 says words 0 and 2
    logits = scorer(tokens)
    assert logits.shape == (2, 3)
    assert logits[0, 0] > logits[0, 1] and logits[0, 2] > logits[0, 1]
    assert logits[1, 1] > logits[1, 0]
    logits.sum().backward()
    assert scorer.log_scale.grad is not None and scorer.bias.grad is not None


def test_config_checks_and_number_overrides():
    cfg = parse_overrides(["lr=3e-3", "steps=5", "tokens_per_trajectory=4"])
    assert (cfg.lr, cfg.steps, cfg.tokens_per_trajectory) == (3e-3, 5, 4)
    with pytest.raises(ValueError, match="bad override"):
        parse_overrides(["learning_rate=1"])
    with pytest.raises(ValueError, match="tokens_per_trajectory"):
        WarmupConfig(tokens_per_trajectory=3)
    with pytest.raises(ValueError, match="max_doc_freq"):
        WarmupConfig(min_doc_freq=0.6, max_doc_freq=0.5)
    for lr in (-1e-3, 0.0):
        with pytest.raises(ValueError, match="lr must be > 0"):
            parse_overrides([f"lr={lr}"])


@pytest.mark.parametrize("connector", ["pool", "trajtok"])
def test_warmup_trains_only_the_connector_and_projector(tiny_base_path, world, tmp_path, connector, tiny_trajtok_path):  # noqa: F811
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    extra = {"trajtok": str(tiny_trajtok_path), "tokens_per_trajectory": 2} if connector == "trajtok" else {}
    cfg = tiny_warmup_config(6, connector=connector, **extra)
    out = tmp_path / "warm"
    metrics = warmup(tiny_base_path, world / "captions.json", world, out, cfg)
    assert metrics["words"] and metrics["videos"] == 10 and metrics["held_out"] == 4
    assert 0.0 <= metrics["held_out_word_auc_after"] <= 1.0
    per_word = metrics["held_out_auc_per_word"]
    assert metrics["words_read"] == [w for w in metrics["words"] if per_word[w] >= 0.9]
    assert json.loads((out / "warmup_metrics.json").read_text())["words"] == metrics["words"]
    model = TrajVLMForConditionalGeneration.from_pretrained(out)
    assert model.config.connector == connector
    if connector == "trajtok":
        assert model.config.tokens_per_trajectory == 2
    saved = model.state_dict()
    ref = TrajVLMForConditionalGeneration.from_llava(tiny_base_path, connector=connector, **extra).state_dict()
    assert set(saved) == set(ref)
    changed = {k for k, v in ref.items() if not torch.equal(v, saved[k])}
    # the tower and the LLM are untouched; so are the frozen segmenter and its pixel backbone
    assert changed and all(".multi_modal_projector." in k or ".connector." in k for k in changed)
    assert any(".multi_modal_projector." in k for k in changed)
    assert not any(".segmenter." in k or ".trajtok.features." in k for k in changed)
    if connector == "trajtok":
        assert any(".trajtok.encoder." in k for k in changed)


def test_cached_tower_warms_up_as_the_full_pass(tiny_base_path, world, tmp_path, tiny_trajtok_path):  # noqa: F811
    """The warm-up on cached tower features trains the same weights as running the tower in every step."""
    from safetensors.torch import load_file

    extra = {"trajtok": str(tiny_trajtok_path), "tokens_per_trajectory": 2}
    runs = {}
    for cache in (True, False):
        cfg = tiny_warmup_config(3, cache_tower=cache, **extra)
        metrics = warmup(tiny_base_path, world / "captions.json", world, tmp_path / str(cache), cfg)
        runs[cache] = metrics, load_file(tmp_path / str(cache) / "model.safetensors")
    (m_cached, w_cached), (m_full, w_full) = runs[True], runs[False]
    assert m_cached["first_loss"] == pytest.approx(m_full["first_loss"], abs=1e-5)
    assert m_cached["held_out_word_auc_after"] == pytest.approx(m_full["held_out_word_auc_after"], abs=1e-3)
    for k in w_full:
        torch.testing.assert_close(w_cached[k], w_full[k], atol=1e-4, rtol=1e-4)


def test_warmup_trains_trajtoks_extent_encoding(tiny_base_path, world, tmp_path):
    """A pretrained TrajTok with the extent encoding: it starts at zero and the warm-up trains it (the segmenter
    stays frozen); the VLM saved by the warm-up keeps it."""
    from trajtok import TrajTok, TrajTokConfig
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    torch.manual_seed(0)
    TrajTok(TrajTokConfig.tiny(extent_encoding=True)).save_pretrained(tmp_path / "trajtok")
    cfg = tiny_warmup_config(4, trajtok=str(tmp_path / "trajtok"), tokens_per_trajectory=2)
    warmup(tiny_base_path, world / "captions.json", world, tmp_path / "warm", cfg)
    model = TrajVLMForConditionalGeneration.from_pretrained(tmp_path / "warm")
    assert model.config.trajtok["extent_encoding"] is True
    extent = model.model.connector.trajtok.encoder.extent_proj
    assert torch.count_nonzero(extent.weight) > 0 and torch.count_nonzero(extent.bias) > 0


def test_caption_samples_pick_a_mixture_s_random_rows_with_the_run_s_seed(tmp_path):
    """A mixture's ``random:N`` rows follow the run's seed in the warm-up as in training (the same rows for a seed)."""
    from trajvlm.training.data import load_samples
    from trajvlm.training.warmup import caption_samples

    rows = [
        {
            "id": i,
            "video": f"v{i}.mp4",
            "conversations": [
                {"from": "human", "value": "<image>\nDescribe."},
                {"from": "gpt", "value": f"caption {i}"},
            ],
        }
        for i in range(40)
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    mixture = tmp_path / "mix.yaml"
    mixture.write_text("datasets:\n  - json_path: rows.json\n    sampling_strategy: random:25%\n")
    picks = {seed: [video for video, _ in caption_samples(mixture, seed=seed)] for seed in (0, 3)}
    for seed, videos in picks.items():
        assert videos == [s["video"] for s in load_samples(mixture, seed=seed)]
    assert len(picks[3]) == 10 and set(picks[0]) != set(picks[3])
