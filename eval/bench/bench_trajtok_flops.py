"""FLOPs and CPU time per frame of the TrajTok connector vs the SigLIP-so400m/14 tower at 384 px.

    python eval/bench/bench_trajtok_flops.py --json runs/bench_flops.json            # about 2-5 minutes on 2 cores

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention; gathers and
scatters count 0) over one ``--clip-len``-frame clip, divided by the frames. The tower is built from the
so400m/14 config (27 layers, width 1152, MLP 4304, 384 px) with random weights on the meta device (no compute).
TrajTok is the paper size (E = 512, K = 128, 8 heads x 64, depth 2 + 2) in the VLM setting: it reads features of
width ``--llm-width`` (the projected tower features, 3584 for a 7B Qwen2 LLM) on the 27 x 27 patch grid, with

- ``own backbone``: ConvNeXt-Tiny on 224 px frames; the segmenter on its 56 x 56 grid (the paper's connector);
- ``tower features`` (backbone "external"): no image model; the segmenter reads the projected tower features;

each with the sparse (gathered) and the dense-mask encoder attention. CPU wall time is the median of
``--repeats`` clips with ``--threads`` threads (on a shared machine: indicative only).

``--vlm-base DIR --vlm-trajtok DIR --vlm-frames 64`` (a ``bench_vlm.py`` work dir's base and TrajTok) also times,
interleaved in one process so that load on a shared machine hits both alike, the tower + projector alone (pool's
vision path; its pooling is negligible) against the tower + streamed trajtok connector on the same video.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

SIGLIP_SO400M = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    image_size=384,
    patch_size=14,
)


def siglip_flops_per_frame() -> float:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    with torch.device("meta"):
        tower = SiglipVisionModel(SiglipVisionConfig(**SIGLIP_SO400M))
        x = torch.empty(1, 3, 384, 384)
        with FlopCounterMode(display=False) as counter:
            tower(pixel_values=x)
    return float(counter.get_total_flops())


def trajtok_variants(llm_width: int) -> dict:
    from trajtok import TrajTokConfig

    base = dict(external_dim=llm_width, output_dim=llm_width)
    return {
        "own backbone, sparse": TrajTokConfig.paper(**base),
        "own backbone, dense mask": TrajTokConfig.paper(sparse_attention=False, **base),
        "tower features, sparse": TrajTokConfig.paper(backbone="external", **base),
        "tower features, dense mask": TrajTokConfig.paper(backbone="external", sparse_attention=False, **base),
    }


@torch.no_grad()
def measure(config, clip_len: int, grid: int, repeats: int) -> dict:
    from trajtok import TrajTok

    torch.manual_seed(0)
    model = TrajTok(config).eval()
    frames = torch.rand(1, clip_len, 3, 384, 384)
    feats = torch.randn(1, clip_len, grid, grid, config.external_dim)
    with FlopCounterMode(display=False) as counter:
        out = model.tokenize_video(frames, features=feats, clip_len=clip_len)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.tokenize_video(frames, features=feats, clip_len=clip_len)
        times.append(time.perf_counter() - t0)
    return {
        "gflops_per_frame": counter.get_total_flops() / clip_len / 1e9,
        "cpu_s_per_frame": statistics.median(times) / clip_len,
        "tokens": int(out.num_tokens[0]),
        "parameters_m": model.num_parameters() / 1e6,
    }


@torch.no_grad()
def siglip_cpu_seconds(repeats: int) -> float:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    tower = SiglipVisionModel(SiglipVisionConfig(**SIGLIP_SO400M)).eval()
    x = torch.rand(1, 3, 384, 384)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tower(pixel_values=x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def vlm_vision_times(base: Path, trajtok: Path, frames: int, repeats: int) -> dict:
    """Median seconds of tower + projector vs tower + trajtok connector (streamed) on one random video."""
    from trajvlm.modeling import TrajVLMForConditionalGeneration

    model = TrajVLMForConditionalGeneration.from_llava(base, connector="trajtok", trajtok=str(trajtok)).eval()
    size = model.config.vision_config.image_size
    torch.manual_seed(0)
    pixels = torch.rand(1, frames, 3, size, size) * 2 - 1
    tower, both = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.model.video_patch_features(pixels, return_dict=True)
        tower.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.model.encode_videos(pixels)
        both.append(time.perf_counter() - t0)
    t, b = statistics.median(tower), statistics.median(both)
    return {"frames": frames, "tower_s": t, "tower_connector_s": b, "ratio": b / t}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-len", type=int, default=16, help="frames per clip")
    parser.add_argument("--grid", type=int, default=27, help="tower patch grid side (384 / 14)")
    parser.add_argument("--llm-width", type=int, default=3584, help="width of the projected tower features")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the wall times")
    parser.add_argument("--repeats", type=int, default=1, help="timed clips per variant (median)")
    parser.add_argument("--no-siglip-time", action="store_true", help="skip the SigLIP CPU timing (~10-30 s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--vlm-base", type=Path, default=None, help="a base (bench_vlm work dir base-mid)")
    parser.add_argument("--vlm-trajtok", type=Path, default=None, help="its TrajTok (e.g. trajtok-tower-mid-seed0)")
    parser.add_argument("--vlm-frames", type=int, default=64, help="frames of the VLM timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.vlm_base is not None:
        if args.vlm_trajtok is None:
            parser.error("--vlm-base needs --vlm-trajtok")
        r = vlm_vision_times(args.vlm_base, args.vlm_trajtok, args.vlm_frames, max(args.repeats, 2))
        print(f"\n### tower + connector vs tower alone, {r['frames']} frames, interleaved medians\n")
        print("| tower + projector s | tower + trajtok s | ratio |\n|---:|---:|---:|")
        print(f"| {r['tower_s']:.2f} | {r['tower_connector_s']:.2f} | {r['ratio']:.2f} |")
        _common.write_json(args.json, {"settings": {k: str(v) for k, v in vars(args).items()}, "vlm": r}, indent=None)
        return 0
    siglip = siglip_flops_per_frame() / 1e9
    siglip_s = None if args.no_siglip_time else siglip_cpu_seconds(args.repeats)
    rows = [{"model": "SigLIP-so400m/14 tower, 384 px", "gflops_per_frame": siglip, "cpu_s_per_frame": siglip_s}]
    for name, cfg in trajtok_variants(args.llm_width).items():
        rows.append({"model": f"TrajTok paper size: {name}", **measure(cfg, args.clip_len, args.grid, args.repeats)})
    print(f"\n### FLOPs and CPU time per frame ({args.clip_len}-frame clips, {args.threads} thread(s))\n")
    table = [
        [r["model"], f"{r['gflops_per_frame']:.1f}", f"{100 * r['gflops_per_frame'] / siglip:.1f}",
         "-" if r["cpu_s_per_frame"] is None else f"{r['cpu_s_per_frame']:.3f}", r.get("tokens", "-")]
        for r in rows
    ]  # fmt: skip
    header = ["model", "GFLOPs / frame", "% of the tower", "CPU s / frame", "tokens (random init)"]
    _common.print_table(header, table, "lrrrr")
    _common.write_json(args.json, {"settings": vars(args) | {"json": str(args.json)}, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
