"""scripts/demo_probe.py ``measure``: the warm call is left out of the timings, and every timing comes with the CPU
time per call, the threads and the machine's load (a wall time on a loaded machine is not a cost of the model)."""

from __future__ import annotations

import time

import pytest
from demo_probe import main, measure, timed_calls, usable_cores

from tests.trajvlm.helpers import random_video, save_tiny_trajvlm, tiny_base


def _burn(seconds: float) -> None:
    """Busy-loop for ``seconds`` of this process's CPU time."""
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass


def test_timed_calls_drop_the_warm_call():
    calls = []

    def call():
        calls.append(None)
        _burn(0.3 if len(calls) == 1 else 0.0)  # only the first (warm) call is slow

    wall, cpu = timed_calls(call, 3)
    assert len(calls) == 4 and len(wall) == len(cpu) == 3
    assert max(cpu) < 0.1, f"the warm call's CPU time was counted: {cpu}"


def test_timed_calls_count_cpu_time():
    wall, cpu = timed_calls(lambda: _burn(0.05), 2)
    assert len(cpu) == 2 and min(cpu) >= 0.05
    assert all(w >= c * 0.99 for w, c in zip(wall, cpu, strict=True))  # one thread: the wall time holds its CPU time


@pytest.fixture(scope="module")
def model_and_video(tmp_path_factory):
    from trajtok.io.writer import write_video

    model = save_tiny_trajvlm(tiny_base(tmp_path_factory), tmp_path_factory.mktemp("probe_model"), connector="pool")
    frames = random_video(num_frames=6, height=48, width=48, seed=3).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    return model, write_video(tmp_path_factory.mktemp("probe_video") / "clip.mp4", frames)


def test_measure_records_cpu_time_threads_and_load(model_and_video):
    import torch

    model, video = model_and_video
    before = torch.get_num_threads()
    try:
        cost = measure(str(model), str(video), 4, [str(video)], threads=1)
    finally:
        torch.set_num_threads(before)
    assert cost["threads"] == 1 and cost["cores"] == usable_cores()
    assert cost["visual_tokens"] > 0 and cost["videos"] == 1
    assert 0 < cost["ttft_min_ms"] <= cost["ttft_ms"] and cost["prefill_ms"] > 0 and cost["ttft_cpu_ms"] > 0
    assert len(cost["load_avg"]) == 2 and all(load >= 0 for load in cost["load_avg"])
    assert cost["busy"] == (max(cost["load_avg"]) >= cost["cores"])


def test_measure_rejects_no_threads(model_and_video, capsys):
    model, video = model_and_video
    args = ["measure", "--model", str(model), "--frames", "4", "--video", str(video), "--token-videos", str(video)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--threads", "0"])
    assert exc.value.code == 2
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err
