"""Helpers shared by the lmms-eval task folders under ``eval/tasks/`` (plain Python: no torch, no lmms_eval).

The tasks read LOCAL copies of their data: a folder named by an environment variable (``TRAJWORLD_DIR``,
``VIDEOMME_DIR``, ...) holding the benchmark's own annotation file and videos. The task YAML loads a one-row
placeholder file (lmms-eval needs ``dataset_path`` + ``data_files`` fixed in the YAML); the task's
``process_docs`` replaces it with the records read here. A video that is missing is NOT an error at this point:
its path goes to the model, which records the sample as failed (answer :data:`FAILED_ANSWER`) and the run goes on;
the task scores it as wrong and counts it in its ``failed`` metric.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import av

logger = logging.getLogger(__name__)

# What the trajvlm lmms-eval model answers for a sample it could not run (unreadable video, over-long context).
# It holds no letter A-E in either case, so no multiple-choice parser can read an option out of it.
FAILED_ANSWER = "[no output]"
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")
LETTERS = "ABCDEFGHIJ"

# Phrases models put before the letter; removed before parsing.
_ANSWER_PREFIXES = (
    "the best answer is",
    "the correct answer is",
    "the answer is",
    "the best option is",
    "the correct option is",
    "best answer:",
    "best option:",
    "answer:",
    "option",
)


def is_failed(response: Any) -> bool:
    """True for the model's failed-sample answer."""
    return isinstance(response, str) and response.strip() == FAILED_ANSWER


def _missing(message: str) -> FileNotFoundError:
    # lmms-eval retries dataset loading and then reports only the exception's type: log the reason too.
    logger.error(message)
    return FileNotFoundError(message)


def invalid_data(message: str) -> ValueError:
    """A ValueError for a bad annotation record, its reason logged first (lmms-eval reports only the type)."""
    logger.error(message)
    return ValueError(message)


def as_index(value: Any, what: str) -> int:
    """``value`` as an int (an option index such as ``3`` or ``"3"``); :func:`invalid_data` naming ``what`` if not."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise invalid_data(f"{what} is {value!r}; expected an option index (0, 1, ...)") from None


def data_dir(env_var: str, layout: str) -> Path:
    """The local data folder named by ``env_var``; FileNotFoundError describing ``layout`` when unset or missing."""
    value = os.environ.get(env_var, "").strip()
    if not value:
        raise _missing(f"set {env_var} to the local data folder of this task; expected layout: {layout}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise _missing(f"{env_var}={value} is not a directory; expected layout: {layout}")
    return path


def find_annotation(root: Path, env_var: str, candidates: Sequence[str], layout: str) -> Path:
    """The annotation file: ``$env_var`` if set, else the first of ``candidates`` (globs, relative to ``root``)."""
    explicit = os.environ.get(env_var, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise _missing(f"{env_var}={explicit} is not a file; expected layout: {layout}")
        return path
    for pattern in candidates:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    raise _missing(f"no annotation file in {root} (looked for {list(candidates)}); expected layout: {layout}")


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``.json`` (a list, or a dict of lists/rows), ``.jsonl`` or ``.parquet`` annotation file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # optional (`eval-runtime` extra, through datasets): parquet files only

        return pq.read_table(path).to_pylist()
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, list):
            return data
        if isinstance(data, dict):  # {"test": [...]} or {key: row}
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) == 1:
                return lists[0]
            return [dict(v, _key=k) if isinstance(v, dict) else {"_key": k, "value": v} for k, v in data.items()]
    raise ValueError(f"cannot read annotations from {path}: expected .json, .jsonl or .parquet")


def checked_records(path: Path, required: Sequence[str], expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, row)`` of an annotation file, each row checked for the ``required`` columns in turn:
    :func:`invalid_data` ``"{path} row {i}: missing column(s) [...]; expected {expected} {required}"`` if not."""
    for i, row in enumerate(read_records(path)):
        missing = [k for k in required if k not in row]
        if missing:
            raise invalid_data(f"{path} row {i}: missing column(s) {missing}; expected {expected} {required}")
        yield i, row


def find_video(folder: str | os.PathLike, name: str, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> str:
    """Path of video ``name`` in ``folder`` (tries ``extensions`` when ``name`` has none or is missing).

    Returns the first candidate even when nothing exists: the model then records the sample as failed.
    """
    folder = Path(folder)
    direct = folder / name
    if direct.suffix and direct.exists():
        return str(direct)
    stem = direct.with_suffix("") if direct.suffix.lower() in {e.lower() for e in extensions} else direct
    for ext in extensions:
        candidate = stem.with_name(stem.name + ext)
        if candidate.exists():
            return str(candidate)
    return str(direct if direct.suffix else stem.with_name(stem.name + next(iter(extensions))))


def lettered(options: Sequence[str], style: str = "{letter}. {text}") -> list[str]:
    """Options as ``A. text`` lines (options that already start with their letter are kept as they are)."""
    lines = []
    for i, text in enumerate(options):
        letter = LETTERS[i]
        text = str(text).strip()
        if re.match(rf"^\(?{letter}[.):]\s", text + " "):
            lines.append(text)
        else:
            lines.append(style.format(letter=letter, text=text))
    return lines


def parse_choice(response: Any, letters: str = "ABCD") -> str | None:
    """The option letter a response picks, or None.

    Accepts ``B``, ``B.``, ``(B)``, ``B) text``, ``The answer is B``, ``Best option: (B``; when several letters
    appear standalone, the first one in the text wins. Lowercase words (``a``) are not read as options.
    """
    if not isinstance(response, str) or is_failed(response):
        return None
    s = response.strip()
    lowered = s.lower()
    for prefix in _ANSWER_PREFIXES:
        if lowered.startswith(prefix):
            s = s[len(prefix) :].strip()
            lowered = s.lower()
    s = s.lstrip("(:[ ").strip()
    valid = re.escape(letters)
    head = re.match(rf"^([{valid}])(?:$|[\s.,:;)\]])", s)
    if head:
        return head.group(1)
    anywhere = re.search(rf"(?:^|[\s(\[])([{valid}])(?=$|[\s.,:;)\]])", s)
    return anywhere.group(1) if anywhere else None


def as_loglikelihood(result: Any) -> tuple[float, bool]:
    """A loglikelihood response as (log-prob, is greedy).

    lmms-eval 0.7.3 turns every non-string model response into ``str(response)`` before scoring, so a
    ``(-1.5, False)`` tuple reaches the task as the text ``"(-1.5, False)"``; both forms are accepted.
    """
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return float(result[0]), bool(result[1])
    match = re.fullmatch(r"\(\s*([-+0-9.eEinfa]+)\s*,\s*(True|False)\s*\)", str(result).strip())
    if match is None:
        raise ValueError(f"not a loglikelihood response (log-prob, is_greedy): {result!r}")
    return float(match.group(1)), match.group(2) == "True"


def score_choice(response: Any, answer: str, letters: str = "ABCD", **fields: Any) -> dict[str, Any]:
    """One scored multiple-choice sample: ``correct``, ``failed``, ``pred``, ``answer`` and the grouping ``fields``."""
    failed = is_failed(response)
    pred = None if failed else parse_choice(response, letters)
    correct = pred is not None and pred == answer
    return {"correct": correct, "failed": failed, "pred": pred, "answer": answer, **fields}


def accuracy(results: Sequence[dict[str, Any]], **where: Any) -> float:
    """Accuracy in percent over the results whose fields equal ``where`` (failed samples count as wrong); NaN if none."""
    chosen = [r for r in results if all(r.get(k) == v for k, v in where.items())]
    if not chosen:
        return math.nan
    return 100.0 * sum(bool(r["correct"]) for r in chosen) / len(chosen)


def failed_count(results: Sequence[dict[str, Any]]) -> int:
    """Number of failed samples (logged with the reason by the model; see ``failed_samples.jsonl``)."""
    n = sum(bool(r.get("failed")) for r in results)
    if n:
        logger.warning(
            "%d of %d samples failed (unreadable video or over-long context); scored as wrong", n, len(results)
        )
    return n


def breakdown(results: Sequence[dict[str, Any]], key: str) -> dict[str, tuple[float, int]]:
    """{group: (accuracy %, samples)} over the values of ``key``."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        values = r.get(key)
        for value in values if isinstance(values, list) else [values]:
            groups[str(value)].append(r)
    return {g: (accuracy(rs), len(rs)) for g, rs in sorted(groups.items())}


def overall_with_breakdown(
    name: str, keys: Sequence[str], log: Callable[[str], Any] | None = None
) -> Callable[[Sequence[dict[str, Any]]], float]:
    """An aggregation: overall accuracy (%), logging (``log``, default this module's logger) the accuracy per value
    of each of ``keys``."""
    log = log or logger.info

    def aggregate(results: Sequence[dict[str, Any]]) -> float:
        for key in keys:
            for group, (acc, n) in breakdown(results, key).items():
                log(f"{name} {key}={group}: {acc:.2f}% of {n}")
        return accuracy(results)

    aggregate.__name__ = f"{name}_accuracy"
    return aggregate


def accuracy_where(key: str, value: Any) -> Callable[[Sequence[dict[str, Any]]], float]:
    """An aggregation: accuracy (%) over the samples with ``result[key] == value`` (NaN when there are none)."""

    def aggregate(results: Sequence[dict[str, Any]]) -> float:
        return accuracy(results, **{key: value})

    aggregate.__name__ = f"accuracy_{key}_{value}"
    return aggregate


def group_mean_accuracy(key: str) -> Callable[[Sequence[dict[str, Any]]], float]:
    """An aggregation: the mean over the values of ``key`` of each group's accuracy (%) (e.g. MLVU's M-Avg)."""

    def aggregate(results: Sequence[dict[str, Any]]) -> float:
        groups = breakdown(results, key)
        return sum(acc for acc, _ in groups.values()) / len(groups) if groups else math.nan

    aggregate.__name__ = f"mean_accuracy_over_{key}"
    return aggregate


def bootstrap_accuracy(
    results: Sequence[dict[str, Any]], reps: int = 2000, level: float = 0.95, seed: int = 0, **where: Any
) -> dict[str, float]:
    """Accuracy % with a percentile bootstrap interval (questions resampled with replacement) over the scored
    results whose fields equal ``where``: ``{"acc", "lo", "hi", "n"}`` (NaN and n = 0 when none match)."""
    xs = [bool(r["correct"]) for r in results if all(r.get(k) == v for k, v in where.items())]
    if not xs:
        return {"acc": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    lo, hi = _percentile_interval(xs, reps, level, seed)
    return {"acc": 100.0 * sum(xs) / len(xs), "lo": lo, "hi": hi, "n": len(xs)}


def _percentile_interval(values: Sequence[float], reps: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of 100 x the mean of ``values`` (resampled with replacement)."""

    if not 0.0 < level < 1.0 or reps < 1:
        raise ValueError(f"level must be in (0, 1) and reps >= 1, got level={level}, reps={reps}")
    rng = random.Random(seed)
    n = len(values)
    stats = sorted(100.0 * sum(rng.choices(values, k=n)) / n for _ in range(reps))
    tail = (1.0 - level) / 2
    return stats[int(math.floor(tail * reps))], stats[min(reps - 1, int(math.ceil((1.0 - tail) * reps)) - 1)]


def paired_difference(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], reps: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Accuracy of ``a`` minus accuracy of ``b`` in points, over the questions both scored (matched by ``id``), with a
    paired percentile bootstrap interval: one resample of questions is applied to both, so what the two models
    share (the easy and the hard questions) cancels out, and the interval is tighter than the two accuracies'
    intervals taken apart. ``{"diff", "lo", "hi", "n"}``; ValueError when no question is shared."""
    right = {r["id"]: bool(r["correct"]) for r in b}
    deltas = [int(bool(r["correct"])) - int(right[r["id"]]) for r in a if r["id"] in right]
    if not deltas:
        raise ValueError("the two result lists share no question id")
    lo, hi = _percentile_interval(deltas, reps, level, seed)
    return {"diff": 100.0 * sum(deltas) / len(deltas), "lo": lo, "hi": hi, "n": len(deltas)}


def group_accuracies(results: Sequence[dict[str, Any]], key: str, scale: float = 100.0) -> dict[str, float]:
    """{group: accuracy} over the values of ``key`` (a list-valued field counts the sample in each of its groups;
    samples without a value are left out), in percent (``scale=100``) or as a fraction (``scale=1``)."""
    present = [r for r in results if r.get(key) not in (None, "", [])]
    return {group: acc * scale / 100.0 for group, (acc, _) in breakdown(present, key).items()}


def by_group(key: str, scale: float = 100.0) -> Callable[[Sequence[dict[str, Any]]], dict[str, float]]:
    """An aggregation whose value is a ``{group: accuracy}`` dict over the values of ``key`` (see
    :func:`group_accuracies`): lmms-eval writes it into the results file as it is."""

    def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, float]:
        return group_accuracies(results, key, scale)

    aggregate.__name__ = f"accuracy_by_{key}"
    return aggregate


def overall_accuracy(
    name: str, keys: Sequence[str] = (), scale: float = 100.0, log: Callable[[str], Any] | None = None
) -> Callable[[Sequence[dict[str, Any]]], float]:
    """An aggregation: accuracy over all samples in percent (``scale=100``) or as a fraction (``scale=1``), logging
    the accuracy and sample count per value of each of ``keys``."""
    log = log or logger.info

    def aggregate(results: Sequence[dict[str, Any]]) -> float:
        for key in keys:
            for group, (acc, n) in breakdown([r for r in results if r.get(key) not in (None, "", [])], key).items():
                log(f"{name} {key}={group}: {acc:.2f}% of {n}")
        value = accuracy(results) * scale / 100.0
        log(f"{name}: {value:.4g} over {len(results)} samples")
        return value

    aggregate.__name__ = f"{name}_accuracy"
    return aggregate


def with_score(scored: dict[str, Any]) -> dict[str, Any]:
    """``scored`` (from :func:`score_choice`) with ``score`` = 1.0 / 0.0: lmms-eval reads that field of each sample
    for its CLT standard errors (``<metric>_stderr_clt``, and ``_stderr_clustered`` with a task's ``cluster_key``)."""
    return {**scored, "score": 1.0 if scored["correct"] else 0.0}


def choice_metrics(metric: str, scored: dict[str, Any], breakdowns: Sequence[str] = ()) -> dict[str, Any]:
    """A benchmark task's ``process_results``: ``scored`` under the main ``metric`` (with ``score``, see
    :func:`with_score`), under ``by_<key>`` for each of ``breakdowns`` and under ``failed``. Only the main metric's
    samples carry ``score``: lmms-eval gives its standard errors to that metric alone."""
    return {metric: with_score(scored), **{f"by_{key}": scored for key in breakdowns}, "failed": scored}


def video_file(doc: dict[str, Any]) -> list[str]:
    """A benchmark task's ``doc_to_visual``: the document's ``video_file``."""
    return [doc["video_file"]]


def question_prompt(
    question: str,
    lmms_eval_specific_kwargs: dict[str, Any] | None,
    options: Sequence[str] | None = None,
    style: str = "{letter}. {text}",
) -> str:
    """A task's ``doc_to_text``: ``question`` (and below it its ``options`` as lettered lines, see :func:`lettered`,
    when given) between the task's ``pre_prompt`` and ``post_prompt``."""
    kwargs = lmms_eval_specific_kwargs or {}
    if options is not None:
        question = question + "\n" + "\n".join(lettered(options, style))
    return f"{kwargs.get('pre_prompt', '')}{question}{kwargs.get('post_prompt', '')}"


# ------------------------------------------------------------------------------------------------------------------
# subtitles (SubRip .srt, as Video-MME ships them)

_SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)")
_TAG = re.compile(r"<[^>]+>")


def _srt_seconds(text: str, path: Path) -> float:
    match = _SRT_TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{path}: subtitle time {text.strip()!r} is not HH:MM:SS,mmm")
    h, m, s, ms = match.groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 10 ** len(ms)


def read_srt(path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """Cues of a SubRip file as ``(start s, end s, text)`` in file order; markup such as ``<font ...>`` is removed
    and a cue's lines are joined by spaces. ValueError naming the file for a malformed time line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig", errors="replace").replace("\r\n", "\n")
    cues = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.strip().splitlines() if line.strip()]
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        start, _, end = lines[timing].partition("-->")
        words = " ".join(_TAG.sub("", line).strip() for line in lines[timing + 1 :]).strip()
        if words:
            cues.append((_srt_seconds(start, path), _srt_seconds(end.split()[0], path), words))
    return cues


def video_duration(path: str | os.PathLike) -> float | None:
    """Duration of a video file in seconds from its container header (no decoding), or None if it cannot be read."""

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / 1_000_000  # av.time_base is microseconds
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (OSError, IndexError, av.FFmpegError) as exc:
        logger.warning("cannot read the duration of %s: %s", path, exc)
    return None


def subtitles_at(cues: Sequence[tuple[float, float, str]], duration: float | None, num_frames: int) -> list[str]:
    """The cue texts shown at ``num_frames`` instants spread evenly over ``duration`` (first to last frame), in time
    order and each once: the subtitles a model sampling that many frames would see. All cues when ``num_frames``
    is not positive or the duration is unknown."""
    if num_frames <= 0 or not duration:
        return [text for _, _, text in cues]
    times = [duration * i / (num_frames - 1) for i in range(num_frames)] if num_frames > 1 else [0.0]
    return [text for start, end, text in cues if any(start <= t < end for t in times)]


def docs_dataset(records: list[dict[str, Any]], source: Path):
    """A ``datasets.Dataset`` of ``records`` (lmms-eval's document type); ValueError when there are none."""
    import datasets  # optional (`eval-runtime` extra): only lmms-eval runs get here

    if not records:
        raise invalid_data(f"no samples in {source}")
    return datasets.Dataset.from_list(records)


__all__ = [
    "bootstrap_accuracy",
    "FAILED_ANSWER",
    "accuracy",
    "accuracy_where",
    "as_index",
    "as_loglikelihood",
    "breakdown",
    "by_group",
    "checked_records",
    "choice_metrics",
    "data_dir",
    "docs_dataset",
    "paired_difference",
    "failed_count",
    "find_annotation",
    "find_video",
    "group_accuracies",
    "group_mean_accuracy",
    "invalid_data",
    "is_failed",
    "lettered",
    "overall_accuracy",
    "overall_with_breakdown",
    "parse_choice",
    "question_prompt",
    "read_records",
    "read_srt",
    "score_choice",
    "subtitles_at",
    "video_duration",
    "video_file",
    "with_score",
]
