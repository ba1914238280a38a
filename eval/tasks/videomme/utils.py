"""Video-MME (local copy) for lmms-eval: see videomme_local.yaml for the folder layout and the command."""

from __future__ import annotations

from loguru import logger as eval_logger

from trajvlm.integrations.lmms_eval_tasks import (
    accuracy_where,
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

LAYOUT = "$VIDEOMME_DIR/videomme/test-00000-of-00001.parquet (or VIDEOMME_ANNOTATION=FILE) + $VIDEOMME_DIR/data/{videoID}.mp4"
ANNOTATIONS = ("videomme/test-*.parquet", "videomme/*.parquet", "*.parquet", "videomme/*.json*", "*.json*")


def videomme_process_docs(dataset):
    root = data_dir("VIDEOMME_DIR", LAYOUT)
    path = find_annotation(root, "VIDEOMME_ANNOTATION", ANNOTATIONS, LAYOUT)
    docs = []
    for row in read_records(path):
        docs.append(
            {
                "question_id": str(row.get("question_id", "")),
                "videoID": str(row["videoID"]),
                "video_path": find_video(root / "data", str(row["videoID"])),
                "duration": str(row.get("duration", "")),
                "domain": str(row.get("domain", "")),
                "sub_category": str(row.get("sub_category", "")),
                "task_type": str(row.get("task_type", "")),
                "question": str(row["question"]),
                "options": [str(o) for o in row["options"]],
                "answer": str(row["answer"]).strip(),
            }
        )
    return docs_dataset(docs, path)


def videomme_doc_to_visual(doc):
    return [doc["video_path"]]


def videomme_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(lettered(doc["options"]))
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def videomme_process_results(doc, results):
    scored = score_choice(
        results[0],
        doc["answer"],
        "ABCD",
        question_id=doc["question_id"],
        videoID=doc["videoID"],
        duration=doc["duration"],
        domain=doc["domain"],
        task_type=doc["task_type"],
    )
    return {name: scored for name in ("accuracy", "acc_short", "acc_medium", "acc_long", "failed")}


videomme_accuracy = overall_with_breakdown("videomme", ["duration", "domain", "task_type"], eval_logger.info)
acc_short = accuracy_where("duration", "short")
acc_medium = accuracy_where("duration", "medium")
acc_long = accuracy_where("duration", "long")
failed = failed_count
