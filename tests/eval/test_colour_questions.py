"""eval/bench/colour_questions.py: yes / no questions about the colours in view in a long-world video's first frame."""

from __future__ import annotations

import json
import random

import pytest

from trajtok.synth import write_dataset
from trajtok.synth.text import colour_at, is_visible


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("eval/bench/colour_questions.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("long_world")
    write_dataset(out, "train=6,val=2,test=0", frames=(64, 96), size=48, objects=(3, 5), world="long")
    return out


def test_a_planted_record(script):
    """Object 0 is red and visible at frame 0, object 1 only later, object 2 turns blue before frame 0 is over."""
    record = {
        "objects": [
            {"colour": "red", "visible": [[0, 10]]},
            {"colour": "green", "visible": [[5, 20]]},
            {"colour": "white", "visible": [[0, 30]]},
        ],
        "events": [{"type": "colour_change", "objects": [2], "frames": [0, 0], "to": "blue"}],
    }
    assert script.colours_at_start(record) == ["blue", "red"]
    never = script.colours_never(record)
    assert not {"red", "green", "white", "blue"} & set(never) and len(never) > 2
    pairs = script.questions_for(record, 4, random.Random(0))
    assert sorted(a for _, a in pairs) == ["no", "no", "yes", "yes"]
    assert {q for q, a in pairs if a == "yes"} == {script.question("blue"), script.question("red")}
    assert script.question("orange").startswith("Is there an orange")


def test_questions_follow_the_records(script, world, tmp_path):
    counts = script.write(world, tmp_path, None, 4, 0, ["val"])
    conversations = json.loads((tmp_path / "stage2.json").read_text())
    assert counts["train_conversations"] == len(conversations) > 0
    for conv in conversations:
        record = json.loads((world / "train" / conv["video"].replace(".mp4", ".json")).read_text())
        start = {colour_at(record, i, 0) for i in range(len(record["objects"])) if is_visible(record, i, 0)}
        turns = conv["conversations"]
        assert turns[0]["value"].startswith("<video>\n") and all("<video>" not in t["value"] for t in turns[1:])
        answers = [t["value"] for t in turns[1::2]]
        assert answers.count("yes") == answers.count("no")
        for human, gpt in zip(turns[0::2], turns[1::2], strict=True):
            colour = human["value"].split(" object")[0].split()[-1]
            assert (colour in start) == (gpt["value"] == "yes")
    qa = json.loads((tmp_path / "val" / "qa.json").read_text())
    assert counts["val_questions"] == len(qa) > 0
    assert {q["answer"] for q in qa} == {"A", "B"} and all(q["options"] == ["yes", "no"] for q in qa)
    assert all((tmp_path / "val" / q["video"]).is_file() for q in qa)  # the bench reads videos beside qa.json


def test_a_missing_split_is_one_line(script, tmp_path, capsys):
    assert script.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "no split folder" in capsys.readouterr().err
