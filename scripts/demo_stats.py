"""Accuracy with intervals that respect how the questions were drawn: several questions share a video, so the
bootstrap resamples whole videos (a clustered bootstrap), for one model's accuracy and for the paired difference of
two models on the same questions.

Each answer is a dict with ``id``, ``video``, ``qtype`` and ``correct``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict


def _clusters(answers: list[dict]) -> list[list[bool]]:
    by_video: dict[str, list[bool]] = defaultdict(list)
    for a in answers:
        if a.get("video") is None:
            raise ValueError(f"answer {a.get('id')!r} has no video: the clustered bootstrap resamples videos")
        by_video[str(a["video"])].append(bool(a["correct"]))
    return list(by_video.values())


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    values = sorted(values)
    k = (1.0 - level) / 2.0
    lo = values[max(0, math.floor(k * len(values)))]
    hi = values[min(len(values) - 1, math.ceil((1.0 - k) * len(values)) - 1)]
    return lo, hi


def _resampled_interval(sums: list[tuple[int, int]], samples: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile interval, in points, of sum / count over ``samples`` draws of whole clusters (videos) with
    replacement; ``sums`` holds each cluster's (sum, count)."""
    rng = random.Random(seed)
    draws = []
    for _ in range(samples):
        pick = [sums[rng.randrange(len(sums))] for _ in sums]
        draws.append(100.0 * sum(s for s, _ in pick) / sum(n for _, n in pick))
    return _percentiles(draws, level)


def clustered_accuracy(
    answers: list[dict], qtype: str | None = None, *, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """Accuracy % over ``answers`` (or those of one ``qtype``) with a percentile interval from resampling videos
    with replacement: {acc, lo, hi, n (questions), videos}. NaN accuracy when no question is left."""
    picked = [a for a in answers if qtype is None or a.get("qtype") == qtype]
    if not picked:
        return {"acc": math.nan, "lo": math.nan, "hi": math.nan, "n": 0, "videos": 0}
    clusters = _clusters(picked)
    sums = [(sum(c), len(c)) for c in clusters]
    acc = 100.0 * sum(s for s, _ in sums) / sum(n for _, n in sums)
    lo, hi = _resampled_interval(sums, samples, level, seed)
    return {"acc": acc, "lo": lo, "hi": hi, "n": len(picked), "videos": len(clusters)}


def clustered_difference(
    a: list[dict], b: list[dict], qtype: str | None = None, *, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """Accuracy of ``a`` minus ``b`` in points on the questions both answered (matched by ``id``), with an interval
    from resampling videos (both models' answers to a drawn video's questions move together)."""
    right_b = {x["id"]: bool(x["correct"]) for x in b}
    shared = [x for x in a if x["id"] in right_b and (qtype is None or x.get("qtype") == qtype)]
    if not shared:
        raise ValueError("the two models share no question (different worlds or splits?): nothing to pair")
    by_video: dict[str, list[int]] = defaultdict(list)
    for x in shared:
        if x.get("video") is None:
            raise ValueError(f"answer {x.get('id')!r} has no video: the clustered bootstrap resamples videos")
        by_video[str(x["video"])].append(int(bool(x["correct"])) - int(right_b[x["id"]]))
    sums = [(sum(d), len(d)) for d in by_video.values()]
    diff = 100.0 * sum(s for s, _ in sums) / len(shared)
    lo, hi = _resampled_interval(sums, samples, level, seed)
    return {"diff": diff, "lo": lo, "hi": hi, "n": len(shared), "videos": len(sums)}


def per_type(answers: list[dict], *, samples: int = 2000, seed: int = 0) -> dict[str, dict]:
    """``all`` and every question type present, each a :func:`clustered_accuracy`."""
    types = sorted({a.get("qtype") for a in answers if a.get("qtype")})
    out = {"all": clustered_accuracy(answers, samples=samples, seed=seed)}
    out.update({q: clustered_accuracy(answers, q, samples=samples, seed=seed) for q in types})
    return out
