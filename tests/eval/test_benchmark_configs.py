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


# The benchmark tasks and lmms-eval's task of the same data: lmms-eval's own names are taken by its downloading tasks,
# which its TaskManager prefers over --include_path ones, so the local copies carry a `_local` suffix.
BENCHMARK_TASKS = {
    "videomme_local": "videomme",
    "videomme_long_local": "videomme_long",
    "videomme_w_subtitle_local": "videomme_w_subtitle",
    "videomme_long_w_subtitle_local": "videomme_long_w_subtitle",
    "mlvu_dev_local": "mlvu_dev",
    "longvideobench_val_v_local": "longvideobench_val_v",
    "lvbench_local": "lvbench",
    "egoschema_subset_local": "egoschema_subset",
}


def test_all_task_yamls_are_found(task_manager):
    expected = {"trajworld", "trajworld_mc", "longvideobench_val_local", *BENCHMARK_TASKS}
    assert expected <= set(task_manager.all_tasks)


def _metrics(yaml_path: Path) -> dict[str, bool]:
    """{metric: higher_is_better} of a task YAML, its includes resolved the way lmms-eval resolves them."""
    from lmms_eval.utils import load_yaml_config

    return {m["metric"]: m["higher_is_better"] for m in load_yaml_config(str(yaml_path), mode="simple")["metric_list"]}


def _builtin_yaml(task: str) -> Path:
    """lmms-eval's own YAML of ``task``, from the installed package."""
    import lmms_eval
    import yaml

    for path in (Path(lmms_eval.__file__).parent / "tasks").glob("*/*.yaml"):
        text = "".join(line for line in path.read_text().splitlines(keepends=True) if "!function" not in line)
        if (yaml.safe_load(text) or {}).get("task") == task:
            return path
    raise AssertionError(f"lmms-eval has no task {task!r}")


@pytest.mark.parametrize(("local", "builtin"), sorted(BENCHMARK_TASKS.items()))
def test_metric_names_match_lmms_eval(task_manager, local, builtin):
    """Each local task reports every metric of lmms-eval's task under the same name and direction."""
    ours = _metrics(Path(task_manager.task_index[local]["yaml_path"]))
    theirs = _metrics(_builtin_yaml(builtin))
    assert theirs and {m: ours.get(m) for m in theirs} == theirs
    assert ours["failed"] is False


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


def _videomme_row(vid: str, duration: str, domain: str, sub: str, task_type: str, answer: str) -> dict:
    """A row with the published Video-MME columns."""
    return {
        "video_id": "001",
        "duration": duration,
        "domain": domain,
        "sub_category": sub,
        "url": f"https://www.youtube.com/watch?v={vid}",
        "videoID": vid,
        "question_id": f"{vid}-1",
        "task_type": task_type,
        "question": "How many planets are shown?",
        "options": ["A. 1", "B. 2", "C. 3", "D. 4"],
        "answer": answer,
    }


def test_videomme(task_manager, monkeypatch, tmp_path):
    rows = [
        _videomme_row("fFjv93ACGo8", "short", "Knowledge", "Astronomy", "Counting Problem", "C"),
        _videomme_row("abcdEFGhijk", "long", "Knowledge", "Geography", "OCR Problems", "A"),
        _videomme_row("short2xxxxx", "short", "Sports Competition", "Football", "Counting Problem", "B"),
        _videomme_row("medium1xxxx", "medium", "Sports Competition", "Football", "Action Reasoning", "D"),
    ]
    _write_parquet(tmp_path / "videomme" / "test-00000-of-00001.parquet", rows)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fFjv93ACGo8.mp4").write_bytes(b"")  # the others are missing
    monkeypatch.setenv("VIDEOMME_DIR", str(tmp_path))
    task, docs = _load(task_manager, "videomme_local")
    assert {k: docs[0][k] for k in rows[0]} == rows[0]  # every published column, as published
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "data" / "fFjv93ACGo8.mp4")]
    assert task.doc_to_visual(docs[1]) == [str(tmp_path / "data" / "abcdEFGhijk.mp4")]  # recorded as failed later
    text = task.doc_to_text(docs[0])
    assert "How many planets are shown?\nA. 1\nB. 2\nC. 3\nD. 4" in text and "A. A." not in text
    # right, failed, wrong ("A" for B), right ("The answer is D")
    scores = _score(task, docs, ["C", FAILED_ANSWER, "A", "The answer is D."])
    assert scores["videomme_perception_score"] == 50.0
    assert scores["by_duration"] == {"short": 50.0, "medium": 100.0, "long": 0.0}
    assert scores["by_domain"] == {"Knowledge": 50.0, "Sports Competition": 50.0}
    assert scores["by_sub_category"] == {"Astronomy": 100.0, "Geography": 0.0, "Football": 50.0}
    assert scores["by_task_type"] == {"Counting Problem": 50.0, "OCR Problems": 0.0, "Action Reasoning": 100.0}
    assert scores["failed"] == 1
    sample = task.process_results(docs[0], ["C"])["videomme_perception_score"]
    assert sample["score"] == 1.0 and sample["videoID"] == "fFjv93ACGo8"  # lmms-eval's CLT / clustered stderr

    long_task, long_docs = _load(task_manager, "videomme_long_local")
    assert [d["videoID"] for d in long_docs] == ["abcdEFGhijk"]
    assert _score(long_task, long_docs, ["A"])["by_duration"] == {"long": 100.0}


def _write_srt(path: Path, cues: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = [f"{i}\n{start} --> {end}\n{text}\n" for i, (start, end, text) in enumerate(cues, 1)]
    path.write_text("\n".join(blocks), encoding="utf-8")


def test_read_srt_and_subtitles_at(tmp_path):
    from trajvlm.integrations.lmms_eval_tasks import read_srt, subtitles_at

    path = tmp_path / "a.srt"
    _write_srt(
        path,
        [
            ("00:00:00,000", "00:00:01,500", '<font color="white" size=".72c">first line</font>'),
            ("00:00:02,000", "00:00:03,000", "two\nlines"),
            ("00:01:05,250", "01:00:00,000", "<i>late</i>"),
        ],
    )
    cues = read_srt(path)
    assert cues == [(0.0, 1.5, "first line"), (2.0, 3.0, "two lines"), (65.25, 3600.0, "late")]
    # frames at 0, 50 and 100 s of a 100 s video: the first and the last cue are on screen, the second is not
    assert subtitles_at(cues, 100.0, 3) == ["first line", "late"]
    assert subtitles_at(cues, 100.0, -1) == ["first line", "two lines", "late"]
    assert subtitles_at(cues, None, 3) == ["first line", "two lines", "late"]  # unknown duration: all
    bad = tmp_path / "bad.srt"
    bad.write_text("1\n00:00:xx --> 00:00:01,000\nhi\n")
    with pytest.raises(ValueError, match="bad.srt: subtitle time '00:00:xx'"):
        read_srt(bad)


def test_videomme_w_subtitle(task_manager, monkeypatch, tmp_path, synth_world):
    import shutil

    from trajtok.io.video import load_video
    from trajvlm.integrations.lmms_eval_tasks import read_srt, subtitles_at, video_duration

    rows = [
        _videomme_row("withsubs", "short", "Knowledge", "Astronomy", "Counting Problem", "C"),
        _videomme_row("nosubs", "long", "Knowledge", "Astronomy", "Counting Problem", "A"),
    ]
    _write_parquet(tmp_path / "videomme" / "test-00000-of-00001.parquet", rows)
    video = tmp_path / "data" / "withsubs.mp4"
    video.parent.mkdir()
    shutil.copy(synth_world / "test" / "test_00000.mp4", video)
    decoded = load_video(video)
    duration = decoded.num_source_frames / decoded.fps
    assert video_duration(video) == pytest.approx(duration, abs=0.05)
    # cues: over the first frame, strictly between the first and the last frame, over the last frame
    third, two_thirds = _srt_time(duration / 3), _srt_time(duration * 2 / 3)
    _write_srt(
        tmp_path / "subtitle" / "withsubs.srt",
        [
            ("00:00:00,000", _srt_time(duration / 4), "at the start"),
            (third, two_thirds, "in the middle"),
            (two_thirds, "10:00:00,000", "to the end"),
        ],
    )
    monkeypatch.setenv("VIDEOMME_DIR", str(tmp_path))
    task, docs = _load(task_manager, "videomme_w_subtitle_local")
    text = task.doc_to_text(docs[0])
    # frame_num is 32 in the YAML: every cue is on screen at one of 32 frames
    assert text.startswith("This video's subtitles are listed below:\nat the start\nin the middle\nto the end\n")
    assert "based on the video and the subtitles" in text and text.endswith("The best answer is:")
    assert "How many planets are shown?\nA. 1\nB. 2\nC. 3\nD. 4" in text
    assert "No subtitles available" in task.doc_to_text(docs[1])
    # two frames (first and last) miss the middle cue
    assert subtitles_at(read_srt(tmp_path / "subtitle" / "withsubs.srt"), video_duration(video), 2) == [
        "at the start",
        "to the end",
    ]
    scores = _score(task, docs, ["C", "B"])
    assert scores["videomme_perception_score"] == 50.0 and scores["by_duration"] == {"short": 100.0, "long": 0.0}


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


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
    assert [d["task_type"] for d in docs] == ["plotQA", "count"]
    assert docs[0]["video_name"] == "movie101_66.mp4"
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "video" / "1_plotQA" / "movie101_66.mp4")]
    assert docs[0]["question"] == "What does the man do?\n(A) runs\n(B) sits\n(C) jumps\n(D) sleeps"
    assert task.doc_to_text(docs[0]).endswith("(D) sleeps\nOnly give the best option.\nBest option: (")
    scores = _score(task, docs, ["B)", "A"])
    assert scores["mlvu_percetion_score"] == 50.0
    assert scores["by_task_type"] == {"plotQA": 100.0, "count": 0.0}
    assert scores["failed"] == 0


def test_mlvu_lmms_eval_format(task_manager, monkeypatch, tmp_path):
    rows = [
        {"video_name": "needle/n1.mp4", "question": "Q?\n(A) x\n(B) y\n(C) z\n(D) w", "answer": "A", "task_type": "needle"},
        {"video_name": "order/o1.mp4", "question": "Q2?\n(A) x\n(B) y\n(C) z\n(D) w", "answer": "C", "task_type": "order"},
        {"video_name": "order/o2.mp4", "question": "Q3?\n(A) x\n(B) y\n(C) z\n(D) w", "answer": "D", "task_type": "order"},
        {"video_name": "order/o3.mp4", "question": "Q4?\n(A) x\n(B) y\n(C) z\n(D) w", "answer": "B", "task_type": "order"},
    ]  # fmt: skip
    _write_parquet(tmp_path / "test-00000-of-00001.parquet", rows)
    monkeypatch.setenv("MLVU_DIR", str(tmp_path))
    task, docs = _load(task_manager, "mlvu_dev_local")
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "needle" / "n1.mp4")]
    assert task.doc_to_text(docs[0]) == "Q?\n(A) x\n(B) y\n(C) z\n(D) w\nOnly give the best option.\nBest option: ("
    scores = _score(task, docs, ["A", "C", FAILED_ANSWER, "D"])
    # M-Avg is the mean of the task types' accuracies (needle 100 %, order 1 of 3), not the accuracy over questions
    assert scores["mlvu_percetion_score"] == pytest.approx((100 + 100 / 3) / 2)
    assert scores["by_task_type"] == pytest.approx({"needle": 100.0, "order": 100 / 3})
    assert scores["failed"] == 1


def _lvb_rows() -> list[dict]:
    base = {"subtitle_path": "x.json", "starting_timestamp_for_subtitles": 0, "video_id": "v"}
    return [
        dict(base, id="q1", video_path="v1.mp4", question="What?", duration_group=15, duration=12.0,
             question_category="T3O", option0="cat", option1="dog", option2="fox", option3="N/A", option4="N/A",
             correct_choice=2),
        dict(base, id="q2", video_path="v2.mp4", question="Who?", duration_group=3600, duration=3000.0,
             question_category="T3O", option0="a", option1="b", option2="c", option3="d", option4="e",
             correct_choice=4),
        dict(base, id="q3", video_path="v2.mp4", question="When?", duration_group=3600, duration=3000.0,
             question_category="S2E", option0="a", option1="b", option2="c", option3="d", option4="N/A",
             correct_choice=0),
        dict(base, id="q4", video_path="v3.mp4", question="Where?", duration_group=60, duration=50.0,
             question_category="S2E", option0="a", option1="b", option2="c", option3="d", option4="N/A",
             correct_choice=1),
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["longvideobench_val_v_local", "longvideobench_val_local"])
def test_longvideobench(task_manager, monkeypatch, tmp_path, name):
    rows = _lvb_rows()
    (tmp_path / "lvb_val.json").write_text(json.dumps(rows))
    monkeypatch.setenv("LONGVIDEOBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, name)
    assert {k: docs[1][k] for k in rows[1]} == rows[1]  # every published column, as published
    assert [d["answer"] for d in docs] == ["C", "E", "A", "B"]
    assert docs[0]["options"] == ["cat", "dog", "fox"]  # "N/A" options dropped
    assert task.doc_to_visual(docs[1]) == [str(tmp_path / "videos" / "v2.mp4")]
    assert "Who?\nA. a\nB. b\nC. c\nD. d\nE. e\n" in task.doc_to_text(docs[1])
    scores = _score(task, docs, ["C", "E", "B", FAILED_ANSWER])
    assert scores["lvb_acc"] == 0.5  # a fraction, as lmms-eval's
    assert scores["by_duration_group"] == {"15": 1.0, "60": 0.0, "3600": 0.5}
    assert scores["by_question_category"] == {"S2E": 0.0, "T3O": 1.0}
    assert scores["failed"] == 1


def test_longvideobench_candidates_form(task_manager, monkeypatch, tmp_path):
    """lvb_val.json as released lists the options in `candidates`; the docs get lmms-eval's option0..option4 too."""
    row = {k: v for k, v in _lvb_rows()[0].items() if not k.startswith("option")} | {"candidates": ["x", "y"]}
    row["correct_choice"] = 1
    (tmp_path / "lvb_val.json").write_text(json.dumps([row]))
    monkeypatch.setenv("LONGVIDEOBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, "longvideobench_val_v_local")
    assert [docs[0][f"option{i}"] for i in range(5)] == ["x", "y", "N/A", "N/A", "N/A"]
    assert docs[0]["answer"] == "B" and _score(task, docs, ["B"])["lvb_acc"] == 1.0
    row["correct_choice"] = 2
    (tmp_path / "lvb_val.json").write_text(json.dumps([row]))
    with pytest.raises(ValueError, match="sample q1 has correct_choice 2 for 2 options"):
        _utils("longvideobench").lvb_process_docs(None)


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
            {
                "uid": "3",
                "question": "Who?\n(A) a\n(B) b\n(C) c\n(D) d",
                "answer": "A",
                "question_type": ["entity recognition"],
            },
        ],
    }
    (tmp_path / "video_info.meta.jsonl").write_text(json.dumps(video) + "\n")
    (tmp_path / "videos").mkdir()
    monkeypatch.setenv("LVBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, "lvbench_local")
    assert len(docs) == 3
    assert (docs[0]["key"], docs[0]["type"], docs[0]["video_path"]) == ("Cm73ma6Ibcs", "documentary", "Cm73ma6Ibcs.mp4")
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "videos" / "Cm73ma6Ibcs.mp4")]
    assert task.doc_to_text(docs[0]).startswith("What is shown first?\n(A) a")
    scores = _score(task, docs, ["(B)", "A", "A"])
    assert scores["lvbench_score"] == pytest.approx(2 / 3)  # a fraction, as lmms-eval's
    # a question counts in each of its types
    assert scores["by_question_type"] == {"entity recognition": 1.0, "key information retrieval": 1.0, "reasoning": 0.0}
    assert scores["failed"] == 0


def test_lvbench_lmms_eval_format(task_manager, monkeypatch, tmp_path):
    rows = [{"video_path": "abc.mp4", "question": "Q?", "options": ["x", "y", "z", "w"], "answer": "D"}]
    (tmp_path / "lvbench.json").write_text(json.dumps(rows))
    monkeypatch.setenv("LVBENCH_DIR", str(tmp_path))
    task, docs = _load(task_manager, "lvbench_local")
    assert "Q?\n(A) x\n(B) y\n(C) z\n(D) w" in task.doc_to_text(docs[0])
    scores = _score(task, docs, ["D"])
    assert scores["lvbench_score"] == 1.0 and scores["by_question_type"] == {}


def test_egoschema_original_release(task_manager, monkeypatch, tmp_path):
    questions = [
        {"q_uid": uid, "google_drive_id": "x", "question": f"What is c doing ({uid})?"}
        | {f"option {i}": f"choice {i}" for i in range(5)}
        for uid in ("u1", "u2", "u3", "u4")
    ]
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    answers = {"u1": 4, "u3": 0, "u4": 2}  # u2 has no public answer
    (tmp_path / "subset_answers.json").write_text(json.dumps(answers))
    monkeypatch.setenv("EGOSCHEMA_DIR", str(tmp_path))
    task, docs = _load(task_manager, "egoschema_subset_local")
    assert [d["question_idx"] for d in docs] == ["u1", "u3", "u4"] and [d["answer"] for d in docs] == ["4", "0", "2"]
    assert docs[0]["option"] == [f"{letter}. choice {i}" for i, letter in enumerate("ABCDE")]  # lmms-eval's form
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "videos" / "u1.mp4")]
    assert "A. choice 0\nB. choice 1\nC. choice 2\nD. choice 3\nE. choice 4" in task.doc_to_text(docs[0])
    scores = _score(task, docs, ["E", FAILED_ANSWER, "C"])
    assert scores["score"] == pytest.approx(2 / 3)  # a fraction, as lmms-eval's
    assert scores["failed"] == 1


def test_egoschema_lmms_eval_format(task_manager, monkeypatch, tmp_path):
    rows = [
        {
            "question_idx": "q1",
            "question": "Why?",
            "video_idx": "vid1",
            "option": ["A. one", "B. two", "C. three", "D. four", "E. five"],
            "answer": "1",
        },
        {
            "question_idx": "q2",
            "question": "How?",
            "video_idx": "vid2",
            "option": ["A. one", "B. two", "C. three", "D. four", "E. five"],
            "answer": None,  # not in the subset
        },
    ]
    _write_parquet(tmp_path / "Subset" / "test-00000-of-00001.parquet", rows)
    monkeypatch.setenv("EGOSCHEMA_DIR", str(tmp_path))
    task, docs = _load(task_manager, "egoschema_subset_local")
    assert len(docs) == 1 and docs[0]["answer"] == "1" and docs[0]["option"] == rows[0]["option"]
    assert task.doc_to_visual(docs[0]) == [str(tmp_path / "videos" / "vid1.mp4")]
    assert "Why?\nA. one\nB. two\nC. three" in task.doc_to_text(docs[0])
    assert _score(task, docs, ["B. two"])["score"] == 1.0
    assert _score(task, docs, ["A"])["score"] == 0.0


def test_bad_records_name_the_file_and_the_reason(monkeypatch, tmp_path, caplog):
    """A record lmms-eval cannot score stops the task with a message naming the file, the record and the reason, and
    the message is logged too (lmms-eval reports only the exception type after its retries)."""
    row = _videomme_row("v1", "short", "Knowledge", "Astronomy", "Counting Problem", "A")
    del row["options"]
    _write_parquet(tmp_path / "vm" / "videomme" / "test-00000-of-00001.parquet", [row])
    monkeypatch.setenv("VIDEOMME_DIR", str(tmp_path / "vm"))
    with pytest.raises(ValueError, match=r"test-00000-of-00001.parquet row 0: missing column\(s\) \['options'\]"):
        _utils("videomme").videomme_process_docs(None)
    assert "missing column(s) ['options']" in caplog.text

    ego = tmp_path / "ego"
    rows = [{"question_idx": "q1", "question": "Why?", "video_idx": "v", "option": list("abcde"), "answer": "B"}]
    _write_parquet(ego / "Subset" / "test-00000-of-00001.parquet", rows)
    monkeypatch.setenv("EGOSCHEMA_DIR", str(ego))
    with pytest.raises(ValueError, match="question q1's answer is 'B'; expected an option index"):
        _utils("egoschema").egoschema_process_docs(None)
