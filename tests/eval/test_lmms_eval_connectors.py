"""Every other-tokenizer connector trains (2 LoRA steps on the world's train split) and evaluates on its test split
through the real lmms-eval CLI; each logged answer and score is the model's own, recomputed through trajvlm.inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.eval.helpers import logged_samples, run_lmms_eval, write_world
from tests.trajvlm.helpers import tiny_base
from tests.trajvlm.train_fixtures import make_config

LIMIT = 4  # questions evaluated (--limit)
# the trajworld task's generation_kwargs, with the stop string lmms-eval adds to a task without one
GEN_KWARGS = {"max_new_tokens": 8, "temperature": 0, "do_sample": False, "until": ["\n\n"]}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory, "connector_base")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """`trajtok synth` output with one train and one test video (different scenes) and their questions."""
    return write_world(tmp_path_factory.mktemp("connector_world"), "train=1,val=0,test=1", seed=5)


@pytest.mark.slow
@pytest.mark.parametrize("connector", ["vtok", "tome", "trajvit", "coordtok"])
def test_connector_trains_and_evaluates_through_lmms_eval(connector, base, world, tmp_path):
    from trajvlm.inference import generate_batch, load_model, score_choices
    from trajvlm.integrations.lmms_eval_tasks import as_loglikelihood, lettered, parse_choice
    from trajvlm.training.trainer import train

    train_split, test_split = world / "train", world / "test"
    run = tmp_path / "run"
    train(make_config(base, train_split, run, connector=connector, max_steps=2, save_steps=10))
    assert json.loads((run / "final" / "config.json").read_text())["connector"] == connector
    out = tmp_path / "out"
    model_args = f"pretrained={run / 'final'},num_frames=4,batch_size=1"
    env = {"TRAJWORLD_DIR": str(world)}  # its test split
    results = run_lmms_eval(model_args, "trajworld,trajworld_mc", out, tmp_path, env, "--limit", str(LIMIT))

    questions = json.loads((test_split / "qa.json").read_text())[:LIMIT]
    train_videos = {row["video"] for row in json.loads((train_split / "qa.json").read_text())}
    assert not train_videos & {row["video"] for row in questions}  # evaluated on videos it did not train on
    model, processor = load_model(run / "final", num_frames=4)  # the checkpoint the CLI loaded, loaded the same way

    # generation: every question answered once, each answer the model's own greedy answer to the logged prompt
    samples = sorted(logged_samples(out, "trajworld"), key=lambda s: s["doc_id"])
    assert [s["accuracy"]["id"] for s in samples] == [str(q["id"]) for q in questions]
    videos = [str(test_split / q["video"]) for q in questions]
    correct = []
    for sample, question, video in zip(samples, questions, videos, strict=True):
        context = sample["input"]
        assert question["question"] in context and all(line in context for line in lettered(question["options"]))
        (answer,) = generate_batch(model, processor, [(video, context, dict(GEN_KWARGS))])
        assert sample["filtered_resps"] == answer, question["id"]
        letters = "ABCDEFGH"[: len(question["options"])]
        correct.append(parse_choice(answer, letters) == question["answer"])
        assert sample["accuracy"]["correct"] is correct[-1] and not sample["accuracy"]["failed"]
    assert results["trajworld"]["failed,none"] == 0
    assert results["trajworld"]["accuracy,none"] == pytest.approx(100 * sum(correct) / len(correct))

    # log-likelihood: each option's logged score is the model's, the prediction their argmax, and it needs the video
    samples = sorted(logged_samples(out, "trajworld_mc"), key=lambda s: s["doc_id"])
    assert len(samples) == len(questions)
    correct, other_video = [], str(sorted(train_split.glob("*.mp4"))[0])
    for sample, question, video in zip(samples, questions, videos, strict=True):
        context = sample["input"]
        letters = [chr(ord("A") + i) for i in range(len(question["options"]))]
        logged = [as_loglikelihood(resp)[0] for resp in sample["filtered_resps"]]  # "(log-likelihood, is_greedy)"
        direct = [ll for ll, _ in score_choices(model, processor, video, context, letters)]
        assert logged == pytest.approx(direct, abs=1e-3), question["id"]
        pred = letters[max(range(len(direct)), key=direct.__getitem__)]
        assert sample["accuracy"]["pred"] == pred
        correct.append(pred == question["answer"])
        elsewhere = [ll for ll, _ in score_choices(model, processor, other_video, context, letters)]
        assert max(abs(a - b) for a, b in zip(elsewhere, direct, strict=True)) > 1e-4  # another video, other scores
    assert results["trajworld_mc"]["failed,none"] == 0
    assert results["trajworld_mc"]["accuracy,none"] == pytest.approx(100 * sum(correct) / len(correct))
