"""The main job end to end on the smoke preset (a tiny long-video world, the tiny random LLM, a few steps of every
stage): every stage runs for real as `python scripts/demo.py --preset smoke` runs it, then a rerun skips them all
and rebuilds the same results. Several minutes on 2 CPU cores (about 20 processes)."""

from __future__ import annotations

import json
import math

import pytest


@pytest.mark.slow
def test_smoke_preset_runs_end_to_end_and_resumes(load_script, tmp_path, capsys):
    demo = load_script("scripts/demo.py")
    out = tmp_path / "smoke"
    # tuning reads val: --stop-after val trains and evaluates on val, and no test evaluation runs
    assert demo.main(["--preset", "smoke", "--out", str(out), "--stop-after", "val"]) == 0, capsys.readouterr().err
    assert "val accuracy % [95% CI] (questions)" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "eval").glob("*-val")) == ["pool-s4-8f-val", "trajtok-restart-8f-val"]
    assert not list((out / "eval").glob("*-test")) and not (out / "results.json").exists()
    assert demo.main(["--preset", "smoke", "--out", str(out)]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["generator"]["world"] == "long"

    keys = [r["key"] for r in results["rows"]]
    assert keys == ["trajtok-restart-8f", "pool-s4-8f"]
    val_qa = json.loads((out / "data" / "val" / "qa.json").read_text())
    test_qa = json.loads((out / "data" / "test" / "qa.json").read_text())
    assert [c["of"] for c in results["controls"]] == keys and all("val" not in c for c in results["controls"])
    for row in results["rows"] + results["controls"]:
        # every number says which split it came from; test answers are the test split's questions, once each
        assert row["test"]["split"] == "test"
        assert sorted(a["id"] for a in row["test"]["answers"]) == sorted(q["id"] for q in test_qa)
        if "val" in row:
            assert row["val"]["split"] == "val"
            assert sorted(a["id"] for a in row["val"]["answers"]) == sorted(q["id"] for q in val_qa)
        ci = row["test"]["ci"]
        assert ci["all"]["n"] == len(test_qa) and ci["all"]["videos"] == results["world"]["videos"]["test"]
        assert sum(ci[q]["n"] for q in ci if q != "all") == len(test_qa)  # per type, with counts
        right = sum(a["correct"] for a in row["test"]["answers"])
        assert ci["all"]["acc"] == pytest.approx(100.0 * right / len(test_qa))
    pool = results["rows"][1]
    assert pool["visual_tokens"] == 8 * 4 + 1  # 4x4 pooling of the 8x8 grid: 4 tokens per frame + the newline
    trajtok = results["rows"][0]
    assert trajtok["compute"]["tokenizer_cpu_s"] > 0 and pool["compute"]["tokenizer_cpu_s"] == 0
    assert trajtok["compute"]["cpu_s"] > 0 and pool["compute"]["cpu_s"] > 0
    assert results["selection"]["split"] == "val"
    assert set(results["selection"]["best_on_val"]) == {"trajtok", "pool"}
    whys = {d["why"] for d in results["paired"]}
    assert "its no-video control" in whys and all(d["split"] == "test" for d in results["paired"])
    assert all(not math.isnan(d["diff"]) for d in results["paired"])
    report = (out / "report.md").read_text()
    assert "## Test (once per model)" in report and "trajtok 8f" in report
    for name in ("accuracy_vs_tokens.png", "accuracy_vs_frames.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    # a rerun finds every stage done and rebuilds the same numbers
    capsys.readouterr()
    assert demo.main(["--preset", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "already done" in printed and "[demo] stage 2 LoRA (pool-s4-8f): /" not in printed
    again = json.loads((out / "results.json").read_text())
    assert [r["test"]["ci"]["all"] for r in again["rows"]] == [r["test"]["ci"]["all"] for r in results["rows"]]
