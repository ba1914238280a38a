"""Every task under eval/tasks loads through lmms-eval's TaskManager from fake local data in its benchmark's own
annotation format, builds prompts and video paths, and scores right, wrong and failed answers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from trajvlm.integrations.lmms_eval_tasks import FAILED_ANSWER

TASKS_DIR = Path(__file__).resolve().parents[2] / "eval" / "tasks"


@pytest.fixture(scope="module")
def task_manager(datasets_cache):
    from lmms_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def _load(task_manager, name: str):
    from lmms_eval.tasks import get_task_dict

    task = get_task_dict([name], task_manager)[name]
    return task, list(task.test_docs())


def _score(task, docs, responses: list[str]) -> dict[str, float]:
    """Aggregate every metric over the docs answered with ``responses``."""
    per_doc = [task.process_results(doc, [r]) for doc, r in zip(docs, responses, strict=True)]
    return {name: fn([p[name] for p in per_doc]) for name, fn in task.aggregation().items()}


def test_all_task_yamls_are_found(task_manager):
    expected = {
        "trajworld",
        "trajworld_mc",
        "videomme_local",
        "mlvu_dev_local",
        "longvideobench_val_local",
        "lvbench_local",
        "egoschema_subset_local",
    }
    assert expected <= set(task_manager.all_tasks)


def test_trajworld(task_manager, synth_world, monkeypatch):
    monkeypatch.setenv("TRAJWORLD_DIR", str(synth_world))
    task, docs = _load(task_manager, "trajworld")
    rows = json.loads((synth_world / "test" / "qa.json").read_text())
    assert [d["id"] for d in docs] == [r["id"] for r in rows]
    human = rows[0]["conversations"][0]["value"].replace("<video>\n", "")
    assert task.doc_to_text(docs[0]) == human  # the same prompt the training data uses
    assert task.doc_to_visual(docs[0]) == [str(synth_world / "test" / rows[0]["video"])]
    wrong = [next(c for c in "ABCD" if c != r["answer"]) for r in rows]
    right = [r["answer"] for r in rows]
    scores = _score(task, docs, [f"{right[0]}."] + [FAILED_ANSWER] + wrong[2:])
    assert scores["accuracy"] == pytest.approx(100 / len(rows))
    assert scores["failed"] == 1
    first = rows[0]["qtype"]
    n_first = sum(r["qtype"] == first for r in rows)
    assert scores[f"acc_{first}"] == pytest.approx(100 / n_first)
    absent = [
        q
        for q in ("count", "order", "exit_side", "attribute", "collision", "first_event", "event_count", "change")
        if q not in {r["qtype"] for r in rows}
    ]
    assert all(math.isnan(scores[f"acc_{q}"]) for q in absent)


def test_trajworld_mc(task_manager, synth_world, monkeypatch):
    monkeypatch.setenv("TRAJWORLD_DIR", str(synth_world / "test"))  # a split folder works too
    task, docs = _load(task_manager, "trajworld_mc")
    assert task.doc_to_choice(docs[0]) == ["A", "B", "C", "D"]
    answer = ord(docs[0]["answer"]) - ord("A")
    lls = ["(-1.0, False)"] * 4
    lls[answer] = "(-0.1, True)"
    right = task.process_results(docs[0], lls)["accuracy"]
    failed = task.process_results(docs[0], ["(-inf, False)"] * 4)["accuracy"]
    assert right["correct"] and not right["failed"]
    assert failed["failed"] and not failed["correct"]


def _utils(folder: str):
    """A task folder's utils.py, imported the way lmms-eval does (from its file)."""
    spec = importlib.util.spec_from_file_location(f"{folder}_utils", TASKS_DIR / folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("folder", "variable", "process_docs"),
    [
        ("trajworld", "TRAJWORLD_DIR", "trajworld_process_docs"),
        ("videomme", "VIDEOMME_DIR", "videomme_process_docs"),
        ("mlvu", "MLVU_DIR", "mlvu_process_docs"),
        ("longvideobench", "LONGVIDEOBENCH_DIR", "lvb_process_docs"),
        ("lvbench", "LVBENCH_DIR", "lvbench_process_docs"),
        ("egoschema", "EGOSCHEMA_DIR", "egoschema_process_docs"),
    ],
)
def test_missing_data_names_the_variable_and_layout(folder, variable, process_docs, monkeypatch, tmp_path):
    load = getattr(_utils(folder), process_docs)
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(FileNotFoundError, match=f"set {variable} .* expected layout"):
        load(None)
    monkeypatch.setenv(variable, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load(None)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_videomme(task_manager, monkeypatch, tmp_path):
    rows = [
        {
            "video_id": "001",
            "duration": duration,
            "domain": "Knowledge",
            "sub_category": "Astronomy",
            "url": "",
            "videoID": vid,
            "question_id": f"{vid}-1",
            "task_type": "Counting Problem",
            "question": "How many planets are shown?",
            "options": ["A. 1", "B. 2", "C. 3", "D. 4"],
            "answer": answer,
        }
        for vid, duration, answer in [("fFjv93ACGo8", "short", "C"), ("abcdEFGhijk", "long", "A")]
    ]
    _write_parquet(tmp_path / "videomme" / "test-00000-of-00001.parquet", rows)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fFjv93ACGo8.mp4").write_bytes(b"")  # the second video is missing
    monkeypatch.setenv("VIDEOMME_DIR", str(tmp_path))
    task, docs = _load(task_manager, "videomme_local")
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "data" / "fFjv93ACGo8.mp4")]
    assert task.doc_to_visual(docs[1]) == [str(tmp_path / "data" / "abcdEFGhijk.mp4")]  # recorded as failed later
    text = task.doc_to_text(docs[0])
    assert "How many planets are shown?\nA. 1\nB. 2\nC. 3\nD. 4" in text and "A. A." not in text
    scores = _score(task, docs, ["C", FAILED_ANSWER])
    assert (scores["accuracy"], scores["acc_short"], scores["acc_long"], scores["failed"]) == (50.0, 100.0, 0.0, 1)
    assert math.isnan(scores["acc_medium"])


def test_mlvu_original_release(task_manager, monkeypatch, tmp_path):
    (tmp_path / "json").mkdir()
    plot = [
        {
            "video": "movie101_66.mp4",
            "duration": 246,
            "question": "What does the man do?",
            "candidates": ["runs", "sits", "jumps", "sleeps"],
            "answer": "sits",
            "question_type": "plotQA",
        }
    ]
    count = [dict(plot[0], video="c1.mp4", question="How many?", candidates=["1", "2", "3", "4"], answer="4")]
    count[0]["question_type"] = "count"
    (tmp_path / "json" / "1_plotQA.json").write_text(json.dumps(plot))
    (tmp_path / "json" / "4_count.json").write_text(json.dumps(count))
    monkeypatch.setenv("MLVU_DIR", str(tmp_path))
    task, docs = _load(task_manager, "mlvu_dev_local")
    assert [d["answer"] for d in docs] == ["B", "D"]
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "video" / "1_plotQA" / "movie101_66.mp4")]
    assert "(A) runs\n(B) sits\n(C) jumps\n(D) sleeps\nOnly give the best option." in task.doc_to_text(docs[0])
    scores = _score(task, docs, ["B)", "A"])
    assert (scores["accuracy"], scores["m_avg"], scores["failed"]) == (50.0, 50.0, 0)


def test_mlvu_lmms_eval_format(task_manager, monkeypatch, tmp_path):
    rows = [
        {
            "video_name": "needle/n1.mp4",
            "question": "Q?\n(A) x\n(B) y\n(C) z\n(D) w",
            "answer": "A",
            "task_type": "needle",
        },
        {
            "video_name": "order/o1.mp4",
            "question": "Q2?\n(A) x\n(B) y\n(C) z\n(D) w",
            "answer": "C",
            "task_type": "order",
        },
        {
            "video_name": "order/o2.mp4",
            "question": "Q3?\n(A) x\n(B) y\n(C) z\n(D) w",
            "answer": "D",
            "task_type": "order",
        },
    ]
    _write_parquet(tmp_path / "test-00000-of-00001.parquet", rows)
    monkeypatch.setenv("MLVU_DIR", str(tmp_path))
    task, docs = _load(task_manager, "mlvu_dev_local")
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "needle" / "n1.mp4")]
    assert task.doc_to_text(docs[0]).startswith("Q?\n(A) x")
    scores = _score(task, docs, ["A", "C", FAILED_ANSWER])
    assert scores["accuracy"] == pytest.approx(200 / 3)
    assert scores["m_avg"] == pytest.approx((100 + 50) / 2)  # needle 100 %, order 50 %
    assert scores["failed"] == 1


def test_longvideobench(task_manager, monkeypatch, tmp_path):
    base = {"question_category": "T3O", "subtitle_path": "x.json", "starting_timestamp_for_subtitles": 0}
    rows = [
        dict(base, id="q1", video_path="v1.mp4", question="What?", duration_group=15, duration=12.0,
             option0="cat", option1="dog", option2="fox", option3="N/A", option4="N/A", correct_choice=2),
        dict(base, id="q2", video_path="v2.mp4", question="Who?", duration_group=3600, duration=3000.0,
             option0="a", option1="b", option2="c", option3="d", option4="e", correct_choice=4),
    ]  # fmt: skip
    (tmp_path / "lvb_val.json").write_text(json.dumps(rows))
    monkeypatch.setenv("LONGVIDEOBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, "longvideobench_val_local")
    assert [d["answer"] for d in docs] == ["C", "E"]
    assert docs[0]["options"] == ["cat", "dog", "fox"]  # "N/A" options dropped
    assert task.doc_to_visual(docs[1]) == [str(tmp_path / "videos" / "v2.mp4")]
    assert "Who?\nA. a\nB. b\nC. c\nD. d\nE. e\n" in task.doc_to_text(docs[1])
    scores = _score(task, docs, ["C", "E"])
    assert (scores["accuracy"], scores["acc_d15"], scores["acc_d3600"], scores["failed"]) == (100.0, 100.0, 100.0, 0)
    assert math.isnan(scores["acc_d60"])


def test_lvbench_original_release(task_manager, monkeypatch, tmp_path):
    video = {
        "key": "Cm73ma6Ibcs",
        "type": "documentary",
        "video_info": {"duration_minutes": 70},
        "qa": [
            {
                "uid": "1",
                "question": "What is shown first?\n(A) a\n(B) b\n(C) c\n(D) d",
                "answer": "B",
                "question_type": ["entity recognition", "key information retrieval"],
                "time_reference": "00:10-00:20",
            },
            {
                "uid": "2",
                "question": "Then?\n(A) a\n(B) b\n(C) c\n(D) d",
                "answer": "D",
                "question_type": ["reasoning"],
            },
        ],
    }
    (tmp_path / "video_info.meta.jsonl").write_text(json.dumps(video) + "\n")
    (tmp_path / "videos").mkdir()
    monkeypatch.setenv("LVBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, "lvbench_local")
    assert len(docs) == 2
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "videos" / "Cm73ma6Ibcs.mp4")]
    assert task.doc_to_text(docs[0]).startswith("What is shown first?\n(A) a")
    scores = _score(task, docs, ["(B)", "A"])
    assert (scores["accuracy"], scores["failed"]) == (50.0, 0)


def test_lvbench_lmms_eval_format(task_manager, monkeypatch, tmp_path):
    rows = [{"video_path": "abc.mp4", "question": "Q?", "options": ["x", "y", "z", "w"], "answer": "D"}]
    (tmp_path / "lvbench.json").write_text(json.dumps(rows))
    monkeypatch.setenv("LVBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, "lvbench_local")
    assert "Q?\n(A) x\n(B) y\n(C) z\n(D) w" in task.doc_to_text(docs[0])
    assert _score(task, docs, ["D"])["accuracy"] == 100.0


def test_egoschema_original_release(task_manager, monkeypatch, tmp_path):
    questions = [
        {"q_uid": uid, "google_drive_id": "x", "question": f"What is c doing ({uid})?"}
        | {f"option {i}": f"choice {i}" for i in range(5)}
        for uid in ("u1", "u2", "u3")
    ]
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    (tmp_path / "subset_answers.json").write_text(json.dumps({"u1": 4, "u3": 0}))  # u2 has no public answer
    monkeypatch.setenv("EGOSCHEMA_DIR", str(tmp_path))
    task, docs = _load(task_manager, "egoschema_subset_local")
    assert [d["q_uid"] for d in docs] == ["u1", "u3"] and [d["answer"] for d in docs] == ["E", "A"]
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "videos" / "u1.mp4")]
    assert "A. choice 0\nB. choice 1\nC. choice 2\nD. choice 3\nE. choice 4" in task.doc_to_text(docs[0])
    scores = _score(task, docs, ["E", FAILED_ANSWER])
    assert (scores["accuracy"], scores["failed"]) == (50.0, 1)


def test_egoschema_lmms_eval_format(task_manager, monkeypatch, tmp_path):
    rows = [
        {
            "question_idx": "q1",
            "question": "Why?",
            "video_idx": "vid1",
            "option": ["A. one", "B. two", "C. three", "D. four", "E. five"],
            "answer": "1",
        }
    ]
    _write_parquet(tmp_path / "Subset" / "test-00000-of-00001.parquet", rows)
    monkeypatch.setenv("EGOSCHEMA_DIR", str(tmp_path))
    task, docs = _load(task_manager, "egoschema_subset_local")
    assert docs[0]["answer"] == "B" and docs[0]["options"][0] == "one"
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "videos" / "vid1.mp4")]
    assert _score(task, docs, ["B. two"])["accuracy"] == 100.0
