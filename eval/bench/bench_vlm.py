"""Cost of the vision connector for the LLM: visual tokens, LLM prefill, time to first token and peak memory vs frames.

    python eval/bench/bench_vlm.py                                            # tiny base, 16..256 frames: minutes
    python eval/bench/bench_vlm.py --configs mid --frames 16,32,64,128 --threads 1 --repeats 1 --max-seconds 450 \
        --json runs/bench_vlm/mid.json --plot runs/bench_vlm/mid.png                      # about 25 minutes
    python eval/bench/bench_vlm.py --configs mid --trajtok-checkpoint checkpoints/trajtok-pretrained

For each base config (``tiny``: the test model, 64 px / 8x8 patches, 2-layer LLM of width 64; ``mid``: the real
SigLIP geometry, 384 px / 27x27 patches, 10-layer LLM of width 768, see ``trajvlm.training.base.SIZES``), each connector
(every one of the registry ``trajvlm.connectors.registry``, e.g. ``pool``: upstream 2x2 bilinear pooling +
newline; ``trajtok``: trajectory tokens, adaptive mode; ``resampler``: ``video_token_budget`` learned queries; plus
the trajtok variants below) and each frame count, one synthetic video (``trajtok.synth``, rendered at the tower's size; ``--scene-frames`` long, 256 by
default, and every frame count sampled uniformly from that one scene) and one short question go through the
model. Measured, each in a fresh subprocess:

- visual tokens the LLM reads, and the full LLM sequence length;
- time to first token: one forward from ``input_ids`` + ``pixel_values_videos`` to the first logits
  (tower + projector + connector + LLM prefill, KV cache on, logits of the last position only, as ``generate``
  does; the processor is excluded);
- LLM prefill: only the language model's call over the spliced input embeddings, timed by forward hooks inside
  those same forwards (so it sees exactly the inputs of real use); tower + connector = the difference;
- peak memory of that forward: on CPU the rise of the process's peak RSS (``ru_maxrss``, reset after loading
  through ``/proc/self/clear_refs``) above the RSS after loading; on GPU ``torch.cuda.max_memory_allocated``.

Times are medians of ``--repeats`` runs (more while they total under ``--min-time``) after a warm-up forward.
``--max-seconds`` is the budget of one measurement: repeats are made only as far as they fit (else the cold run is
reported, noted), and a frame count whose linear extrapolation from the previous one (a lower bound: every cost
grows at least linearly with frames) exceeds the budget is skipped, noted in the table. The bases are built into
``--workdir`` once (``trajvlm build-base --size tiny|mid``), as is the random TrajTok of each config
(``--trajtok-checkpoint`` uses a pretrained one from ``trajtok train`` instead). With a randomly initialised
TrajTok, how many queries win pixels (= tokens) depends on the initialisation.

Cost on the project's 2-core CPU machine: each measurement is a fresh process (about 30-50 s on the tiny base,
mostly start-up), so the smallest run, ``--frames 16 --repeats 1``, over the nine connector rows took 6 minutes and
the default tiny sweep (five frame counts) takes about half an hour. The mid sweep is dominated by the pool
connector's LLM prefill (3k tokens at 16 frames, 25k at 128; attention grows quadratically): 16..128
frames with ``--repeats 1 --max-seconds 450`` take about 25 minutes (pool at 128 frames alone about 400 s per
forward); pool at 256 frames (50k tokens, roughly 25 minutes per forward) is skipped by that budget. The trajtok
connector on mid is the paper-size TrajTok (ConvNeXt-Tiny at 224 px, K = 128), whose cost grows linearly with frames.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajvlm.connectors.registry import connector_names, get_connector_class

logger = logging.getLogger("bench_vlm")

CONFIGS = ("tiny", "mid")
# Rows beyond the registry's connectors -> the registry connector they run: "trajtok-tower" is trajtok whose segmenter
# reads the tower's own projected features (TrajTok backbone "external": no second image model); "trajtok-tower-s2"
# also lets the segmenter's queries read 2x2-pooled features (seg_read_stride = 2).
REGISTRY_NAME = {"trajtok-tower": "trajtok", "trajtok-tower-s2": "trajtok"}


def connector_of(row: str):
    """The registered connector class a row runs."""
    return get_connector_class(REGISTRY_NAME.get(row, row))


def is_reference(row: str) -> bool:
    """The row is upstream LLaVA-OneVision's own video path (pool with its defaults): what the others are read against."""
    return connector_of(row).upstream_problem({}) is None


def connector_rows() -> list[str]:
    """Every registered connector (registry defaults; the upstream reference, pool, first), then the trajtok variants."""
    names = sorted(connector_names(), key=lambda name: not is_reference(name))  # stable: registry order otherwise
    return names + [row for row in REGISTRY_NAME if row not in names]


QUESTION = "How many different objects appear in the video?"
RATIO_FRAMES = 128  # the project's reference length: 128 frames in at most ~1/10 of pooling's tokens
TOKEN_TARGET = 1 / 10  # trajtok tokens / pool tokens
PREFILL_TARGET = 1 / 4  # trajtok LLM prefill / pool LLM prefill on the mid config


def parse_list(values: list[str], cast=str) -> list:
    """``["16,32", "64"]`` -> ``[16, 32, 64]``: lists may be given space- or comma-separated."""
    return [cast(v) for item in values for v in str(item).split(",") if v.strip()]


# ----------------------------------------------------------------------------------------------------------------
# setup: bases, TrajTok connectors and the video, cached in the work dir


def trajtok_config_for_base(config_name: str, variant: str = "trajtok"):
    """The random TrajTok benchmarked on a base: the tiny preset on ``tiny``, the paper's size on ``mid``.

    ``trajtok-tower``: the same sizes with backbone "external" (segmenter on the tower's features). Both stream the
    video in 16-frame clips (the config's clip_len) through the connector.
    """
    from trajtok import TrajTokConfig

    extra: dict = {}
    if variant.startswith("trajtok-tower"):
        extra = {"backbone": "external", "external_dim": 1}
    if variant == "trajtok-tower-s2":
        extra["seg_read_stride"] = 2
    if config_name == "tiny":
        return TrajTokConfig.tiny(**extra)
    return TrajTokConfig.paper(**extra)  # ConvNeXt-Tiny (or none), E = 512, K = 128, 224 px


def ensure_base(workdir: Path, config_name: str, seed: int) -> Path:
    """``workdir/base-{config}``: a random llava-hf LLaVA-OneVision checkpoint of that size (built if missing)."""
    from trajvlm.training.base import SIZES, build_tiny_base

    path = workdir / f"base-{config_name}"
    if not (path / "config.json").is_file():
        logger.info("building the %s base into %s", config_name, path)
        build_tiny_base(path, seed=seed, **SIZES[config_name])
    return path


def ensure_trajtok(workdir: Path, config_name: str, base: Path, seed: int, variant: str = "trajtok") -> Path:
    """``workdir/trajtok-{config}-seed{seed}``: a random TrajTok whose widths match the base's LLM (built if missing).

    Saved once so that every subprocess (every frame count) loads the very same connector weights.
    """
    from transformers import AutoConfig

    from trajtok import TrajTok

    path = workdir / f"{variant}-{config_name}-seed{seed}"
    if not (path / "config.json").is_file():
        width = AutoConfig.from_pretrained(base).text_config.hidden_size
        cfg = trajtok_config_for_base(config_name, variant).replace(external_dim=width, output_dim=width)
        torch.manual_seed(seed)
        TrajTok(cfg).save_pretrained(path)
        logger.info("saved a random TrajTok for the %s base to %s", config_name, path)
    return path


def ensure_video(workdir: Path, size: int, num_frames: int, num_objects: int, seed: int) -> Path:
    """``workdir/video-{size}px-{T}f-{objects}obj-seed{seed}.npy``: one synthetic scene (T, H, W, 3) uint8."""
    from trajtok.synth import generate_video

    path = workdir / f"video-{size}px-{num_frames}f-{num_objects}obj-seed{seed}.npy"
    if not path.is_file():
        logger.info("rendering a %d-frame %dx%d synthetic video with %d objects", num_frames, size, size, num_objects)
        video = generate_video(seed, num_frames, size, size, num_objects)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.ascontiguousarray(video.frames))
        os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# one measurement (runs in its own process)


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class MemoryMeter:
    """Peak memory above the state at ``start()``: CUDA allocator stats on GPU, the process's peak RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.exact = True

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
        else:
            # Without the reset, a transient peak while loading could hide the forward's peak.
            self.exact = reset_peak_rss()
            self.baseline = current_rss_bytes() if self.exact else peak_rss_bytes()

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.baseline
        return max(0, peak_rss_bytes() - self.baseline)


class LLMTimer:
    """Times every call of the language model (the decoder over ``inputs_embeds``) through forward hooks.

    Inside one end-to-end forward this is exactly the LLM prefill over the spliced embeddings, so a single forward
    yields both the time to first token and the prefill time, and the LLM sees the very inputs it gets in use.
    """

    def __init__(self, language_model: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self.seq_len = 0
        language_model.register_forward_pre_hook(self._before, with_kwargs=True)
        language_model.register_forward_hook(self._after)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _before(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise ValueError("the language model was called without inputs_embeds; the benchmark times that call")
        self.seq_len = int(embeds.shape[1])
        self._sync()
        self._t0 = time.perf_counter()

    def _after(self, module, args, output):
        self._sync()
        self.times.append(time.perf_counter() - self._t0)


def measure(spec: dict) -> dict:
    """Load the model, run the forwards and return the measurements of one (config, connector, frames)."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(spec["seed"])
    registry_name = REGISTRY_NAME.get(spec["connector"], spec["connector"])
    # registry defaults, adaptive token mode (the processor-expanded pool ignores it), randomly initialised
    kwargs: dict[str, Any] = {"connector": registry_name, "token_mode": "adaptive"}
    if connector_of(registry_name).holds_trajtok:
        kwargs.update(trajtok=spec["trajtok"])
    model = TrajVLMForConditionalGeneration.from_llava(spec["base"], **kwargs).eval().to(device)
    processor = TrajVLMProcessor.from_pretrained(spec["base"]).for_model(model.config)
    llm = LLMTimer(model.model.language_model, device)

    scene = np.load(spec["video"], mmap_mode="r")  # (T_all, H, W, 3)
    index = np.linspace(0, scene.shape[0] - 1, spec["frames"]).round().astype(np.int64)
    video = torch.from_numpy(np.ascontiguousarray(scene[index]))  # (T, H, W, 3) uint8
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": spec["question"]}]}]
    prompt = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[prompt], videos=[video], return_tensors="pt").to(device)
    del scene, video

    def end_to_end() -> float:
        """One forward, input_ids + pixels -> first logits (as generate's prefill: KV cache, last position only)."""
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(**inputs, use_cache=True, logits_to_keep=1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    meter = MemoryMeter(device)
    notes: list[str] = []
    with torch.inference_mode():
        meter.start()
        cold = end_to_end()  # warm-up, and the peak-memory measurement
        peak = meter.peak()
        tokens = int(sum(model.last_visual_token_counts))
        cold_prefill = llm.times[-1]
        # repeat only as far as the runs fit into the budget; fast ones until they total min_time
        budget, min_time = spec["max_seconds"], spec["min_time"]
        fit = int((budget - cold) // max(cold, 1e-9))
        repeats = max(0, min(spec["repeats"], fit))
        llm.times.clear()
        e2e: list[float] = []
        while len(e2e) < repeats or (repeats and sum(e2e) < min_time and len(e2e) < 50):
            e2e.append(end_to_end())
    peak_all = meter.peak()  # over the repeats too (allocator caching / fragmentation can raise it)
    if repeats:
        prefill = llm.times
    else:
        notes.append(f"one cold run (repeats would exceed the {budget:.0f} s budget)")
        e2e, prefill = [cold], [cold_prefill]
    ttft_s, prefill_s = statistics.median(e2e), statistics.median(prefill)
    return {
        "visual_tokens": tokens,
        "llm_seq_len": llm.seq_len,
        "prefill_s": prefill_s,
        "ttft_s": ttft_s,
        "vision_s": max(0.0, ttft_s - prefill_s),
        "peak_mem_mib": peak / 2**20,
        "peak_mem_exact": meter.exact,
        "peak_mem_all_runs_mib": peak_all / 2**20,
        "runs": len(e2e),
        "cold_s": cold,
        "notes": notes,
    }


def run_worker(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    result = measure(spec)
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


def measure_in_subprocess(spec: dict, timeout: float) -> dict:
    """Run :func:`measure` in a fresh interpreter (clean peak-memory counter); failures become notes."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {**spec, "out": str(Path(tmp) / "result.json")}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"notes": [f"killed after {timeout:.0f} s"]}
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            if proc.returncode < 0:
                tail = [f"killed by signal {-proc.returncode} (out of memory?)"]
            return {"notes": [f"failed: {tail[0][:160]}"]}
        return json.loads(Path(spec["out"]).read_text())


# ----------------------------------------------------------------------------------------------------------------
# the sweep and its report


def sweep(args: argparse.Namespace) -> list[dict]:
    from transformers import AutoConfig

    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for config_name in args.configs:
        base = ensure_base(workdir, config_name, args.seed)
        size = AutoConfig.from_pretrained(base).vision_config.image_size
        video = ensure_video(workdir, size, max(args.scene_frames, *args.frames), args.objects, args.seed)
        for connector in args.connectors:
            trajtok = None
            if connector in REGISTRY_NAME:  # a trajtok variant row: its own random TrajTok
                trajtok = str(ensure_trajtok(workdir, config_name, base, args.seed, connector))
            elif connector_of(connector).holds_trajtok:
                trajtok = str(args.trajtok_checkpoint or ensure_trajtok(workdir, config_name, base, args.seed))
            previous: dict | None = None
            for frames in sorted(args.frames):
                row: dict[str, Any] = {"config": config_name, "connector": connector, "frames": frames}
                if previous is not None and "ttft_s" in previous:
                    estimate = previous["cold_s"] * frames / previous["frames"]  # a lower bound: costs grow >= T
                    if estimate > args.max_seconds:
                        row["notes"] = [f"skipped: >= {estimate:.0f} s per forward (budget {args.max_seconds:.0f} s)"]
                        rows.append(row)
                        logger.info("%s %s %d frames: %s", config_name, connector, frames, row["notes"][0])
                        continue
                elif previous is not None:  # the smaller one already failed or was skipped
                    row["notes"] = ["skipped: a smaller frame count did not finish"]
                    rows.append(row)
                    continue
                spec = {
                    "config": config_name,
                    "base": str(base),
                    "connector": connector,
                    "trajtok": trajtok,
                    "frames": frames,
                    "video": str(video),
                    "question": args.question,
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "max_seconds": args.max_seconds,
                    "min_time": args.min_time,
                    "device": args.device,
                    "seed": args.seed,
                }
                t0 = time.perf_counter()
                timeout = 120 + args.max_seconds * (3 + 2 * args.repeats)
                row.update(measure_in_subprocess(spec, timeout))
                row["wall_s"] = time.perf_counter() - t0
                logger.info(
                    "%s %s %d frames: %s tokens, prefill %s s, ttft %s s (%.0f s)",
                    config_name,
                    connector,
                    frames,
                    row.get("visual_tokens"),
                    fmt(row.get("prefill_s"), 3),
                    fmt(row.get("ttft_s"), 3),
                    row["wall_s"],
                )
                rows.append(row)
                previous = row
    return rows


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratios(rows: list[dict], frames: int) -> list[dict]:
    """trajtok / pool at ``frames`` for each config and trajtok variant: tokens, LLM prefill, TTFT, tower+connector."""
    out = []
    by_key = {(r["config"], r["connector"], r["frames"]): r for r in rows}
    for config_name in dict.fromkeys(r["config"] for r in rows):
        pool = by_key.get((config_name, "pool", frames), {})
        for variant in ("trajtok", "trajtok-tower", "trajtok-tower-s2"):
            traj = by_key.get((config_name, variant, frames))
            if traj is None:
                continue
            entry: dict[str, Any] = {"config": config_name, "connector": variant, "frames": frames}
            for key in ("visual_tokens", "llm_seq_len", "prefill_s", "ttft_s", "vision_s", "peak_mem_mib"):
                a, b = traj.get(key), pool.get(key)
                entry[key] = a / b if a is not None and b else None
            out.append(entry)
    return out


def memory_growth(rows: list[dict], short: int, long: int) -> list[dict]:
    """Peak memory at ``long`` frames / at ``short`` frames per (config, connector)."""
    out = []
    by_key = {(r["config"], r["connector"], r["frames"]): r for r in rows}
    for config_name, connector in dict.fromkeys((r["config"], r["connector"]) for r in rows):
        a = by_key.get((config_name, connector, long), {}).get("peak_mem_mib")
        b = by_key.get((config_name, connector, short), {}).get("peak_mem_mib")
        if a is not None and b:
            out.append({"config": config_name, "connector": connector, "short": short, "long": long, "ratio": a / b})
    return out


def print_report(rows: list[dict], args: argparse.Namespace) -> None:
    device = "GPU" if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    for config_name in dict.fromkeys(r["config"] for r in rows):
        print(f"\n### {config_name} base ({device}; median of >= {args.repeats} runs after a warm-up)\n")
        print(
            "| connector | frames | visual tokens | LLM seq | LLM prefill s | TTFT s | tower+connector s | "
            "peak mem MiB | runs | note |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in rows:
            if r["config"] != config_name:
                continue
            mem = fmt(r.get("peak_mem_mib"), 0)
            if r.get("peak_mem_exact") is False:
                mem = f"<= {mem}"
            print(
                f"| {r['connector']} | {r['frames']} | {fmt(r.get('visual_tokens'))} | {fmt(r.get('llm_seq_len'))} | "
                f"{fmt(r.get('prefill_s'), 3)} | {fmt(r.get('ttft_s'), 3)} | {fmt(r.get('vision_s'), 3)} | {mem} | "
                f"{fmt(r.get('runs'))} | {'; '.join(r.get('notes', []))} |"
            )
    for frames in sorted({args.ratio_frames, *args.extra_ratio_frames}):
        print_ratios(rows, frames)
    growth = memory_growth(rows, *args.memory_frames)
    if growth:
        print(f"\n### peak memory at {args.memory_frames[1]} frames / at {args.memory_frames[0]} frames\n")
        print("| config | connector | ratio |\n|---|---|---:|")
        for g in growth:
            print(f"| {g['config']} | {g['connector']} | {fmt(g['ratio'], 3)} |")


def print_ratios(rows: list[dict], frames: int) -> None:
    print(f"\n### trajtok / pool at {frames} frames\n")
    print(
        "| config | connector | visual tokens | LLM seq | LLM prefill | TTFT | tower+connector | peak mem | "
        "token target | prefill target |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for e in ratios(rows, frames):
        tok, pre = e["visual_tokens"], e["prefill_s"]
        tok_ok = "-" if tok is None else ("met" if tok <= TOKEN_TARGET else "missed") + f" (<= {TOKEN_TARGET:.2f})"
        pre_ok = "-" if pre is None else ("met" if pre <= PREFILL_TARGET else "missed") + f" (<= {PREFILL_TARGET:.2f})"
        if e["config"] != "mid":
            pre_ok += " (target is for mid)" if pre is not None else ""
        print(
            f"| {e['config']} | {e['connector']} | {fmt(tok, 4)} | {fmt(e['llm_seq_len'], 4)} | {fmt(pre, 4)} | "
            f"{fmt(e['ttft_s'], 4)} | {fmt(e['vision_s'], 3)} | {fmt(e['peak_mem_mib'], 3)} | {tok_ok} | {pre_ok} |"
        )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("visual_tokens", "visual tokens"),
        ("prefill_s", "LLM prefill (s)"),
        ("ttft_s", "time to first token (s)"),
        ("peak_mem_mib", "peak memory (MiB)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for config_name in dict.fromkeys(r["config"] for r in rows):
            for connector in dict.fromkeys(r["connector"] for r in rows):
                pts = [
                    (r["frames"], r[key])
                    for r in rows
                    if r["config"] == config_name and r["connector"] == connector and r.get(key)
                ]
                if pts:
                    style = "-o" if is_reference(connector) else "--s"
                    ax.plot(*zip(*pts, strict=True), style, label=f"{config_name} / {connector}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("frames")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny"], help=f"base sizes, from {CONFIGS} (comma list ok)")
    parser.add_argument(
        "--connectors", nargs="+", default=None, help="connectors (comma list ok; default: every registered one)"
    )
    parser.add_argument("--frames", nargs="+", default=["16,32,64,128,256"], help="frame counts (comma list ok)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench_vlm"), help="cache of bases, TrajToks, video")
    parser.add_argument("--trajtok-checkpoint", type=Path, default=None, help="a pretrained TrajTok (trajtok train)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="budget of one measurement (s), see above")
    parser.add_argument("--min-time", type=float, default=1.0, help="repeat fast runs until they total this (s)")
    parser.add_argument("--ratio-frames", type=int, default=RATIO_FRAMES, help="frames at which ratios are reported")
    parser.add_argument(
        "--extra-ratio-frames", default="64", help="more frame counts with a trajtok / pool table (comma list)"
    )
    parser.add_argument(
        "--memory-frames", default="32,256", help="short,long: report peak memory at long / at short frames"
    )
    parser.add_argument("--scene-frames", type=int, default=256, help="length of the scene frames are sampled from")
    parser.add_argument("--objects", type=int, default=6, help="objects in the synthetic scene")
    parser.add_argument("--question", default=QUESTION, help="the question after the video")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bases, the random TrajTok and the video")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and ratios here")
    parser.add_argument("--plot", type=Path, default=None, help="also plot the four curves to this PNG")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in ("transformers", "trajvlm", "trajtok"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.worker is not None:
        return run_worker(args.worker)

    args.configs = parse_list(args.configs)
    choices = connector_rows()
    args.connectors = choices if args.connectors is None else parse_list(args.connectors)
    args.frames = parse_list(args.frames, int)
    args.extra_ratio_frames = parse_list([args.extra_ratio_frames], int)
    args.memory_frames = parse_list([args.memory_frames], int)
    if len(args.memory_frames) != 2:
        parser.error(f"--memory-frames needs two counts short,long, got {args.memory_frames}")
    for name in args.configs:
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    for name in args.connectors:
        if name not in choices:
            parser.error(f"unknown connector {name!r}; choose from {', '.join(choices)}")
    if not args.frames or min(args.frames) < 1:
        parser.error(f"--frames must be positive integers, got {args.frames}")
    if args.trajtok_checkpoint is not None and not (args.trajtok_checkpoint / "config.json").is_file():
        parser.error(f"--trajtok-checkpoint {args.trajtok_checkpoint} has no config.json (a `trajtok train` output)")
    if args.threads < 1 or args.repeats < 1 or args.max_seconds <= 0:
        parser.error("--threads and --repeats must be >= 1 and --max-seconds > 0")

    rows = sweep(args)
    print_report(rows, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "worker"},
            "torch": torch.__version__,
            "rows": rows,
            "ratios": [e for f in sorted({args.ratio_frames, *args.extra_ratio_frames}) for e in ratios(rows, f)],
            "memory_growth": memory_growth(rows, *args.memory_frames),
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.plot is not None:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
