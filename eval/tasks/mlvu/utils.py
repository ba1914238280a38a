"""MLVU dev (local copy) for lmms-eval: see mlvu_dev_local.yaml for the two folder layouts and the command."""

from __future__ import annotations

from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations.lmms_eval_tasks import (
    LETTERS,
    data_dir,
    docs_dataset,
    failed_count,
    find_annotation,
    find_video,
    group_mean_accuracy,
    lettered,
    overall_with_breakdown,
    read_records,
    score_choice,
)

LAYOUT = (
    "$MLVU_DIR/json/*.json + $MLVU_DIR/video/{json stem}/{video} (original release), or an annotation file "
    "(MLVU_ANNOTATION=FILE or $MLVU_DIR/*.parquet|*.json) with video_name relative to $MLVU_DIR"
)


def _original(root: Path) -> tuple[list[dict], Path]:
    """Rows of the original release: options in ``candidates``, the answer as the option's text."""
    docs = []
    for path in sorted((root / "json").glob("*.json")):
        for i, row in enumerate(read_records(path)):
            candidates = [str(c) for c in row["candidates"]]
            answer = str(row["answer"])
            if answer not in candidates:
                raise ValueError(f"{path} row {i}: answer {answer!r} is not one of the candidates {candidates}")
            docs.append(
                {
                    "question_id": f"{path.stem}/{i}",
                    "video_path": find_video(root / "video" / path.stem, str(row["video"])),
                    "question": str(row["question"]),
                    "options": candidates,
                    "answer": LETTERS[candidates.index(answer)],
                    "task_type": str(row.get("question_type", path.stem)),
                }
            )
    return docs, root / "json"


def _lmms_eval_format(root: Path) -> tuple[list[dict], Path]:
    path = find_annotation(root, "MLVU_ANNOTATION", ("*.parquet", "*.json", "*.jsonl"), LAYOUT)
    docs = [
        {
            "question_id": str(row.get("question_id", i)),
            "video_path": find_video(root, str(row["video_name"])),
            "question": str(row["question"]),
            "options": [str(o) for o in row.get("candidates") or []],
            "answer": str(row["answer"]).strip(),
            "task_type": str(row.get("task_type") or row.get("question_type", "")),
        }
        for i, row in enumerate(read_records(path))
    ]
    return docs, path


def mlvu_process_docs(dataset):
    root = data_dir("MLVU_DIR", LAYOUT)
    docs, source = _original(root) if (root / "json").is_dir() else _lmms_eval_format(root)
    return docs_dataset(docs, source)


def mlvu_doc_to_visual(doc):
    return [doc["video_path"]]


def mlvu_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    question = doc["question"]
    if doc["options"]:  # original release: list the candidates as (A) ... lines
        question += "\n" + "\n".join(lettered(doc["options"], style="({letter}) {text}"))
    return f"{kwargs.get('pre_prompt', '')}{question}{kwargs.get('post_prompt', '')}"


def mlvu_process_results(doc, results):
    letters = LETTERS[: max(len(doc["options"]), 4)]
    scored = score_choice(
        results[0], doc["answer"], letters, question_id=doc["question_id"], task_type=doc["task_type"]
    )
    return {"accuracy": scored, "m_avg": scored, "failed": scored}


mlvu_accuracy = overall_with_breakdown("mlvu", ["task_type"], eval_logger.info)
m_avg = group_mean_accuracy("task_type")
failed = failed_count
