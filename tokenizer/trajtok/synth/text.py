"""Captions and multiple-choice questions from a video's record, and answers recomputed from the record alone.

Every question stores ``params`` (what it asks about, in record ids); :func:`answer_from_record` recomputes the
true answer text from the record's objects and events and returns the letter of the option that carries it. The
generator uses the same function, so the stored letter and the record can never disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from trajtok.synth.events import SIDES
from trajtok.synth.world import COLOURS, SHAPES

LETTERS = "ABCD"
QTYPES: tuple[str, ...] = (
    "count",
    "order",
    "exit_side",
    "attribute",
    "collision",
    "first_event",
    "event_count",
    "change",
)
# Questions of the long world (``trajtok synth --world long``): each needs the whole video.
LONG_QTYPES: tuple[str, ...] = (
    "first_appearance",
    "event_order",
    "distinct_count",
    "start_end",
    "event_total",
    "returns",
)
ANSWER_PROMPT = "Answer with the option's letter from the given choices directly."
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


# ---------------------------------------------------------------------------------------------------------------
# Reading a record


def name(record: dict, i: int) -> str:
    """'the red circle': objects are named by their first colour; (colour, shape) is unique per video."""
    o = record["objects"][i]
    return f"the {o['colour']} {o['shape']}"


def first_frame(record: dict, i: int) -> int:
    return int(record["objects"][i]["visible"][0][0])


def is_visible(record: dict, i: int, t: int) -> bool:
    return any(s <= t <= e for s, e in record["objects"][i]["visible"])


def colour_at(record: dict, i: int, t: int) -> str:
    """Colour name of object i in frame t (its first colour, then each colour change up to t)."""
    colour = record["objects"][i]["colour"]
    for ev in record["events"]:
        if ev["type"] == "colour_change" and ev["objects"][0] == i and ev["frames"][0] <= t:
            colour = ev["to"]
    return colour


def events_of(record: dict, kind: str, obj: int | None = None) -> list[dict]:
    return [ev for ev in record["events"] if ev["type"] == kind and (obj is None or obj in ev["objects"])]


def _event_key(ev: dict) -> tuple[str, tuple[int, ...], str]:
    if ev["type"] == "cut":
        return ("cut", (), "")
    return (ev["type"], tuple(ev["objects"]), ev.get("to", ""))


def describe_key(record: dict, key: tuple[str, tuple[int, ...], str] | list) -> str:
    """Past-tense sentence for an event key (type, objects, extra), capitalised for an option."""
    kind, objs, extra = key[0], list(key[1]), key[2]
    if kind == "collision":
        text = f"{name(record, objs[0])} and {name(record, objs[1])} collided"
    elif kind == "cut":
        text = "the scene cut to another view"
    else:
        verb = {
            "enter": "entered the frame",
            "exit": "left the frame",
            "appear": "appeared",
            "vanish": "vanished",
            "stop": "stopped",
            "colour_change": f"turned {extra}",
        }[kind]
        text = f"{name(record, objs[0])} {verb}"
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------------------
# Answers from the record


def _exit_frame_colour_time(ev: dict) -> int:
    # exit / vanish frames are the first frame without the object: its look is that of the frame before
    return ev["frames"][0] - 1 if ev["type"] in ("exit", "vanish") else ev["frames"][0]


def _attribute_events(record: dict, event: str, side: str | None) -> list[dict]:
    return [ev for ev in events_of(record, event) if side is None or ev.get("side") == side]


def true_answer(record: dict, question: dict) -> str:
    """The correct option text of ``question``, recomputed from the record's objects and events only."""
    qtype, p = question["qtype"], question["params"]
    if qtype == "count":
        return str(len(record["objects"]))
    if qtype == "order":
        objs = sorted(p["objects"], key=lambda i: first_frame(record, i))
        if p["variant"] == "first":
            return name(record, objs[0])
        return ", then ".join(name(record, i) for i in objs)
    if qtype == "exit_side":
        return events_of(record, "exit", p["object"])[0]["side"]
    if qtype == "attribute":
        found = _attribute_events(record, p["event"], p.get("side"))
        if len(found) != 1:
            raise ValueError(f"attribute question needs exactly one {p['event']} event, the record has {len(found)}")
        i = found[0]["objects"][0]
        if p["attribute"] == "shape":
            return record["objects"][i]["shape"]
        return colour_at(record, i, _exit_frame_colour_time(found[0]))
    if qtype == "collision":
        ev = events_of(record, "collision", p["object"])[0]
        other = ev["objects"][1] if ev["objects"][0] == p["object"] else ev["objects"][0]
        return name(record, other)
    if qtype == "first_event":
        earliest: dict[tuple[str, tuple[int, ...], str], int] = {}
        for ev in record["events"]:
            earliest.setdefault(_event_key(ev), ev["frames"][0])
        keys = [(k[0], tuple(k[1]), k[2]) for k in p["events"]]
        return describe_key(record, min(keys, key=lambda k: earliest[k]))
    if qtype == "event_count":
        return str(len(events_of(record, p["event"], p["object"])))
    if qtype == "change":
        if p["variant"] == "to":
            return events_of(record, "colour_change", p["object"])[0]["to"]
        changed = sorted({ev["objects"][0] for ev in events_of(record, "colour_change")})
        if len(changed) != 1:
            raise ValueError(f"'which object changed' needs exactly one changed object, the record has {changed}")
        return name(record, changed[0])
    if qtype in LONG_QTYPES:
        return long_true_answer(record, question)
    raise ValueError(f"unknown qtype {qtype!r}; expected one of {QTYPES + LONG_QTYPES}")


def answer_from_record(record: dict, question: dict) -> str:
    """Letter (A-D) of the option that is true according to the record's events."""
    truth = true_answer(record, question)
    if truth not in question["options"]:
        raise ValueError(f"question {question.get('id')!r}: true answer {truth!r} is not among {question['options']}")
    return LETTERS[question["options"].index(truth)]


# ---------------------------------------------------------------------------------------------------------------
# Question generators: each returns (question, distractors, params, evidence, first_frame_answerable) or None.

Draft = tuple[str, list[str], dict, list[int], bool]


def _numbers(rng: np.random.Generator, n: int, lowest: int) -> list[str]:
    """Three wrong counts: the options are four consecutive numbers holding ``n`` at a random place (any place that
    keeps them >= ``lowest``), so the options alone say little about which one is right."""
    start = n - int(rng.integers(min(3, n - lowest) + 1))  # n's place among the four: any that keeps them >= lowest
    return [str(k) for k in range(start, start + 4) if k != n]


def _other_names(rng: np.random.Generator, record: dict, exclude: set[int], k: int = 3) -> list[str]:
    """k object names not in ``exclude``: real objects first, then colour-shape pairs absent from the video."""
    real = [i for i in range(len(record["objects"])) if i not in exclude]
    names = [name(record, int(i)) for i in rng.permutation(real)[:k]] if real else []
    taken = {(c, o["shape"]) for o in record["objects"] for c in o["colours"]}
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in taken]
    for j in rng.permutation(len(absent)):
        if len(names) >= k:
            break
        names.append(f"the {absent[j][0]} {absent[j][1]}")
    return names


def _spread(rng: np.random.Generator, items: list, frame: Callable, k: int, gap: int) -> list | None:
    """k items whose frames are pairwise >= gap apart, drawn at random (None if there are not enough)."""
    picked: list = []
    for j in rng.permutation(len(items)):
        it = items[int(j)]
        if all(abs(frame(it) - frame(q)) >= gap for q in picked):
            picked.append(it)
            if len(picked) == k:
                return picked
    return None


def q_count(rng: np.random.Generator, record: dict) -> Draft | None:
    n = len(record["objects"])
    if n == 0:
        return None
    text = str(rng.choice(["How many different objects appear in the video?", "How many distinct objects are shown?"]))
    firsts = [first_frame(record, i) for i in range(n)]
    return text, _numbers(rng, n, 1), {}, [0, max(firsts)], max(firsts) == 0


def q_order(rng: np.random.Generator, record: dict) -> Draft | None:
    objs = list(range(len(record["objects"])))
    late = [i for i in objs if first_frame(record, i) > 0]
    for variant, k in (("first", 4), ("sequence", 3)):
        pick = _spread(rng, late, lambda i: first_frame(record, i), k, 2)
        ffa = False
        if pick is None:  # allow one object that is there from the start (then frame 0 gives it away)
            pick = _spread(rng, objs, lambda i: first_frame(record, i), k, 2)
            ffa = pick is not None and variant == "first"
        if pick is None:
            continue
        pick = [int(i) for i in pick]
        params = {"variant": variant, "objects": pick}
        evidence = [0, max(first_frame(record, i) for i in pick)]
        if variant == "first":
            truth = true_answer(record, {"qtype": "order", "params": params})
            wrong = [name(record, i) for i in pick if name(record, i) != truth]
            return "Which of these objects appeared first in the video?", wrong, params, evidence, ffa
        truth = true_answer(record, {"qtype": "order", "params": params})
        perms = [[pick[a], pick[b], pick[c]] for a, b, c in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1))]
        perms += [[pick[2], pick[1], pick[0]]]
        texts = [", then ".join(name(record, i) for i in p) for p in perms]
        wrong = [t for t in texts if t != truth]
        wrong = [wrong[int(j)] for j in rng.permutation(len(wrong))[:3]]
        return "In which order did these objects first appear?", wrong, params, evidence, False
    return None


def q_exit_side(rng: np.random.Generator, record: dict) -> Draft | None:
    leavers = sorted({ev["objects"][0] for ev in events_of(record, "exit")})
    if not leavers:
        return None
    i = int(rng.choice(leavers))
    exits = events_of(record, "exit", i)
    when = " the first time" if len(exits) > 1 else ""
    truth = exits[0]["side"]
    t = exits[0]["frames"][0]
    text = f"Through which side of the frame did {name(record, i)} leave{when}?"
    return text, [s for s in SIDES if s != truth], {"object": i}, [max(0, t - 3), t], False


_ATTR_PHRASES = {
    ("enter", "left"): "entered the frame from the left",
    ("enter", "right"): "entered the frame from the right",
    ("enter", "top"): "entered the frame from the top",
    ("enter", "bottom"): "entered the frame from the bottom",
    ("exit", "left"): "left the frame through the left side",
    ("exit", "right"): "left the frame through the right side",
    ("exit", "top"): "left the frame through the top",
    ("exit", "bottom"): "left the frame through the bottom",
    ("appear", None): "suddenly appeared",
    ("vanish", None): "suddenly vanished",
    ("stop", None): "stopped for a while",
}


def q_attribute(rng: np.random.Generator, record: dict) -> Draft | None:
    options = [(ev, side) for ev, side in _ATTR_PHRASES if len(_attribute_events(record, ev, side)) == 1]
    if not options:
        return None
    event, side = options[int(rng.integers(len(options)))]
    attribute = "shape" if rng.random() < 0.3 else "colour"
    params = {"event": event, "side": side, "attribute": attribute}
    ev = _attribute_events(record, event, side)[0]
    truth = true_answer(record, {"qtype": "attribute", "params": params})
    pool = [s for s in (SHAPES if attribute == "shape" else COLOURS) if s != truth]
    wrong = [pool[int(j)] for j in rng.permutation(len(pool))[:3]]
    text = f"What {attribute} was the object that {_ATTR_PHRASES[(event, side)]}?"
    s, e = ev["frames"]
    evidence = [max(0, s - 1), e] if event in ("exit", "vanish") else [s, e]
    return text, wrong, params, evidence, False


def q_collision(rng: np.random.Generator, record: dict) -> Draft | None:
    hitters = sorted({o for ev in events_of(record, "collision") for o in ev["objects"]})
    if not hitters:
        return None
    x = int(rng.choice(hitters))
    evs = events_of(record, "collision", x)
    partners = {o for ev in evs for o in ev["objects"]} - {x}
    t = evs[0]["frames"][0]
    if len(partners) == 1:
        text = f"Which object collided with {name(record, x)}?"
    else:
        text = f"Which object did {name(record, x)} collide with first?"
    wrong = _other_names(rng, record, exclude={x} | partners)
    T = record["num_frames"]
    return text, wrong, {"object": x}, [max(0, t - 2), min(T - 1, t + 2)], False


def q_first_event(rng: np.random.Generator, record: dict) -> Draft | None:
    earliest: dict[tuple, int] = {}
    for ev in record["events"]:
        if ev["type"] != "occlusion":
            earliest.setdefault(_event_key(ev), ev["frames"][0])
    keys = list(earliest)
    pick = _spread(rng, keys, lambda k: earliest[k], 4, 3)
    if pick is None:
        return None
    params = {"events": [[k[0], list(k[1]), k[2]] for k in pick]}
    truth = true_answer(record, {"qtype": "first_event", "params": params})
    wrong = [describe_key(record, k) for k in pick if describe_key(record, k) != truth]
    frames = [earliest[k] for k in pick]
    return "Which of these happened first?", wrong, params, [min(frames), max(frames)], False


_COUNT_PHRASES = {
    "enter": "enter the frame",
    "exit": "leave the frame",
    "stop": "stop",
    "collision": "collide with another object",
}


def q_event_count(rng: np.random.Generator, record: dict) -> Draft | None:
    """How many times an object did something. The answer's value is drawn first, uniformly among the values the
    video offers (zero included: any object and event kind can be asked about), then a pair with that count; the
    options are 0-3 (a window around larger counts). Drawing pairs directly would make the answer almost always 0
    or 1, which a model could pick without watching."""
    counts = Counter((ev["objects"][k], ev["type"]) for ev in record["events"] for k in range(len(ev["objects"])))
    by_value: dict[int, list[tuple[int, str]]] = {}
    for o in range(len(record["objects"])):
        for kind in _COUNT_PHRASES:
            by_value.setdefault(counts.get((o, kind), 0), []).append((o, kind))
    if not by_value:
        return None
    values = sorted(by_value)
    pairs = by_value[values[int(rng.integers(len(values)))]]
    obj, kind = pairs[int(rng.integers(len(pairs)))]
    evs = events_of(record, kind, obj)
    text = f"How many times did {name(record, obj)} {_COUNT_PHRASES[kind]}?"
    if evs:
        evidence = [max(0, evs[0]["frames"][0] - 1), evs[-1]["frames"][1]]
    else:  # nothing happened: the whole video is the evidence
        evidence = [0, int(record["num_frames"]) - 1]
    n = len(evs)
    wrong = [str(k) for k in range(4) if k != n] if n <= 3 else _numbers(rng, n, 0)
    return text, wrong, {"object": obj, "event": kind}, evidence, False


def q_change(rng: np.random.Generator, record: dict) -> Draft | None:
    seen = [
        ev
        for ev in events_of(record, "colour_change")
        if is_visible(record, ev["objects"][0], ev["frames"][0] - 1)
        and is_visible(record, ev["objects"][0], ev["frames"][0])
    ]
    if not seen:
        return None
    changed = sorted({ev["objects"][0] for ev in events_of(record, "colour_change")})
    ev = seen[int(rng.integers(len(seen)))]
    x, t = ev["objects"][0], ev["frames"][0]
    if ev is events_of(record, "colour_change", x)[0] and (len(changed) > 1 or rng.random() < 0.6):
        pool = [c for c in COLOURS if c not in (ev["to"], ev["from"])]
        wrong = [pool[int(j)] for j in rng.permutation(len(pool))[:3]]
        return f"What colour did {name(record, x)} turn into?", wrong, {"variant": "to", "object": x}, [t - 1, t], False
    if len(changed) != 1:
        return None
    wrong = _other_names(rng, record, exclude={x})
    return "Which object changed its colour?", wrong, {"variant": "which"}, [t - 1, t], False


GENERATORS: dict[str, Callable[[np.random.Generator, dict], Draft | None]] = {
    "count": q_count,
    "order": q_order,
    "exit_side": q_exit_side,
    "attribute": q_attribute,
    "collision": q_collision,
    "first_event": q_first_event,
    "event_count": q_event_count,
    "change": q_change,
}


def make_questions(rng: np.random.Generator, record: dict, video_id: str) -> list[dict]:
    """One question per applicable type, in LLaVA form; correct letters are spread evenly within the video."""
    drafts = [(qtype, d) for qtype, gen in GENERATORS.items() if (d := gen(rng, record)) is not None]
    return _finish_questions(rng, record, video_id, drafts)


def _finish_questions(
    rng: np.random.Generator, record: dict, video_id: str, drafts: list[tuple[str, Draft]]
) -> list[dict]:
    """Drafts -> LLaVA questions with 4 options; correct letters are spread evenly within the video."""
    # Letters: whole random permutations of ABCD, so any 4 consecutive questions use each letter once.
    letters = np.concatenate([rng.permutation(4) for _ in range((len(drafts) + 3) // 4)] + [np.zeros(0, int)])
    letters = letters[: len(drafts)]
    out = []
    for k, ((qtype, (text, wrong, params, evidence, ffa)), slot) in enumerate(zip(drafts, letters, strict=True)):
        truth = true_answer(record, {"qtype": qtype, "params": params})
        wrong = list(dict.fromkeys(w for w in wrong if w != truth))
        if len(wrong) < 3:
            raise ValueError(f"{video_id}: {qtype} question has {len(wrong)} distinct distractors, expected 3")
        options = [wrong[int(j)] for j in rng.permutation(3)]
        options.insert(int(slot), truth)
        listing = "\n".join(f"{LETTERS[j]}. {o}" for j, o in enumerate(options))
        q = {
            "id": f"{video_id}_q{k}",
            "video": f"{video_id}.mp4",
            "conversations": [
                {"from": "human", "value": f"<video>\n{text}\n{listing}\n{ANSWER_PROMPT}"},
                {"from": "gpt", "value": LETTERS[int(slot)]},
            ],
            "question": text,
            "options": options,
            "answer": LETTERS[int(slot)],
            "qtype": qtype,
            "evidence": [int(evidence[0]), int(evidence[1])],
            "first_frame_answerable": bool(ffa),
            "params": params,
        }
        if answer_from_record(record, q) != q["answer"]:
            raise ValueError(f"{q['id']}: stored answer {q['answer']} disagrees with the record")
        out.append(q)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Long-video questions (the long world): who came first, which events came in what order across the video, how
# many distinct objects, what changed between the first and the last frame, how many events in all, who came back.
# Every answer is recomputed from the record's visible ranges and events; ``sep`` (frames) keeps the compared
# moments far enough apart that the answer is not a matter of a frame or two.

ORDINALS = "first second third fourth fifth sixth".split()
_ORDER_KINDS = ("enter", "exit", "appear", "vanish", "colour_change")
_TOTAL_PHRASES = {
    "enter": "walk into the frame through one of its sides",
    "exit": "walk out of the frame through one of its sides",
    "appear": "pop up in the middle of the frame",
    "vanish": "disappear in the middle of the frame",
}
_START_END = {
    "gone": "was in view at the start of the video but not at its end",
    "new": "was in view at the end of the video but not at its start",
    "colour": "had another colour the last time it was seen than the first time",
}


def _event_ref(record: dict, ev: dict) -> list:
    """[type, object, occurrence]: the event named by its kind, its object and how many times before it happened."""
    i = ev["objects"][0]
    same = [e for e in events_of(record, ev["type"], i) if e["objects"][0] == i]
    return [ev["type"], int(i), same.index(ev)]


def _event_of_ref(record: dict, ref: list) -> dict:
    kind, i, k = ref
    same = [e for e in events_of(record, kind, i) if e["objects"][0] == i]
    if k >= len(same):
        raise ValueError(f"event {ref} not in the record: {name(record, i)} has {len(same)} {kind} event(s)")
    return same[k]


def describe_ref(record: dict, ref: list, always_ordinal: bool = False) -> str:
    """'The red circle left the frame for the second time' (the occurrence only when the object did it again, or
    ``always_ordinal``: then an object that did it once 'left the frame for the first time' too)."""
    kind, i, k = ref
    ev = _event_of_ref(record, ref)
    text = describe_key(record, (kind, (i,), ev.get("to", "")))
    repeats = len([e for e in events_of(record, kind, i) if e["objects"][0] == i]) > 1
    return f"{text} for the {ORDINALS[k]} time" if repeats or always_ordinal else text


def _shown(record: dict, i: int, t: int) -> bool:
    return is_visible(record, i, t)


def _start_end_holds(record: dict, variant: str, i: int) -> bool:
    last = int(record["num_frames"]) - 1
    o = record["objects"][i]
    if variant == "gone":
        return _shown(record, i, 0) and not _shown(record, i, last)
    if variant == "new":
        return _shown(record, i, last) and not _shown(record, i, 0)
    if variant == "colour":
        return colour_at(record, i, o["first_frame"]) != colour_at(record, i, o["last_frame"])
    raise ValueError(f"unknown start_end variant {variant!r}; expected one of {sorted(_START_END)}")


def _returns(record: dict, i: int) -> int:
    """Times object i came back into the view (entered or appeared) after it first left it (exit or vanish)."""
    left = [ev["frames"][0] for ev in record["events"] if ev["type"] in ("exit", "vanish") and ev["objects"][0] == i]
    if not left:
        return 0
    back = [ev for ev in record["events"] if ev["type"] in ("enter", "appear") and ev["objects"][0] == i]
    return sum(ev["frames"][0] > left[0] for ev in back)


def long_true_answer(record: dict, question: dict) -> str:
    """The correct option text of a long-world question, from the record's visible ranges and events only."""
    qtype, p = question["qtype"], question["params"]
    if qtype == "first_appearance":
        frames = [first_frame(record, i) for i in range(len(record["objects"]))]
        firsts: list[int | None] = list(frames)
        if p["variant"] == "first_new":  # among the objects not in view in the first frame
            firsts = [f if f > 0 else None for f in frames]
        pick = max if p["variant"] == "last" else min
        best = pick(f for f in firsts if f is not None)
        winners = [i for i, f in enumerate(firsts) if f == best]
        if len(winners) != 1:
            raise ValueError(f"{p['variant']} appearance is shared by {len(winners)} objects (frame {best})")
        return name(record, winners[0])
    if qtype == "event_order":
        at = _event_of_ref(record, p["anchor"])["frames"][0]
        before = p["variant"] == "before"
        hits = [r for r in p["events"] if (_event_of_ref(record, r)["frames"][0] < at) == before]
        if len(hits) != 1:
            raise ValueError(
                f"event_order needs exactly one option {p['variant']} the anchor, the record has {len(hits)}"
            )
        return describe_ref(record, hits[0], bool(p.get("always_ordinal", False)))
    if qtype == "distinct_count":
        return str(len(record["objects"]))
    if qtype == "start_end":
        hits = [i for i in p["candidates"] if _start_end_holds(record, p["variant"], i)]
        if len(hits) != 1:
            raise ValueError(f"start_end ({p['variant']}) needs exactly one candidate that holds, got {len(hits)}")
        return name(record, hits[0])
    if qtype == "event_total":
        return str(len(events_of(record, p["event"])))
    if qtype == "returns":
        return str(_returns(record, p["object"]))
    raise ValueError(f"unknown long qtype {qtype!r}; expected one of {LONG_QTYPES}")


def q_first_appearance(rng: np.random.Generator, record: dict, sep: int) -> Draft | None:
    n = len(record["objects"])
    firsts = sorted((first_frame(record, i), i) for i in range(n))
    variants = []
    if n >= 2 and firsts[1][0] - firsts[0][0] >= sep:
        variants.append("first")
    if n >= 2 and firsts[-1][0] - firsts[-2][0] >= sep:
        variants.append("last")
    later = [(f, i) for f, i in firsts if f > 0]
    if n and firsts[0][0] == 0 and later and (len(later) == 1 or later[1][0] - later[0][0] >= sep):
        variants.append("first_new")  # some objects are there from the start: who came first after them
    if not variants:
        return None
    variant = variants[int(rng.integers(len(variants)))]
    winner = {"first": firsts[0][1], "last": firsts[-1][1], "first_new": later[0][1] if later else -1}[variant]
    text = {
        "first": "Which object appeared first in the video?",
        "last": "Which object was the last one to show up in the video?",
        "first_new": "Of the objects not in view at the start, which one showed up first?",
    }[variant]
    wrong = _other_names(rng, record, exclude={winner})
    return text, wrong, {"variant": variant}, [0, firsts[-1][0]], False


def q_event_order(rng: np.random.Generator, record: dict, sep: int, *, balance: bool = False) -> Draft | None:
    """One option happened before (after) the anchor event, three after (before), all >= ``sep`` frames from it.

    The anchor and the four options are about five different objects, so ordinals ("for the second time") and the
    order of one object's own events (it enters before it leaves) give nothing away. ``balance``: the four options
    are events of one kind and one occurrence ("entered the frame for the first time"), so the kind of event
    (arrivals come early, departures late) does not tell the answer either, and every option names its occurrence
    (an object that comes back has its first arrival early: 'for the first time' on some options only would tell);
    only their objects differ.
    """
    evs = [ev for ev in record["events"] if ev["type"] in _ORDER_KINDS]
    refs = [r for r in (_event_ref(record, ev) for ev in evs) if r[2] < len(ORDINALS)]
    if len(refs) < 4:
        return None
    frame = {tuple(r): _event_of_ref(record, r)["frames"][0] for r in refs}
    for variant in ("before", "after") if rng.random() < 0.5 else ("after", "before"):
        for j in rng.permutation(len(refs)):
            anchor = refs[int(j)]
            at = frame[tuple(anchor)]
            early = [r for r in refs if frame[tuple(r)] <= at - sep and r[1] != anchor[1]]
            late = [r for r in refs if frame[tuple(r)] >= at + sep and r[1] != anchor[1]]
            one, three = (early, late) if variant == "before" else (late, early)
            if not one:
                continue
            truth = one[int(rng.integers(len(one)))]
            if balance:
                three = [r for r in three if r[0] == truth[0] and r[2] == truth[2]]
            others: list[list] = []
            for k in rng.permutation(len(three)):
                r = three[int(k)]
                if all(r[1] != q[1] for q in (truth, *others)):
                    others.append(r)
                if len(others) == 3:
                    break
            if len(others) < 3:
                continue
            params: dict[str, Any] = {"variant": variant, "anchor": anchor, "events": [truth, *others]}
            if balance:  # 'for the first time' on every option: whether an object did it again says nothing
                params["always_ordinal"] = True
            wrong = [describe_ref(record, r, balance) for r in others]
            anchor_text = describe_ref(record, anchor)
            text = f"Which of these happened {variant} {anchor_text[0].lower() + anchor_text[1:]}?"
            frames_used = [frame[tuple(r)] for r in (anchor, truth, *others)]
            return text, wrong, params, [min(frames_used), max(frames_used)], False
    return None


def q_distinct_count(
    rng: np.random.Generator, record: dict, sep: int, *, count_range: tuple[int, int] | None = None
) -> Draft | None:
    """``count_range`` (lo, hi) of 4+ counts holding the answer: the options are a window of 4 consecutive counts
    inside it, drawn uniformly among those that hold the answer (with the object count drawn as
    ``dataset._num_objects`` does, each option of a window is then equally likely); else consecutive numbers."""
    n = len(record["objects"])
    if n == 0:
        return None
    text = "How many different objects appeared over the whole video? An object that leaves and comes back counts once."
    if count_range is not None and count_range[1] - count_range[0] >= 3 and count_range[0] <= n <= count_range[1]:
        lo, hi = count_range
        start = int(rng.integers(max(lo, n - 3), min(n, hi - 3) + 1))
        wrong = [str(k) for k in range(start, start + 4) if k != n]
    else:
        wrong = _numbers(rng, n, 1)
    return text, wrong, {}, [0, int(record["num_frames"]) - 1], False


def q_start_end(rng: np.random.Generator, record: dict, sep: int) -> Draft | None:
    n = len(record["objects"])
    sets = {v: [i for i in range(n) if _start_end_holds(record, v, i)] for v in _START_END}
    variants = [v for v in _START_END if sets[v]]
    if not variants:
        return None
    variant = variants[int(rng.integers(len(variants)))]
    truth = sets[variant][int(rng.integers(len(sets[variant])))]
    wrong_ids = [i for i in range(n) if i not in sets[variant]]
    wrong_ids = [wrong_ids[int(k)] for k in rng.permutation(len(wrong_ids))[:3]]
    wrong = [name(record, i) for i in wrong_ids]
    wrong += _other_names(rng, record, exclude=set(range(n)), k=3 - len(wrong)) if len(wrong) < 3 else []
    which = "Which object" if len(sets[variant]) == 1 else "Which of these objects"
    params = {"variant": variant, "candidates": [int(truth), *[int(i) for i in wrong_ids]]}
    return f"{which} {_START_END[variant]}?", wrong, params, [0, int(record["num_frames"]) - 1], False


def q_event_total(rng: np.random.Generator, record: dict, sep: int, *, balance: bool = False) -> Draft | None:
    """``balance``: the answer's place among four consecutive options is drawn first (uniformly), then a kind whose
    count leaves room for it below (>= the place); the window is not moved to stay above 0, which would make its
    lowest values likelier, and the world deals each kind's count evenly (``longworld._deal_kinds``)."""
    if not record["objects"]:
        return None
    kinds = list(_TOTAL_PHRASES)
    if balance:
        place = int(rng.integers(4))  # the answer's place among the four options, first
        able = [k for k in kinds if len(events_of(record, k)) >= place]
        if not able:
            return None
        kind = able[int(rng.integers(len(able)))]
        n = len(events_of(record, kind))
        wrong = [str(k) for k in range(n - place, n - place + 4) if k != n]
    else:
        kind = kinds[int(rng.integers(len(kinds)))]
        n = len(events_of(record, kind))
        wrong = [str(k) for k in range(4) if k != n] if n <= 3 else _numbers(rng, n, 0)
    text = f"Over the whole video, how many times did an object {_TOTAL_PHRASES[kind]}?"
    return text, wrong, {"event": kind}, [0, int(record["num_frames"]) - 1], False


def q_returns(rng: np.random.Generator, record: dict, sep: int) -> Draft | None:
    """The answer's value is drawn first (uniformly among the values the video offers), then an object with it."""
    by_value: dict[int, list[int]] = {}
    for i in range(len(record["objects"])):
        by_value.setdefault(_returns(record, i), []).append(i)
    if not by_value:
        return None
    values = sorted(by_value)
    objs = by_value[values[int(rng.integers(len(values)))]]
    i = objs[int(rng.integers(len(objs)))]
    n = _returns(record, i)
    text = f"How many times did {name(record, i)} come back into view after it first left?"
    wrong = [str(k) for k in range(4) if k != n] if n <= 3 else _numbers(rng, n, 0)
    o = record["objects"][i]
    return text, wrong, {"object": int(i)}, [int(o["first_frame"]), int(o["last_frame"])], False


LONG_GENERATORS: dict[str, Callable[..., Draft | None]] = {
    "first_appearance": q_first_appearance,
    "event_order": q_event_order,
    "distinct_count": q_distinct_count,
    "start_end": q_start_end,
    "event_total": q_event_total,
    "returns": q_returns,
}


def make_long_questions(
    rng: np.random.Generator,
    record: dict,
    video_id: str,
    *,
    per_type: int = 2,
    sep: int = 16,
    qtypes: tuple[str, ...] = LONG_QTYPES,
    tries: int = 4,
    balance: bool = False,
    count_range: tuple[int, int] | None = None,
) -> list[dict]:
    """Up to ``per_type`` distinct questions of each long type (``tries`` draws per wanted question).

    ``balance``: answers carry no text prior (the generators' ``balance`` above; ``count_range`` is the range the
    object count was drawn from, for the count question's options)."""
    unknown = set(qtypes) - set(LONG_QTYPES)
    if unknown:
        raise ValueError(f"unknown long question types {sorted(unknown)}; expected some of {LONG_QTYPES}")
    drafts: list[tuple[str, Draft]] = []
    for qtype in qtypes:
        seen: set[str] = set()
        for _ in range(per_type * tries):
            extra: dict = {}
            if balance and qtype in ("event_total", "event_order"):
                extra = {"balance": True}
            elif balance and qtype == "distinct_count":
                extra = {"count_range": count_range}
            d = LONG_GENERATORS[qtype](rng, record, sep, **extra)
            if d is None:
                break
            key = repr((d[0], d[2]))
            if key not in seen:
                seen.add(key)
                drafts.append((qtype, d))
            if len(seen) == per_type:
                break
    return _finish_questions(rng, record, video_id, drafts)


# ---------------------------------------------------------------------------------------------------------------
# Captions

_MOTION_PHRASES = {
    "linear": ("moves in a straight line", "glides steadily across the scene"),
    "bounce": ("bounces around", "bounces off the edges of the frame"),
    "stop_and_go": ("moves and stops again and again", "moves in fits and starts"),
    "turn": ("keeps changing direction", "turns now and then"),
}
_TEXTURE_WORDS = {"solid": "", "striped": "striped ", "dotted": "dotted "}
_BACKGROUND_WORDS = {"plain": "gradient", "stripes": "striped", "checker": "checkered", "noise": "mottled"}
_CAMERA_PHRASES = {
    "static": "The camera stays still",
    "pan": "The camera pans slowly across the scene",
    "zoom": "The camera slowly zooms in and out",
    "pan_zoom": "The camera pans and zooms",
}


def _count_word(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _present(record: dict, ev: dict) -> str:
    objs = ev["objects"]
    kind = ev["type"]
    if kind == "cut":
        return "the scene cuts to a new view"
    if kind == "collision":
        return f"{name(record, objs[0])} and {name(record, objs[1])} collide"
    if kind == "occlusion":
        return f"{name(record, objs[0])} passes in front of {name(record, objs[1])}"
    return {
        "enter": f"{name(record, objs[0])} enters from the {ev.get('side')}",
        "exit": f"{name(record, objs[0])} leaves through the {ev.get('side')}",
        "appear": f"{name(record, objs[0])} appears",
        "vanish": f"{name(record, objs[0])} vanishes",
        "colour_change": f"{name(record, objs[0])} turns {ev.get('to')}",
        "stop": f"{name(record, objs[0])} stops for a moment",
    }[kind]


def _article(words: str) -> str:
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


VIEW_POINTS = (("At the start", 0.0), ("Half-way", 0.5), ("At the end", 1.0))


def views_caption(record: dict, points: tuple[tuple[str, float], ...] = VIEW_POINTS) -> str:
    """What is in view at a few points of the video (by default its first, middle and last frame), one sentence
    each: 'At the start: the red ring and the blue star. Half-way: nothing. At the end: the blue star (now green).'

    Objects are named as the questions name them (their first colour), in the order of the record, with the colour
    they show at that frame when it is another one. Frame ``round(f * (num_frames - 1))`` stands for fraction f, so
    the first and last frame are exact for any sampling that keeps the video's ends (``load_video`` does). Not part
    of ``make_captions`` (the world's files stay as they were); the main job's stage 1 may add it to its captions.
    """
    last = int(record["num_frames"]) - 1
    sentences = []
    for label, frac in points:
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"view point {label!r}: fraction {frac} is outside [0, 1]")
        t = round(frac * last)
        seen = []
        for i, obj in enumerate(record["objects"]):
            if is_visible(record, i, t):
                now = colour_at(record, i, t)
                seen.append(name(record, i) + (f" (now {now})" if now != obj["colour"] else ""))
        sentences.append(f"{label}: {_join(seen) if seen else 'nothing'}.")
    return " ".join(sentences)


def _intro(rng: np.random.Generator, n: int, background: str) -> str:
    """The cast caption's first words: how many objects move over which background (one draw of ``rng``)."""
    if n == 1:
        return f"A single object moves over {_article(background)} background"
    return str(
        rng.choice(
            [
                f"{_cap(_count_word(n))} objects move over {_article(background)} background",
                f"{_cap(_article(background))} background with {_count_word(n)} moving objects",
                f"On {_article(background)} background, {_count_word(n)} objects move around",
            ]
        )
    )


def still_caption(rng: np.random.Generator, objects: list[dict], background: dict) -> str:
    """The cast caption of a scene seen in a few frames, in the words of :func:`make_captions`' first caption but
    without the motion phrases (a few frames do not show how an object moves): 'Three objects move over a dark
    teal gradient background: a dotted orange cross, a blue triangle and a striped white ring.' ``objects``: dicts
    with ``shape``, ``colour`` and ``texture``; ``background``: ``tone`` and ``kind`` (as a record's shot)."""
    bg = f"{background['tone']} {_BACKGROUND_WORDS[background['kind']]}"
    cast = [f"{_article(_TEXTURE_WORDS[o['texture']] + o['colour'])} {o['shape']}" for o in objects]
    intro = _intro(rng, len(objects), bg)
    return f"{intro}: {_join(cast)}." if cast else f"{intro}."


def make_captions(rng: np.random.Generator, record: dict, max_events: int = 10) -> list[str]:
    """2-3 template captions: the cast, the events in order, and the camera/summary view."""
    objs = record["objects"]
    n = len(objs)
    shot0 = record["shots"][0]
    bg = f"{shot0['background']['tone']} {_BACKGROUND_WORDS[shot0['background']['kind']]}"
    by_first = sorted(range(n), key=lambda i: (first_frame(record, i), i))
    cast = [
        f"{_article(_TEXTURE_WORDS[objs[i]['texture']] + objs[i]['colour'])} {objs[i]['shape']} that "
        f"{_MOTION_PHRASES[objs[i]['motion']][int(rng.integers(2))]}"
        for i in by_first
    ]
    intro = _intro(rng, n, bg)
    captions = [f"{intro}: {_join(cast)}." if cast else f"{intro}."]

    story = [ev for ev in record["events"] if ev["type"] != "occlusion"]
    if len(story) > max_events:  # keep the rarer kinds first, then spread the frequent ones over the video
        rare = [j for j, ev in enumerate(story) if ev["type"] not in ("enter", "exit")]
        common = [j for j, ev in enumerate(story) if ev["type"] in ("enter", "exit")]
        if len(rare) > max_events:
            rare = [rare[int(j)] for j in np.unique(np.linspace(0, len(rare) - 1, max_events).round().astype(int))]
        room = max_events - len(rare)
        if room and common:
            common = [common[int(j)] for j in np.unique(np.linspace(0, len(common) - 1, room).round().astype(int))]
        else:
            common = []
        story = [story[j] for j in sorted(rare + common)]
    start = [name(record, i) for i in by_first if first_frame(record, i) == 0]
    sentences = [f"At the start, {_join(start)} {'is' if len(start) == 1 else 'are'} visible."] if start else []
    if not start:
        sentences.append("The video starts with an empty scene.")
    links = ["Then", "Next", "After that", "Later", "Soon after"]
    for j, ev in enumerate(story):
        link = "Finally," if j == len(story) - 1 and j > 0 else str(rng.choice(links))
        sentences.append(f"{link} {_present(record, ev)}.")
    if not story:
        sentences.append("Nothing else happens; the objects keep moving.")
    captions.append(" ".join(sentences))

    cuts = len(events_of(record, "cut"))
    if cuts or rng.random() < 0.5:
        kinds = Counter(ev["type"] for ev in record["events"])
        facts = []
        if kinds["collision"]:
            facts.append(f"{_count_word(kinds['collision'])} collision{'s' * (kinds['collision'] != 1)}")
        if kinds["exit"]:
            facts.append(f"{_count_word(kinds['exit'])} exit{'s' * (kinds['exit'] != 1)} from the frame")
        if kinds["colour_change"]:
            facts.append(f"{_count_word(kinds['colour_change'])} colour change{'s' * (kinds['colour_change'] != 1)}")
        if cuts:
            facts.append(f"{_count_word(cuts)} hard scene cut{'s' * (cuts != 1)}")
        text = f"{_CAMERA_PHRASES[shot0['camera']]} while {_count_word(n)} object{'s' * (n != 1)} move"
        text += f"; there {'is' if facts and facts[0].startswith('one ') else 'are'} {_join(facts)}." if facts else "."
        captions.append(text)
    return captions
