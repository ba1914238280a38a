"""The demo's stage runner: a failed stage stops the demo with one line (stage, exit status, log), no traceback."""

from __future__ import annotations

import json
import sys
import time

import pytest


@pytest.fixture()
def demo(tmp_path, monkeypatch, load_script):
    module = load_script("scripts/demo.py")
    monkeypatch.setattr(module, "LOG_DIR", tmp_path / "logs")
    return module


def test_nonzero_exit_names_stage_status_and_log(demo, tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('working'); sys.exit(3)"]
    with pytest.raises(demo.StageFailed) as err:
        demo.step("train the thing", tmp_path / "out.json", cmd)
    log = tmp_path / "logs" / "train-the-thing.log"
    assert "stage 'train the thing'" in str(err.value) and "exit status 3" in str(err.value)
    assert str(log) in str(err.value)
    assert "working" in log.read_text()


def test_exit_zero_with_logged_evaluation_error_fails(demo, tmp_path):
    # lmms-eval 0.7.3 prints the traceback and "Error during evaluation" but exits 0
    cmd = [sys.executable, "-c", "print('Error during evaluation: boom. Please set --verbosity=DEBUG')"]
    with pytest.raises(demo.StageFailed, match="exited 0 but logged an error"):
        demo.step("evaluate x", tmp_path / "done", cmd, error_markers=demo.LMMS_EVAL_ERRORS)
    assert not (tmp_path / "done").exists()


def test_stage_without_its_output_fails(demo, tmp_path):
    with pytest.raises(demo.StageFailed, match="wrote no"):
        demo.step("make file", tmp_path / "result.json", [sys.executable, "-c", "pass"])


def test_done_stage_is_skipped(demo, tmp_path, capsys):
    (tmp_path / "result.json").write_text("{}")
    demo.step("make file", tmp_path / "result.json", [sys.executable, "-c", "raise SystemExit(1)"])
    assert "already done" in capsys.readouterr().out


def test_main_prints_one_line_and_no_traceback(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "PY", "false")  # every stage's command fails: the first one stops the demo
    assert demo.main(["--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "stage 'synthetic world' failed with exit status 1" in lines[0]
    assert str(tmp_path / "demo" / "logs") in lines[0] and "rerun" in lines[0]


def test_stage_cpu_time_is_its_own_when_stages_overlap(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "TIMES", {})
    busy = f"import time, pathlib; t = time.process_time()\nwhile time.process_time() - t < 0.6: pass\npathlib.Path({str(tmp_path / 'a')!r}).touch()"
    idle = f"import time, pathlib; time.sleep(0.6); pathlib.Path({str(tmp_path / 'b')!r}).touch()"
    demo.concurrently(
        lambda: demo.step("busy", tmp_path / "a", [sys.executable, "-c", busy], echo=False),
        lambda: demo.step("idle", tmp_path / "b", [sys.executable, "-c", idle], echo=False),
    )
    assert demo.TIMES["busy"]["cpu_s"] >= 0.5
    assert demo.TIMES["idle"]["cpu_s"] < 0.5  # interpreter start only, none of the busy stage's CPU
    times = json.loads((tmp_path / "stage_times.json").read_text())
    assert set(times) == {"busy", "idle"}  # both written, neither lost to the other's write


def test_concurrent_chains_overlap_and_a_failure_lets_the_other_finish(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "TIMES", {})
    slow = f"import time, pathlib; time.sleep(1.5); pathlib.Path({str(tmp_path / 'slow')!r}).touch()"
    t0 = time.time()
    with pytest.raises(demo.StageFailed, match="stage 'broken' failed with exit status 2"):
        demo.concurrently(
            lambda: demo.step("slow", tmp_path / "slow", [sys.executable, "-c", slow], echo=False),
            lambda: demo.step("broken", tmp_path / "x", [sys.executable, "-c", "raise SystemExit(2)"], echo=False),
        )
    assert (tmp_path / "slow").exists()  # the other chain ran to its end: a rerun finds it done
    assert time.time() - t0 < 1.5 + 1.3  # side by side, not one after the other


def test_echo_off_keeps_output_in_the_log_only(demo, tmp_path, capsys):
    cmd = [
        sys.executable,
        "-c",
        f"import pathlib; print('prog' + 'ress 50%'); pathlib.Path({str(tmp_path / 'o')!r}).touch()",
    ]
    demo.step("quiet stage", tmp_path / "o", cmd, echo=False)
    assert "progress 50%" not in capsys.readouterr().out
    assert "progress 50%" in (tmp_path / "logs" / "quiet-stage.log").read_text()


@pytest.mark.parametrize("preset", ["small", "fast", "large"])
def test_demo_trajtok_is_pretrained_with_the_extent_encoding(demo, preset):
    """Every preset pretrains a TrajTok whose tokens will say where their trajectory is (the extent encoding), on
    the quickstart recipe the demo's `trajtok train` call reads."""
    from trajtok.train import load_config

    cfg = load_config("quickstart", demo.PRESETS[preset]["tokenizer_overrides"])
    model = cfg.model_config()
    assert model.extent_encoding is True and model.time_encoding is True


def test_fast_preset_shortens_only_the_vlm_stages(demo):
    """`--preset fast` trains on the default's world, tower, base and TrajTok (a run of it can reuse theirs) and asks
    the same questions the same way; only the warm-up and the two LLaVA stages run fewer steps."""
    from trajvlm.train_config import TrainConfig

    small, fast = demo.PRESETS["small"], demo.PRESETS["fast"]
    changed = {k for k in small.keys() | fast.keys() if small.get(k) != fast.get(k)}
    assert changed == {"warmup_overrides", "stage1_overrides", "stage2_overrides"}

    def steps(overrides: list[str]) -> int:
        return int(next(o for o in overrides if o.startswith(("steps=", "max_steps="))).split("=")[1])

    for key in sorted(changed):
        assert steps(fast[key]) < steps(small[key])
        assert [o for o in fast[key] if "steps=" not in o] == [o for o in small[key] if "steps=" not in o]
    for stage, preset in (("stage1_overrides", "demo_stage1.yaml"), ("stage2_overrides", "demo_stage2.yaml")):
        cfg = TrainConfig.from_yaml(demo.ROOT / "trajvlm" / "presets" / preset, fast[stage])
        assert cfg.max_steps == steps(fast[stage])
