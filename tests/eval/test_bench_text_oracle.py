"""eval/bench/bench_text_oracle.py and bench_scoring.py on the tiny model: the world's questions without a trained
video model."""

from __future__ import annotations

import json


def test_text_oracle_bench_scores_both_formats(tiny_model_dir, synth_world, tmp_path, capsys, load_script):
    """eval/bench/bench_text_oracle.py: every question answered in both formats, with and without the caption."""
    bench = load_script("eval/bench/bench_text_oracle.py")
    out = tmp_path / "oracle.json"
    assert bench.main(["--model", str(tiny_model_dir), "--data", str(synth_world), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    n = len(json.loads((synth_world / "test" / "qa.json").read_text()))
    assert set(results) == {f"{f}, {c}" for f in ("letter", "open") for c in ("question only", "caption + question")}
    assert all(row["all"]["n"] == n and 0.0 <= row["all"]["accuracy"] <= 100.0 for row in results.values())
    assert "| LLM alone | all |" in capsys.readouterr().out
    assert bench.main(["--model", str(tmp_path / "missing"), "--data", str(synth_world)]) == 2


def test_scoring_bench_times_both_ways_and_they_agree(tiny_model_dir, synth_world, tmp_path, capsys, load_script):
    """eval/bench/bench_scoring.py: one at a time and batched, with and without video; the scores agree."""
    bench = load_script("eval/bench/bench_scoring.py")
    out = tmp_path / "scoring.json"
    args = ["--model", str(tiny_model_dir), "--data", str(synth_world), "--questions", "6", "--batch-sizes", "4"]
    assert bench.main([*args, "--blind", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["video"], r["batch_size"]) for r in rows] == [(True, 4), (False, 4)]
    assert all(r["one_ms"] > 0 and r["batched_ms"] > 0 and r["max_diff"] < 1e-3 for r in rows)
    assert "| yes | 4 |" in capsys.readouterr().out
    assert bench.main(["--model", str(tiny_model_dir), "--data", str(tmp_path / "missing")]) == 1
