"""scripts/demo_runs.py: several runs of the main job side by side, with the targets each meets."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def runs_script(load_script):
    return load_script("scripts/demo_runs.py")


def _results(trajtok: float, pool: float, matched: float, tokens: float, described: float) -> dict:
    def row(label: str, conn: str, acc: float, visual_tokens: float) -> dict:
        return {"label": label, "connector": conn, "visual_tokens": visual_tokens, "metrics": {"accuracy": acc}}

    return {
        "rows": [
            row("trajtok 4f", "trajtok", trajtok, tokens),
            row("pool 4f", "pool", pool, 65),
            row("pool 1f (matched budget)", "pool", matched, 17),
        ],
        "controls": [row("trajtok, no video (control)", "trajtok", 30.0, 0)],
        "paired": [{"a": "trajtok 4f", "b": "pool 4f", "diff": trajtok - pool, "lo": -3.0, "hi": 9.0, "n": 352}],
        "description": {"trajtok": {"names_a_correct_object_pct": described}},
        "minutes": 29.0,
    }


def test_runs_side_by_side_with_mean_range_and_targets(runs_script, tmp_path, capsys):
    a, b = tmp_path / "seed0", tmp_path / "seed1"
    for run, res in ((a, _results(46.0, 40.0, 38.0, 10.0, 65.0)), (b, _results(40.0, 42.0, 36.0, 20.0, 20.0))):
        run.mkdir()
        (run / "results.json").write_text(json.dumps(res))
    assert runs_script.main([str(a), str(b), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "questions seed0: 352, seed1: 352" in out
    assert "| trajtok 4f | 46.0 | 40.0 | 43.0 (40.0-46.0) |" in out
    assert "| trajtok, no video (control) | 30.0 | 30.0 | 30.0 (30.0-30.0) |" in out
    assert "| trajtok 4f - pool 4f | +6.0 [-3, +9] | -2.0 [-3, +9] | +2.0 |" in out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["seed0"]["targets"] == {
        "trajtok >= 45 %": True,
        "trajtok >= pool at <= 1/4 of its tokens": True,  # 10 <= 65 / 4 and 46 >= 40
        "trajtok >= pool + 5 at a matched budget": True,  # 46 >= 38 + 5
        "descriptions >= 60 %": True,
    }
    assert saved["seed1"]["targets"] == {
        "trajtok >= 45 %": False,
        "trajtok >= pool at <= 1/4 of its tokens": False,  # below pool, and 20 > 65 / 4
        "trajtok >= pool + 5 at a matched budget": False,  # 40 < 36 + 5
        "descriptions >= 60 %": False,
    }


def test_a_missing_or_broken_run_is_named(runs_script, tmp_path, capsys):
    assert runs_script.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere/results.json: no results.json" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{")
    assert runs_script.main([str(tmp_path / "bad")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_against_pairs_each_row_with_the_base_run_on_the_same_questions(runs_script, tmp_path, capsys):
    def answers(right: int) -> list[dict]:
        return [{"id": f"q{i}", "correct": i < right} for i in range(20)]

    new, old, other = _results(46.0, 40.0, 38.0, 10.0, 65.0), _results(40.0, 42.0, 36.0, 20.0, 20.0), None
    for res, right in ((new, 12), (old, 8)):
        res["test_questions_sha256"] = "abc"
        res["rows"][0]["answers"] = answers(right)  # trajtok 4f: 60 % against 40 % on the same 20 questions
    other = {**old, "test_questions_sha256": "def"}
    for name, res in (("new", new), ("old", old), ("other", other)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    assert runs_script.main([str(tmp_path / "new"), "--against", str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert "| trajtok 4f | +20.0 [" in out  # 12 - 8 of 20 questions
    assert "| pool 4f | - | - |" in out  # no per-question answers recorded: not paired
    assert runs_script.main([str(tmp_path / "new"), "--against", str(tmp_path / "other")]) == 2
    assert "asked different questions" in capsys.readouterr().err
    assert runs_script.main([str(tmp_path / "new"), "--against"]) == 2
    assert "0 --against runs for 1 runs" in capsys.readouterr().err


def test_description_colour_and_shape_rows(runs_script, tmp_path, capsys):
    new, old = _results(40.0, 40.0, 38.0, 12.0, 30.0), _results(40.0, 40.0, 38.0, 12.0, 20.0)
    new["description"]["trajtok"].update(
        named_colour_in_video_pct=75.0, named_shape_in_video_pct=42.5, named_shape_chance_pct=41.0
    )
    for name, res in (("new", new), ("old", old)):  # "old": a run from before colour and shape were scored apart
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    assert runs_script.main([str(tmp_path / "new"), str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert "| named objects with a colour of the video % | 75.0 | - |" in out
    assert "| named objects with a shape of the video % (at random) | 42.5 (41.0) | - |" in out


def test_long_video_runs_pair_by_videos_and_find_the_matched_pool_model(runs_script, tmp_path, capsys):
    """A long-video run: the matched pool model is the one the run paired with trajtok on val (nearest in tokens),
    and --against resamples whole videos (answers carry their video)."""

    def answers(right: int) -> list[dict]:
        return [{"id": f"q{i}", "video": f"v{i // 5}", "correct": i < right} for i in range(40)]

    def run(trajtok_right: int) -> dict:
        rows = [
            {"label": "trajtok 8f", "connector": "trajtok", "visual_tokens": 20.0, "answers": answers(trajtok_right)},
            {"label": "pool 8f", "connector": "pool", "visual_tokens": 129, "answers": answers(10)},
            {"label": "pool 8f (stride 4)", "connector": "pool", "visual_tokens": 33, "answers": answers(10)},
        ]
        for r in rows:
            r["metrics"] = {"accuracy": 100.0 * sum(a["correct"] for a in r["answers"]) / 40}
        why = "the pool model trained nearest its token count (val videos)"
        paired = [{"a": "trajtok 8f", "b": "pool 8f (stride 4)", "why": why, "diff": 0.0, "lo": 0.0, "hi": 0.0}]
        return {"rows": rows, "controls": [], "paired": paired, "test_questions_sha256": "abc"}

    new, old = run(30), run(20)
    new["description"] = {"model": "trajtok-restart-8f", "names_a_correct_object_pct": 62.5}
    assert runs_script.targets(new)["descriptions >= 60 %"] is True
    assert (
        runs_script.targets({**new, "description": {**new["description"], "model": "pool-8f"}})["descriptions >= 60 %"]
        is None
    )  # another connector's descriptions say nothing about trajtok's
    assert runs_script.matched_row(new, new["rows"][0])["label"] == "pool 8f (stride 4)"
    assert runs_script.targets(new)["trajtok >= pool + 5 at a matched budget"] is True  # 75 % against 25 %
    for name, res in (("new", new), ("old", old)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    assert runs_script.main([str(tmp_path / "new"), "--against", str(tmp_path / "old")]) == 0
    assert "| trajtok 8f | +25.0 [" in capsys.readouterr().out  # 30 - 20 of 40 questions, 8 videos
