"""eval/bench/bench_text_oracle.py on the tiny model: what the LLM alone makes of the world's questions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_text_oracle_bench_scores_both_formats(tiny_model_dir, synth_world, tmp_path, capsys):
    """eval/bench/bench_text_oracle.py: every question answered in both formats, with and without the caption."""
    spec = importlib.util.spec_from_file_location("bench_text_oracle", ROOT / "eval" / "bench" / "bench_text_oracle.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "oracle.json"
    assert bench.main(["--model", str(tiny_model_dir), "--data", str(synth_world), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    n = len(json.loads((synth_world / "test" / "qa.json").read_text()))
    assert set(results) == {f"{f}, {c}" for f in ("letter", "open") for c in ("question only", "caption + question")}
    assert all(row["all"]["n"] == n and 0.0 <= row["all"]["accuracy"] <= 100.0 for row in results.values())
    assert "| LLM alone | all |" in capsys.readouterr().out
    assert bench.main(["--model", str(tmp_path / "missing"), "--data", str(synth_world)]) == 2
