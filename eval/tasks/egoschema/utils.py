"""EgoSchema subset (local copy) for lmms-eval: see egoschema_subset_local.yaml for the layouts and the command.

Docs follow lmms-eval's EgoSchema fields whichever layout is read: ``question_idx``, ``video_idx``, ``question``,
``option`` (``["A. ...", ..., "E. ..."]``), ``answer`` (the index of the right option, as text "0".."4"), plus
``video_file`` (the video's path). Metric as lmms-eval's ``egoschema_subset``: ``score``, accuracy as a fraction.
EgoSchema has no question categories, so there is no breakdown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations.lmms_eval_tasks import (
    LETTERS,
    as_index,
    data_dir,
    docs_dataset,
    failed_count,
    find_annotation,
    find_video,
    invalid_data,
    lettered,
    overall_accuracy,
    read_records,
    score_choice,
    with_score,
)

LAYOUT = (
    "$EGOSCHEMA_DIR/questions.json + subset_answers.json + videos/{q_uid}.mp4 (original release), or an annotation "
    "file (EGOSCHEMA_ANNOTATION=FILE or $EGOSCHEMA_DIR/Subset/*.parquet|*.parquet|*.json) + videos/{video_idx}.mp4"
)
NUM_OPTIONS = 5


def _strip_letter(option: str) -> str:
    """'A. text' -> 'text' (the lmms-eval copy stores lettered options)."""
    return re.sub(r"^\s*[A-E][.)]\s*", "", str(option))


def _doc(root: Path, source: Path, question_idx: str, video_idx: str, question: str, options, answer) -> dict:
    options = [_strip_letter(o) for o in options]
    if len(options) != NUM_OPTIONS:
        raise invalid_data(f"{source}: question {question_idx} has {len(options)} options; EgoSchema has {NUM_OPTIONS}")
    index = as_index(answer, f"{source}: question {question_idx}'s answer")
    if not 0 <= index < NUM_OPTIONS:
        raise invalid_data(f"{source}: question {question_idx} has answer {answer!r}; expected an index 0-4")
    return {
        "question_idx": question_idx,
        "video_idx": video_idx,
        "video_file": find_video(root / "videos", video_idx),
        "question": question,
        "option": lettered(options),
        "answer": str(index),
    }


def _original(root: Path) -> list[dict]:
    source = root / "questions.json"
    answers = json.loads((root / "subset_answers.json").read_text())
    docs = []
    for row in read_records(source):
        uid = str(row["q_uid"])
        if uid in answers:
            options = [row[f"option {i}"] for i in range(NUM_OPTIONS)]
            docs.append(_doc(root, source, uid, uid, str(row["question"]), options, answers[uid]))
    return docs


def egoschema_process_docs(dataset):
    root = data_dir("EGOSCHEMA_DIR", LAYOUT)
    if (root / "questions.json").is_file() and (root / "subset_answers.json").is_file():
        return docs_dataset(_original(root), root / "questions.json")
    path = find_annotation(root, "EGOSCHEMA_ANNOTATION", ("Subset/*.parquet", "*.parquet", "*.json*"), LAYOUT)
    docs = [
        _doc(
            root,
            path,
            str(row.get("question_idx", row["video_idx"])),
            str(row["video_idx"]),
            str(row["question"]),
            row["option"],
            row["answer"],
        )
        for row in read_records(path)
        if row.get("answer") not in (None, "")  # only the subset's answers are public
    ]
    return docs_dataset(docs, path)


def egoschema_doc_to_visual(doc):
    return [doc["video_file"]]


def egoschema_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(lettered(doc["option"]))
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def egoschema_process_results(doc, results):
    letter = LETTERS[int(doc["answer"])]
    scored = score_choice(results[0], letter, "ABCDE", question_idx=doc["question_idx"])
    return {"score": with_score(scored), "failed": scored}


egoschema_aggregate_score = overall_accuracy("egoschema_subset", (), 1.0, eval_logger.info)
failed = failed_count
