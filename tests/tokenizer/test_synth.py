import copy
import json
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import av
import numpy as np
import pytest

from trajtok.cli import main as trajtok_main
from trajtok.io.labels import TrajectoryLabels, load_labels
from trajtok.synth import WorldConfig, answer_from_record, generate_video, write_dataset
from trajtok.synth.dataset import SEED_RANGE, SPLITS, parse_counts, video_seed
from trajtok.synth.generate import generate_long_video
from trajtok.synth.longworld import LongWorldConfig
from trajtok.synth.text import (
    LETTERS,
    LONG_QTYPES,
    QTYPES,
    colour_at,
    describe_ref,
    is_visible,
    long_true_answer,
    make_long_questions,
    views_caption,
)
from trajtok.synth.world import COLOURS, PALETTE

CUTS = WorldConfig(cut_prob=0.5)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos():
    return [generate_video(seed, 96, 64, 64, 6, config=CUTS) for seed in range(6)]


def _decoded_frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_masks_graph_and_visible_ranges_agree(videos):
    for v in videos:
        rec = v.record
        T, M = rec["num_frames"], len(rec["objects"])
        assert v.frames.shape == (T, 64, 64, 3) and v.frames.dtype == np.uint8
        assert v.masks.shape == (T, 64, 64) and v.graph.shape == (M, T)
        assert 0 <= v.masks.min() and v.masks.max() <= M
        for o in rec["objects"]:
            m = o["id"]
            seen = v.masks.reshape(T, -1).__eq__(m + 1).any(axis=1)  # (T,)
            expected = np.zeros(T, dtype=bool)
            for s, e in o["visible"]:
                expected[s : e + 1] = True
            np.testing.assert_array_equal(seen, expected, err_msg=f"{rec['id']} object {m}")
            np.testing.assert_array_equal(v.graph[m], np.where(seen, m + 1, 0))
            assert o["first_frame"] == o["visible"][0][0] and o["last_frame"] == o["visible"][-1][1]
        # the label format's own reading gives back the same per-pixel trajectories
        np.testing.assert_array_equal(TrajectoryLabels(v.masks, v.graph).trajectory_ids(), v.masks)


def test_events_match_masks(videos):
    kinds = Counter()
    for v in videos:
        rec = v.record
        T, M = rec["num_frames"], len(rec["objects"])
        for ev in rec["events"]:
            kinds[ev["type"]] += 1
            s, e = ev["frames"]
            assert 0 <= s <= e < T and all(0 <= o < M for o in ev["objects"])
            kind, objs = ev["type"], ev["objects"]
            if kind in ("enter", "appear"):
                assert is_visible(rec, objs[0], s) and not is_visible(rec, objs[0], s - 1)
            if kind in ("exit", "vanish"):
                assert is_visible(rec, objs[0], s - 1) and not is_visible(rec, objs[0], s)
            if kind in ("enter", "exit"):  # the object touches the named border just inside the frame
                t = s if kind == "enter" else s - 1
                ys, xs = np.nonzero(v.masks[t] == objs[0] + 1)
                touch = {"left": xs.min() == 0, "right": xs.max() == 63, "top": ys.min() == 0, "bottom": ys.max() == 63}
                assert touch[ev["side"]], (rec["id"], ev)
            if kind == "collision":
                assert len(objs) == 2 and all(is_visible(rec, o, s) for o in objs)
            if kind == "stop":
                assert all(is_visible(rec, objs[0], t) for t in range(s, e + 1))
            if kind == "colour_change":
                assert ev["from"] != ev["to"] and ev["to"] in rec["objects"][objs[0]]["colours"]
            if kind == "occlusion":  # the front object owns pixels of the back one's place in those frames
                assert objs[0] != objs[1] and all(is_visible(rec, objs[0], t) for t in range(s, e + 1))
    assert {"enter", "exit", "collision", "occlusion", "stop"} <= set(kinds), kinds


def test_rendered_colours_follow_the_record(videos):
    palette = np.array([PALETTE[c] for c in COLOURS], dtype=np.float64)
    checked = 0
    for v in videos:
        rec = v.record
        for o in rec["objects"]:
            if o["texture"] != "solid":
                continue
            for t in range(0, rec["num_frames"], 3):
                m = v.masks[t] == o["id"] + 1
                if m.sum() < 30:
                    continue
                median = np.median(v.frames[t][m].astype(np.float64), axis=0)
                nearest = COLOURS[int(np.argmin(((palette - median) ** 2).sum(axis=1)))]
                assert nearest == colour_at(rec, o["id"], t), (rec["id"], o["id"], t)
                checked += 1
    assert checked > 50


def test_every_answer_is_recomputed_from_the_record(videos):
    for v in videos:
        rec = v.record
        assert 2 <= len(rec["captions"]) <= 3 and all(isinstance(c, str) and c for c in rec["captions"])
        assert rec["questions"], rec["id"]
        for q in rec["questions"]:
            assert q["qtype"] in QTYPES
            assert len(q["options"]) == 4 and len(set(q["options"])) == 4
            assert answer_from_record(rec, q) == q["answer"] == q["conversations"][1]["value"]
            human = q["conversations"][0]["value"]
            assert human.startswith(f"<video>\n{q['question']}\nA. {q['options'][0]}\n")
            assert human.endswith("Answer with the option's letter from the given choices directly.")
            assert 0 <= q["evidence"][0] <= q["evidence"][1] < rec["num_frames"]
            assert isinstance(q["first_frame_answerable"], bool)


def test_answer_follows_an_edited_record(videos):
    rec = json.loads(json.dumps(videos[0].record))
    q = next(q for q in rec["questions"] if q["qtype"] == "count")
    n = len(rec["objects"])
    rec["objects"].append(dict(rec["objects"][0], id=n))
    wrong = str(n + 1)
    if wrong in q["options"]:
        assert answer_from_record(rec, q) == LETTERS[q["options"].index(wrong)] != q["answer"]
    else:
        with pytest.raises(ValueError, match="not among"):
            answer_from_record(rec, q)


def test_answer_letters_and_question_types_over_a_small_dataset():
    letters, qtypes, ffa = Counter(), Counter(), 0
    for seed in range(40):
        rec = generate_video(1000 + seed, 72, 48, 48, 6, config=CUTS).record
        letters.update(q["answer"] for q in rec["questions"])
        qtypes.update(q["qtype"] for q in rec["questions"])
        ffa += sum(q["first_frame_answerable"] for q in rec["questions"])
    assert set(letters) == set(LETTERS)
    assert max(letters.values()) / min(letters.values()) <= 1.25, letters
    assert set(qtypes) == set(QTYPES), qtypes
    assert ffa < sum(qtypes.values()) / 4


def test_numeric_options_do_not_give_the_answer_away():
    """Counts: the right option's place among the sorted options varies, and no count answer dominates (before,
    the truth sat in the middle of its distractors and "how many times" was "1" 94 % of the time)."""
    ranks, values = Counter(), Counter()
    for seed in range(60):
        rec = generate_video(2000 + seed, 32, 48, 48, 2 + seed % 4).record
        for q in rec["questions"]:
            truth = q["options"][LETTERS.index(q["answer"])]
            if q["qtype"] == "count":
                ranks[sorted(q["options"], key=int).index(truth)] += 1
            if q["qtype"] == "event_count":
                values[truth] += 1
    assert len(ranks) == 4 and max(ranks.values()) < 0.45 * sum(ranks.values()), ranks
    assert len(values) >= 2 and max(values.values()) < 0.75 * sum(values.values()), values


def test_lengths_8_and_1024(tmp_path):
    from trajtok.io.writer import write_video

    short = generate_video(7, 8, 64, 64, 3)
    long = generate_video(7, 1024, 48, 48, 4)
    for v, T, S in ((short, 8, 64), (long, 1024, 48)):
        assert v.frames.shape == (T, S, S, 3) and v.masks.shape == (T, S, S)
        assert v.graph.shape == (len(v.record["objects"]), T) and len(v.record["objects"]) >= 1
        write_video(tmp_path / f"{T}.mp4", v.frames)
        assert _decoded_frames(tmp_path / f"{T}.mp4").shape == (T, S, S, 3)
    # long videos carry short evidence spans far from the start
    spans = [q["evidence"] for q in long.record["questions"]]
    assert any(e - s <= 16 and s > 64 for s, e in spans), spans


def test_non_square_size_and_object_range():
    v = generate_video(3, 20, 48, 80, 12)
    assert v.frames.shape == (20, 48, 80, 3)
    assert len(v.record["objects"]) <= 12


def _annotation_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.suffix in (".json", ".npz", ".mp4"))


def test_same_seed_same_dataset_any_worker_count(tmp_path):
    """One seed gives one dataset, videos included, byte for byte (the default codec is reproducible)."""
    kw = dict(frames=(16, 40), size=48, objects=(2, 5), cut_prob=0.5)
    counts = {"train": 3, "val": 1, "test": 1}
    a = write_dataset(tmp_path / "a", counts, seed=0, workers=1, **kw).parent
    b = write_dataset(tmp_path / "b", counts, seed=0, workers=2, **kw).parent
    c = write_dataset(tmp_path / "c", counts, seed=1, workers=1, **kw).parent
    files = _annotation_files(a)
    assert files == _annotation_files(b) and len(files) == 1 + 5 * 3 + 3 * 2
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        if rel.suffix == ".npz":
            la, lb = load_labels(a / rel), load_labels(b / rel)
            np.testing.assert_array_equal(la.masks, lb.masks)
            np.testing.assert_array_equal(la.graph, lb.graph)
    differ = [rel for rel in files if rel.suffix == ".json" and (a / rel).read_bytes() != (c / rel).read_bytes()]
    assert len(differ) >= 5


def test_manifest_and_llava_files(tmp_path):
    manifest_path = write_dataset(tmp_path, {"train": 2, "val": 1, "test": 1}, frames=(12, 24), size=(32, 48))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["version"] == 1 and set(manifest["splits"]) == set(SPLITS)
    assert manifest["generator"]["size"] == [32, 48]
    for split in SPLITS:
        info = manifest["splits"][split]
        assert isinstance(info["seed"], int)
        captions = json.loads((tmp_path / split / "captions.json").read_text())
        qa = json.loads((tmp_path / split / "qa.json").read_text())
        assert {c["id"] for c in captions} == set(info["videos"])
        for c in captions:
            assert c["video"] == f"{c['id']}.mp4" and (tmp_path / split / c["video"]).is_file()
            assert c["conversations"][0] == {"from": "human", "value": "<video>\nDescribe the video."}
            assert c["conversations"][1]["from"] == "gpt"
        for q in qa:
            vid = q["video"][: -len(".mp4")]
            assert q["id"].startswith(f"{vid}_q") and vid in info["videos"]
            record = json.loads((tmp_path / manifest["videos"][vid]["record"]).read_text())
            assert q in record["questions"] and answer_from_record(record, q) == q["answer"]
        for vid in info["videos"]:
            entry = manifest["videos"][vid]
            assert entry["split"] == split
            assert video_seed(0, split, int(vid.split("_")[1])) == entry["seed"]
            assert SPLITS.index(split) * SEED_RANGE <= entry["seed"] < (SPLITS.index(split) + 1) * SEED_RANGE
            record = json.loads((tmp_path / entry["record"]).read_text())
            labels = load_labels(tmp_path / entry["labels"])
            assert record["id"] == vid and record["num_frames"] == entry["num_frames"]
            assert labels.graph.shape == (entry["num_objects"], entry["num_frames"])
            frames = _decoded_frames(tmp_path / entry["video"])
            assert frames.shape == (entry["num_frames"], 32, 48, 3)
    assert manifest["generator"]["codec"] == "mpeg4"
    with av.open(str(tmp_path / manifest["videos"]["train_00000"]["video"])) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"


def test_mpeg4_writes_the_same_bytes_every_time_and_h264_stays_available(tmp_path):
    from trajtok.io.writer import write_video

    frames = generate_video(2, 24, 64, 64, 4).frames
    files = {write_video(tmp_path / "v.mp4", frames, codec="mpeg4", threads=1).read_bytes() for _ in range(8)}
    assert len(files) == 1
    decoded = _decoded_frames(tmp_path / "v.mp4").astype(np.int16)
    assert decoded.shape == frames.shape and np.abs(decoded - frames).mean() < 8  # quantiser 1-3: close to the frames
    write_dataset(tmp_path / "h", {"train": 1, "val": 0, "test": 0}, frames=8, size=32, codec="h264")
    with av.open(str(tmp_path / "h" / "train" / "train_00000.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    with pytest.raises(ValueError, match="codec"):
        write_dataset(tmp_path / "x", 1, codec="vp9")


def test_cli_writes_a_dataset(tmp_path):
    rc = trajtok_main(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--num-videos",
            "train=1,test=1",
            "--frames",
            "8-10",
            "--size",
            "32",
            "--objects",
            "2",
            "--seed",
            "3",
        ]
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert rc == 0 and manifest["generator"]["num_videos"] == {"train": 1, "val": 0, "test": 1}
    assert manifest["generator"]["seed"] == 3 and not (tmp_path / "val").exists()


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="num_frames"):
        generate_video(0, 0, 64, 64, 2)
    with pytest.raises(ValueError, match="height and width"):
        generate_video(0, 8, 8, 64, 2)
    with pytest.raises(ValueError, match="cut_prob"):
        WorldConfig(cut_prob=1.5)
    with pytest.raises(ValueError, match="splits"):
        parse_counts("training=3")
    assert parse_counts("train=4,test=2") == {"train": 4, "val": 0, "test": 2}
    assert parse_counts(5) == {"train": 5, "val": 5, "test": 5}


# ------------------------------------------------------------------------------------------------- long world


def _hand_world() -> dict:
    """A 100-frame world written by hand: the red circle leaves twice and comes back twice, the blue square visits
    once and turns green, the green star is there from the start and vanishes, the yellow ring pops up late."""

    def obj(i, colour, shape, visible, colours=None):
        return {
            "id": i,
            "colour": colour,
            "shape": shape,
            "colours": colours or [colour],
            "visible": visible,
            "first_frame": visible[0][0],
            "last_frame": visible[-1][1],
        }

    def ev(kind, t, i, **extra):
        return {"type": kind, "frames": [t, t], "objects": [i], **extra}

    return {
        "num_frames": 100,
        "objects": [
            obj(0, "red", "circle", [[0, 19], [60, 79], [90, 99]]),
            obj(1, "blue", "square", [[30, 49]], ["blue", "green"]),
            obj(2, "green", "star", [[0, 39]]),
            obj(3, "yellow", "ring", [[70, 99]]),
        ],
        "events": [
            ev("exit", 20, 0, side="left"),
            ev("enter", 30, 1, side="top"),
            ev("vanish", 40, 2),
            ev("colour_change", 45, 1, **{"from": "blue", "to": "green"}),
            ev("exit", 50, 1, side="right"),
            ev("enter", 60, 0, side="left"),
            ev("appear", 70, 3),
            ev("exit", 80, 0, side="bottom"),
            ev("enter", 90, 0, side="bottom"),
        ],
    }


def test_long_answers_on_a_hand_built_world():
    rec = _hand_world()

    def truth(qtype, **params):
        return long_true_answer(rec, {"qtype": qtype, "params": params})

    with pytest.raises(ValueError, match="shared by 2 objects"):  # the red circle and the green star start together
        truth("first_appearance", variant="first")
    assert truth("first_appearance", variant="last") == "the yellow ring"
    assert truth("first_appearance", variant="first_new") == "the blue square"
    assert truth("distinct_count") == "4"  # the red circle came back twice and counts once
    assert truth("start_end", variant="gone", candidates=[0, 2, 3]) == "the green star"
    assert truth("start_end", variant="new", candidates=[0, 1, 3]) == "the yellow ring"
    assert truth("start_end", variant="colour", candidates=[0, 1, 2]) == "the blue square"
    assert [truth("event_total", event=k) for k in ("enter", "exit", "appear", "vanish")] == ["3", "3", "1", "1"]
    assert [truth("returns", object=i) for i in range(4)] == ["2", "0", "0", "0"]
    red_exits = [["exit", 0, 0], ["enter", 0, 0], ["exit", 0, 1], ["enter", 0, 1]]
    before = truth("event_order", variant="before", anchor=["colour_change", 1, 0], events=red_exits)
    assert before == "The red circle left the frame for the first time"
    after = [["exit", 0, 1], ["exit", 0, 0], ["enter", 1, 0], ["vanish", 2, 0]]
    assert truth("event_order", variant="after", anchor=["appear", 3, 0], events=after) == (
        "The red circle left the frame for the second time"
    )
    with pytest.raises(ValueError, match="exactly one"):  # two options before the anchor: no single answer
        truth("event_order", variant="before", anchor=["appear", 3, 0], events=after)

    # questions drawn from the world: every type, and each stored letter points at the answer worked out above
    expected = {
        "distinct_count": lambda p: "4",
        "event_total": lambda p: {"enter": "3", "exit": "3", "appear": "1", "vanish": "1"}[p["event"]],
        "returns": lambda p: ["2", "0", "0", "0"][p["object"]],
        "first_appearance": lambda p: {"last": "the yellow ring", "first_new": "the blue square"}[p["variant"]],
        "start_end": lambda p: {"gone": "the green star", "new": "the yellow ring", "colour": "the blue square"}[
            p["variant"]
        ],
    }
    at: dict[tuple[str, int], list[int]] = {}
    for e in rec["events"]:
        at.setdefault((e["type"], e["objects"][0]), []).append(e["frames"][0])

    def frame(ref: list) -> int:
        return at[(ref[0], ref[1])][ref[2]]

    seen = Counter()
    for seed in range(12):
        for q in make_long_questions(np.random.default_rng(seed), rec, "hand", per_type=2, sep=10):
            seen[q["qtype"]] += 1
            assert len(q["options"]) == 4 and len(set(q["options"])) == 4
            answer = q["options"][LETTERS.index(q["answer"])]
            if q["qtype"] in expected:
                assert answer == expected[q["qtype"]](q["params"]), q
            else:  # event_order: the one option on the asked side of the anchor, by the hand-written frames
                side = [
                    r
                    for r in q["params"]["events"]
                    if (frame(r) < frame(q["params"]["anchor"])) == (q["params"]["variant"] == "before")
                ]
                assert len(side) == 1 and answer == describe_ref(rec, side[0])
    # event_order needs five objects with events far apart, more than this world has (its answers are checked above)
    assert set(seen) == set(LONG_QTYPES) - {"event_order"}, seen


@pytest.fixture(scope="module")
def long_videos():
    cfg = LongWorldConfig(visit_frames=(16, 40), min_gap=8)
    return [generate_long_video(seed, 128, 48, 48, 5, config=cfg, min_separation=8) for seed in range(4)]


def test_long_world_labels_events_and_questions_agree(long_videos):
    returned = 0
    qtypes = Counter()
    for v in long_videos:
        rec = v.record
        T = rec["num_frames"]
        assert rec["world"] == "long" and v.frames.shape == (T, 48, 48, 3)
        for o in rec["objects"]:
            seen = (v.masks == o["id"] + 1).reshape(T, -1).any(axis=1)
            expected = np.zeros(T, dtype=bool)
            for s, e in o["visible"]:
                expected[s : e + 1] = True
            np.testing.assert_array_equal(seen, expected)
        for ev in rec["events"]:
            s, i = ev["frames"][0], ev["objects"][0]
            if ev["type"] in ("enter", "appear"):
                assert is_visible(rec, i, s) and not is_visible(rec, i, s - 1)
            if ev["type"] in ("exit", "vanish"):
                assert not is_visible(rec, i, s) and is_visible(rec, i, s - 1)
        returned += sum(
            int(long_true_answer(rec, {"qtype": "returns", "params": {"object": i}})) > 0
            for i in range(len(rec["objects"]))
        )
        for q in rec["questions"]:
            qtypes[q["qtype"]] += 1
            assert answer_from_record(rec, q) == q["answer"]
    assert returned >= 2  # objects leave and come back
    assert set(qtypes) == set(LONG_QTYPES), qtypes


def test_long_objects_are_big_enough_to_tell_apart():
    v = generate_long_video(3, 24, 128, 128, 6, config=LongWorldConfig(visit_frames=(8, 16), min_gap=4))
    assert min(o["size_px"] for o in v.record["objects"]) >= 0.14 * 128  # >= 16 px at 128 px frames
    small = generate_long_video(3, 24, 128, 128, 6, config=LongWorldConfig(object_size=(0.1, 0.1), min_gap=4))
    assert {o["size_px"] for o in small.record["objects"]} == {12.8}
    with pytest.raises(ValueError, match="object_size"):
        LongWorldConfig(object_size=(0.3, 0.2))


def test_long_world_manifest_records_every_setting_and_like_redraws_it(tmp_path, capsys):
    argv = ["synth", "--world", "long", "--num-videos", "0", "--val", "2", "--frames", "64-80", "--size", "32"]
    argv += ["--objects", "3-4", "--visit-frames", "12-30", "--min-gap", "6", "--min-separation", "6"]
    assert trajtok_main([*argv, "--out", str(tmp_path / "a"), "--seed", "1", "--camera", "pan"]) == 0
    gen = json.loads((tmp_path / "a" / "manifest.json").read_text())["generator"]
    assert gen["world"] == "long" and gen["num_videos"] == {"train": 0, "val": 2, "test": 0}
    assert gen["config"] == {
        **json.loads(json.dumps(asdict(LongWorldConfig()))),
        "visit_frames": [12, 30],
        "min_gap": 6,
        "camera": "pan",
    }
    assert gen["questions_per_type"] == 2 and gen["min_separation"] == 6 and gen["qtypes"] == list(LONG_QTYPES)
    like = ["synth", "--like", str(tmp_path / "a" / "manifest.json")]
    assert trajtok_main([*like, "--out", str(tmp_path / "b"), "--seed", "2"]) == 0
    assert trajtok_main([*like, "--out", str(tmp_path / "c"), "--size", "48"]) == 0
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())["generator"]
    c = json.loads((tmp_path / "c" / "manifest.json").read_text())["generator"]
    assert {k for k in gen if gen[k] != b[k]} == {"seed"} and b["seed"] == 2
    assert {k for k in gen if gen[k] != c[k]} == {"size"} and c["size"] == [48, 48]
    qa = {name: (tmp_path / name / "val" / "qa.json").read_text() for name in "ab"}
    assert qa["a"] != qa["b"] and len(json.loads(qa["a"])) >= 8  # a new world, questions from both videos
    # same settings and seed: the same world again
    assert trajtok_main([*like, "--out", str(tmp_path / "a2")]) == 0
    assert (tmp_path / "a2" / "val" / "qa.json").read_text() == qa["a"]

    bad = [
        (["--visits", "2"], "--visits: options of the long world"),
        (["--world", "long", "--cuts", "0.5"], "no cuts"),
        (["--like", str(tmp_path / "a" / "manifest.json"), "--world", "short"], "contradicts"),
        (["--like", str(tmp_path / "nope.json")], "manifest not found"),
        (["--world", "long", "--visits", "3-1"], "visits must be a range"),
    ]
    for extra, needle in bad:
        assert trajtok_main(["synth", "--out", str(tmp_path / "x"), *extra]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_trajworld_task_scores_every_long_question_type():
    text = {
        name: (ROOT / "eval" / "tasks" / "trajworld" / f"{name}.yaml").read_text()
        for name in ("trajworld", "trajworld_open")
    }
    utils = (ROOT / "eval" / "tasks" / "trajworld" / "utils.py").read_text()
    for q in LONG_QTYPES:
        assert re.search(rf'acc_{q} = (\w+\.)?accuracy_where\("qtype", "{q}"\)', utils), q
        assert all(f"aggregation: !function utils.acc_{q}\n" in t for t in text.values())


def test_like_redraws_a_short_world_with_its_settings(tmp_path):
    argv = ["synth", "--num-videos", "train=1,test=1", "--frames", "24-30", "--size", "32", "--objects", "2-3"]
    assert trajtok_main([*argv, "--cuts", "0.5", "--out", str(tmp_path / "a")]) == 0
    like = ["synth", "--like", str(tmp_path / "a" / "manifest.json")]
    assert trajtok_main([*like, "--out", str(tmp_path / "b"), "--seed", "9"]) == 0
    a, b = (json.loads((tmp_path / n / "manifest.json").read_text())["generator"] for n in "ab")
    assert a["world"] == "short" and a["config"]["cut_prob"] == 0.5
    assert {k for k in a if a[k] != b[k]} == {"seed"}
    assert (tmp_path / "a" / "test" / "qa.json").read_text() != (tmp_path / "b" / "test" / "qa.json").read_text()


def test_views_caption_names_what_the_masks_show_at_start_middle_and_end(long_videos):
    """Each sentence lists exactly the objects whose mask is in that frame (read from the rendered masks, not the
    record's visible ranges), named as questions name them, with the colour the pixels show when it changed."""
    for v in long_videos:
        rec = v.record
        T = rec["num_frames"]
        sentences = views_caption(rec).split(". ")
        assert [s.split(":")[0] for s in sentences] == ["At the start", "Half-way", "At the end"]
        for sentence, t in zip(sentences, (0, round(0.5 * (T - 1)), T - 1), strict=True):
            listed = sentence.split(": ", 1)[1].rstrip(".")
            in_mask = [o for o in rec["objects"] if (v.masks[t] == o["id"] + 1).any()]
            if not in_mask:
                assert listed == "nothing"
                continue
            for o in rec["objects"]:
                named = f"the {o['colour']} {o['shape']}"
                assert (named in listed) == (o in in_mask), (rec["id"], t, named, listed)
                colour = colour_at(rec, o["id"], t)
                if o in in_mask:
                    assert (f"{named} (now {colour})" in listed) == (colour != o["colour"])
    # these videos may show no changed colour at those frames: plant a colour change on an object seen at the end
    rec = copy.deepcopy(long_videos[0].record)
    last = rec["num_frames"] - 1
    seen = [o for o in rec["objects"] if any(s <= last <= e for s, e in o["visible"])]
    assert seen, "the first long video shows no object in its last frame"
    o = seen[0]
    rec["events"].append({"type": "colour_change", "objects": [o["id"]], "frames": [last, last], "to": "mauve"})
    end = views_caption(rec).split("At the end: ")[1]
    assert f"the {o['colour']} {o['shape']} (now mauve)" in end
    assert "(now mauve)" not in views_caption(rec).split("At the end: ")[0]
    with pytest.raises(ValueError, match="outside"):
        views_caption(long_videos[0].record, points=(("Later", 1.5),))


def _answer_texts(qa: list[dict], qtype: str) -> Counter:
    return Counter(q["options"][LETTERS.index(q["answer"])] for q in qa if q["qtype"] == qtype)


@pytest.fixture(scope="module")
def long_worlds(tmp_path_factory):
    """The same settings written with and without answer balancing (48 videos each, a few seconds)."""
    out = {}
    for balance in (True, False):
        # the demo's world in small frames; the first long world (balance off) drew 1-3 visits per object
        cfg = LongWorldConfig(balance=balance) if balance else LongWorldConfig(visits=(1, 3), balance=False)
        path = tmp_path_factory.mktemp(f"balance_{balance}")
        write_dataset(path, "train=48", frames=(128, 192), size=24, objects=(3, 6), config=cfg, world="long")
        out[balance] = json.loads((path / "train" / "qa.json").read_text())
    return out


def test_long_answers_carry_no_text_prior(long_worlds):
    """What a text-only model could learn from the answers' frequencies is balanced away (the old draws fail)."""
    new, old = long_worlds[True], long_worlds[False]
    # every object count is the answer about equally often (dealt in blocks; an object never seen is dropped)
    counts = _answer_texts(new, "distinct_count")
    assert set(counts) == {"3", "4", "5", "6"} and max(counts.values()) - min(counts.values()) <= 2, counts
    old_counts = _answer_texts(old, "distinct_count")
    assert max(old_counts.values()) - min(old_counts.values()) > 2, old_counts
    # return counts: each of the four options 0-3 is the answer about as often as any other
    for world, ok in ((new, True), (old, False)):
        returns = _answer_texts(world, "returns")
        balanced = set(returns) == {"0", "1", "2", "3"} and max(returns.values()) <= 0.35 * sum(returns.values())
        assert balanced == ok, returns
    # event totals: the answer's place among its four consecutive options is about uniform (the lowest is no safer)
    places = Counter(
        sorted(int(o) for o in q["options"]).index(int(q["options"][LETTERS.index(q["answer"])]))
        for q in new
        if q["qtype"] == "event_total"
    )
    assert set(places) == {0, 1, 2, 3} and max(places.values()) <= 0.35 * sum(places.values()), places
    # event order: the four options are one kind and occurrence of event, so arrivals (early) and departures (late)
    # do not tell the answer
    orders = [q for q in new if q["qtype"] == "event_order"]
    assert orders and all(len({(r[0], r[2]) for r in q["params"]["events"]}) == 1 for q in orders)
    # ... and every option names its occurrence, so 'for the first time' (the object came back) marks none of them
    assert all(len({o.endswith(" time") for o in q["options"]}) == 1 for q in orders)
    assert any(len({(r[0], r[2]) for r in q["params"]["events"]}) > 1 for q in old if q["qtype"] == "event_order")


def test_balanced_walk_ins_and_outs_are_dealt_evenly():
    """balance: how many visits walk in (of those not in view at frame 0) is uniform over 0..all of them, likewise
    walk-outs, so a video's count of each event kind does not pile up around a mean (what a text model would learn)."""
    from trajtok.synth.longworld import _deal_kinds

    rng = np.random.default_rng(0)
    plan = [[(0, 30, "", ""), (60, 90, "", "")], [(10, 40, "", ""), (70, 100, "", "")], [(20, 100, "", "")]]
    walk_ins, walk_outs = Counter(), Counter()
    for _ in range(3000):
        visits = [list(p) for p in plan]
        _deal_kinds(rng, visits, 100)
        kinds = [v for p in visits for v in p]
        assert kinds[0][2] == "appear" and kinds[-1][3] == "vanish"  # in view at frame 0 / to the last frame
        walk_ins[sum(v[2] == "enter" for v in kinds)] += 1
        walk_outs[sum(v[3] == "exit" for v in kinds)] += 1
    for counts, most in ((walk_ins, 4), (walk_outs, 3)):  # 4 visits start after frame 0, 3 end before the last
        assert set(counts) == set(range(most + 1)), counts
        assert max(counts.values()) < 1.25 * min(counts.values()), counts


def test_a_manifest_from_before_balancing_reads_back_unbalanced(tmp_path, capsys):
    """--like of a manifest written before `balance` existed redraws that world (balance off), and --balance takes
    on / off only."""
    argv = ["synth", "--world", "long", "--num-videos", "0", "--val", "1", "--frames", "48", "--size", "24"]
    argv += ["--objects", "3", "--min-gap", "6", "--visit-frames", "8-16", "--min-separation", "6"]
    assert trajtok_main([*argv, "--out", str(tmp_path / "a"), "--balance", "off"]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["generator"]["config"]["balance"] is False
    del manifest["generator"]["config"]["balance"]  # as the first long world wrote it
    (tmp_path / "old.json").write_text(json.dumps(manifest))
    assert trajtok_main(["synth", "--like", str(tmp_path / "old.json"), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["generator"]["config"]["balance"] is False
    assert (tmp_path / "a" / "val" / "qa.json").read_text() == (tmp_path / "b" / "val" / "qa.json").read_text()
    with pytest.raises(SystemExit):
        trajtok_main([*argv, "--out", str(tmp_path / "c"), "--balance", "maybe"])
    assert "expected on or off, got 'maybe'" in capsys.readouterr().err
