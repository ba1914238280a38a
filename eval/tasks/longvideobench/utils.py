"""LongVideoBench val (local copy) for lmms-eval: see longvideobench_val_local.yaml for the layout and command."""

from __future__ import annotations

from loguru import logger as eval_logger

from trajvlm.integrations.lmms_eval_tasks import (
    LETTERS,
    accuracy_where,
    data_dir,
    docs_dataset,
    failed_count,
    find_annotation,
    lettered,
    overall_with_breakdown,
    read_records,
    score_choice,
)

LAYOUT = (
    "$LONGVIDEOBENCH_DIR/lvb_val.json (or LONGVIDEOBENCH_ANNOTATION=FILE) + $LONGVIDEOBENCH_DIR/videos/{video_path}"
)
ANNOTATIONS = ("lvb_val.json", "*val*.parquet", "*val*.json*", "*.parquet", "*.json")


def _options(row) -> list[str]:
    if row.get("candidates"):
        return [str(c) for c in row["candidates"]]
    return [str(row[f"option{i}"]) for i in range(5) if row.get(f"option{i}") not in (None, "N/A")]


def lvb_process_docs(dataset):
    root = data_dir("LONGVIDEOBENCH_DIR", LAYOUT)
    path = find_annotation(root, "LONGVIDEOBENCH_ANNOTATION", ANNOTATIONS, LAYOUT)
    docs = []
    for row in read_records(path):
        options = _options(row)
        choice = int(row["correct_choice"])
        if not 0 <= choice < len(options):
            raise ValueError(f"{path}: sample {row.get('id')} has correct_choice {choice} for {len(options)} options")
        docs.append(
            {
                "id": str(row.get("id", "")),
                "video_path": str(root / "videos" / str(row["video_path"])),
                "question": str(row["question"]),
                "options": options,
                "answer": LETTERS[choice],
                "duration_group": int(row.get("duration_group") or 0),
                "question_category": str(row.get("question_category", "")),
            }
        )
    return docs_dataset(docs, path)


def lvb_doc_to_visual(doc):
    return [doc["video_path"]]


def lvb_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(lettered(doc["options"]))
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def lvb_process_results(doc, results):
    scored = score_choice(
        results[0],
        doc["answer"],
        LETTERS[: len(doc["options"])],
        id=doc["id"],
        duration_group=doc["duration_group"],
        question_category=doc["question_category"],
    )
    return {name: scored for name in ("accuracy", "acc_d15", "acc_d60", "acc_d600", "acc_d3600", "failed")}


lvb_accuracy = overall_with_breakdown("longvideobench", ["duration_group", "question_category"], eval_logger.info)
acc_d15 = accuracy_where("duration_group", 15)
acc_d60 = accuracy_where("duration_group", 60)
acc_d600 = accuracy_where("duration_group", 600)
acc_d3600 = accuracy_where("duration_group", 3600)
failed = failed_count
