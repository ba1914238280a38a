"""The main job's protocol: intervals that resample whole videos, choices read on val, the report and figures."""

from __future__ import annotations

import json
import math

import demo_report
import pytest
from demo_stats import clustered_accuracy, clustered_difference, per_type


@pytest.fixture(scope="module")
def demo(load_script):
    return load_script("scripts/demo.py")


def _answers(videos: int, per_video: int, right, qtype=lambda v, k: "count") -> list[dict]:
    return [
        {"id": f"v{v}_q{k}", "video": f"v{v}.mp4", "qtype": qtype(v, k), "correct": bool(right(v, k))}
        for v in range(videos)
        for k in range(per_video)
    ]


def test_clustered_interval_is_wider_when_a_videos_questions_go_together():
    """400 questions at 50 %: spread over 400 videos, or 40 videos of 10 questions all right or all wrong. The
    accuracy is the same; resampling videos sees that the second has only 40 independent draws."""
    apart = _answers(400, 1, lambda v, k: v % 2 == 0)
    together = _answers(40, 10, lambda v, k: v % 2 == 0)
    a, b = clustered_accuracy(apart, samples=1000), clustered_accuracy(together, samples=1000)
    assert a["acc"] == b["acc"] == 50.0 and a["n"] == b["n"] == 400
    assert (a["videos"], b["videos"]) == (400, 40)
    assert a["lo"] <= 50.0 <= a["hi"] and b["lo"] <= 50.0 <= b["hi"]
    # sqrt(10) times fewer independent draws: the interval is about 3 times wider
    assert (b["hi"] - b["lo"]) > 2.2 * (a["hi"] - a["lo"])


def test_clustered_accuracy_per_type_and_empty_and_missing_video():
    answers = _answers(30, 4, lambda v, k: k < 3, qtype=lambda v, k: "returns" if k == 3 else "distinct_count")
    table = per_type(answers, samples=200)
    assert set(table) == {"all", "distinct_count", "returns"}
    assert table["all"]["acc"] == 75.0 and table["distinct_count"]["acc"] == 100.0 and table["returns"]["acc"] == 0.0
    assert table["returns"]["n"] == 30 and table["returns"]["videos"] == 30
    assert math.isnan(clustered_accuracy(answers, "event_order")["acc"])
    with pytest.raises(ValueError, match="has no video"):
        clustered_accuracy([{"id": "q", "correct": True}])


def test_paired_difference_resamples_videos_and_matches_questions_by_id():
    # b right on videos 0-19 of 40; a right on those and on 4 more: +10 points, the same videos move both
    b = _answers(40, 5, lambda v, k: v < 20)
    a = list(reversed(_answers(40, 5, lambda v, k: v < 24)))  # order must not matter
    d = clustered_difference(a, b, samples=1000)
    assert d["diff"] == pytest.approx(10.0) and d["n"] == 200 and d["videos"] == 40
    assert d["lo"] <= 10.0 <= d["hi"] and d["lo"] > 0.0
    same = clustered_difference(b, b, samples=200)
    assert (same["diff"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="share no question"):
        clustered_difference([{"id": "x", "video": "v", "correct": True}], b)


def _row(key, conn, tokens, val_acc, frames=8):
    return {"key": key, "label": key, "connector": conn, "visual_tokens": tokens, "frames": frames,
            "val": {"ci": {"all": {"acc": val_acc}}}}  # fmt: skip


def test_choices_read_val_and_the_matched_pool_model_is_nearest_in_tokens(demo):
    rows = [
        _row("trajtok-8f", "trajtok", 20.0, 40.0),
        _row("trajtok-32f", "trajtok", 60.0, 45.0),
        _row("pool-8f", "pool", 129, 44.0),
        _row("pool-s4-8f", "pool", 33, 41.0),
        _row("pool-s4-32f", "pool", 129, 44.0),  # ties pool-8f on val and on tokens: the first stays
    ]
    assert demo.best_on_val(rows) == {"trajtok": "trajtok-32f", "pool": "pool-8f"}
    pools = [r for r in rows if r["connector"] == "pool"]
    assert demo.nearest_in_tokens(rows[0], pools)["key"] == "pool-s4-8f"  # 20 -> 33 (x1.65), not 129 (x6.5)
    assert demo.nearest_in_tokens(rows[1], pools)["key"] == "pool-s4-8f"  # 60 -> 33 (x1.8) beats 129 (x2.15)
    assert demo.nearest_in_tokens(rows[0], []) is None


def _results(tmp_path) -> dict:
    def split(acc_right):
        answers = _answers(6, 3, acc_right, qtype=lambda v, k: ["returns", "event_order", "distinct_count"][k])
        return {"split": "?", "ci": per_type(answers, samples=200), "answers": answers}

    rows = []
    for key, conn, tokens, frames, line in (
        ("trajtok-8f", "trajtok", 18.5, 8, "trajtok"),
        ("trajtok-32f", "trajtok", 41.0, 32, "trajtok"),
        ("pool-8f", "pool", 129, 8, "pool 2x2"),
        ("pool-s4-8f", "pool", 33, 8, "pool 4x4"),
    ):
        row = {"key": key, "label": key, "connector": conn, "visual_tokens": tokens, "frames": frames, "line": line}
        row.update(visual_tokens_min=tokens, visual_tokens_max=tokens, ttft_ms=12.0, steps="3+2+2")
        row.update(compute={"cpu_s": 100.0, "tokenizer_cpu_s": 50.0 if conn == "trajtok" else 0.0})
        row.update(val=split(lambda v, k: v < 3), test=split(lambda v, k: (v + k) % 2 == 0))
        rows.append(row)
    paired = [{"a": "trajtok-8f", "b": "pool-s4-8f", "why": "nearest", "diff": 0.0, "lo": -5.0, "hi": 5.0, "n": 18,
               "videos": 6}]  # fmt: skip
    return {
        "preset": "smoke",
        "seed": 0,
        "world": {"kind": "long", "videos": {"val": 6, "test": 6}, "questions": {"val": 18, "test": 18}},
        "bootstrap_samples": 200,
        "tokenizer": {"restart": {"miou": 0.3, "association": 0.5, "tokens_mean": 4.0, "cpu_s": 50.0}},
        "tower": None,
        "rows": rows,
        "controls": [],
        "selection": {"split": "val", "best_on_val": {"trajtok": "trajtok-8f", "pool": "pool-8f"}},
        "paired": paired,
        "description": None,
        "stage_times": {"synthetic world": {"wall_s": 8.0, "cpu_s": 2.0}},
    }


def test_report_names_splits_types_counts_and_compute(tmp_path):
    results = _results(tmp_path)
    text = demo_report.report(results)
    assert "## Test (once per model)" in text and "## Val (what the choices below read)" in text
    assert "test accuracy % [95% CI] (questions)" in text and "val accuracy % [95% CI] (questions)" in text
    for qtype in ("returns", "event_order", "distinct_count"):
        assert qtype in text
    assert "| trajtok-8f | 8 | 18 | 3+2+2 | 100 + 50 | 12 |" in text  # own CPU + TrajTok's pretraining
    assert "pool: best model on val: pool-8f" in text
    assert "trajtok-8f - pool-s4-8f (nearest): +0.0 [-5.0, +5.0] (18 questions, 6 videos)" in text
    assert "equal time" not in text


def test_figures_are_written_one_line_per_connector(tmp_path):
    pytest.importorskip("matplotlib")
    rows = _results(tmp_path)["rows"]
    for x in ("visual_tokens", "frames"):
        path = tmp_path / f"{x}.png"
        assert demo_report.plot(rows, path, x) is True
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_metrics_reads_the_runs_log(demo, tmp_path):
    rows = [{"step": s, "loss": 3.0 - s / 10} for s in (5, 10, 15, 20)]
    rows.append({"step": 20, "train_runtime": 40.0, "total_flos": 2e12})
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    m = demo.train_metrics(tmp_path)
    assert (m["steps"], m["train_s"], m["tflop"]) == (20, 40.0, 2.0)
    assert (m["first_loss"], m["last_loss"]) == (2.5, 1.0)
