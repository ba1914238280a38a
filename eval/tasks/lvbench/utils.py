"""LVBench (local copy) for lmms-eval: see lvbench_local.yaml for the two folder layouts and the command.

Docs follow lmms-eval's LVBench fields whichever layout is read: ``video_path``, ``question`` (options inline as
``(A) ...``, or in ``options``), ``answer`` (the letter), plus ``uid``, ``key``, ``type`` (the video's type),
``question_type`` (a list: a question may have several), ``time_reference`` and ``video_file`` (the video's path).
Metrics carry lmms-eval's name and scale: ``lvbench_score`` (accuracy as a fraction) and ``by_question_type``
({question type: fraction}; a question counts in each of its types).
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations import lmms_eval_tasks as common

LAYOUT = (
    "$LVBENCH_DIR/video_info.meta.jsonl + $LVBENCH_DIR/videos/{key}.mp4 (original release), or an annotation file "
    "(LVBENCH_ANNOTATION=FILE or $LVBENCH_DIR/*.parquet|*.json) with video_path relative to $LVBENCH_DIR"
)


def _types(value) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _original(root: Path, path: Path) -> list[dict]:
    videos = root / "videos" if (root / "videos").is_dir() else root
    docs = []
    for video in common.read_records(path):
        for qa in video["qa"]:
            video_file = common.find_video(videos, str(video["key"]))
            docs.append(
                {
                    "uid": str(qa.get("uid", "")),
                    "key": str(video["key"]),
                    "type": str(video.get("type") or ""),
                    "video_path": Path(video_file).name,
                    "video_file": video_file,
                    "question": str(qa["question"]),
                    "options": [],
                    "answer": str(qa["answer"]).strip(),
                    "question_type": _types(qa.get("question_type")),
                    "time_reference": str(qa.get("time_reference") or ""),
                }
            )
    return docs


def lvbench_process_docs(dataset):
    root = common.data_dir("LVBENCH_DIR", LAYOUT)
    original = root / "video_info.meta.jsonl"
    if original.is_file():
        return common.docs_dataset(_original(root, original), original)
    path = common.find_annotation(root, "LVBENCH_ANNOTATION", ("*.parquet", "*.json", "*.jsonl"), LAYOUT)
    docs = [
        {
            "uid": str(row.get("uid", i)),
            "key": str(row.get("key") or Path(str(row["video_path"])).stem),
            "type": str(row.get("type") or ""),
            "video_path": str(row["video_path"]),
            "video_file": common.find_video(root, str(row["video_path"])),
            "question": str(row["question"]),
            "options": [str(o) for o in row.get("options") or []],
            "answer": str(row["answer"]).strip(),
            "question_type": _types(row.get("question_type")),
            "time_reference": str(row.get("time_reference") or ""),
        }
        for i, row in enumerate(common.read_records(path))
    ]
    return common.docs_dataset(docs, path)


lvbench_doc_to_visual = common.video_file


def lvbench_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The question, then its options as ``(A) ...`` lines when they are not inline."""
    return common.question_prompt(
        doc["question"], lmms_eval_specific_kwargs, doc["options"] or None, "({letter}) {text}"
    )


def lvbench_process_results(doc, results):
    fields = {
        "uid": doc["uid"],
        "key": doc["key"],
        "question_type": list(doc["question_type"]),
        "video_type": doc["type"],
    }
    scored = common.score_choice(results[0], doc["answer"], "ABCD", **fields)
    return common.choice_metrics("lvbench_score", scored, ("question_type",))


lvbench_aggregate_results = common.overall_accuracy("lvbench", ("question_type", "video_type"), 1.0, eval_logger.info)
by_question_type = common.by_group("question_type", 1.0)
failed = common.failed_count
