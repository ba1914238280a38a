"""The five long-video benchmark tasks through the real lmms-eval CLI in one run: tiny local copies in each
benchmark's published schema, the tiny random TrajVLM answering. The results file must carry lmms-eval's metric
names and our breakdown keys, with values that follow from the answers the model gave (read back from the logged
samples and scored here against the answers this test wrote)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.eval.helpers import logged_samples, run_lmms_eval
from trajvlm.integrations.lmms_eval_tasks import FAILED_ANSWER, parse_choice


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _video(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


def _build(root: Path, video: Path) -> tuple[dict[str, str], dict[str, dict[str, dict]]]:
    """Tiny copies of the five benchmarks under ``root``: (environment, {task: {question id: expected fields}}).

    Each task has one question whose video is missing (the model fails it). The expected fields hold the right
    letter, the option letters and the groups the question belongs to."""
    expect: dict[str, dict[str, dict]] = {}

    # Video-MME: parquet + data/{videoID}.mp4 + subtitle/{videoID}.srt
    vm = root / "videomme"
    groups = [
        ("v1", "short", "Knowledge", "Astronomy", "Counting Problem", "A"),
        ("v1", "short", "Knowledge", "Astronomy", "OCR Problems", "B"),
        ("v2", "long", "Sports Competition", "Football", "Counting Problem", "C"),
        ("gone", "medium", "Knowledge", "Geography", "Action Reasoning", "D"),
    ]
    rows = [
        {
            "video_id": f"{i:03d}",
            "duration": duration,
            "domain": domain,
            "sub_category": sub,
            "url": "",
            "videoID": vid,
            "question_id": f"{vid}-{i}",
            "task_type": task_type,
            "question": f"Question {i}?",
            "options": ["A. red", "B. green", "C. blue", "D. white"],
            "answer": answer,
        }
        for i, (vid, duration, domain, sub, task_type, answer) in enumerate(groups)
    ]
    _parquet(vm / "videomme" / "test-00000-of-00001.parquet", rows)
    for vid in ("v1", "v2"):
        _video(video, vm / "data" / f"{vid}.mp4")
    (vm / "subtitle").mkdir()
    (vm / "subtitle" / "v1.srt").write_text("1\n00:00:00,000 --> 00:10:00,000\n<font>a ball rolls</font>\n")
    videomme = {
        r["question_id"]: {
            "answer": r["answer"],
            "letters": "ABCD",
            **{f"by_{k}": [r[k]] for k in ("duration", "domain", "sub_category", "task_type")},
        }
        for r in rows
    }
    expect["videomme_local"] = expect["videomme_w_subtitle_local"] = videomme

    # MLVU, original release: json/{n}_{type}.json + video/{json stem}/{video}
    ml = root / "mlvu"
    (ml / "json").mkdir(parents=True)
    mlvu_rows = {
        "1_plotQA": [("m1.mp4", ["sits", "runs", "jumps", "naps"], "runs"), ("m2.mp4", ["a", "b", "c", "d"], "d")],
        "4_count": [("gone.mp4", ["1", "2", "3", "4"], "3")],
    }
    expect["mlvu_dev_local"] = {}
    for stem, items in mlvu_rows.items():
        qtype = stem.split("_", 1)[1]
        data = [{"video": v, "duration": 10, "question": "Q?", "candidates": c, "answer": a, "question_type": qtype}
                for v, c, a in items]  # fmt: skip
        (ml / "json" / f"{stem}.json").write_text(json.dumps(data))
        for i, (v, c, a) in enumerate(items):
            if v != "gone.mp4":
                _video(video, ml / "video" / stem / v)
            expect["mlvu_dev_local"][f"{stem}/{i}"] = {
                "answer": "ABCD"[c.index(a)],
                "letters": "ABCD",
                "by_task_type": [qtype],
            }

    # LongVideoBench: lvb_val.json (candidates, as released) + videos/{video_path}
    lvb = root / "longvideobench"
    lvb_rows = [
        ("q1", "a.mp4", 15, "T3O", ["x", "y", "z"], 1),
        ("q2", "a.mp4", 600, "S2E", ["x", "y", "z", "w", "v"], 4),
        ("q3", "gone.mp4", 600, "T3O", ["x", "y"], 0),
    ]
    data = [
        {"id": i, "video_path": v, "question": "What?", "candidates": c, "correct_choice": k, "duration_group": g,
         "question_category": cat, "duration": 10.0, "subtitle_path": "s.json", "starting_timestamp_for_subtitles": 0}
        for i, v, g, cat, c, k in lvb_rows
    ]  # fmt: skip
    lvb.mkdir()
    (lvb / "lvb_val.json").write_text(json.dumps(data))
    _video(video, lvb / "videos" / "a.mp4")
    expect["longvideobench_val_v_local"] = {
        i: {"answer": "ABCDE"[k], "letters": "ABCDE"[: len(c)], "by_duration_group": [str(g)],
            "by_question_category": [cat]}
        for i, v, g, cat, c, k in lvb_rows
    }  # fmt: skip

    # LVBench, original release: video_info.meta.jsonl + videos/{key}.mp4
    lvbench = root / "lvbench"
    videos = [
        ("k1", [("1", "B", ["entity recognition", "reasoning"]), ("2", "A", ["summarization"])]),
        ("gone", [("3", "C", ["reasoning"])]),
    ]
    lines = [
        {"key": key, "type": "documentary", "qa": [
            {"uid": uid, "question": "Q?\n(A) a\n(B) b\n(C) c\n(D) d", "answer": ans, "question_type": types,
             "time_reference": "00:00-00:01"} for uid, ans, types in qas]}
        for key, qas in videos
    ]  # fmt: skip
    lvbench.mkdir()
    (lvbench / "video_info.meta.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    _video(video, lvbench / "videos" / "k1.mp4")
    expect["lvbench_local"] = {
        uid: {"answer": ans, "letters": "ABCD", "by_question_type": types}
        for _, qas in videos
        for uid, ans, types in qas
    }

    # EgoSchema, lmms-eval's Subset parquet + videos/{video_idx}.mp4
    ego = root / "egoschema"
    ego_rows = [
        {"question_idx": "e1", "question": "Why?", "video_idx": "u1",
         "option": ["A. one", "B. two", "C. three", "D. four", "E. five"], "answer": "1"},
        {"question_idx": "e3", "question": "What?", "video_idx": "u1",
         "option": ["A. one", "B. two", "C. three", "D. four", "E. five"], "answer": "4"},
        {"question_idx": "e2", "question": "How?", "video_idx": "gone",
         "option": ["A. one", "B. two", "C. three", "D. four", "E. five"], "answer": "0"},
    ]  # fmt: skip
    _parquet(ego / "Subset" / "test-00000-of-00001.parquet", ego_rows)
    _video(video, ego / "videos" / "u1.mp4")
    expect["egoschema_subset_local"] = {
        r["question_idx"]: {"answer": "ABCDE"[int(r["answer"])], "letters": "ABCDE"} for r in ego_rows
    }

    env = {
        "VIDEOMME_DIR": str(vm),
        "MLVU_DIR": str(ml),
        "LONGVIDEOBENCH_DIR": str(lvb),
        "LVBENCH_DIR": str(lvbench),
        "EGOSCHEMA_DIR": str(ego),
    }
    return env, expect


# task: (main metric, its scale (100 = percent, 1 = fraction), the sample field naming the question, breakdowns)
METRICS = {
    "videomme_local": ("videomme_perception_score", 100, "question_id",
                       ("by_duration", "by_domain", "by_sub_category", "by_task_type")),
    "videomme_w_subtitle_local": ("videomme_perception_score", 100, "question_id",
                                  ("by_duration", "by_domain", "by_sub_category", "by_task_type")),
    "mlvu_dev_local": ("mlvu_percetion_score", 100, "question_id", ("by_task_type",)),
    "longvideobench_val_v_local": ("lvb_acc", 1, "id", ("by_duration_group", "by_question_category")),
    "lvbench_local": ("lvbench_score", 1, "uid", ("by_question_type",)),
    "egoschema_subset_local": ("score", 1, "question_idx", ()),
}  # fmt: skip


def _mean(values: list[bool]) -> float:
    return sum(values) / len(values)


def _answers_b(model_dir: Path, out: Path) -> Path:
    """A copy of the tiny model whose saved generation config biases the token " B" far above all others, so greedy
    decoding answers "B B B ..." to every question: the expected scores are then known and not all zero (the
    random model alone writes no option letter). The bias is transformers' own ``sequence_bias``, applied by
    ``generate`` from the checkpoint's generation_config.json; nothing in the evaluation path is replaced."""
    from transformers import AutoTokenizer

    shutil.copytree(model_dir, out)
    (token,) = AutoTokenizer.from_pretrained(out).encode(" B", add_special_tokens=False)
    config = json.loads((out / "generation_config.json").read_text())
    config["sequence_bias"] = [[[token], 1000.0]]
    (out / "generation_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.slow
def test_benchmarks_through_the_cli(tiny_model_dir, synth_world, tmp_path):
    env, expect = _build(tmp_path / "data", synth_world / "test" / "test_00000.mp4")
    model = _answers_b(tiny_model_dir, tmp_path / "model")
    out = tmp_path / "out"
    results = run_lmms_eval(f"pretrained={model},batch_size=4", ",".join(METRICS), out, tmp_path, env)
    assert set(METRICS) <= set(results)
    for task, (metric, scale, id_field, breakdowns) in METRICS.items():
        known = expect[task]
        got = results[task]
        assert {f"{metric},none", "failed,none", *(f"{b},none" for b in breakdowns)} <= set(got), (task, got)
        assert got["failed,none"] == 1, task  # the question whose video is missing

        samples = logged_samples(out, task)
        assert len(samples) == len(known), task
        correct: dict[str, bool] = {}
        for s in samples:
            record = s[metric]
            qid = str(record[id_field])
            response = s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"]
            if response != FAILED_ANSWER:
                assert parse_choice(response, known[qid]["letters"]) == "B", (task, response)
            right = parse_choice(response, known[qid]["letters"]) == known[qid]["answer"]
            assert record["correct"] is right and record["score"] == float(right), (task, qid, response)
            assert record["failed"] is (response == FAILED_ANSWER)
            correct[qid] = right
        assert any(correct.values()) and not all(correct.values()), (task, correct)  # the scores below are not trivial

        for breakdown in breakdowns:
            groups: dict[str, list[bool]] = {}
            for qid, fields in known.items():
                for group in fields[breakdown]:
                    groups.setdefault(group, []).append(correct[qid])
            assert got[f"{breakdown},none"] == pytest.approx({g: scale * _mean(v) for g, v in groups.items()}), (
                task,
                breakdown,
            )
        if task == "mlvu_dev_local":  # M-Avg: the mean of the task types' accuracies
            per_type = got["by_task_type,none"]
            expected = sum(per_type.values()) / len(per_type)
        else:
            expected = scale * _mean(list(correct.values()))
        assert got[f"{metric},none"] == pytest.approx(expected), task

    # lmms-eval's standard errors read each sample's `score` (clustered by video where the task names a cluster_key)
    assert isinstance(results["videomme_local"]["videomme_perception_score_stderr_clt,none"], float)
    assert isinstance(results["videomme_local"]["videomme_perception_score_stderr_clustered,none"], float)
    assert results["videomme_local"]["failed_stderr_clt,none"] == "N/A"  # no error bar on a count
