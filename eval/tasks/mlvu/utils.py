"""MLVU dev (local copy) for lmms-eval: see mlvu_dev_local.yaml for the two folder layouts and the command.

Docs follow the lmms-eval MLVU_dev schema whichever layout is read: ``video_name``, ``question`` (its options
included as ``(A) ...`` lines), ``answer`` (the letter), ``task_type``, plus ``question_id`` and ``video_file`` (the
video's path). Metrics carry lmms-eval's names: ``mlvu_percetion_score`` (sic: lmms-eval's spelling; the mean of the
per-task-type accuracies in percent, MLVU's M-Avg) and ``by_task_type`` ({task type: accuracy %}).
"""

from __future__ import annotations

import re
from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations import lmms_eval_tasks as common

LAYOUT = (
    "$MLVU_DIR/json/*.json + $MLVU_DIR/video/{json stem}/{video} (original release), or an annotation file "
    "(MLVU_ANNOTATION=FILE or $MLVU_DIR/*.parquet|*.json) with video_name relative to $MLVU_DIR"
)
# MLVU dev's seven multiple-choice task types (the json files of the original release are named after them).
TASK_TYPES = ("anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning")


def _with_options(question: str, candidates: list[str]) -> str:
    """The question with its candidates as ``(A) ...`` lines, unless it already lists them."""
    if not candidates or re.search(r"^\(A\)", question, flags=re.MULTILINE):
        return question
    return question + "\n" + "\n".join(common.lettered(candidates, style="({letter}) {text}"))


def _original(root: Path) -> tuple[list[dict], Path]:
    """Rows of the original release: options in ``candidates``, the answer as the option's text."""
    docs = []
    for path in sorted((root / "json").glob("*.json")):
        for i, row in enumerate(common.read_records(path)):
            candidates = [str(c) for c in row["candidates"]]
            answer = str(row["answer"])
            if answer not in candidates:
                raise common.invalid_data(
                    f"{path} row {i}: answer {answer!r} is not one of the candidates {candidates}"
                )
            docs.append(
                {
                    "question_id": f"{path.stem}/{i}",
                    "video_name": str(row["video"]),
                    "video_file": common.find_video(root / "video" / path.stem, str(row["video"])),
                    "duration": float(row.get("duration") or 0),
                    "question": _with_options(str(row["question"]), candidates),
                    "candidates": candidates,
                    "answer": common.LETTERS[candidates.index(answer)],
                    "task_type": str(row.get("question_type") or path.stem.split("_", 1)[-1]),
                }
            )
    return docs, root / "json"


def _lmms_eval_format(root: Path) -> tuple[list[dict], Path]:
    path = common.find_annotation(root, "MLVU_ANNOTATION", ("*.parquet", "*.json", "*.jsonl"), LAYOUT)
    docs = []
    for i, row in enumerate(common.read_records(path)):
        candidates = [str(c) for c in row.get("candidates") or []]
        docs.append(
            {
                "question_id": str(row.get("question_id", i)),
                "video_name": str(row["video_name"]),
                "video_file": common.find_video(root, str(row["video_name"])),
                "duration": float(row.get("duration") or 0),
                "question": _with_options(str(row["question"]), candidates),
                "candidates": candidates,
                "answer": str(row["answer"]).strip(),
                "task_type": str(row.get("task_type") or row.get("question_type", "")),
            }
        )
    return docs, path


def mlvu_process_docs(dataset):
    root = common.data_dir("MLVU_DIR", LAYOUT)
    docs, source = _original(root) if (root / "json").is_dir() else _lmms_eval_format(root)
    return common.docs_dataset(docs, source)


mlvu_doc_to_visual = common.video_file


def mlvu_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return common.question_prompt(doc["question"], lmms_eval_specific_kwargs)


def mlvu_process_results(doc, results):
    letters = common.LETTERS[: max(len(doc["candidates"]), 4)]
    fields = {k: doc[k] for k in ("question_id", "video_name", "task_type")}
    scored = common.score_choice(results[0], doc["answer"], letters, **fields)
    return common.choice_metrics("mlvu_percetion_score", scored, ("task_type",))


def mlvu_aggregate_results(results):
    """M-Avg: the mean over the task types present of each type's accuracy (%). lmms-eval divides by all seven dev
    types, counting an absent one as 0; on the full dev set, where all seven are present, the two agree."""
    per_type = common.group_accuracies(results, "task_type")
    for task_type, acc in per_type.items():
        eval_logger.info(f"mlvu task_type={task_type}: {acc:.2f}%")
    unknown = sorted(set(per_type) - set(TASK_TYPES))
    if unknown:
        eval_logger.warning(f"mlvu: task types {unknown} are not among MLVU dev's {list(TASK_TYPES)}")
    return sum(per_type.values()) / len(per_type) if per_type else float("nan")


by_task_type = common.by_group("task_type")
failed = common.failed_count
