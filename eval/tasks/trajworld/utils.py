"""lmms-eval task `trajworld`: multiple-choice long-video QA on the synthetic world's test split (no download).

    trajtok synth --out data/synth
    TRAJWORLD_DIR=data/synth python -m lmms_eval --model trajvlm --model_args pretrained=MODEL \
        --tasks trajworld --include_path eval/tasks --output_path runs/eval

Questions come from ``$TRAJWORLD_DIR/{split}/qa.json`` (``split`` = ``$TRAJWORLD_SPLIT``, default ``test``), or from
``$TRAJWORLD_DIR/qa.json`` when the variable names a split folder. Metrics: ``accuracy`` (%) over all questions,
``acc_<qtype>`` per question type (NaN when the split has none of that type) and ``failed`` (samples the model could
not run, counted as wrong).
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger as eval_logger

from trajvlm.integrations import lmms_eval_tasks as common

QTYPES = ("count", "order", "exit_side", "attribute", "collision", "first_event", "event_count", "change")
# the long world's whole-video questions (`trajtok synth --world long`)
LONG_QTYPES = ("first_appearance", "event_order", "distinct_count", "start_end", "event_total", "returns")
QTYPES = QTYPES + LONG_QTYPES
LAYOUT = "TRAJWORLD_DIR/{test,val,train}/qa.json + the videos it names (the output of `trajtok synth --out DIR`)"


def qa_file() -> Path:
    """The qa.json the task reads."""
    root = common.data_dir("TRAJWORLD_DIR", LAYOUT)
    if (root / "qa.json").is_file():
        return root / "qa.json"
    return root / os.environ.get("TRAJWORLD_SPLIT", "test") / "qa.json"


def load_docs() -> list[dict]:
    """One document per question: id, video path (absolute), question, options, answer letter, qtype, ..."""
    path = qa_file()
    docs = []
    for row in common.read_records(path):
        docs.append(
            {
                "id": str(row["id"]),
                "video_path": str((path.parent / row["video"]).resolve()),
                "question": str(row["question"]),
                "options": [str(o) for o in row["options"]],
                "answer": str(row["answer"]),
                "qtype": str(row.get("qtype", "")),
                "evidence": [int(x) for x in row.get("evidence", [])],
                "first_frame_answerable": bool(row.get("first_frame_answerable", False)),
            }
        )
    return docs


def trajworld_process_docs(dataset):
    path = qa_file()
    return common.docs_dataset(load_docs(), path)


def trajworld_doc_to_visual(doc):
    return [doc["video_path"]]


def trajworld_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return common.question_prompt(doc["question"], lmms_eval_specific_kwargs, doc["options"])


def trajworld_open_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The question alone: no options, no letters (the model answers in words; the options are scored)."""
    return common.question_prompt(doc["question"], lmms_eval_specific_kwargs)


def trajworld_open_doc_to_choice(doc):
    return list(doc["options"])


def trajworld_doc_to_choice(doc):
    return [chr(ord("A") + i) for i in range(len(doc["options"]))]


def trajworld_doc_to_index(doc):
    return ord(doc["answer"]) - ord("A")


def _fields(doc) -> dict:
    return {"id": doc["id"], "qtype": doc["qtype"], "first_frame_answerable": doc["first_frame_answerable"]}


def trajworld_process_results(doc, results):
    letters = "".join(trajworld_doc_to_choice(doc))
    scored = common.score_choice(results[0], doc["answer"], letters, **_fields(doc))
    return {"accuracy": scored, "failed": scored, **{f"acc_{q}": scored for q in QTYPES}}


def trajworld_mc_process_results(doc, results):
    """Log-likelihood scoring: the option with the highest log-likelihood; all -inf means the sample failed."""
    lls = [common.as_loglikelihood(r)[0] for r in results]
    failed = all(ll == float("-inf") for ll in lls)
    pred = None if failed else chr(ord("A") + max(range(len(lls)), key=lls.__getitem__))
    scored = {"correct": pred == doc["answer"], "failed": failed, "pred": pred, "answer": doc["answer"], **_fields(doc)}
    return {"accuracy": scored, "failed": scored}


trajworld_accuracy = common.overall_with_breakdown("trajworld", ["qtype", "first_frame_answerable"], eval_logger.info)
failed = common.failed_count


def trajworld_open_process_results(doc, results):
    """Open answers scored by log-likelihood: the option text the model finds likeliest; every metric per type."""
    out = trajworld_mc_process_results(doc, results)
    return {**out, **{f"acc_{q}": out["accuracy"] for q in QTYPES}}


acc_count = common.accuracy_where("qtype", "count")
acc_order = common.accuracy_where("qtype", "order")
acc_exit_side = common.accuracy_where("qtype", "exit_side")
acc_attribute = common.accuracy_where("qtype", "attribute")
acc_collision = common.accuracy_where("qtype", "collision")
acc_first_event = common.accuracy_where("qtype", "first_event")
acc_event_count = common.accuracy_where("qtype", "event_count")
acc_change = common.accuracy_where("qtype", "change")
acc_first_appearance = common.accuracy_where("qtype", "first_appearance")
acc_event_order = common.accuracy_where("qtype", "event_order")
acc_distinct_count = common.accuracy_where("qtype", "distinct_count")
acc_start_end = common.accuracy_where("qtype", "start_end")
acc_event_total = common.accuracy_where("qtype", "event_total")
acc_returns = common.accuracy_where("qtype", "returns")
