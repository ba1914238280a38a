"""eval/bench/bench_token_probe.py: a probe on a trained model's visual tokens for what the long world's questions ask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trajtok.synth import write_dataset
from trajtok.synth.text import colour_at, is_visible, name


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_token_probe.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A long world at 48 px: 12 training and 3 val videos of 64-96 frames, with questions (a few seconds)."""
    out = tmp_path_factory.mktemp("long_world")
    write_dataset(out, "train=12,val=3,test=0", frames=(64, 96), size=48, objects=(3, 5), world="long")
    return out


def test_labels_follow_the_record(bench, world):
    for path in sorted((world / "val").glob("val_*.json")):
        record = json.loads(path.read_text())
        y = bench.labels(record)
        assert y.shape == (3, len(bench.VOCAB))
        last = record["num_frames"] - 1
        for i, obj in enumerate(record["objects"]):
            k = bench.VOCAB.index(name(record, i))
            assert y[0, k] == is_visible(record, i, 0) and y[1, k] == is_visible(record, i, last) and y[2, k] == 1
            if is_visible(record, i, last):
                assert y[1, bench.VOCAB.index(f"colour {colour_at(record, i, last)}")] == 1
                assert y[1, bench.VOCAB.index(f"shape {obj['shape']}")] == 1
        named = {name(record, i) for i in range(len(record["objects"]))}
        assert {bench.VOCAB[k] for k in np.flatnonzero(y[2, bench.GROUPS["names"]])} == named


def test_probe_finds_a_planted_signal_and_not_noise(bench):
    """Tokens that carry each video's labels in a random direction per name are read (AUC near 1); the same
    tokens with labels of other videos are not (AUC near 0.5)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)  # the tokens' noise: unseeded, the planted AUC varied from run to run (0.896-0.93)
    vocab, dim = len(bench.VOCAB), 128
    directions = torch.from_numpy(rng.normal(size=(vocab, dim)).astype(np.float32))
    directions[:, -3:] = 0.0

    def videos(n: int) -> tuple[list[torch.Tensor], np.ndarray]:
        y = (rng.random((n, 3, vocab)) < 0.05).astype(np.float32)
        tokens = []
        for v in range(n):
            count = int(rng.integers(4, 9))
            t = torch.randn(count, dim) * 0.1
            for target in range(3):  # token `target` carries that target's names, and a mark the query can find
                t[target] += torch.from_numpy(y[v, target]) @ directions
                t[target, dim - 3 + target] = 10.0
            tokens.append(t)
        return tokens, y

    train, holdout, test = videos(300), videos(60), videos(60)
    probe, step, holdout_auc = bench.fit(train, holdout, steps=300, seed=0)
    with torch.no_grad():
        probs = probe(*bench._pad(test[0])).sigmoid().numpy()
    assert min(bench.mean_auc(probs, test[1])) > 0.85 and holdout_auc > 0.85 and step > 0
    shuffled = train[1][rng.permutation(len(train[1]))]
    probe, _, _ = bench.fit((train[0], shuffled), holdout, steps=300, seed=0)
    with torch.no_grad():
        probs = probe(*bench._pad(test[0])).sigmoid().numpy()
    assert max(bench.mean_auc(probs, test[1])) < 0.65


def test_answers_come_from_the_targets_they_need(bench):
    probs = np.zeros((3, len(bench.VOCAB)), dtype=np.float32)
    red, blue = bench.VOCAB.index("the red ring"), bench.VOCAB.index("the blue star")
    probs[0, [red, blue]] = 0.9  # both in view at the start
    probs[1, blue] = 0.9  # only the blue star at the end
    probs[2, [red, blue]] = 1.0
    options = ["the blue star", "the red ring", "the white circle", "the pink cross"]
    gone = {"qtype": "start_end", "params": {"variant": "gone"}, "options": options}
    new = {"qtype": "start_end", "params": {"variant": "new"}, "options": options}
    count = {"qtype": "distinct_count", "params": {}, "options": ["4", "2", "3", "5"]}
    assert bench.answer(gone, probs) == 1  # the red ring left
    assert bench.answer(new, probs) != 1
    assert bench.answer(count, probs) == 1  # two objects
    assert bench.answer({"qtype": "returns", "params": {}, "options": ["0", "1", "2", "3"]}, probs) is None


def test_end_to_end_on_a_tiny_model_and_one_line_errors(bench, world, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probe.json"
    args = ["--model", str(tiny_model_dir), "--data", str(world), "--frames", "4", "--steps", "20"]
    assert bench.main([*args, "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["eval_videos"] == 3 and result["train_videos"] + result["holdout_videos"] == 12
    assert set(result["probe"]["auc"]) == {"names", "colours", "shapes"}
    assert "AUC start" in capsys.readouterr().out
    assert sum(v["n"] for v in result["questions"].values()) > 0
    (world / "val" / "qa.json").rename(tmp_path / "qa.json")
    try:
        assert bench.main(args) == 2
        assert "qa.json not found" in capsys.readouterr().err
    finally:
        (tmp_path / "qa.json").rename(world / "val" / "qa.json")
