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

    python eval/bench/bench_serve.py --hostile                        # hostile clients against a live server: ~3 min

``--hostile`` runs, one after another against one server, with a client sending normal requests all the while (its
p95 latency is each row's last figure): oversize frames (7 frames of 8000x8000 PNG in one 1-2 MiB request, to the
chat and overlay routes; the server's peak RSS over its resident size before, from /proc), a 14000x14000 frame (its
status), cancelled streams (a 1000-token stream closed after its first text: seconds until the server has freed its
place, from /health), slow clients (300 connections dribbling header bytes: seconds until the server closed each, and
how many got a 408) and 100 concurrent requests (answered / refused 429 / server errors). The server must answer a
normal request at the end; the script exits 1 on any server error or a failed check.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

NAME = "bench-tiny"


def build_tiny_model(out: Path, num_frames: int) -> Path:
    """A tiny TrajVLM (random weights: answers are noise; the cost is the real path's) saved like a checkpoint."""
    import torch

    from trajtok import TrajTokConfig
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor
    from trajvlm.training.base import build_tiny_base

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
    from trajtok.io.writer import write_video

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


# --------------------------------------------------------------------------------------------- hostile clients


def server_command(model: Path, port: int, media: Path, args, *extra: str) -> list[str]:
    return [
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
        *extra,
    ]


def server_env(args) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tokenizer"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def proc_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> bool:
    """Start VmHWM afresh from the current RSS (Linux clear_refs 5); False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Background:
    """Normal requests sent one after another while a scenario runs; their latencies (s) and failures."""

    def __init__(self, url: str, clip: Path, max_tokens: int, timeout: float) -> None:
        import openai

        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=timeout)
        self.clip, self.max_tokens = clip, max_tokens
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            r = one_request(self.client, k, [self.clip], [self.clip.as_uri()], self.max_tokens) if k % 4 != 3 else None
            if r is None:  # every 4th normal request is text only
                r = normal_request(self.client, self.max_tokens)
            if r["status"] == 200:
                self.latencies.append(r["latency_s"])
            elif r["status"] == 429:  # the server is full (the 100 concurrent requests): refused, as it should be
                self.refused += 1
            else:
                self.failures.append(str(r)[:200])
            k += 1

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def p95(self) -> float:
        return float(np.percentile(self.latencies, 95)) if self.latencies else float("nan")


def normal_request(client, max_tokens: int) -> dict:
    import openai

    start = time.perf_counter()
    try:
        client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "Say something."}], max_tokens=max_tokens
        )
        status = 200
    except openai.APIStatusError as e:
        status = e.status_code
    except (openai.APIConnectionError, openai.APITimeoutError):
        status = -1
    return {"status": status, "latency_s": time.perf_counter() - start}


def big_png(side: int) -> bytes:
    """A ``side`` x ``side`` RGB PNG that compresses well (flat colour with a few blocks), as an attacker sends."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), (30, 60, 90))
    draw = ImageDraw.Draw(image)
    for k in range(8):
        x = (k * side) // 9
        draw.rectangle([x, x, x + side // 10, x + side // 10], fill=(200, 40 * k % 256, 120))
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def header_only_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def post_json(url: str, body: dict, timeout: float) -> tuple[int, dict]:
    import httpx

    response = httpx.post(url, json=body, timeout=timeout)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {}


def scenario_oversize_frames(url: str, pid: int, args) -> dict:
    frame = base64.b64encode(big_png(8000)).decode()
    frames_url = "data:video/png;base64," + ",".join([frame] * 7)
    bomb_url = "data:video/png;base64," + base64.b64encode(header_only_png(14000, 14000)).decode()
    message = [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": frames_url}}, {"type": "text", "text": "?"}],
        }
    ]
    before = proc_kib(pid, "VmRSS")
    exact = reset_peak_rss(pid)
    statuses = []
    for _ in range(3):
        statuses.append(
            post_json(f"{url}/v1/chat/completions", {"model": NAME, "messages": message, "max_tokens": 4}, 300)[0]
        )
    one = {"video_url": {"url": "data:video/png;base64," + frame}}
    statuses.append(post_json(f"{url}/v1/trajectory_overlay", one, 300)[0])
    peak = proc_kib(pid, "VmHWM")
    bomb = [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": bomb_url}}, {"type": "text", "text": "?"}],
        }
    ]
    bomb_status, bomb_body = post_json(f"{url}/v1/chat/completions", {"model": NAME, "messages": bomb}, 60)
    return {
        "request_mib": len(frames_url) / 2**20,
        "statuses": statuses,
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_over_before_mib": (peak - before) / 1024,
        "peak_exact": exact,
        "bomb_status": bomb_status,
        "bomb_message": bomb_body.get("error", {}).get("message", "")[:200],
    }


def scenario_cancelled_streams(url: str, args, count: int = 10) -> dict:
    import httpx

    body = {"model": NAME, "messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 1000}
    waits = []
    before = httpx.get(f"{url}/health").json()
    for _ in range(count):
        start = httpx.get(f"{url}/health").json()["cancelled"]
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
        closed = time.perf_counter()
        deadline = closed + 60
        while time.perf_counter() < deadline:  # the engine counts a cancellation when the row stops (place freed)
            if httpx.get(f"{url}/health").json()["cancelled"] > start:
                break
            time.sleep(0.01)
        waits.append(time.perf_counter() - closed)
    after = httpx.get(f"{url}/health").json()
    return {
        "streams": count,
        "cancelled": after["cancelled"] - before["cancelled"],
        "free_after_s_median": statistics.median(waits),
        "free_after_s_max": max(waits),
    }


def scenario_slow_clients(url: str, args, count: int = 300, limit_s: float = 60.0) -> dict:
    """``count`` connections each sending one header byte per second; seconds until the server closed each."""
    import selectors

    host, port = url.removeprefix("http://").split(":")
    selector = selectors.DefaultSelector()
    opened = time.perf_counter()
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    closed_after: dict[int, float] = {}
    got_408 = 0
    replies: dict[int, bytes] = {}
    next_byte = time.perf_counter() + 1.0
    while len(closed_after) < count and time.perf_counter() - opened < limit_s:
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if data:
                replies[sock.fileno()] = replies.get(sock.fileno(), b"") + data
                continue
            got_408 += replies.get(sock.fileno(), b"").startswith(b"HTTP/1.1 408")
            closed_after[sock.fileno()] = time.perf_counter() - opened
            selector.unregister(sock)
        if time.perf_counter() >= next_byte:
            next_byte += 1.0
            for sock in socks:
                if sock.fileno() not in closed_after and sock.fileno() != -1:
                    try:
                        sock.send(b"a")
                    except OSError:
                        pass
    for sock in socks:
        sock.close()
    return {
        "connections": count,
        "closed_by_server": len(closed_after),
        "answered_408": got_408,
        "closed_after_s_max": max(closed_after.values()) if closed_after else float("nan"),
    }


def scenario_concurrent(url: str, clip: Path, args, count: int = 100) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=args.request_timeout)
    barrier = threading.Barrier(count)

    def task(k: int) -> dict:
        barrier.wait(timeout=60)
        return (
            one_request(client, k, [clip], [clip.as_uri()], args.max_tokens)
            if k % 4 != 3
            else normal_request(client, args.max_tokens)
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(task, range(count)))
    ok = sorted(r["latency_s"] for r in results if r["status"] == 200)
    return {
        "requests": count,
        "ok": len(ok),
        "refused_429": sum(r["status"] == 429 for r in results),
        "server_errors": sum(r["status"] >= 500 or r["status"] < 0 for r in results),
        "p95_ok_s": float(np.percentile(ok, 95)) if ok else float("nan"),
    }


def run_hostile(url: str, pid: int, clips: list[Path], args) -> tuple[list[dict], dict]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=args.request_timeout)
    for k in range(3):  # warm-up
        one_request(client, k, clips, [c.as_uri() for c in clips], args.max_tokens)
    quiet = [
        one_request(client, k, clips, [c.as_uri() for c in clips], args.max_tokens)["latency_s"] for k in range(20)
    ]
    rows = [
        {
            "scenario": "none (baseline)",
            "figure": f"{len(quiet)} requests",
            "p95_s": float(np.percentile(quiet, 95)),
            "normal_failures": 0,
        }
    ]
    scenarios = [
        ("oversize frames", lambda: scenario_oversize_frames(url, pid, args)),
        ("cancelled streams", lambda: scenario_cancelled_streams(url, args)),
        ("slow clients", lambda: scenario_slow_clients(url, args)),
        ("100 concurrent", lambda: scenario_concurrent(url, clips[0], args)),
    ]
    details = {}
    for title, run in scenarios:
        with Background(url, clips[0], args.max_tokens, args.request_timeout) as background:
            result = run()
        details[title] = result
        rows.append(
            {
                "scenario": title,
                "figure": describe(title, result),
                "p95_s": background.p95(),
                "normal_requests": len(background.latencies),
                "normal_refused_429": background.refused,
                "normal_failures": len(background.failures),
                "normal_first_failures": background.failures[:3],
            }
        )
    final = one_request(client, 0, clips, [c.as_uri() for c in clips], args.max_tokens)
    details["final_request_status"] = final["status"]
    return rows, details


def describe(title: str, r: dict) -> str:
    if title == "oversize frames":
        return (
            f"{r['request_mib']:.1f} MiB requests answered {sorted(set(r['statuses']))}; server peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB = {r['peak_over_before_mib']:+.0f} MiB over {r['rss_before_mib']:.0f} MiB"
            f"{'' if r['peak_exact'] else ' (lifetime peak)'}; 14000x14000 frame: {r['bomb_status']}"
        )
    if title == "cancelled streams":
        return (
            f"{r['streams']} 1000-token streams closed after the first text: {r['cancelled']} stopped; generation "
            f"stopped and place freed {r['free_after_s_median']:.2f} s after the close (median), "
            f"{r['free_after_s_max']:.2f} s max"
        )
    if title == "slow clients":
        return (
            f"{r['connections']} connections dribbling headers: {r['closed_by_server']} closed by the server "
            f"({r['answered_408']} with a 408), the last after {r['closed_after_s_max']:.1f} s"
        )
    return (
        f"{r['requests']} at once: {r['ok']} answered, {r['refused_429']} refused 429, {r['server_errors']} "
        f"server errors; p95 of the answered {r['p95_ok_s']:.2f} s"
    )


def hostile_checks(rows: list[dict], details: dict, args) -> list[str]:
    problems = []
    frames = details["oversize frames"]
    if any(s != 200 for s in frames["statuses"]):
        problems.append(f"oversize frames answered {frames['statuses']}, expected 200s")
    if frames["bomb_status"] != 422:
        problems.append(f"the 14000x14000 frame answered {frames['bomb_status']}, expected 422")
    streams = details["cancelled streams"]
    if streams["cancelled"] != streams["streams"] or streams["free_after_s_max"] > 1.0:
        problems.append(f"cancelled streams kept generating: {streams}")
    slow = details["slow clients"]
    if slow["closed_by_server"] < slow["connections"]:
        problems.append(f"slow clients not all closed: {slow}")
    if details["100 concurrent"]["server_errors"]:
        problems.append(f"server errors under 100 concurrent requests: {details['100 concurrent']}")
    for row in rows:
        if row["normal_failures"]:
            problems.append(f"normal requests failed during {row['scenario']}: {row['normal_first_failures']}")
    if details["final_request_status"] != 200:
        problems.append(f"the final normal request answered {details['final_request_status']}")
    return problems


def print_hostile(rows: list[dict], args) -> None:
    print("| scenario | figure | normal requests meanwhile: answered / 429 / failed | their p95 (s) |")
    print("|---|---|---|---:|")
    for row in rows:
        normal = (
            f"{row['normal_requests']} / {row['normal_refused_429']} / {row['normal_failures']}"
            if "normal_requests" in row
            else "-"
        )
        print(f"| {row['scenario']} | {row['figure']} | {normal} | {row['p95_s']:.3f} |")


class Server:
    """A running server of the benchmark: its URL, process and media clips; once stopped, the seconds SIGTERM took
    and its output. (A plain class: scripts loaded by path, as the tests do, are not in sys.modules, which
    dataclasses need.)"""

    def __init__(self, url: str, proc: subprocess.Popen, clips: list[Path]) -> None:
        self.url, self.proc, self.clips = url, proc, clips
        self.sigterm_exit_s = math.nan
        self.log = ""


@contextlib.contextmanager
def serving(args, *extra: str) -> Iterator[Server]:
    """``trajvlm serve`` (the tiny model unless ``--model``) on a free port over a fresh media folder of synthetic
    clips, healthy when the block starts; stopped with SIGTERM (killed after 30 s) when it ends."""
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        model = args.model or build_tiny_model(tmp, args.num_frames)
        media = tmp / "media"
        media.mkdir()
        clips = write_clips(media, args.clips)
        port = free_port()
        with (tmp / "server.log").open("w") as log:
            cmd = server_command(model, port, media, args, *extra)
            proc = subprocess.Popen(cmd, env=server_env(args), stdout=log, stderr=subprocess.STDOUT)
            server = Server(f"http://127.0.0.1:{port}", proc, clips)
            try:
                wait_healthy(server.url, proc, timeout=180)
                yield server
            finally:
                stop = time.perf_counter()
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                server.sigterm_exit_s = time.perf_counter() - stop
        server.log = (tmp / "server.log").read_text()


def main_hostile(args) -> int:
    extra = ["--read-timeout", str(args.read_timeout), "--max-upload-mb", "16"]
    with serving(args, *extra) as server:
        rows, details = run_hostile(server.url, server.proc.pid, server.clips, args)
    proc, server_log, details_stop = server.proc, server.log, server.sigterm_exit_s
    details["sigterm_exit_s"] = details_stop
    print_hostile(rows, args)
    print(
        f"\nthe server answered a normal request at the end: {details['final_request_status']}; "
        f"SIGTERM to exit: {details_stop:.2f} s"
    )
    problems = hostile_checks(rows, details, args)
    for problem in problems:
        print("FAILED:", problem)
    crashed = proc.returncode not in (0, -15)
    if crashed:
        print(f"the server exited with status {proc.returncode}; its log:\n{server_log[-3000:]}")
    _common.write_json(args.json, {"rows": rows, "details": details}, default=str)
    return 1 if problems or crashed else 0


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
    parser.add_argument("--hostile", action="store_true", help="hostile clients instead of the load test")
    parser.add_argument("--read-timeout", type=float, default=5.0, help="the server's --read-timeout in --hostile")
    args = parser.parse_args(argv)
    if args.hostile:
        return main_hostile(args)

    import httpx

    with serving(args) as server:
        before = httpx.get(f"{server.url}/health").json()
        results, wall = run_load(server.url, server.clips, args)
        health = httpx.get(f"{server.url}/health").json()
        health = {k: health[k] - before.get(k, 0) if k in ("served", "batches") else health[k] for k in health}
    proc, server_log = server.proc, server.log
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
    _common.write_json(args.json, {"summary": summary, "requests": results})
    return 1 if summary["server_errors"] or crashed or summary["requests_sent"] < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
