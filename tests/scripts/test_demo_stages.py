"""The demo's stage runner and presets: a failed stage stops the demo with one line (stage, exit status, log), no
traceback; presets are YAML files validated into a dataclass."""

from __future__ import annotations

import json
import sys
import time

import pytest
from demo_config import preset_names


@pytest.fixture(scope="module")
def demo(load_script):
    return load_script("scripts/demo.py")


@pytest.fixture()
def runner(demo, tmp_path):
    from demo_config import load_preset

    return demo.DemoRunner(tmp_path, load_preset("smoke"), preset_name="smoke", seed=0)


def test_nonzero_exit_names_stage_status_and_log(demo, runner, tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('working'); sys.exit(3)"]
    with pytest.raises(demo.StageFailed) as err:
        runner.step("train the thing", tmp_path / "out.json", cmd)
    log = tmp_path / "logs" / "train-the-thing.log"
    assert "stage 'train the thing'" in str(err.value) and "exit status 3" in str(err.value)
    assert str(log) in str(err.value)
    assert "working" in log.read_text()


def test_exit_zero_with_logged_evaluation_error_fails(demo, runner, tmp_path):
    # lmms-eval 0.7.3 prints the traceback and "Error during evaluation" but exits 0
    cmd = [sys.executable, "-c", "print('Error during evaluation: boom. Please set --verbosity=DEBUG')"]
    with pytest.raises(demo.StageFailed, match="exited 0 but logged an error"):
        runner.step("evaluate x", tmp_path / "done", cmd, error_markers=demo.LMMS_EVAL_ERRORS)
    assert not (tmp_path / "done").exists()


def test_stage_without_its_output_fails(demo, runner, tmp_path):
    with pytest.raises(demo.StageFailed, match="wrote no"):
        runner.step("make file", tmp_path / "result.json", [sys.executable, "-c", "pass"])


def test_done_stage_is_skipped(runner, tmp_path, capsys):
    (tmp_path / "result.json").write_text("{}")
    runner.step("make file", tmp_path / "result.json", [sys.executable, "-c", "raise SystemExit(1)"])
    assert "already done" in capsys.readouterr().out


def test_a_failing_stage_prints_one_line_and_no_traceback(demo, tmp_path, capsys):
    # a real stage failure: the world generator refuses a frame range that is not one
    preset = tmp_path / "broken.yaml"
    from demo_config import PRESET_DIR

    text = (PRESET_DIR / "demo_smoke.yaml").read_text().replace("--frames, 48-64", "--frames, abc")
    preset.write_text(text)
    assert demo.main(["--preset", str(preset), "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "stage 'synthetic world' failed with exit status 2" in lines[0]
    assert str(tmp_path / "demo" / "logs") in lines[0] and "rerun" in lines[0]


def test_bad_preset_and_connectors_are_one_line(demo, tmp_path, capsys):
    assert demo.main(["--preset", "nosuch", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert "'nosuch': not a preset name" in err and "smoke" in err and "\n" not in err
    assert demo.main(["--preset", "smoke", "--connectors", "trajtok,nope", "--out", str(tmp_path / "x")]) == 1
    assert "unknown connector(s) ['nope']" in capsys.readouterr().err


def test_stage_cpu_time_is_its_own_when_stages_overlap(runner, tmp_path):
    busy = (
        "import time, pathlib; t = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
        f"pathlib.Path({str(tmp_path / 'a')!r}).touch()"
    )
    idle = f"import time, pathlib; time.sleep(0.6); pathlib.Path({str(tmp_path / 'b')!r}).touch()"
    runner.concurrently(
        lambda: runner.step("busy", tmp_path / "a", [sys.executable, "-c", busy], echo=False),
        lambda: runner.step("idle", tmp_path / "b", [sys.executable, "-c", idle], echo=False),
    )
    assert runner.times["busy"]["cpu_s"] >= 0.5
    assert runner.times["idle"]["cpu_s"] < 0.5  # interpreter start only, none of the busy stage's CPU
    times = json.loads((tmp_path / "stage_times.json").read_text())
    assert set(times) == {"busy", "idle"}  # both written, neither lost to the other's write
    assert runner.cpu_s("busy", "idle", "never ran") == pytest.approx(times["busy"]["cpu_s"] + times["idle"]["cpu_s"])


def test_concurrent_chains_overlap_and_a_failure_lets_the_other_finish(demo, runner, tmp_path):
    slow = f"import time, pathlib; time.sleep(1.5); pathlib.Path({str(tmp_path / 'slow')!r}).touch()"
    t0 = time.time()
    with pytest.raises(demo.StageFailed, match="stage 'broken' failed with exit status 2"):
        runner.concurrently(
            lambda: runner.step("slow", tmp_path / "slow", [sys.executable, "-c", slow], echo=False),
            lambda: runner.step("broken", tmp_path / "x", [sys.executable, "-c", "raise SystemExit(2)"], echo=False),
        )
    assert (tmp_path / "slow").exists()  # the other chain ran to its end: a rerun finds it done
    assert time.time() - t0 < 1.5 + 1.3  # side by side, not one after the other


def test_echo_off_keeps_output_in_the_log_only(runner, tmp_path, capsys):
    cmd = [
        sys.executable,
        "-c",
        f"import pathlib; print('prog' + 'ress 50%'); pathlib.Path({str(tmp_path / 'o')!r}).touch()",
    ]
    runner.step("quiet stage", tmp_path / "o", cmd, echo=False)
    assert "progress 50%" not in capsys.readouterr().out
    assert "progress 50%" in (tmp_path / "logs" / "quiet-stage.log").read_text()


# -- presets --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_with_the_configs_it_feeds(demo, name):
    """Each preset loads, and what it passes on is accepted by the configs that read it: TrajTok's training config
    (with the extent encoding), the warm-up config, the two LLaVA stages' TrainConfig."""
    from demo_config import load_preset

    from trajtok.training.train import load_config
    from trajvlm.training.config import TrainConfig
    from trajvlm.training.warmup import parse_overrides

    p = load_preset(name)
    for extra in p.tokenizers.values():
        model = load_config("quickstart", [*p.tokenizer_overrides, *extra]).model_config()
        assert model.extent_encoding is True
    for m in p.models:
        warm = [f"connector={m.connector}", f"frames={m.frames}", *p.warmup_overrides]
        warm += [f"connector_kwargs={{stride: {m.stride}}}"] if m.stride else []
        cfg = parse_overrides(warm)
        assert cfg.frames == m.frames and cfg.connector_kwargs == ({"stride": m.stride} if m.stride else {})
    for stage, preset in (("stage1_overrides", "demo_stage1.yaml"), ("stage2_overrides", "demo_stage2.yaml")):
        TrainConfig.from_yaml(demo.ROOT / "trajvlm" / "presets" / preset, getattr(p, stage))


def test_default_preset_is_the_long_world_with_models_trained_at_several_budgets():
    from demo_config import load_preset

    p = load_preset("small")
    assert p.world == "long"
    assert sorted(m.frames for m in p.models if m.connector == "trajtok") == [8, 32]
    pools = {(m.frames, m.stride or 2) for m in p.models if m.connector == "pool"}
    assert len(pools) >= 2 and any(stride > 2 for _, stride in pools)
    sweep = load_preset("sweep")
    assert sorted({m.frames for m in sweep.models if m.connector == "trajtok"}) == [8, 16, 32, 64]
    assert set(sweep.tokenizers) == {"restart", "gated"}


def test_fast_preset_reuses_the_defaults_world_and_pretraining():
    """`--preset fast` has the default's world, tower, base and TrajTok (a run of it can reuse theirs); it trains
    fewer models for fewer steps."""
    from demo_config import load_preset

    small, fast = load_preset("small"), load_preset("fast")
    for key in ("world", "splits", "synth", "llm", "tower_overrides", "tokenizer_overrides", "tokenizers"):
        assert getattr(small, key) == getattr(fast, key), key
    assert {m.key for m in fast.models} < {m.key for m in small.models}


def test_preset_errors_name_the_file_and_the_field(tmp_path):
    from demo_config import PRESET_DIR, load_preset

    good = (PRESET_DIR / "demo_smoke.yaml").read_text()
    cases = {
        "typo": (good + "stage3_overrides: []\n", "unknown field 'stage3_overrides'"),
        "frames": (
            good.replace("{connector: trajtok, frames: 8}", "{connector: trajtok, frames: 0}"),
            "frames must be",
        ),
        "stride": (
            good.replace("{connector: trajtok, frames: 8}", "{connector: trajtok, frames: 8, stride: 4}"),
            "stride",
        ),
        "dup": (
            good.replace("{connector: trajtok, frames: 8}", "{connector: pool, frames: 8, stride: 4}"),
            "the same model twice (pool-s4-8f)",
        ),
        "world": (good.replace("world: long", "world: medium"), "world must be 'long' or 'short'"),
        "split": (good.replace("val: 3", "val: 0"), "splits.val must be an integer >= 1"),
        "yaml": ("models: [\n", "not valid YAML"),
        "captions": (good + "stage1_captions: [cast, frames]\n", "stage1_captions must list some of"),
        "captions twice": (good + "stage1_captions: [views, views]\n", "a kind twice"),
    }
    for name, (text, message) in cases.items():
        assert text != good, name  # each case changes the preset
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(ValueError) as err:
            load_preset(str(path))
        assert str(path) in str(err.value) and message in str(err.value), (name, str(err.value))


def test_connectors_option_keeps_the_presets_models_of_those_connectors(demo, tmp_path):
    runner, _ = demo.build_runner(["--preset", "small", "--connectors", "pool", "--out", str(tmp_path)])
    assert [m.key for m in runner.preset.models] == ["pool-8f", "pool-s4-8f"]
    runner, _ = demo.build_runner(["--preset", "fast", "--connectors", "trajtok,resampler", "--out", str(tmp_path)])
    assert [m.key for m in runner.preset.models] == ["trajtok-restart-8f", "resampler-8f"]
    runner, _ = demo.build_runner(["--preset", "smoke", "--stage-steps", "3,5", "--out", str(tmp_path)])
    assert runner.preset.stage2_overrides[-1] == "max_steps=5"
