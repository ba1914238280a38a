"""Measurements of one trained model, each run by the demo in a fresh process (a clean peak RSS, its own threads):

    PYTHONPATH=scripts python -m demo_probe measure --model M --frames 8 --video V.mp4 --token-videos A.mp4 B.mp4
    PYTHONPATH=scripts python -m demo_probe describe --model M --frames 8 --videos A.mp4 B.mp4

``measure`` prints one JSON line: the visual tokens per video (mean, min, max over ``--token-videos``), the LLM
prefill time and the time to the first token of one prompt on ``--video``, and the peak memory. ``describe`` prints
the answers to "Describe the video." as a JSON list.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time


def measure(model_dir: str, video: str, frames: int, token_videos: list[str]) -> dict:
    """Cost of the model at ``frames`` frames: visual tokens per video, LLM prefill and first-token time (median of
    3 runs after a warm one; the prefill is timed by hooks on the language model inside a real forward)."""
    import torch

    from trajvlm.inference import load_model

    torch.set_num_threads(2)
    model, processor = load_model(model_dir, num_frames=frames)
    clip = processor.load_video(video)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happened first?"}]}]
    prompt = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[prompt], videos=[clip], return_tensors="pt")
    llm, times, start = model.model.language_model, [], [0.0]
    llm.register_forward_pre_hook(lambda m, a, k: start.__setitem__(0, time.perf_counter()), with_kwargs=True)
    llm.register_forward_hook(lambda m, a, o: times.append(time.perf_counter() - start[0]))
    e2e = []
    with torch.inference_mode():
        for _ in range(4):
            t = time.perf_counter()
            model(**inputs, use_cache=True, logits_to_keep=1)
            e2e.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
        "ttft_ms": 1000 * statistics.median(e2e[1:]),
        "peak_mb": peak / 1024,
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
    d = sub.add_parser("describe", help='"Describe the video." on each video')
    d.add_argument("--model", required=True)
    d.add_argument("--frames", type=int, required=True)
    d.add_argument("--videos", nargs="+", required=True)
    args = ap.parse_args(argv)
    if args.command == "measure":
        result: object = measure(args.model, args.video, args.frames, args.token_videos)
    else:
        result = describe(args.model, args.frames, args.videos)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
