"""EgoSchema subset (local copy) for lmms-eval: see egoschema_subset_local.yaml for the layouts and the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

from trajvlm.integrations.lmms_eval_tasks import (
    LETTERS,
    accuracy,
    data_dir,
    docs_dataset,
    failed_count,
    find_annotation,
    find_video,
    lettered,
    read_records,
    score_choice,
)

LAYOUT = (
    "$EGOSCHEMA_DIR/questions.json + subset_answers.json + videos/{q_uid}.mp4 (original release), or an annotation "
    "file (EGOSCHEMA_ANNOTATION=FILE or $EGOSCHEMA_DIR/Subset/*.parquet|*.parquet|*.json) + videos/{video_idx}.mp4"
)


def _strip_letter(option: str) -> str:
    """'A. text' -> 'text' (the lmms-eval copy stores lettered options)."""
    return re.sub(r"^\s*[A-E][.)]\s*", "", str(option))


def _original(root: Path) -> list[dict]:
    answers = json.loads((root / "subset_answers.json").read_text())
    docs = []
    for row in read_records(root / "questions.json"):
        uid = str(row["q_uid"])
        if uid not in answers:
            continue
        docs.append(
            {
                "q_uid": uid,
                "video_path": find_video(root / "videos", uid),
                "question": str(row["question"]),
                "options": [str(row[f"option {i}"]) for i in range(5)],
                "answer": LETTERS[int(answers[uid])],
            }
        )
    return docs


def egoschema_process_docs(dataset):
    root = data_dir("EGOSCHEMA_DIR", LAYOUT)
    if (root / "questions.json").is_file() and (root / "subset_answers.json").is_file():
        return docs_dataset(_original(root), root / "questions.json")
    path = find_annotation(root, "EGOSCHEMA_ANNOTATION", ("Subset/*.parquet", "*.parquet", "*.json*"), LAYOUT)
    docs = []
    for row in read_records(path):
        if row.get("answer") in (None, ""):
            continue
        docs.append(
            {
                "q_uid": str(row.get("question_idx", row["video_idx"])),
                "video_path": find_video(root / "videos", str(row["video_idx"])),
                "question": str(row["question"]),
                "options": [_strip_letter(o) for o in row["option"]],
                "answer": LETTERS[int(row["answer"])],
            }
        )
    return docs_dataset(docs, path)


def egoschema_doc_to_visual(doc):
    return [doc["video_path"]]


def egoschema_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(lettered(doc["options"]))
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def egoschema_process_results(doc, results):
    scored = score_choice(results[0], doc["answer"], "ABCDE", q_uid=doc["q_uid"])
    return {"accuracy": scored, "failed": scored}


def egoschema_accuracy(results):
    return accuracy(results)


failed = failed_count
