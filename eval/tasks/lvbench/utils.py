"""LVBench (local copy) for lmms-eval: see lvbench_local.yaml for the two folder layouts and the command."""

from __future__ import annotations

from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations.lmms_eval_tasks import (
    data_dir,
    docs_dataset,
    failed_count,
    find_annotation,
    find_video,
    lettered,
    overall_with_breakdown,
    read_records,
    score_choice,
)

LAYOUT = (
    "$LVBENCH_DIR/video_info.meta.jsonl + $LVBENCH_DIR/videos/{key}.mp4 (original release), or an annotation file "
    "(LVBENCH_ANNOTATION=FILE or $LVBENCH_DIR/*.parquet|*.json) with video_path relative to $LVBENCH_DIR"
)


def _types(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _original(root: Path, path: Path) -> list[dict]:
    videos = root / "videos" if (root / "videos").is_dir() else root
    docs = []
    for video in read_records(path):
        for qa in video["qa"]:
            docs.append(
                {
                    "uid": str(qa.get("uid", "")),
                    "video_path": find_video(videos, str(video["key"])),
                    "question": str(qa["question"]),
                    "options": [],
                    "answer": str(qa["answer"]).strip(),
                    "question_type": _types(qa.get("question_type")),
                    "video_type": str(video.get("type", "")),
                }
            )
    return docs


def lvbench_process_docs(dataset):
    root = data_dir("LVBENCH_DIR", LAYOUT)
    original = root / "video_info.meta.jsonl"
    if original.is_file():
        return docs_dataset(_original(root, original), original)
    path = find_annotation(root, "LVBENCH_ANNOTATION", ("*.parquet", "*.json", "*.jsonl"), LAYOUT)
    docs = [
        {
            "uid": str(row.get("uid", i)),
            "video_path": find_video(root, str(row["video_path"])),
            "question": str(row["question"]),
            "options": [str(o) for o in row.get("options") or []],
            "answer": str(row["answer"]).strip(),
            "question_type": _types(row.get("question_type")),
            "video_type": str(row.get("type", "")),
        }
        for i, row in enumerate(read_records(path))
    ]
    return docs_dataset(docs, path)


def lvbench_doc_to_visual(doc):
    return [doc["video_path"]]


def lvbench_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    question = doc["question"]
    if doc["options"]:
        question += "\n" + "\n".join(lettered(doc["options"], style="({letter}) {text}"))
    return f"{kwargs.get('pre_prompt', '')}{question}{kwargs.get('post_prompt', '')}"


def lvbench_process_results(doc, results):
    scored = score_choice(
        results[0],
        doc["answer"],
        "ABCD",
        uid=doc["uid"],
        question_type=list(doc["question_type"]),
        video_type=doc["video_type"],
    )
    return {"accuracy": scored, "failed": scored}


lvbench_accuracy = overall_with_breakdown("lvbench", ["question_type", "video_type"], eval_logger.info)
failed = failed_count
