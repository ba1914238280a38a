"""eval/bench/bench_frame_oracle.py: what a reader of N sampled frames can answer of the long world's questions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trajtok.io.video import load_video
from trajtok.synth import write_dataset
from trajtok.synth.text import answer_from_record, colour_at, describe_ref, is_visible, make_long_questions, name
from trajtok.synth.world import COLOURS, SHAPES


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("eval/bench/bench_frame_oracle.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """`trajtok synth --world long` through its Python API: 4 val videos of 96-128 frames at 24 px (under a second)."""
    out = tmp_path_factory.mktemp("long_world")
    write_dataset(out, "train=0,val=4,test=0", frames=(96, 128), size=24, objects=(4, 6), world="long")
    return out


def _videos(world):
    """(record, its questions) per val video."""
    questions = json.loads((world / "val" / "qa.json").read_text())
    out = []
    for path in sorted((world / "val").glob("val_*.json")):
        record = json.loads(path.read_text())
        out.append((record, [q for q in questions if q["video"] == f"{record['id']}.mp4"]))
    return out


def test_every_frame_answers_everything(bench, world):
    """All frames: the only possible history is the record, so every question is answered (and fewer frames are
    not enough, so the check is not empty)."""
    videos = _videos(world)
    assert sum(len(qs) for _, qs in videos) > 10
    for record, questions in videos:
        frames = range(record["num_frames"])
        assert [bench.oracle_accuracy(record, q, frames) for q in questions] == [1.0] * len(questions), record["id"]
    two = [bench.oracle_accuracy(r, q, [0, r["num_frames"] - 1]) for r, qs in videos for q in qs]
    assert sum(two) < len(two)


def _visits_record(rng: np.random.Generator, T: int = 160, n: int = 6) -> dict:
    """A long-world record with no occlusions: each object (its own shape) makes 1-3 visits of >= 12 frames,
    >= 12 frames apart, arriving and leaving by a random kind, and may change colour once."""
    record = {"id": "visits", "num_frames": T, "objects": [], "events": []}
    for i, shape in enumerate(rng.permutation(SHAPES)[:n]):
        visible, t = [], 0 if rng.random() < 0.3 else int(rng.integers(1, 40))
        while t < T and len(visible) < 3:
            visible.append([t, min(T - 1, t + int(rng.integers(12, 50)))])
            t = visible[-1][1] + 1 + int(rng.integers(12, 40))
        colour = str(rng.choice(COLOURS))
        colours = [colour]
        for a, b in visible:
            if a > 0:
                record["events"].append(
                    {"type": str(rng.choice(["enter", "appear"])), "frames": [a, a], "objects": [i]}
                )
            if b < T - 1:
                kind = str(rng.choice(["exit", "vanish"]))
                record["events"].append({"type": kind, "frames": [b + 1, b + 1], "objects": [i]})
        a, b = visible[int(rng.integers(len(visible)))]
        if rng.random() < 0.4 and b - a > 4:
            to = str(rng.choice([c for c in COLOURS if c != colour]))
            t = int(rng.integers(a + 2, b - 1))
            record["events"].append(
                {"type": "colour_change", "frames": [t, t], "objects": [i], "from": colour, "to": to}
            )
            colours.append(to)
        record["objects"].append(
            {
                "colour": colour,
                "colours": colours,
                "shape": str(shape),
                "visible": visible,
                "first_frame": visible[0][0],
                "last_frame": visible[-1][1],
            }
        )
    record["events"].sort(key=lambda ev: ev["frames"][0])
    return record


def _sparse_but_sees_every_change(record: dict, rng: np.random.Generator) -> list[int]:
    """Frames 0 and T - 1 and as few others as leave no two changes of one object (visibility or colour) between
    two consecutive frames: every frame is dropped, in random order, unless that would join two such changes."""
    T = record["num_frames"]
    changes = []
    for i in range(len(record["objects"])):
        state = [(is_visible(record, i, t), colour_at(record, i, t)) for t in range(T)]
        changes.append([t for t in range(1, T) if state[t] != state[t - 1]])
    kept = set(range(T))
    for t in rng.permutation(np.arange(1, T - 1)):
        p, q = max(s for s in kept if s < t), min(s for s in kept if s > t)
        if all(sum(p < c <= q for c in cs) <= 1 for cs in changes):
            kept.remove(int(t))
    return sorted(kept)


def test_accuracy_never_rises_when_frames_are_removed(bench):
    """Nested frame sets that miss no change (each holds the previous one, and no two changes of one object fall
    between two of its consecutive frames): the possible histories of a larger set are among those of a smaller
    one, so its consistent options are among the smaller set's, the true one stays among them, and accuracy never
    falls as frames are added. The records have no occlusions, whose one-frame flickers would force almost every
    frame into such a set. (A set that misses a whole visit can mislead the reader, who may then be right by luck
    with fewer frames: the module docstring says so.)"""
    rng = np.random.default_rng(0)
    uncertain, total = 0, 0
    for k in range(16):
        record = _visits_record(rng)
        questions = make_long_questions(rng, record, f"visits_{k}", sep=2)  # events close: their order is open
        base = set(_sparse_but_sees_every_change(record, rng))
        rest = [t for t in range(record["num_frames"]) if t not in base]
        rest = [rest[int(j)] for j in rng.permutation(len(rest))]
        chain = [sorted(base | set(rest[:m])) for m in range(0, len(rest) + 1, 8)]
        chain.append(list(range(record["num_frames"])))
        for q in questions:
            truth = "ABCD".index(q["answer"])
            options = [set(bench.consistent_options(record, q, frames)) for frames in chain]
            assert all(truth in c for c in options), (k, q["qtype"], q["params"], options)
            assert all(b <= a for a, b in zip(options, options[1:], strict=False)), (k, q["qtype"], options)
            accs = [bench.oracle_accuracy(record, q, frames) for frames in chain]
            assert all(b >= a for a, b in zip(accs, accs[1:], strict=False)) and accs[-1] == 1.0, (k, accs)
            uncertain += accs[0] < 1.0
            total += 1
    assert uncertain >= 10 and total > 100, (uncertain, total)  # the sparsest sets leave questions open


def _record(T: int, objects: list[tuple[str, str, list[list[int]], list[tuple[str, int]]]]) -> dict:
    """A hand-made long-world record: per object (colour, shape, visible ranges, [(event type, frame)])."""
    record = {"id": "hand", "num_frames": T, "objects": [], "events": []}
    for i, (colour, shape, visible, events) in enumerate(objects):
        record["objects"].append(
            {
                "colour": colour,
                "colours": [colour],
                "shape": shape,
                "visible": visible,
                "first_frame": visible[0][0],
                "last_frame": visible[-1][1],
            }
        )
        record["events"] += [{"type": kind, "frames": [t, t], "objects": [i]} for kind, t in events]
    record["events"].sort(key=lambda ev: ev["frames"][0])
    return record


def _question(record: dict, qtype: str, params: dict, options: list[str], truth: str) -> dict:
    q = {"id": "hand_q", "qtype": qtype, "params": params, "options": options, "answer": "ABCD"[options.index(truth)]}
    assert answer_from_record(record, q) == q["answer"]  # the hand-made question is a valid one of the world
    return q


def test_two_events_between_the_same_frames_leave_a_coin_flip(bench):
    """Which came first of two events that fall between the same two sampled frames is a guess (1/2); a frame
    between them, or every frame, decides it."""
    T = 100
    record = _record(
        T,
        [
            ("red", "circle", [[0, 99]], []),
            ("blue", "square", [[30, 99]], [("enter", 30)]),
            ("green", "star", [[35, 99]], [("appear", 35)]),
            ("white", "cross", [[60, 99]], [("enter", 60)]),
            ("pink", "ring", [[80, 99]], [("appear", 80)]),
        ],
    )
    names = [name(record, i) for i in range(5)]
    first_new = _question(record, "first_appearance", {"variant": "first_new"}, names[1:], names[1])
    assert bench.oracle_accuracy(record, first_new, [0, 20, 40, 99]) == 0.5
    assert bench.oracle_accuracy(record, first_new, [0, 20, 32, 40, 99]) == 1.0
    assert bench.oracle_accuracy(record, first_new, range(T)) == 1.0

    # which happened before the green star appeared (35)? the blue square's entry (30) did; the white cross's (60)
    # and the pink ring's (80) did not, nor the red circle's vanishing (45, a change of its own)
    record = _record(
        T,
        [
            ("red", "circle", [[0, 44]], [("vanish", 45)]),
            ("blue", "square", [[30, 99]], [("enter", 30)]),
            ("green", "star", [[35, 99]], [("appear", 35)]),
            ("white", "cross", [[60, 99]], [("enter", 60)]),
            ("pink", "ring", [[80, 99]], [("appear", 80)]),
        ],
    )
    refs = [["enter", 1, 0], ["vanish", 0, 0], ["enter", 3, 0], ["appear", 4, 0]]
    texts = [describe_ref(record, r) for r in refs]
    params = {"variant": "before", "anchor": ["appear", 2, 0], "events": refs}
    order = _question(record, "event_order", params, texts, texts[0])
    # frames 20 and 50: the blue entry (30), the green appearance (35) and the red vanishing (45) all lie between
    # them; the blue square or the red circle may have been first: two consistent options
    assert bench.consistent_options(record, order, [0, 20, 50, 70, 99]) == [0, 1]
    assert bench.oracle_accuracy(record, order, [0, 20, 50, 70, 99]) == 0.5
    assert bench.oracle_accuracy(record, order, [0, 20, 40, 50, 70, 99]) == 1.0  # 40: red still there, blue in


def test_the_frames_are_those_the_decoder_returns(bench, world):
    """The reader's frames are `load_video(num_frames=N)`'s: the first frame, the last, and the frames nearest to
    N - 2 times evenly between (the decoder breaks near-ties towards the earlier frame)."""
    for video in sorted((world / "val").glob("*.mp4")):
        T = json.loads(video.with_suffix(".json").read_text())["num_frames"]
        assert bench.sampled_frames(T, 1) == [0]
        for n in (4, 8, 16):
            frames = bench.sampled_frames(T, n)
            assert frames == sorted(set(load_video(video, num_frames=n).indices.tolist())), (video.name, n)
            targets = np.linspace(0, T - 1, n)
            assert len(frames) == n and frames[0] == 0 and frames[-1] == T - 1, (video.name, frames)
            assert np.abs(np.array(frames) - targets).max() <= 0.5 + 0.02, (video.name, frames, targets)


def test_cli_prints_the_table_and_writes_the_json(bench, world, tmp_path, capsys):
    """The command line on a world folder: a row per frame count (the decoded frames counted), every frame at
    100 %, the question counts; a missing folder or a bad count is one line on stderr and status 2."""
    out = tmp_path / "oracle.json"
    assert bench.main(["--data", str(world), "--frames", "1,8,all", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    questions = json.loads((world / "val" / "qa.json").read_text())
    assert result["videos"] == 4 and result["questions"]["all"] == len(questions)
    assert [r["frames"] for r in result["rows"]] == ["1", "8", "all"]
    assert [r["mean_frames_seen"] for r in result["rows"][:2]] == [1.0, 8.0]
    one, eight, every = (r["accuracy"] for r in result["rows"])
    assert every == {k: 100.0 for k in every} and set(every) == set(result["questions"])
    assert one["all"] < 100.0 and eight["all"] < 100.0
    printed = capsys.readouterr().out
    assert "| all | " in printed and f"{len(questions)} questions" in printed

    assert bench.main(["--data", str(tmp_path / "missing")]) == 2
    assert "missing/val/qa.json not found" in capsys.readouterr().err
    (tmp_path / "corrupt" / "val").mkdir(parents=True)
    (tmp_path / "corrupt" / "val" / "qa.json").write_text("{bad")
    assert bench.main(["--data", str(tmp_path / "corrupt")]) == 2
    assert "corrupt/val/qa.json: not valid JSON" in capsys.readouterr().err
    assert bench.main(["--data", str(world), "--frames", "8,0"]) == 2
    assert "'0' is not a frame count" in capsys.readouterr().err
