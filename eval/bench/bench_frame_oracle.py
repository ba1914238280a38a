"""python eval/bench/bench_frame_oracle.py --data runs/demo-fast-v2/data --split val --json runs/frame_oracle_val.json

What N uniformly sampled frames can answer at best: the frame oracle of the long-video world.

A model that sees N frames of a 128-256 frame video cannot know what happened between them. This script scores an
ideal reader of exactly those frames on the world's multiple-choice questions (``trajtok synth --world long``), per
N and per question type, so that a model's accuracy can be set against what its frames allow.

The frames are those ``trajtok.io.video.load_video(num_frames=N)`` returns (the decoder that the processor calls in
training and in lmms-eval; ``all`` = every frame), computed from the video's frame count by
``trajtok.io.video.sample_indices`` without decoding it. The reader has perfect per-frame recognition: in each sampled
frame it knows which objects are visible (their identity, so their names) and their colour. From that it builds
the *possible histories* of the video that agree with the sampled frames, under one assumption: between two
consecutive sampled frames an object's visibility changes once where they differ and never where they agree (no
visit or absence is shorter than the spacing of the frames), and its colour likewise between two frames it is seen
in. Before the first and after the last sampled frame, when those are not the video's ends (N = 1 sees frame 0
only), nothing bounds it: objects may come, go and change there any number of times. The reader is also told,
optimistically, the kind of each change the frames show (walked in or popped up; walked out or disappeared; or no
event, it went behind another object or came out), which sparse frames rarely tell.

A question's *consistent* options are those that are the answer in at least one possible history (one in which
the question is well posed: its named events exist, exactly one option is true; :func:`consistent_options` and its
helpers say how per type). The reader answers: one consistent option, that one; k of them, a uniform guess among
them (expected accuracy 1/k when the true option is among them, 0 when it is not); none (the frames contradict
every option), a uniform guess among all of them. With every frame the only possible history is the record, so the
oracle scores 100 % (a test).

The number is an upper bound for readers that take the frames at face value: they see perfectly, are told event
kinds, and consider every history the frames allow. It is not a bound for a reader that bets on what the frames
cannot show: a visit or an absence that falls wholly between two sampled frames is missed (the true history is then
not a possible one, and the reader may be confidently wrong), and a reader who knew how often the world hides such
visits could guess better when frames are few. For the same reason accuracy need not rise with every added frame:
when the frames miss no change of any object, more frames only remove possible histories and accuracy never falls
(a test); when they miss one, the reader can be right by luck, and a frame that reveals part of what it missed can
make it less sure. The result is exact and deterministic (no sampling error): it counts the questions and videos.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from trajtok.io.video import sample_indices  # noqa: E402
from trajtok.synth.text import LETTERS, LONG_QTYPES, colour_at, describe_ref, is_visible, name  # noqa: E402

ARRIVALS = ("enter", "appear")
DEPARTURES = ("exit", "vanish")
HIDDEN = ""  # a change of visibility with no event: the object went behind another one or came out from behind
DEFAULT_FRAMES = "1,4,8,16,32,64,all"


class Change(NamedTuple):
    """One change of an object's visibility between two sampled frames: the first frame of its new state lies in
    [lo, hi]."""

    arrive: bool  # became visible (else stopped being visible)
    kind: str  # enter / appear (arrivals), exit / vanish (departures), or HIDDEN
    lo: int
    hi: int


Span = tuple[int, int]  # [lo, hi]: the frames an event or a first appearance may fall on


class Seen(NamedTuple):
    """What the sampled frames show of one object, and what they leave open.

    Between two consecutive sampled frames its visibility changes once where they differ and never where they
    agree (the reader's assumption), so ``changes`` are known up to their frame range. Before the first sampled
    frame (``head``, when it is not frame 0) and after the last (``tail``, when it is not the last frame) nothing
    bounds the object: it may come, go and change colour any number of times there."""

    bits: tuple[bool, ...]  # visible in each sampled frame
    changes: tuple[Change, ...]  # between sampled frames, in time order
    colour_changes: tuple[Span, ...]  # between frames it is seen in with different colours, in time order
    first_colour: str | None  # colour the first and the last time a sampled frame shows it (None: never)
    last_colour: str | None
    head: Span | None  # frames [1, first sampled] a change may fall on before the first sampled frame
    tail: Span | None  # frames after the last sampled frame

    @property
    def open(self) -> bool:
        return self.head is not None or self.tail is not None

    @property
    def seen(self) -> bool:
        return any(self.bits)

    def at_start(self) -> set[bool]:
        """Whether it can be visible in frame 0: known, or both when frame 0 is not sampled."""
        return {True, False} if self.head else {self.bits[0]}

    def at_end(self) -> set[bool]:
        return {True, False} if self.tail else {self.bits[-1]}

    def first_frames(self) -> list[Span]:
        """The frames its first visible frame may be (when it exists at all)."""
        spans = []
        if self.head:
            spans.append((0, self.head[1] if self.bits[0] else self.head[1] - 1))  # a visit before the first frame
        elif self.bits[0]:
            spans.append((0, 0))
        if not self.bits[0] and self.changes:
            spans.append((self.changes[0].lo, self.changes[0].hi))  # the first arrival the frames show
        if not self.seen and self.tail:
            spans.append(self.tail)
        return [(lo, hi) for lo, hi in spans if lo <= hi]

    def count(self, kind: str) -> int:
        """Events of ``kind`` the frames show (more are possible when the video's ends are open)."""
        return len(self.spans(kind))

    def spans(self, kind: str) -> list[Span]:
        if kind == "colour_change":
            return list(self.colour_changes)
        return [(c.lo, c.hi) for c in self.changes if c.kind == kind]

    def event_spans(self, kind: str, occ: int) -> list[Span]:
        """Where its ``occ``-th (0-based) event of ``kind`` may fall: one the frames show (after m unseen ones
        before the first sampled frame when the head is open), in the head, or in the tail."""
        shown = self.spans(kind)
        out = [shown[k] for k in range(min(occ + 1, len(shown))) if k == occ or self.head]
        if self.head:
            out.append(self.head)
        if self.tail and occ >= len(shown):
            out.append(self.tail)
        return out

    def returns(self) -> int:
        """Arrivals (enter / appear) after the first departure (exit / vanish) among the changes the frames show, as
        ``text._returns`` counts them (more are possible when the video's ends are open)."""
        left = [k for k, c in enumerate(self.changes) if c.kind in DEPARTURES]
        if not left:
            return 0
        return sum(c.kind in ARRIVALS for c in self.changes[left[0] + 1 :])


def _range_at(record: dict, i: int, t: int) -> tuple[int, int]:
    (found,) = [(s, e) for s, e in record["objects"][i]["visible"] if s <= t <= e]
    return found


def _true_kind(record: dict, i: int, arrive: bool, p: int, q: int) -> str:
    """Kind of the change the frames show between frame p and frame q: the arrival that starts the visible range
    holding q, or the departure that ends the one holding p (HIDDEN when that change of visibility is no event)."""
    frame = _range_at(record, i, q)[0] if arrive else _range_at(record, i, p)[1] + 1
    for ev in record["events"]:
        if ev["type"] in (ARRIVALS if arrive else DEPARTURES) and ev["objects"][0] == i and ev["frames"][0] == frame:
            return ev["type"]
    return HIDDEN


def seen_object(record: dict, i: int | None, frames: Sequence[int]) -> Seen:
    """What the sorted distinct ``frames`` show of object ``i`` of ``record`` (None: an object the video does not
    have, for an option that names one): its visibility and colour in each frame, and the kind of each change of
    visibility between them (the optimistic part: the frames rarely tell an entry from an appearance)."""
    T = int(record["num_frames"])
    S = list(frames)
    bits = tuple(i is not None and is_visible(record, i, t) for t in S)
    changes = tuple(
        Change(bq, _true_kind(record, i, bq, p, q), p + 1, q)
        for (p, bp), (q, bq) in pairwise(zip(S, bits, strict=True))
        if bp != bq and i is not None
    )
    colours = [(t, colour_at(record, i, t)) for t, b in zip(S, bits, strict=True) if b] if i is not None else []
    return Seen(
        bits=bits,
        changes=changes,
        colour_changes=tuple((a + 1, b) for (a, ca), (b, cb) in pairwise(colours) if ca != cb),
        first_colour=colours[0][1] if colours else None,
        last_colour=colours[-1][1] if colours else None,
        head=(1, S[0]) if S[0] > 0 else None,
        tail=(S[-1] + 1, T - 1) if S[-1] < T - 1 else None,
    )


# ---------------------------------------------------------------------------------------------------------------
# Consistent options per question type

Look = Callable[[int | None], Seen]


def _first_appearance(record: dict, q: dict, look: Look, objects: list[int | None]) -> list[int]:
    """Option j is consistent when its object can first show up at a frame f that every other object of the
    record can leave to it: by not existing (never seen), or by a first frame after f ('first'), before f
    ('last'), after f or at frame 0 ('first_new', where f > 0)."""
    variant = q["params"]["variant"]
    n = len(record["objects"])

    def leaves(f: int, other: Seen) -> bool:
        if not other.seen:
            return True
        spans = other.first_frames()
        if variant == "last":
            return min(lo for lo, _ in spans) < f
        return max(hi for _, hi in spans) > f or (variant == "first_new" and True in other.at_start())

    out = []
    for k, j in enumerate(objects):
        spans = look(j).first_frames()
        if variant == "first_new":
            spans = [(max(lo, 1), hi) for lo, hi in spans if hi >= 1]
        if not spans:
            continue
        f = max(hi for _, hi in spans) if variant == "last" else min(lo for lo, _ in spans)
        if all(leaves(f, look(m)) for m in range(n) if m != j):
            out.append(k)
    return out


def _event_order(record: dict, q: dict, look: Look, objects: list[int | None]) -> list[int]:
    """Option j is consistent when the five objects (the anchor's and the four options', all different) can hold
    every named event with option j's on the asked side of the anchor and the other three on the other side
    ('before': strictly earlier; 'after': not earlier, as ``long_true_answer`` decides)."""
    p = q["params"]
    refs, anchor = p["events"], p["anchor"]
    owners = [anchor[1], *(r[1] for r in refs)]
    if len(set(owners)) != len(owners):
        raise ValueError(f"question {q.get('id')!r}: event_order objects {owners} repeat; expected five different")

    def spans(ref: list) -> list[Span]:
        kind, obj, occ = ref
        return look(obj).event_spans(kind, occ)

    anchors, options = spans(anchor), [spans(r) for r in refs]
    before = p["variant"] == "before"
    found = []
    for j, mine in enumerate(options):
        others = [s for k, s in enumerate(options) if k != j]
        if not anchors or not mine or not all(others):
            continue
        if before:  # option at t_o < t_a, the others at >= t_a: t_a as late as they allow
            cap = min(max(hi for _, hi in s) for s in others)
            ok = any(max(la, lo + 1) <= min(ha, cap) for la, ha in anchors for lo, _ in mine)
        else:  # option at t_o >= t_a, the others at < t_a: t_a as early as they allow
            floor = max(min(lo for lo, _ in s) for s in others) + 1
            ok = any(max(la, floor) <= min(ha, hi) for la, ha in anchors for _, hi in mine)
        if ok:
            found.append(j)
    always = bool(p.get("always_ordinal", False))
    texts = [describe_ref(record, r, always) for r in refs]
    return sorted(q["options"].index(texts[j]) for j in found)


def _any_open(record: dict, look: Look) -> bool:
    return look(None).open  # the ends are the same for every object


def _distinct_count(record: dict, q: dict, look: Look, objects: list[int | None]) -> list[int]:
    """The objects the frames show, or any number more when the video's ends are open."""
    shown = sum(look(i).seen for i in range(len(record["objects"])))
    more = _any_open(record, look)
    return [k for k, o in enumerate(q["options"]) if int(o) == shown or (more and int(o) > shown)]


def _start_end(record: dict, q: dict, look: Look, objects: list[int | None]) -> list[int]:
    """Option j is consistent when the property can hold for its object and can fail for every other option's
    object (the question has exactly one true option). 'colour' compares the first and the last sampled frame the
    object is seen in (either way when an open end may show it again)."""
    variant = q["params"]["variant"]

    def outcomes(v: Seen) -> set[bool]:
        if variant == "gone":
            return {a and not b for a in v.at_start() for b in v.at_end()}
        if variant == "new":
            return {b and not a for a in v.at_start() for b in v.at_end()}
        if v.open:
            return {True, False}
        return {v.first_colour is not None and v.first_colour != v.last_colour}

    views = [outcomes(look(j)) for j in objects]
    return [
        k
        for k in range(len(objects))
        if True in views[k] and all(False in views[m] for m in range(len(objects)) if m != k)
    ]


def _event_total(record: dict, q: dict, look: Look, objects: list[int | None]) -> list[int]:
    """The events of the kind the frames show, or any number more when the video's ends are open."""
    shown = sum(look(i).count(q["params"]["event"]) for i in range(len(record["objects"])))
    more = _any_open(record, look)
    return [k for k, o in enumerate(q["options"]) if int(o) == shown or (more and int(o) > shown)]


def _returns(record: dict, q: dict, look: Look, objects: list[int | None]) -> list[int]:
    """The returns the frames show, or any number more when the video's ends are open."""
    v = look(q["params"]["object"])
    return [k for k, o in enumerate(q["options"]) if int(o) == v.returns() or (v.open and int(o) > v.returns())]


# qtype -> its helper: (record, question, what the frames show of an object, the object each option names) ->
# the consistent options (each helper reads what its type needs)
_BY_TYPE: dict[str, Callable[[dict, dict, Look, list[int | None]], list[int]]] = {
    "first_appearance": _first_appearance,
    "event_order": _event_order,
    "distinct_count": _distinct_count,
    "start_end": _start_end,
    "event_total": _event_total,
    "returns": _returns,
}


def consistent_options(record: dict, question: dict, frames: Sequence[int]) -> list[int]:
    """Indices of the options of ``question`` that some possible history of ``record`` seen through ``frames``
    makes the answer (see the module docstring and each type's helper)."""
    T = int(record["num_frames"])
    S = sorted({int(t) for t in frames})
    if not S or S[0] < 0 or S[-1] >= T:
        raise ValueError(f"{record.get('id')}: frames {S[:3]}...{S[-3:]} must be non-empty and inside [0, {T - 1}]")

    @cache
    def look(i: int | None) -> Seen:
        return seen_object(record, i, S)

    by_name = {name(record, i): i for i in range(len(record["objects"]))}
    objects = [by_name.get(o) for o in question["options"]]  # None: no object of the video bears that name
    qtype = question["qtype"]
    if qtype not in _BY_TYPE:
        raise ValueError(f"question {question.get('id')!r}: qtype {qtype!r} is not a long-world type {LONG_QTYPES}")
    return _BY_TYPE[qtype](record, question, look, objects)


def oracle_accuracy(record: dict, question: dict, frames: Sequence[int]) -> float:
    """Expected accuracy of the reader of ``frames``: 1/k when the true option is one of k consistent options, 0
    when it is not among them, 1/(number of options) when no option is consistent (the frames missed something
    and the reader guesses)."""
    consistent = consistent_options(record, question, frames)
    if not consistent:
        return 1.0 / len(question["options"])
    return 1.0 / len(consistent) if LETTERS.index(question["answer"]) in consistent else 0.0


# ---------------------------------------------------------------------------------------------------------------
# A world folder


def sampled_frames(total: int, count: int) -> list[int]:
    """Distinct source frame indices that ``trajtok.io.video.load_video(num_frames=count)`` returns for a video of
    ``total`` frames (the world's videos have a constant frame rate), computed without decoding it."""
    return sorted(set(sample_indices(total, count).tolist()))


def parse_frames(text: str) -> list[int | None]:
    """'1,4,all' -> [1, 4, None] (None: every frame)."""
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise ValueError(f"--frames {text!r}: {part!r} is not a frame count >= 1 or 'all'")
    return out


def _read_json(path: Path) -> Any:
    """A JSON file of the world; a corrupt one is a ValueError naming it."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def evaluate(data: Path, split: str, counts: Sequence[int | None]) -> dict:
    """Oracle accuracy (%) per frame count and question type on ``data``/``split``, with the counts behind it."""
    split_dir = Path(data) / split
    qa_path = split_dir / "qa.json"
    if not qa_path.is_file():
        raise FileNotFoundError(
            f"{qa_path} not found: expected a `trajtok synth --world long` folder with a {split} split"
        )
    by_video: dict[str, list[dict]] = defaultdict(list)
    for q in _read_json(qa_path):
        by_video[Path(q["video"]).stem].append(q)
    scores: dict[str, dict[str, list[float]]] = {}
    seen: dict[str, list[int]] = {}
    for count in counts:
        label = "all" if count is None else str(count)
        scores[label], seen[label] = defaultdict(list), []
    for vid, questions in sorted(by_video.items()):
        record_path = split_dir / f"{vid}.json"
        if not record_path.is_file():
            raise FileNotFoundError(f"{record_path} not found: `trajtok synth` writes a record beside each video")
        record = _read_json(record_path)
        for count in counts:
            label = "all" if count is None else str(count)
            total = int(record["num_frames"])
            frames = list(range(total)) if count is None else sampled_frames(total, count)
            seen[label].append(len(frames))
            for q in questions:
                acc = oracle_accuracy(record, q, frames)
                scores[label]["all"].append(acc)
                scores[label][q["qtype"]].append(acc)
    qtypes = [t for t in LONG_QTYPES if any(t in cells for cells in scores.values())]
    rows = []
    for label, cells in scores.items():
        row = {"frames": label, "mean_frames_seen": sum(seen[label]) / max(1, len(seen[label]))}
        row["accuracy"] = {k: 100.0 * sum(cells[k]) / len(cells[k]) for k in ["all", *qtypes] if cells[k]}
        rows.append(row)
    first = next(iter(scores.values()), {})
    return {
        "data": str(data),
        "split": split,
        "videos": len(by_video),
        "questions": {k: len(first.get(k, [])) for k in ["all", *qtypes]},
        "rows": rows,
    }


def run(args: argparse.Namespace) -> dict:
    result = evaluate(Path(args.data), args.split, parse_frames(args.frames))
    types = [k for k in result["questions"] if k != "all"]
    header = ["frames", "frames seen", "all", *types]
    table = [
        [
            r["frames"],
            f"{r['mean_frames_seen']:.1f}",
            *(f"{r['accuracy'].get(k, float('nan')):.1f}" for k in ["all", *types]),
        ]
        for r in result["rows"]
    ]
    table.append(["questions", "", *(str(result["questions"][k]) for k in ["all", *types])])
    _common.print_table(header, table, "l" + "r" * (len(header) - 1))
    print(f"({result['split']}: {result['videos']} videos, {result['questions'].get('all', 0)} questions; accuracy %)")
    _common.write_json(args.json, result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="a `trajtok synth --world long` output folder")
    ap.add_argument("--split", default="val", help="val (default), test or train")
    ap.add_argument("--frames", default=DEFAULT_FRAMES, help=f"frame counts, 'all' = every frame ({DEFAULT_FRAMES})")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    return _common.run_cli(run, ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
