"""The pieces every benchmark task folder under eval/tasks/ builds on: rows checked for their columns, the prompt
around the question, and the metrics process_results hands lmms-eval."""

from __future__ import annotations

import json

import pytest

from trajvlm.integrations import lmms_eval_tasks as common


def test_checked_records_names_the_file_row_and_missing_columns(tmp_path):
    path = tmp_path / "ann.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"id": 1, "question": "Q?"}, {"id": 2}]) + "\n")
    rows = common.checked_records(path, ("id", "question"), "the columns")
    assert next(rows) == (0, {"id": 1, "question": "Q?"})  # rows come one at a time, in file order
    with pytest.raises(ValueError, match=r"ann.jsonl row 1: missing column\(s\) \['question'\]; expected the columns"):
        next(rows)


def test_question_prompt_letters_the_options_between_the_task_prompts():
    kwargs = {"pre_prompt": "<", "post_prompt": ">"}
    assert common.question_prompt("Q?", kwargs, ["x", "B. y"]) == "<Q?\nA. x\nB. y>"
    assert common.question_prompt("Q?", kwargs, ["x"], "({letter}) {text}") == "<Q?\n(A) x>"
    assert common.question_prompt("Q?", None) == "Q?"  # no options: the question alone, no blank line


def test_choice_metrics_gives_score_to_the_main_metric_only():
    scored = common.score_choice("B", "B", "ABCD", id="1", group="g")
    out = common.choice_metrics("acc", scored, ("group",))
    assert list(out) == ["acc", "by_group", "failed"]
    assert out["acc"]["score"] == 1.0 and "score" not in out["by_group"] and out["failed"] is scored
    assert common.video_file({"video_file": "/v.mp4"}) == ["/v.mp4"]
