"""eval/bench/bench_vision_reliance.py: does a trained model's answer change with its video?"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trajtok.synth import write_dataset


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_vision_reliance.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A long world at 48 px: 3 val videos of 64-96 frames with their questions."""
    out = tmp_path_factory.mktemp("long_world")
    write_dataset(out, "train=0,val=3,test=0", frames=(64, 96), size=48, objects=(3, 5), world="long")
    return out


def test_the_other_video_is_never_the_own(bench):
    for n in (2, 3, 8, 9):
        videos = [f"v{i}.mp4" for i in range(n)]
        other = bench.swapped(list(reversed(videos)))
        assert sorted(other) == videos and sorted(other.values()) == videos  # a permutation of the split
        assert all(other[v] != v for v in videos)
    with pytest.raises(ValueError, match="at least 2 videos"):
        bench.swapped(["v0.mp4"])


def test_compare_counts_changes_and_distances(bench):
    """Own answers every question right; `other` flips the answer of half the questions; `none` agrees."""
    questions = [{"answer": "A", "video": f"v{i // 2}", "qtype": "t" if i < 4 else "u"} for i in range(8)]
    right = np.array([0.7, 0.1, 0.1, 0.1])
    wrong = np.array([0.1, 0.7, 0.1, 0.1])
    probs = {
        "own": [right] * 8,
        "other": [wrong if i % 2 else right for i in range(8)],
        "none": [right] * 8,
    }
    result = bench.compare(questions, probs, samples=200)
    own, other, none = (result["conditions"][c] for c in ("own", "other", "none"))
    assert result["questions"] == 8 and result["videos"] == 4
    assert own["accuracy"] == 100.0 and other["accuracy"] == 50.0
    assert other["answers_changed"] == 50.0 and none["answers_changed"] == 0.0
    assert other["mean_tv_distance"] == pytest.approx(0.3)  # 0.6 on the flipped half, 0 on the rest
    assert none["mean_tv_distance"] == 0.0
    assert other["ci95"][0] <= 50.0 <= other["ci95"][1]
    assert result["per_type"]["t"] == {"n": 4, "own": 100.0, "other": 50.0, "none": 100.0, "changed_other": 50.0}


def test_token_stats_measure_scale_and_what_the_videos_share(bench):
    torch.manual_seed(0)
    common = torch.zeros(16)
    common[0] = 3.0
    videos = [common + torch.randn(5, 16) * 0.1 for _ in range(4)]  # the same token everywhere, a little noise
    embeddings = torch.nn.functional.normalize(torch.randn(100, 16), dim=-1) * 0.5
    stats = bench.token_stats(videos, embeddings)
    assert stats["videos"] == 4 and stats["tokens_per_video"] == 5
    assert stats["visual_norm_median"] == pytest.approx(3.0, abs=0.3) and stats["text_norm_median"] == pytest.approx(
        0.5
    )
    assert stats["common_share"] > 0.9 and stats["between_video_cosine"] > 0.99
    apart = [torch.randn(5, 16) + 4 * torch.eye(16)[k] for k in range(4)]  # each video its own direction
    stats = bench.token_stats(apart, embeddings)
    assert stats["common_share"] < 0.3 and stats["between_video_cosine"] < 0.3


def test_option_probs_is_a_softmax_of_the_summed_log_likelihoods(bench):
    p = bench.option_probs([(-1.0, True), (-1.0, False), (-1.0 - np.log(2.0), False)])
    assert p == pytest.approx([0.4, 0.4, 0.2])


def test_end_to_end_on_a_tiny_model_and_one_line_errors(bench, world, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "reliance.json"
    args = ["--model", str(tiny_model_dir), "--data", str(world), "--frames", "4"]
    assert bench.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    asked = json.loads((world / "val" / "qa.json").read_text())
    assert result["questions"] == len(asked) and result["videos"] == 3 and result["split"] == "val"
    assert set(result["conditions"]) == {"own", "other", "none"}
    # a random model's scores still depend on what its visual tokens are: removing them moves every distribution
    assert result["conditions"]["none"]["mean_tv_distance"] > 0
    assert sum(e["n"] for e in result["per_type"].values()) == len(asked)
    assert result["tokens"]["videos"] == 3 and result["tokens"]["visual_norm_median"] > 0
    assert "answers changed vs own" in capsys.readouterr().out
    assert bench.main([*args, "--limit", "2"]) == 0
    assert "2 videos)" in capsys.readouterr().out
    assert bench.main([*args, "--tokens-only", "--json", str(out)]) == 0
    only = json.loads(out.read_text())
    assert "conditions" not in only
    assert only["tokens"]["visual_norm_median"] == pytest.approx(result["tokens"]["visual_norm_median"])
    assert "median norm" in capsys.readouterr().out
    assert bench.main([*args, "--split", "test"]) == 2  # the world has no test videos
    assert f"{world / 'test' / 'qa.json'}" in capsys.readouterr().err
