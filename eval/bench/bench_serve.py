"""Load test of ``trajvlm serve``: N requests at C concurrent on loopback, latency percentiles, throughput, 0 errors.

    python eval/bench/bench_serve.py                                  # 200 requests, 8 concurrent, tiny model: ~1 min
    python eval/bench/bench_serve.py --requests 200 --concurrency 8 --json runs/bench_serve/results.json
    python eval/bench/bench_serve.py --model runs/demo/vlm-trajtok --max-tokens 32

Starts the server as a subprocess (``python -m trajvlm.cli serve``) on a free 127.0.0.1 port with a tiny TrajVLM
built in code (random tiny base + tiny TrajTok connector, saved and loaded like a checkpoint) unless ``--model`` is
given, puts a few synthetic clips in its media root, then sends the requests with the official ``openai`` client from
C threads: most name a clip by ``file://`` URL, every 4th uploads it as a ``data:video/mp4;base64`` URL, every 3rd
streams. Latency is per request from send to the last byte. A server error is any 5xx answer, dropped connection or
client timeout; the script exits 1 if there is one. Traffic goes only to 127.0.0.1; the run is bounded by
``--max-seconds`` (the server is stopped in every case).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NAME = "bench-tiny"


def build_tiny_model(out: Path, num_frames: int) -> Path:
    """A tiny TrajVLM (random weights: answers are noise; the cost is the real path's) saved like a checkpoint."""
    import torch

    from trajtok import TrajTokConfig
    from trajvlm.base import build_tiny_base
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    base = build_tiny_base(out / "base")
    torch.manual_seed(0)
    model = TrajVLMForConditionalGeneration.from_llava(
        base, connector="trajtok", trajtok=TrajTokConfig.tiny(num_queries=16)
    ).eval()
    processor = TrajVLMProcessor.from_pretrained(base).for_model(model.config)
    processor.num_frames = num_frames
    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    return out / "model"


def write_clips(root: Path, count: int) -> list[Path]:
    """Seeded synthetic clips: moving bright blocks over noise, 16 frames of 64x64 at 10 fps."""
    from trajtok.videowriter import write_video

    clips = []
    for seed in range(count):
        g = np.random.default_rng(seed)
        video = g.integers(0, 60, size=(16, 64, 64, 3), dtype=np.uint8)
        for k in range(3):
            colour = g.integers(80, 256, size=3, dtype=np.uint8)
            y0, x0 = g.integers(0, 48, size=2)
            for t in range(16):
                y, x = (y0 + 2 * t) % 48, (x0 + 3 * t * (k + 1)) % 48
                video[t, y : y + 16, x : x + 16] = colour
        clips.append(write_video(root / f"clip_{seed}.mp4", video, fps=10.0))
    return clips


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering /health")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server did not answer /health within {timeout:.0f} s")


def one_request(client, k: int, clips: list[Path], uploads: list[str], max_tokens: int) -> dict:
    import openai

    clip = k % len(clips)
    url = uploads[clip] if k % 4 == 3 else clips[clip].as_uri()
    stream = k % 3 == 2
    messages = [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": f"Question {k}?"}],
        }
    ]
    start = time.perf_counter()
    record = {"index": k, "stream": stream, "upload": k % 4 == 3}
    try:
        if stream:
            chunks = client.chat.completions.create(
                model=NAME,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            usage = [c.usage for c in chunks if c.usage is not None][-1]
        else:
            usage = client.chat.completions.create(model=NAME, messages=messages, max_tokens=max_tokens).usage
        record.update(status=200, completion_tokens=usage.completion_tokens, visual_tokens=usage.visual_tokens)
    except openai.APIStatusError as e:
        record.update(status=e.status_code, error=str(e)[:300])
    except (openai.APIConnectionError, openai.APITimeoutError) as e:
        record.update(status=-1, error=f"{type(e).__name__}: {e}"[:300])
    record["latency_s"] = time.perf_counter() - start
    return record


def run_load(url: str, clips: list[Path], args) -> tuple[list[dict], float]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=args.request_timeout)
    uploads = [f"data:video/mp4;base64,{base64.b64encode(c.read_bytes()).decode()}" for c in clips]
    for k in range(min(2, args.requests)):  # warm-up (not counted): first-call allocations of the server
        one_request(client, k, clips, uploads, args.max_tokens)
    stop_at = time.monotonic() + args.max_seconds
    results: list[dict] = []
    lock = threading.Lock()

    def task(k: int) -> None:
        if time.monotonic() > stop_at:
            return
        r = one_request(client, k, clips, uploads, args.max_tokens)
        with lock:
            results.append(r)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(task, range(args.requests)))
    return results, time.perf_counter() - start


def summarise(results: list[dict], wall: float, health: dict, args) -> dict:
    lat = sorted(r["latency_s"] for r in results if r["status"] == 200)
    server_errors = [r for r in results if r["status"] >= 500 or r["status"] < 0]
    pct = (lambda q: float(np.percentile(lat, q))) if lat else (lambda q: float("nan"))
    return {
        "requests_sent": len(results),
        "requests_planned": args.requests,
        "concurrency": args.concurrency,
        "ok": len(lat),
        "client_errors_4xx": sum(400 <= r["status"] < 500 for r in results),
        "server_errors": len(server_errors),
        "p50_s": pct(50),
        "p95_s": pct(95),
        "p99_s": pct(99),
        "max_s": lat[-1] if lat else float("nan"),
        "mean_s": statistics.fmean(lat) if lat else float("nan"),
        "wall_s": wall,
        "throughput_rps": len(lat) / wall if wall > 0 else float("nan"),
        "completion_tokens_per_s": sum(r.get("completion_tokens", 0) for r in results) / wall if wall > 0 else 0,
        "visual_tokens_mean": statistics.fmean(r["visual_tokens"] for r in results if "visual_tokens" in r)
        if lat
        else 0,
        "batches": health.get("batches"),
        "mean_batch": health["served"] / health["batches"] if health.get("batches") else None,
        "largest_batch": health.get("largest_batch"),
        "max_tokens": args.max_tokens,
        "server_max_concurrency": args.server_concurrency,
        "first_errors": [r["error"] for r in server_errors[:3]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="client threads sending at once")
    parser.add_argument("--server-concurrency", type=int, default=8, help="the server's --max-concurrency (batch)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of every request")
    parser.add_argument("--num-frames", type=int, default=4, help="frames per video (tiny model's processor)")
    parser.add_argument("--clips", type=int, default=4, help="distinct synthetic clips in the media root")
    parser.add_argument("--model", type=Path, default=None, help="serve this model instead of a tiny one")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="client timeout per request (s)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop sending new requests after this")
    parser.add_argument("--json", type=Path, default=None, help="write the summary (and every request) here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        model = args.model or build_tiny_model(tmp, args.num_frames)
        media = tmp / "media"
        media.mkdir()
        clips = write_clips(media, args.clips)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(args.threads),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tokenizer"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        cmd = [
            sys.executable,
            "-m",
            "trajvlm.cli",
            "serve",
            "--model",
            str(model),
            "--served-model-name",
            NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--media-root",
            str(media),
            "--max-concurrency",
            str(args.server_concurrency),
            "--max-queue",
            str(4 * args.concurrency),
            "--request-timeout",
            str(args.request_timeout),
        ]
        log = (tmp / "server.log").open("w")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, proc, timeout=180)
            import httpx

            before = httpx.get(f"{url}/health").json()
            results, wall = run_load(url, clips, args)
            health = httpx.get(f"{url}/health").json()
            health = {k: health[k] - before.get(k, 0) if k in ("served", "batches") else health[k] for k in health}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        server_log = (tmp / "server.log").read_text()
    summary = summarise(results, wall, health, args)
    crashed = proc.returncode not in (0, -15)
    print(
        "| requests | concurrent | ok | 4xx | server errors | p50 s | p95 s | p99 s | req/s | tokens/s | mean batch |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {summary['requests_sent']} | {args.concurrency} | {summary['ok']} | {summary['client_errors_4xx']} | "
        f"{summary['server_errors']} | {summary['p50_s']:.3f} | {summary['p95_s']:.3f} | {summary['p99_s']:.3f} | "
        f"{summary['throughput_rps']:.1f} | {summary['completion_tokens_per_s']:.0f} | "
        f"{summary['mean_batch'] or 0:.2f} |"
    )
    if summary["first_errors"]:
        print("first server errors:", *summary["first_errors"], sep="\n  ")
    if crashed:
        print(f"the server exited with status {proc.returncode}; its log:\n{server_log[-3000:]}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "requests": results}, indent=1))
    return 1 if summary["server_errors"] or crashed or summary["requests_sent"] < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
