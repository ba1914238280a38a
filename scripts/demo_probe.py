"""Measurements of one trained model, each run by the demo in a fresh process (a clean peak RSS, its own threads):

    PYTHONPATH=scripts python -m demo_probe measure --model M --frames 8 --video V.mp4 --token-videos A.mp4 B.mp4
    PYTHONPATH=scripts python -m demo_probe describe --model M --frames 8 --videos A.mp4 B.mp4

``measure`` prints one JSON line: the visual tokens per video (mean, min, max over ``--token-videos``), the LLM
prefill time and the time to the first token of one prompt on ``--video``, and the peak memory. ``describe`` prints
the answers to "Describe the video." as a JSON list.

A first-token time is a wall time, so it is only as good as the machine is idle. On a machine whose load average
exceeds its cores, the OpenMP team of ``--threads`` 2 spin-waits at every barrier for a thread the scheduler has
preempted: a SmolLM2-135M prefill then takes 5-15 s instead of 0.2 s, and burns CPU while it waits (measured on the
2-core machine at load 9, docs/results/long_video_qa.md). ``measure`` therefore also records the process's CPU time
per call (``ttft_cpu_ms``, all threads), the fastest call (``ttft_min_ms``), the threads, the usable cores and the
1-minute load average before and after the timed calls (``load_avg``); ``busy`` is true when that load reached the
cores, and the wall times of such a run are not a cost of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

REPEATS = 3  # timed calls after the warm one


def timed_calls(call: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, all its threads) of ``1 + repeats`` calls of ``call``; the first (warm)
    call is dropped from both lists."""
    wall, cpu = [], []
    for _ in range(1 + repeats):
        w, c = time.perf_counter(), time.process_time()
        call()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return wall[1:], cpu[1:]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure(model_dir: str, video: str, frames: int, token_videos: list[str], threads: int = 2) -> dict:
    """Cost of the model at ``frames`` frames: visual tokens per video, LLM prefill and first-token time (median of
    ``REPEATS`` calls after a warm one; the prefill is timed by hooks on the language model inside a real forward),
    with the CPU time per call, the threads and the machine's load beside them (see the module's docstring)."""
    import torch

    from trajvlm.inference import load_model

    torch.set_num_threads(threads)
    model, processor = load_model(model_dir, num_frames=frames)
    clip = processor.load_video(video)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happened first?"}]}]
    prompt = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[prompt], videos=[clip], return_tensors="pt")
    llm, times, start = model.model.language_model, [], [0.0]
    hooks = [
        llm.register_forward_pre_hook(lambda m, a, k: start.__setitem__(0, time.perf_counter()), with_kwargs=True),
        llm.register_forward_hook(lambda m, a, o: times.append(time.perf_counter() - start[0])),
    ]
    load_before = os.getloadavg()[0]
    with torch.inference_mode():
        e2e, cpu = timed_calls(lambda: model(**inputs, use_cache=True, logits_to_keep=1), REPEATS)
    load_after = os.getloadavg()[0]
    for hook in hooks:
        hook.remove()
    peak, cores = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, usable_cores()
    counts = []
    with torch.inference_mode():
        for path in token_videos:
            pixels = processor(text=["<video>"], videos=[processor.load_video(path)], return_tensors="pt")
            model.model.encode_videos(pixels["pixel_values_videos"].to(model.dtype))
            counts.append(sum(model.model.last_visual_token_counts))
    return {
        "visual_tokens": statistics.mean(counts),
        "visual_tokens_min": min(counts),
        "visual_tokens_max": max(counts),
        "videos": len(counts),
        "prefill_ms": 1000 * statistics.median(times[1:]),
        "ttft_ms": 1000 * statistics.median(e2e),
        "ttft_min_ms": 1000 * min(e2e),
        "ttft_cpu_ms": 1000 * statistics.median(cpu),
        "peak_mb": peak / 1024,
        "threads": torch.get_num_threads(),
        "cores": cores,
        "load_avg": [round(load_before, 2), round(load_after, 2)],
        "busy": max(load_before, load_after) >= cores,
    }


def describe(model_dir: str, frames: int, videos: list[str], max_new_tokens: int = 48) -> list[str]:
    """Greedy answers to "Describe the video." for ``videos``, batched through the shared inference path."""
    import torch

    from trajvlm.inference import generate_batch, load_model

    torch.set_num_threads(2)
    model, processor = load_model(model_dir, num_frames=frames)
    options = {"max_new_tokens": max_new_tokens, "do_sample": False}
    return generate_batch(model, processor, [(v, "Describe the video.", options) for v in videos], batch_size=8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="visual tokens, prefill and first-token time, peak memory")
    m.add_argument("--model", required=True)
    m.add_argument("--frames", type=int, required=True)
    m.add_argument("--video", required=True, help="the video of the timed prompt")
    m.add_argument("--token-videos", nargs="+", required=True, help="videos whose visual tokens are counted")
    m.add_argument("--threads", type=int, default=2, help="torch threads of the timed calls (default 2)")
    d = sub.add_parser("describe", help='"Describe the video." on each video')
    d.add_argument("--model", required=True)
    d.add_argument("--frames", type=int, required=True)
    d.add_argument("--videos", nargs="+", required=True)
    args = ap.parse_args(argv)
    if args.command == "measure" and args.threads < 1:
        ap.error(f"--threads must be at least 1, got {args.threads}")
    if args.command == "measure":
        result: object = measure(args.model, args.video, args.frames, args.token_videos, args.threads)
    else:
        result = describe(args.model, args.frames, args.videos)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
