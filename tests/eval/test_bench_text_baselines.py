"""eval/bench/bench_text_oracle.py without a model: the text-only baselines (majority answer per template, bag of
words) find a prior where the answers have one, and none where they do not."""

from __future__ import annotations

import json
import random


def _questions(n: int, rng: random.Random, prior: bool) -> list[dict]:
    """Count questions with four consecutive options; ``prior``: the answer is always the lowest option, else a
    random one. Object names vary, as in the long world."""
    out = []
    for k in range(n):
        low = rng.randrange(0, 6)
        options = [str(v) for v in range(low, low + 4)]
        answer_value = options[0] if prior else rng.choice(options)
        rng.shuffle(options)
        name = rng.choice(["the red circle", "the blue star", "the green ring"])
        out.append(
            {
                "id": f"v{k // 4}_q{k % 4}",
                "video": f"v{k // 4}.mp4",
                "qtype": "returns",
                "question": f"How many times did {name} come back into view after it first left?",
                "options": options,
                "answer": "ABCD"[options.index(answer_value)],
            }
        )
    return out


def test_text_baselines_find_a_prior_only_where_there_is_one(load_script, tmp_path, capsys):
    bench = load_script("eval/bench/bench_text_oracle.py")
    rng = random.Random(0)
    for prior in (True, False):
        data = tmp_path / f"prior_{prior}"
        for split, n in (("train", 400), ("val", 200)):
            (data / split).mkdir(parents=True)
            (data / split / "qa.json").write_text(json.dumps(_questions(n, rng, prior)))
        out = tmp_path / f"prior_{prior}.json"
        assert bench.main(["--data", str(data), "--split", "val", "--json", str(out)]) == 0
        results = json.loads(out.read_text())
        assert set(results) == {"majority per template", "bag of words"}
        bow = results["bag of words"]["returns"]
        assert bow["n"] == 200
        if prior:  # the lowest option always wins: the bag of words learns it from the options' ranks
            assert bow["accuracy"] > 90.0, results
        else:
            assert all(results[row]["returns"]["accuracy"] < 40.0 for row in results), results
    assert "| text only | all |" in capsys.readouterr().out
    # the held-out fifth of train, when --split train
    assert bench.main(["--data", str(tmp_path / "prior_False"), "--split", "train", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["bag of words"]["all"]["n"] == 80  # 20 of 100 videos, 4 questions each
    assert bench.main(["--data", str(tmp_path / "missing")]) == 2
