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

from trajvlm.integrations import lmms_eval_tasks as common

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
        raise common.invalid_data(
            f"{source}: question {question_idx} has {len(options)} options; EgoSchema has {NUM_OPTIONS}"
        )
    index = common.as_index(answer, f"{source}: question {question_idx}'s answer")
    if not 0 <= index < NUM_OPTIONS:
        raise common.invalid_data(f"{source}: question {question_idx} has answer {answer!r}; expected an index 0-4")
    return {
        "question_idx": question_idx,
        "video_idx": video_idx,
        "video_file": common.find_video(root / "videos", video_idx),
        "question": question,
        "option": common.lettered(options),
        "answer": str(index),
    }


def _original(root: Path) -> list[dict]:
    source = root / "questions.json"
    answers = json.loads((root / "subset_answers.json").read_text())
    docs = []
    for row in common.read_records(source):
        uid = str(row["q_uid"])
        if uid in answers:
            options = [row[f"option {i}"] for i in range(NUM_OPTIONS)]
            docs.append(_doc(root, source, uid, uid, str(row["question"]), options, answers[uid]))
    return docs


def egoschema_process_docs(dataset):
    root = common.data_dir("EGOSCHEMA_DIR", LAYOUT)
    if (root / "questions.json").is_file() and (root / "subset_answers.json").is_file():
        return common.docs_dataset(_original(root), root / "questions.json")
    path = common.find_annotation(root, "EGOSCHEMA_ANNOTATION", ("Subset/*.parquet", "*.parquet", "*.json*"), LAYOUT)
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
        for row in common.read_records(path)
        if row.get("answer") not in (None, "")  # only the subset's answers are public
    ]
    return common.docs_dataset(docs, path)


egoschema_doc_to_visual = common.video_file


def egoschema_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return common.question_prompt(doc["question"], lmms_eval_specific_kwargs, doc["option"])


def egoschema_process_results(doc, results):
    letter = common.LETTERS[int(doc["answer"])]
    scored = common.score_choice(results[0], letter, "ABCDE", question_idx=doc["question_idx"])
    return common.choice_metrics("score", scored)


egoschema_aggregate_score = common.overall_accuracy("egoschema_subset", (), 1.0, eval_logger.info)
failed = common.failed_count
