"""LongVideoBench val (local copy) for lmms-eval: see longvideobench_val_v_local.yaml for the layout and command.

Docs keep the columns of the published annotation file (id, video_path, question, option0..option4 or candidates,
correct_choice, duration_group, question_category, duration, subtitle_path, ...); both forms of the options are
filled in (``option0..option4`` with "N/A" for unused ones, as in lmms-eval's copy), and ``options`` (the used
ones), ``answer`` (the letter) and ``video_file`` (the video's path) are added. Metrics carry lmms-eval's names and
scale: ``lvb_acc`` (accuracy as a fraction), ``by_duration_group`` and ``by_question_category`` ({group: fraction}).
"""

from __future__ import annotations

from loguru import logger as eval_logger

from trajvlm.integrations import lmms_eval_tasks as common

LAYOUT = (
    "$LONGVIDEOBENCH_DIR/lvb_val.json (or LONGVIDEOBENCH_ANNOTATION=FILE) + $LONGVIDEOBENCH_DIR/videos/{video_path}"
)
ANNOTATIONS = ("lvb_val.json", "*val*.parquet", "*val*.json*", "*.parquet", "*.json")
REQUIRED = ("id", "video_path", "question", "correct_choice")
NUM_OPTIONS = 5  # option0..option4
BREAKDOWNS = ("duration_group", "question_category")


def _options(row) -> list[str]:
    if row.get("candidates"):
        return [str(c) for c in row["candidates"]]
    return [str(row[f"option{i}"]) for i in range(NUM_OPTIONS) if row.get(f"option{i}") not in (None, "N/A")]


def lvb_process_docs(dataset):
    root = common.data_dir("LONGVIDEOBENCH_DIR", LAYOUT)
    path = common.find_annotation(root, "LONGVIDEOBENCH_ANNOTATION", ANNOTATIONS, LAYOUT)
    docs = []
    for _, row in common.checked_records(path, REQUIRED, "LongVideoBench's"):
        options = _options(row)
        if not 2 <= len(options) <= NUM_OPTIONS:
            raise common.invalid_data(
                f"{path}: sample {row['id']} has {len(options)} options; expected 2 to {NUM_OPTIONS}"
            )
        choice = common.as_index(row["correct_choice"], f"{path}: sample {row['id']}'s correct_choice")
        if not 0 <= choice < len(options):
            raise common.invalid_data(
                f"{path}: sample {row['id']} has correct_choice {choice} for {len(options)} options"
            )
        doc = dict(row)
        doc.update(
            id=str(row["id"]),
            video_path=str(row["video_path"]),
            question=str(row["question"]),
            candidates=options,
            options=options,
            correct_choice=choice,
            answer=common.LETTERS[choice],
            duration_group=int(row.get("duration_group") or 0),
            question_category=str(row.get("question_category") or ""),
            video_file=str(root / "videos" / str(row["video_path"])),
            **{f"option{k}": options[k] if k < len(options) else "N/A" for k in range(NUM_OPTIONS)},
        )
        docs.append(doc)
    return common.docs_dataset(docs, path)


lvb_doc_to_visual = common.video_file


def lvb_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return common.question_prompt(doc["question"], lmms_eval_specific_kwargs, doc["options"])


def lvb_process_results(doc, results):
    fields = {k: doc[k] for k in ("id", "video_path", *BREAKDOWNS)}
    scored = common.score_choice(results[0], doc["answer"], common.LETTERS[: len(doc["options"])], **fields)
    return common.choice_metrics("lvb_acc", scored, BREAKDOWNS)


longvideobench_aggregate_results = common.overall_accuracy("longvideobench", BREAKDOWNS, 1.0, eval_logger.info)
by_duration_group = common.by_group("duration_group", 1.0)
by_question_category = common.by_group("question_category", 1.0)
failed = common.failed_count
