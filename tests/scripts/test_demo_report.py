"""The demo's scoring: bootstrap intervals over questions, object names in descriptions, stage data."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from trajvlm.integrations.lmms_eval_tasks import bootstrap_accuracy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_script_report", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_questions():
    small = [{"correct": i % 2 == 0, "qtype": "count"} for i in range(20)]
    large = small * 20
    a, b = bootstrap_accuracy(small), bootstrap_accuracy(large)
    assert a["acc"] == b["acc"] == 50.0 and a["n"] == 20 and b["n"] == 400
    assert a["lo"] <= 50.0 <= a["hi"] and b["lo"] <= 50.0 <= b["hi"]
    assert (b["hi"] - b["lo"]) < (a["hi"] - a["lo"]) / 2  # width shrinks like 1/sqrt(n)
    assert math.isnan(bootstrap_accuracy(small, qtype="order")["acc"])  # no question of that type
    assert bootstrap_accuracy([{"correct": True}] * 5) == {"acc": 100.0, "lo": 100.0, "hi": 100.0, "n": 5}


def test_descriptions_are_scored_by_colour_and_shape(demo):
    texts = [
        "Two objects move over a dark gradient background: a striped red circle that bounces around.",
        "A blue square and a green star.",
        "B",
    ]
    truths = [{"red circle", "blue star"}, {"red square"}, {"red circle"}]
    scored = demo.score_descriptions(texts, truths)
    assert scored["videos"] == 3
    assert scored["names_a_correct_object_pct"] == pytest.approx(100 / 3)  # only the first names a true object
    assert scored["named_objects_correct_pct"] == pytest.approx(100 / 3)  # 1 of the 3 names it gave is right


def test_object_names_include_changed_colours(demo):
    record = {
        "objects": [{"colour": "red", "shape": "circle"}, {"colour": "blue", "shape": "star"}],
        "events": [{"type": "colour_change", "objects": [1], "to": "green"}],
    }
    assert demo.object_names(record) == {"red circle", "blue star", "green star"}


def test_stage_data_is_shared_and_mixed(demo, tmp_path):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    conv = [{"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": "cap"}]
    caps = [{"id": f"v{i}", "video": f"v{i}.mp4", "conversations": conv} for i in range(4) for _ in range(2)]
    qa = [{"id": f"v{i}_q0", "video": f"v{i}.mp4", "conversations": conv, "qtype": "count"} for i in range(4)]
    (data / "captions.json").write_text(json.dumps(caps))
    (data / "qa.json").write_text(json.dumps(qa))
    p = {"stage1_samples": 3, "stage2_qa": 2, "stage2_captions": 1}
    s1, s2 = demo.write_stage_data(tmp_path / "data", tmp_path, p, seed=0)
    stage1, stage2 = json.loads(s1.read_text()), json.loads(s2.read_text())
    assert len(stage1) == 3 and len({r["id"] for r in stage1}) == 3  # one caption per video
    assert len(stage2) == 3 and sum("_q" in r["id"] for r in stage2) == 2
    assert all(set(r) == {"id", "video", "conversations"} for r in stage1 + stage2)
