"""Video-MME (local copy) for lmms-eval: see videomme_local.yaml for the folder layout and the command.

Docs keep the columns of the published annotation file (lmms-eval/Video-MME: video_id, duration, domain,
sub_category, url, videoID, question_id, task_type, question, options, answer) and add ``video_file`` and
``subtitle_file``, the paths of the video and its .srt subtitles. Metrics carry lmms-eval's names: ``videomme_perception_score`` (accuracy in percent), and the breakdowns
lmms-eval only logs are written into the results file as ``{group: accuracy %}`` dicts: ``by_duration``,
``by_domain``, ``by_sub_category``, ``by_task_type``.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations.lmms_eval_tasks import (
    by_group,
    data_dir,
    docs_dataset,
    failed_count,
    find_annotation,
    find_video,
    invalid_data,
    lettered,
    overall_accuracy,
    read_records,
    read_srt,
    score_choice,
    subtitles_at,
    video_duration,
    with_score,
)

LAYOUT = (
    "$VIDEOMME_DIR/videomme/test-00000-of-00001.parquet (or VIDEOMME_ANNOTATION=FILE) + $VIDEOMME_DIR/data/{videoID}.mp4"
    " (+ $VIDEOMME_DIR/subtitle/{videoID}.srt for the subtitle tasks)"
)
ANNOTATIONS = ("videomme/test-*.parquet", "videomme/*.parquet", "*.parquet", "videomme/*.json*", "*.json*")
REQUIRED = ("videoID", "question", "options", "answer")
BREAKDOWNS = ("duration", "domain", "sub_category", "task_type")
DURATIONS = ("short", "medium", "long")


def _docs(duration: str | None = None) -> tuple[list[dict], Path]:
    root = data_dir("VIDEOMME_DIR", LAYOUT)
    path = find_annotation(root, "VIDEOMME_ANNOTATION", ANNOTATIONS, LAYOUT)
    docs = []
    for i, row in enumerate(read_records(path)):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise invalid_data(
                f"{path} row {i}: missing column(s) {missing}; expected the Video-MME columns {REQUIRED}"
            )
        doc = dict(row)
        doc.update(
            videoID=str(row["videoID"]),
            question_id=str(row.get("question_id", f"{row['videoID']}-{i}")),
            options=[str(o) for o in row["options"]],
            answer=str(row["answer"]).strip(),
            video_file=find_video(root / "data", str(row["videoID"])),
            subtitle_file=str(root / "subtitle" / f"{row['videoID']}.srt"),
            **{k: str(row.get(k) or "") for k in BREAKDOWNS},
        )
        if duration is None or doc["duration"] == duration:
            docs.append(doc)
    return docs, path


def videomme_process_docs(dataset):
    return docs_dataset(*_docs())


def videomme_process_docs_long(dataset):
    """Only the long videos (lmms-eval's ``videomme_long``)."""
    return docs_dataset(*_docs("long"))


def videomme_doc_to_visual(doc):
    return [doc["video_file"]]


def videomme_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(lettered(doc["options"]))
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def videomme_doc_to_text_subtitle(doc, lmms_eval_specific_kwargs=None):
    """The question after the video's subtitles: those on screen at the ``frame_num`` frames spread over the video
    (all of them with ``frame_num: -1``); "No subtitles available" when the video has no .srt file."""
    kwargs = lmms_eval_specific_kwargs or {}
    path = Path(doc["subtitle_file"])
    if path.is_file():
        video = Path(doc["video_file"])
        duration = video_duration(video) if video.is_file() else None  # a missing video fails in the model
        lines = subtitles_at(read_srt(path), duration, int(kwargs.get("frame_num", -1)))
        subtitles = "\n".join(lines)
    else:
        subtitles = "No subtitles available"
    return f"This video's subtitles are listed below:\n{subtitles}\n{videomme_doc_to_text(doc, kwargs)}"


def videomme_process_results(doc, results):
    scored = score_choice(
        results[0],
        doc["answer"],
        "ABCD",
        question_id=doc["question_id"],
        videoID=doc["videoID"],
        **{k: doc[k] for k in BREAKDOWNS},
    )
    # only the main metric's samples carry `score`: lmms-eval gives its standard errors to that metric alone
    return {
        "videomme_perception_score": with_score(scored),
        **{f"by_{k}": scored for k in BREAKDOWNS},
        "failed": scored,
    }


videomme_aggregate_results = overall_accuracy("videomme", BREAKDOWNS, 100.0, eval_logger.info)
by_duration = by_group("duration")
by_domain = by_group("domain")
by_sub_category = by_group("sub_category")
by_task_type = by_group("task_type")
failed = failed_count
