"""The lmms-eval model `trajvlm`: the real CLI end to end on the tiny model, and its methods in process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.eval.helpers import logged_samples, run_lmms_eval
from trajvlm.integrations.lmms_eval_tasks import FAILED_ANSWER, as_loglikelihood, parse_choice, score_choice

# the trajworld task's generation_kwargs, with the stop string lmms-eval adds to a task without one
GEN_KWARGS = {"max_new_tokens": 8, "temperature": 0, "do_sample": False, "until": ["\n\n"]}


def _two_question_world(synth_world: Path, tmp_path: Path) -> Path:
    """A split folder with two questions: one on the real video, one on a corrupt file."""
    rows = json.loads((synth_world / "test" / "qa.json").read_text())
    split = tmp_path / "world"
    split.mkdir()
    good = dict(rows[0], video=str(synth_world / "test" / rows[0]["video"]))
    broken = dict(rows[1], id="broken_q0", video="broken.mp4")
    (split / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (split / "qa.json").write_text(json.dumps([good, broken]))
    return split


@pytest.mark.slow
def test_cli_end_to_end_records_failed_sample(tiny_model_dir, synth_world, tmp_path):
    world = _two_question_world(synth_world, tmp_path)
    out = tmp_path / "out"
    tasks = "trajworld,trajworld_mc,trajworld_open"
    env = {"TRAJWORLD_DIR": str(world)}
    results = run_lmms_eval(f"pretrained={tiny_model_dir},batch_size=2", tasks, out, tmp_path, env)
    gen, mc, open_ = results["trajworld"], results["trajworld_mc"], results["trajworld_open"]
    assert gen["failed,none"] == 1 and mc["failed,none"] == 1 and open_["failed,none"] == 1

    def samples(task: str) -> dict[str, dict]:
        return {s["accuracy"]["id"]: s for s in logged_samples(out, task)}

    by_id = samples("trajworld")
    assert by_id["broken_q0"]["filtered_resps"] == FAILED_ANSWER
    assert by_id["broken_q0"]["accuracy"]["failed"] is True

    # the answered question: its logged answer and scores are the model's own (trajvlm.inference, same checkpoint),
    # and each accuracy is what they give with the failed question counted wrong
    from trajvlm.inference import generate_batch, load_model, score_choices

    good, broken = json.loads((world / "qa.json").read_text())
    model, processor = load_model(tiny_model_dir)
    letters = [chr(ord("A") + i) for i in range(len(good["options"]))]
    sample = by_id[good["id"]]
    (answer,) = generate_batch(model, processor, [(good["video"], sample["input"], dict(GEN_KWARGS))])
    assert sample["filtered_resps"] == answer
    right = parse_choice(answer, "".join(letters)) == good["answer"]
    assert gen["accuracy,none"] == (50.0 if right else 0.0)
    for task, metrics, choices in (("trajworld_mc", mc, letters), ("trajworld_open", open_, good["options"])):
        sample = samples(task)[good["id"]]
        direct = [ll for ll, _ in score_choices(model, processor, good["video"], sample["input"], choices)]
        logged = [as_loglikelihood(r)[0] for r in sample["filtered_resps"]]
        assert logged == pytest.approx(direct, abs=1e-3), task
        right = letters[max(range(len(direct)), key=direct.__getitem__)] == good["answer"]
        assert sample["accuracy"]["correct"] is right and samples(task)["broken_q0"]["accuracy"]["failed"] is True
        assert metrics["accuracy,none"] == (50.0 if right else 0.0), task
        if task == "trajworld_open":  # per question type too; the failed question counts if it has that type
            same_type = 2 if broken["qtype"] == good["qtype"] else 1
            assert metrics[f"acc_{good['qtype']},none"] == pytest.approx(100.0 * right / same_type)

    failures = [json.loads(line) for line in (out / "failed_samples.jsonl").read_text().splitlines()]
    assert {f["task"] for f in failures} == {"trajworld", "trajworld_mc", "trajworld_open"}
    assert all("broken.mp4" in f["reason"] for f in failures)
    # one per question of each log-likelihood task (its options are scored together and fail together)
    assert sum(f["request_type"] == "loglikelihood" for f in failures) == 2


# ------------------------------------------------------------------------------------------------------------------
# in process


class _Req:
    """The part of lmms_eval.api.instance.Instance the model reads."""

    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def lmm(tiny_model_dir, tmp_path_factory):
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    failures = tmp_path_factory.mktemp("fail") / "failed.jsonl"
    model = TrajVLMLmms.create_from_arg_string(
        f"pretrained={tiny_model_dir},batch_size=2,failures_path={failures}", {"batch_size": "1", "device": None}
    )
    return model


def _docs(synth_world: Path) -> list[dict]:
    video = str(synth_world / "test" / "test_00000.mp4")
    return [
        {"video": video, "question": "How many objects?"},
        {"video": "/nonexistent/clip.mp4", "question": "What colour?"},
        {"video": video, "question": "Which side?"},
    ]


def test_generate_until_batched_with_failure(lmm, synth_world):
    lmm.task_dict = {"t": {"test": _docs(synth_world)}}
    visual = lambda doc: [doc["video"]]  # noqa: E731
    gen = {"max_new_tokens": 3, "temperature": 0, "until": ["\n\n"]}
    reqs = [_Req(d["question"], dict(gen), visual, i, "t", "test") for i, d in enumerate(_docs(synth_world))]
    before = lmm.num_failed
    out = lmm.generate_until(reqs)
    assert len(out) == 3 and out[1] == FAILED_ANSWER
    # the answered two, batched around the failure, are each the model's own answer asked alone
    from trajvlm.inference import generate_batch

    for i in (0, 2):
        doc = _docs(synth_world)[i]
        assert out[i] == generate_batch(lmm.model, lmm.processor, [(doc["video"], doc["question"], dict(gen))])[0]
    assert lmm.num_failed == before + 1
    rows = [json.loads(line) for line in lmm.failures_path.read_text().splitlines()]
    assert rows[-1]["doc_id"] == 1 and "/nonexistent/clip.mp4" in rows[-1]["reason"]
    assert lmm.batch_size == 2  # model_args win over the CLI's --batch_size


def test_generate_until_matches_chat_path(lmm, synth_world):
    """Evaluation and chat share one generate path: same prompt, same greedy answer."""
    from trajvlm.inference import VideoChat

    docs = _docs(synth_world)
    lmm.task_dict = {"t": {"test": docs}}
    (answer,) = lmm.generate_until(
        [_Req(docs[0]["question"], {"max_new_tokens": 4}, lambda d: [d["video"]], 0, "t", "test")]
    )
    chat = VideoChat(lmm.model, lmm.processor, video=docs[0]["video"])
    assert chat.ask(docs[0]["question"], max_new_tokens=4).text == answer


def test_loglikelihood_and_failure(lmm, synth_world):
    lmm.task_dict = {"t": {"test": _docs(synth_world)}}
    visual = lambda doc: [doc["video"]]  # noqa: E731
    reqs = [
        _Req("Pick one.\nA. red\nB. blue", "A", visual, 0, "t", "test"),
        _Req("Pick one.\nA. red\nB. blue", lambda doc: "B", visual, 0, "t", "test"),
        _Req("Pick one.", "A", visual, 1, "t", "test"),
    ]
    (ll_a, _), (ll_b, _), (ll_bad, greedy_bad) = lmm.loglikelihood(reqs)
    assert ll_bad == float("-inf") and greedy_bad is False
    # the options scored together equal the model's log-likelihood of each, one request at a time
    from trajvlm.inference import loglikelihood

    video = _docs(synth_world)[0]["video"]
    (want_a, _), (want_b, _) = loglikelihood(lmm.model, lmm.processor, [(video, reqs[0].args[0], c) for c in "AB"])
    assert ll_a == pytest.approx(want_a, abs=1e-4) and ll_b == pytest.approx(want_b, abs=1e-4)
    assert abs(ll_a - ll_b) > 1e-4


def test_blind_asks_without_the_video(lmm, synth_world):
    """blind=true: the text-only control. Requests score exactly as with no video, and a missing video no longer
    fails (it is never read); the option scores of one question come from one shared prompt pass."""
    from trajvlm.inference import loglikelihood

    docs = _docs(synth_world)
    lmm.task_dict = {"t": {"test": docs}}
    visual = lambda doc: [doc["video"]]  # noqa: E731
    reqs = [_Req("What colour?", c, visual, d, "t", "test") for d in (0, 1) for c in ("red", "the blue star")]
    seeing = lmm.loglikelihood(reqs)
    assert seeing[2][0] == float("-inf")  # doc 1's video is missing
    lmm.blind = True
    try:
        blind = lmm.loglikelihood(reqs)
    finally:
        lmm.blind = False
    text_only = loglikelihood(lmm.model, lmm.processor, [(None, "What colour?", c) for c in ("red", "the blue star")])
    for got, want in zip(blind, text_only * 2, strict=True):
        assert got[0] == pytest.approx(want[0], abs=1e-4)
    assert seeing[0][0] != pytest.approx(blind[0][0], abs=1e-4)  # the video changed the score


def test_blind_model_arg_is_checked(tiny_model_dir, capsys):
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    assert TrajVLMLmms.create_from_arg_string(f"pretrained={tiny_model_dir},blind=true", {}).blind is True
    with pytest.raises(ValueError, match="blind must be true or false"):
        TrajVLMLmms(pretrained=str(tiny_model_dir), blind="maybe")
    with pytest.raises(SystemExit):  # lmms-eval's CLI would swallow a ValueError and exit 0
        TrajVLMLmms.create_from_arg_string(f"pretrained={tiny_model_dir},blind=maybe", {})
    assert "blind must be true or false, got 'maybe'" in capsys.readouterr().err


def test_multi_round(lmm, synth_world):
    docs = _docs(synth_world)
    lmm.task_dict = {"t": {"test": docs}}
    seen = []

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        seen.append(list(previous_output))
        terminal = round_idx >= 2
        return None, f"Round {round_idx}: and then?", terminal, previous_output, {"round": round_idx}

    (rounds,) = lmm.generate_until_multi_round(
        [_Req("What happens?", {"max_new_tokens": 3}, lambda d: [d["video"]], doc_to_text, 0, "t", "test")]
    )
    assert len(rounds) == 2 and all(r != FAILED_ANSWER for r in rounds)
    assert seen == [rounds[:1], rounds[:2]]
    (failed,) = lmm.generate_until_multi_round(
        [_Req("What happens?", {"max_new_tokens": 3}, lambda d: [d["video"]], doc_to_text, 1, "t", "test")]
    )
    assert failed == [FAILED_ANSWER]


def test_unknown_model_args(tiny_model_dir):
    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    with pytest.raises(ValueError, match="unknown model_args for trajvlm: \\['max_frames_num'\\]"):
        TrajVLMLmms(pretrained=str(tiny_model_dir), max_frames_num=8)
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        TrajVLMLmms(pretrained=str(tiny_model_dir / "missing"))


def test_entry_point_registered():
    from lmms_eval.models import get_model

    from trajvlm.integrations.lmms_eval import TrajVLMLmms

    assert get_model("trajvlm") is TrajVLMLmms


def test_failures_file_location(tmp_path):
    from trajvlm.integrations.lmms_eval import failures_file

    assert failures_file(str(tmp_path / "f.jsonl")) == tmp_path / "f.jsonl"
    assert failures_file(str(tmp_path)) == tmp_path / "failed_samples.jsonl"
    assert failures_file(None, ["lmms_eval", "--output_path", "runs/x"]) == Path("runs/x/failed_samples.jsonl")
    assert failures_file(None, ["lmms_eval", "--output_path=runs/r.json"]) == Path("runs/failed_samples.jsonl")
    assert failures_file(None, ["lmms_eval"]) is None


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(C) a red circle", "C"),
        ("The answer is D", "D"),
        ("Best option: (A", "A"),
        ("  c", None),
        ("I think it is B because", "B"),
        ("no idea", None),
        (FAILED_ANSWER, None),
        ("E", None),
    ],
)
def test_parse_choice(response, letter):
    assert parse_choice(response, "ABCD") == letter


def test_score_choice_and_loglikelihood_text():
    assert score_choice("B", "B", qtype="count") == {
        "correct": True,
        "failed": False,
        "pred": "B",
        "answer": "B",
        "qtype": "count",
    }
    failed = score_choice(FAILED_ANSWER, "A")
    assert failed["failed"] and not failed["correct"]
    assert as_loglikelihood("(-2.5, True)") == (-2.5, True)
    assert as_loglikelihood("(-inf, False)") == (float("-inf"), False)
    with pytest.raises(ValueError, match="not a loglikelihood response"):
        as_loglikelihood("B")
