"""The demo's scoring: bootstrap intervals over questions, object names in descriptions, stage data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from trajvlm.integrations.lmms_eval_tasks import bootstrap_accuracy, paired_difference


@pytest.fixture(scope="module")
def demo(load_script):
    return load_script("scripts/demo.py")


@pytest.fixture(scope="module")
def report():
    import demo_report

    return demo_report


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_questions():
    small = [{"correct": i % 2 == 0, "qtype": "count"} for i in range(20)]
    large = small * 20
    a, b = bootstrap_accuracy(small), bootstrap_accuracy(large)
    assert a["acc"] == b["acc"] == 50.0 and a["n"] == 20 and b["n"] == 400
    assert a["lo"] <= 50.0 <= a["hi"] and b["lo"] <= 50.0 <= b["hi"]
    assert (b["hi"] - b["lo"]) < (a["hi"] - a["lo"]) / 2  # width shrinks like 1/sqrt(n)
    assert math.isnan(bootstrap_accuracy(small, qtype="order")["acc"])  # no question of that type
    assert bootstrap_accuracy([{"correct": True}] * 5) == {"acc": 100.0, "lo": 100.0, "hi": 100.0, "n": 5}


def test_paired_difference_matches_questions_by_id_and_is_tighter_than_separate_intervals():
    # b answers the first 200 of 400 questions; a answers those too, plus 32 more: +8 points, always from the
    # same questions, so the paired interval is narrow while the two separate intervals overlap
    b = [{"id": f"q{i}", "correct": i < 200} for i in range(400)]
    a = [{"id": f"q{i}", "correct": i < 232} for i in reversed(range(400))]  # order must not matter
    d = paired_difference(a, b)
    assert d["diff"] == pytest.approx(8.0) and d["n"] == 400
    assert d["lo"] <= 8.0 <= d["hi"] and d["lo"] > 4.0  # the +8 is clearly above 0
    sa, sb = bootstrap_accuracy(a), bootstrap_accuracy(b)
    assert sa["lo"] < sb["hi"]  # taken apart, the intervals overlap
    assert paired_difference(b, b) == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "n": 400}
    assert paired_difference(a[:10], b)["n"] == 10  # only shared questions count
    with pytest.raises(ValueError, match="share no question"):
        paired_difference([{"id": "x", "correct": True}], b)


def test_descriptions_are_scored_by_colour_and_shape(report):
    texts = [
        "Two objects move over a dark gradient background: a striped red circle that bounces around.",
        "A blue square and a green star.",
        "B",
    ]
    truths = [{"red circle", "blue star"}, {"red square"}, {"red circle"}]
    scored = report.score_descriptions(texts, truths)
    assert scored["videos"] == 3
    assert scored["names_a_correct_object_pct"] == pytest.approx(100 / 3)  # only the first names a true object
    assert scored["named_objects_correct_pct"] == pytest.approx(100 / 3)  # 1 of the 3 names it gave is right
    # red circle: colour and shape right; blue square: only the shape (video 2 has a red square); green star: neither
    assert scored["named_colour_in_video_pct"] == pytest.approx(100 / 3)
    assert scored["named_shape_in_video_pct"] == pytest.approx(200 / 3)
    # random shapes: 1 name in video 1 (2 shapes of 8 there), 2 in video 2 (1 shape of 8)
    assert scored["named_shape_chance_pct"] == pytest.approx(100 * (1 * 2 / 8 + 2 * 1 / 8) / 3)


def test_description_colour_and_shape_are_scored_apart(report):
    # right colour, wrong shape: the colour counts, the shape and the object do not
    scored = report.score_descriptions(["a yellow ring and a red star"], [{"yellow circle", "red circle"}])
    assert scored["names_a_correct_object_pct"] == 0.0
    assert scored["named_colour_in_video_pct"] == 100.0
    assert scored["named_shape_in_video_pct"] == 0.0


def test_object_names_include_changed_colours(report):
    record = {
        "objects": [{"colour": "red", "shape": "circle"}, {"colour": "blue", "shape": "star"}],
        "events": [{"type": "colour_change", "objects": [1], "to": "green"}],
    }
    assert report.object_names(record) == {"red circle", "blue star", "green star"}


def test_stage_data_is_shared_and_packed(demo, tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    conv = [{"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": "cap"}]
    caps = [{"id": f"v{i}", "video": f"v{i}.mp4", "conversations": conv} for i in range(4) for _ in range(2)]

    def question(i: int, k: int) -> dict:
        letter = "AB"[k % 2]
        turns = [{"from": "human", "value": f"<video>\nQ{k}?\nA. x\nB. y"}, {"from": "gpt", "value": letter}]
        row = {"id": f"v{i}_q{k}", "video": f"v{i}.mp4", "conversations": turns, "qtype": "count"}
        return {**row, "question": f"Q{k}?", "options": ["x", "y", "z", "w"], "answer": letter}

    qa = [question(i, k) for i in range(4) for k in range(i + 1)]  # v0 has 1 question ... v3 has 4
    (data / "captions.json").write_text(json.dumps(caps))
    (data / "qa.json").write_text(json.dumps(qa))
    for i in range(4):
        (data / f"v{i}.json").write_text(json.dumps({"objects": [{}] * (i + 1)}))
    p = SimpleNamespace(
        stage1_samples=3,
        stage1_captions=["cast"],
        stage2_videos=4,
        stage2_turns=3,
        stage2_caption_frac=1.0,
        stage2_open_frac=1.0,
        stage2_views_frac=0.0,
    )
    s1, s2 = demo.write_stage_data(tmp_path / "data", tmp_path, p, seed=0)
    stage1, stage2 = json.loads(s1.read_text()), json.loads(s2.read_text())
    assert len(stage1) == 3 and len({r["id"] for r in stage1}) == 3  # one caption per video
    assert all(set(r) == {"id", "video", "conversations"} for r in stage1 + stage2)
    assert sorted(r["video"] for r in stage2) == [f"v{i}.mp4" for i in range(4)]  # one conversation per video
    for row in stage2:
        turns = row["conversations"]
        humans = [t["value"] for t in turns[::2]]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert humans[0].startswith("<video>\n") and not any("<video>" in h for h in humans[1:])
        i = int(row["video"][1])
        n_questions = sum(h.startswith("Q") or h.startswith("<video>\nQ") for h in humans)
        assert n_questions == min(i + 1, 3)  # capped at stage2_turns
        answers = [t["value"] for h, t in zip(humans, turns[1::2], strict=True) if "Q" in h]
        assert all(h.rstrip("?").lstrip("<video>\nQ").isdigit() for h in humans if "Q" in h)  # asked open: no options
        assert all(
            a == ("x" if int(h[-2]) % 2 == 0 else "y")
            for h, a in zip([h for h in humans if "Q" in h], answers, strict=True)
        )
        assert sum("Describe the video." in h for h in humans) == 1  # caption on every video (frac 1.0)
        open_answer = next(
            t["value"] for h, t in zip(humans, turns[1::2], strict=True) if "How many different objects" in h
        )
        assert open_answer.startswith(["One", "Two", "Three", "Four"][i])  # the world's object count, in words


def test_stage1_caption_kinds_and_no_question_asked_twice(demo, tmp_path):
    """stage1_captions picks the world's captions by kind and adds the view list built from each record; a stage-2
    conversation never asks the same question text twice (the world may draw one template twice for a video)."""
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    describe = {"from": "human", "value": "<video>\nDescribe the video."}
    caps, qa = [], []
    for i in range(3):
        texts = [f"cast {i}", f"timeline {i}"] + ([f"summary {i}"] if i != 1 else [])  # v1 has no summary
        caps += [
            {"id": f"v{i}_{k}", "video": f"v{i}.mp4", "conversations": [describe, {"from": "gpt", "value": t}]}
            for k, t in enumerate(texts)
        ]
        record = {
            "num_frames": 11,
            "objects": [
                {"colour": "red", "shape": "ring", "visible": [[0, 5]]},  # half-way = frame 5
                {"colour": "blue", "shape": "star", "visible": [[3, 10]]},
            ],
            "events": [],
        }
        (data / f"v{i}.json").write_text(json.dumps(record))
        for k, options in enumerate((["a", "b", "c", "d"], ["b", "a", "d", "c"], ["x", "y", "z", "w"])):
            question = "Same?" if k < 2 else "Other?"  # v{i} draws "Same?" twice with shuffled options
            qa.append({"video": f"v{i}.mp4", "question": question, "options": options, "answer": "A", "qtype": "t"})
    (data / "captions.json").write_text(json.dumps(caps))
    (data / "qa.json").write_text(json.dumps(qa))

    def stage_data(kinds: list[str], out: Path, views_frac: float = 0.0) -> tuple[list, list]:
        out.mkdir()
        p = SimpleNamespace(
            stage1_samples=100,
            stage1_captions=kinds,
            stage2_videos=3,
            stage2_turns=3,
            stage2_caption_frac=0.0,
            stage2_open_frac=0.0,
            stage2_views_frac=views_frac,
        )
        s1, s2 = demo.write_stage_data(tmp_path / "data", out, p, seed=0)
        return json.loads(s1.read_text()), json.loads(s2.read_text())

    stage1, stage2 = stage_data(["cast", "summary", "views"], tmp_path / "a")
    answers = sorted(r["conversations"][1]["value"] for r in stage1)
    views = "At the start: the red ring. Half-way: the red ring and the blue star. At the end: the blue star."
    assert answers == sorted(["cast 0", "cast 1", "cast 2", "summary 0", "summary 2"] + [views] * 3)
    assert all(r["conversations"][0]["value"] == describe["value"] for r in stage1)
    assert len({r["id"] for r in stage1}) == len(stage1)
    for row in stage2:
        asked = [t["value"].removeprefix("<video>\n") for t in row["conversations"][::2]]
        assert sorted(asked) == ["Other?", "Same?"]  # three turns allowed, the repeat skipped
    _, with_views = stage_data(["cast"], tmp_path / "v", views_frac=1.0)
    for row in with_views:  # the views turn joins the questions, its answer the caption of that video's record
        turns = row["conversations"]
        asked = [t["value"].removeprefix("<video>\n") for t in turns[::2]]
        assert sorted(asked) == sorted(["Other?", "Same?", demo.VIEWS_QUESTION])
        assert turns[2 * asked.index(demo.VIEWS_QUESTION) + 1]["value"] == views
    timeline, _ = stage_data(["timeline"], tmp_path / "b")
    assert sorted(r["conversations"][1]["value"] for r in timeline) == ["timeline 0", "timeline 1", "timeline 2"]
    with pytest.raises(ValueError, match="unknown kind 'frames'"):
        stage_data(["frames"], tmp_path / "c")


def test_visual_tokens_cell_shows_the_range_only_where_it_varies(report):
    assert report.tokens_cell({"visual_tokens": 65, "visual_tokens_min": 65, "visual_tokens_max": 65}) == "65"
    assert report.tokens_cell({"visual_tokens": 9.1, "visual_tokens_min": 4, "visual_tokens_max": 20}) == "9.1 (4-20)"
    assert report.tokens_cell({"visual_tokens": 0}) == "0"
