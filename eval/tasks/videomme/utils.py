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

from trajvlm.integrations import lmms_eval_tasks as common

LAYOUT = (
    "$VIDEOMME_DIR/videomme/test-00000-of-00001.parquet (or VIDEOMME_ANNOTATION=FILE) + $VIDEOMME_DIR/data/{videoID}.mp4"
    " (+ $VIDEOMME_DIR/subtitle/{videoID}.srt for the subtitle tasks)"
)
ANNOTATIONS = ("videomme/test-*.parquet", "videomme/*.parquet", "*.parquet", "videomme/*.json*", "*.json*")
REQUIRED = ("videoID", "question", "options", "answer")
BREAKDOWNS = ("duration", "domain", "sub_category", "task_type")
DURATIONS = ("short", "medium", "long")


def _docs(duration: str | None = None) -> tuple[list[dict], Path]:
    root = common.data_dir("VIDEOMME_DIR", LAYOUT)
    path = common.find_annotation(root, "VIDEOMME_ANNOTATION", ANNOTATIONS, LAYOUT)
    docs = []
    for i, row in common.checked_records(path, REQUIRED, "the Video-MME columns"):
        doc = dict(row)
        doc.update(
            videoID=str(row["videoID"]),
            question_id=str(row.get("question_id", f"{row['videoID']}-{i}")),
            options=[str(o) for o in row["options"]],
            answer=str(row["answer"]).strip(),
            video_file=common.find_video(root / "data", str(row["videoID"])),
            subtitle_file=str(root / "subtitle" / f"{row['videoID']}.srt"),
            **{k: str(row.get(k) or "") for k in BREAKDOWNS},
        )
        if duration is None or doc["duration"] == duration:
            docs.append(doc)
    return docs, path


def videomme_process_docs(dataset):
    return common.docs_dataset(*_docs())


def videomme_process_docs_long(dataset):
    """Only the long videos (lmms-eval's ``videomme_long``)."""
    return common.docs_dataset(*_docs("long"))


videomme_doc_to_visual = common.video_file


def videomme_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return common.question_prompt(doc["question"], lmms_eval_specific_kwargs, doc["options"])


def videomme_doc_to_text_subtitle(doc, lmms_eval_specific_kwargs=None):
    """The question after the video's subtitles: those on screen at the ``frame_num`` frames spread over the video
    (all of them with ``frame_num: -1``); "No subtitles available" when the video has no .srt file."""
    kwargs = lmms_eval_specific_kwargs or {}
    path = Path(doc["subtitle_file"])
    if path.is_file():
        video = Path(doc["video_file"])
        duration = common.video_duration(video) if video.is_file() else None  # a missing video fails in the model
        lines = common.subtitles_at(common.read_srt(path), duration, int(kwargs.get("frame_num", -1)))
        subtitles = "\n".join(lines)
    else:
        subtitles = "No subtitles available"
    return f"This video's subtitles are listed below:\n{subtitles}\n{videomme_doc_to_text(doc, kwargs)}"


def videomme_process_results(doc, results):
    fields = {k: doc[k] for k in ("question_id", "videoID", *BREAKDOWNS)}
    scored = common.score_choice(results[0], doc["answer"], "ABCD", **fields)
    return common.choice_metrics("videomme_perception_score", scored, BREAKDOWNS)


videomme_aggregate_results = common.overall_accuracy("videomme", BREAKDOWNS, 100.0, eval_logger.info)
by_duration = common.by_group("duration")
by_domain = common.by_group("domain")
by_sub_category = common.by_group("sub_category")
by_task_type = common.by_group("task_type")
failed = common.failed_count
