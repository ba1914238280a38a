"""CoordTok vs a plain patch autoencoder: reconstruction PSNR on held-out synthetic videos at several token counts.

    python eval/bench/bench_coordtok.py                                     # CPU setting: 32 frames at 64x64
    python eval/bench/bench_coordtok.py --frames 128 --size 128 --models paper --steps 20000   # the paper's (GPU)

Every model is trained by the same recipe as ``trajtok coordtok-train`` (``trajtok.baselines.coordtok_train.train``: AdamW,
warm-up + cosine, l2; CoordTok on a random ``sample_fraction`` of patches, the patch autoencoder on whole videos),
on fresh synthetic-world videos, for the same number of steps and batch size; then every model reconstructs the
same ``--eval-videos`` held-out videos (seeds never drawn in training) and the PSNR over all their pixels is
reported with the token count (latents of ``latent_dim`` channels, equal for all models).

Model sets (``--models``): ``cpu`` = CoordTok with 8x8 / 2 x 8x8 planes (192 tokens) and 16x16 / 2 x 16x16 planes
(768 tokens) against patch autoencoders with tubelets 8x8x8 (256 tokens), 4x8x8 (512) and 2x8x8 (1,024), all with
width 128 and 2 + 2 layers; ``paper`` = the paper's CoordTok (1,280 tokens) against tubelets 4x16x16 (2,048),
2x16x16 (4,096) and 4x8x8 (8,192). The target: a CoordTok with <= 1,280 tokens within 1 dB of a patch autoencoder
with >= 4x its tokens.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
import _common  # noqa: E402

logger = logging.getLogger("bench_coordtok")

HELD_OUT_SEED = 900_000_000  # evaluation seeds start here; training seeds are seed * 1_000_003 + step * batch + i


def model_sets(frames: int, size: int) -> dict[str, dict[str, dict[str, Any]]]:
    small = dict(latent_dim=8, width=128, depth=2, heads=4, plane_dim=64, decoder_width=128, decoder_depth=2,
                 decoder_heads=4, patch_size=8)  # fmt: skip
    paper = dict(latent_dim=8, width=384, depth=6, heads=6, plane_dim=64, decoder_width=384, decoder_depth=6,
                 decoder_heads=6, patch_size=8)  # fmt: skip
    geo = dict(image_size=size, num_frames=frames)

    def coordtok(planes: int) -> dict[str, Any]:
        """The small CoordTok with triplanes of ``planes`` x ``planes`` cells and ``planes`` frames."""
        return dict(kind="coordtok", tubelet_frames=4, tubelet_size=16, plane_size=planes, plane_frames=planes,
                    sample_fraction=0.1, **geo, **small)  # fmt: skip

    return {
        "cpu": {
            "coordtok-8": coordtok(8),
            "coordtok-16": coordtok(16),
            "patch-ae-8x8x8": dict(kind="patch_ae", tubelet_frames=8, tubelet_size=8, **geo, **small),
            "patch-ae-4x8x8": dict(kind="patch_ae", tubelet_frames=4, tubelet_size=8, **geo, **small),
            "patch-ae-2x8x8": dict(kind="patch_ae", tubelet_frames=2, tubelet_size=8, **geo, **small),
        },
        "paper": {
            "coordtok-paper": dict(kind="coordtok", **geo, **paper),
            "patch-ae-4x16x16": dict(kind="patch_ae", tubelet_frames=4, tubelet_size=16, **geo, **paper),
            "patch-ae-2x16x16": dict(kind="patch_ae", tubelet_frames=2, tubelet_size=16, **geo, **paper),
            "patch-ae-4x8x8": dict(kind="patch_ae", tubelet_frames=4, tubelet_size=8, **geo, **paper),
        },
    }


def evaluate(model, frames: int, size: int, videos: int, objects: tuple[int, int]) -> float:
    from trajtok.baselines.coordtok import psnr
    from trajtok.baselines.coordtok_train import synthetic_video

    model.eval()
    recon, target = [], []
    with torch.no_grad():
        for i in range(videos):
            video = synthetic_video(HELD_OUT_SEED + i, frames, size, objects)[None]  # (1, T, 3, H, W)
            recon.append(model.reconstruct(video))
            target.append(video)
    return psnr(torch.cat(recon), torch.cat(target))


def run_one(name: str, model_cfg: dict, args: argparse.Namespace, workdir: Path) -> dict:
    from trajtok.baselines.coordtok import CoordTok, CoordTokConfig, PatchAutoencoder
    from trajtok.baselines.coordtok_train import CoordTokTrainConfig, train

    cfg = CoordTokTrainConfig(
        model=model_cfg, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=min(50, args.steps // 10),
        seed=args.seed, log_every=max(1, args.steps // 10), save_every=args.steps, keep_checkpoints=1,
        threads=args.threads, max_seconds=args.max_seconds,
    )  # fmt: skip
    t0 = time.perf_counter()
    ckpt = train(cfg, workdir / name)
    seconds = time.perf_counter() - t0
    cls = CoordTok if model_cfg["kind"] == "coordtok" else PatchAutoencoder
    model = cls.from_pretrained(ckpt)
    steps = int(ckpt.name.split("_")[-1])
    metrics = [json.loads(x) for x in (workdir / name / "metrics.jsonl").read_text().splitlines()]
    value = evaluate(model, args.frames, args.size, args.eval_videos, tuple(args.objects))
    row = {
        "model": name,
        "kind": model_cfg["kind"],
        "tokens": CoordTokConfig(**model_cfg).num_tokens,
        "channels": model_cfg["latent_dim"],
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "steps": steps,
        "train_s": seconds,
        "final_loss": metrics[-1]["loss"],
        "psnr_db": value,
    }
    logger.info("%s: %d tokens, %d steps in %.0f s, PSNR %.2f dB", name, row["tokens"], steps, seconds, value)
    return row


def verdict(rows: list[dict]) -> str:
    """Best CoordTok (<= 1,280 tokens) vs every patch AE with >= 4x its tokens."""
    lines = []
    for ct in (r for r in rows if r["kind"] == "coordtok" and r["tokens"] <= 1280):
        for ae in (r for r in rows if r["kind"] == "patch_ae" and r["tokens"] >= 4 * ct["tokens"]):
            gap = ae["psnr_db"] - ct["psnr_db"]
            ok = "met" if gap <= 1.0 else "missed"
            lines.append(
                f"- {ct['model']} ({ct['tokens']} tokens) vs {ae['model']} ({ae['tokens']} tokens, "
                f"{ae['tokens'] / ct['tokens']:.1f}x): {ct['psnr_db']:.2f} vs {ae['psnr_db']:.2f} dB, gap {gap:+.2f} dB: "
                f"target (gap <= 1 dB) {ok}"
            )
    return "\n".join(lines) or "- no CoordTok / patch-AE pair with >= 4x tokens in this run"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per video (the paper: 128)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (the paper: 128)")
    parser.add_argument("--models", default="cpu", choices=["cpu", "paper"], help="model set, see the docstring")
    parser.add_argument("--only", default=None, help="comma list of model names of the set to run")
    parser.add_argument("--steps", type=int, default=300, help="training steps per model (equal for all)")
    parser.add_argument("--max-seconds", type=float, default=None, help="cap on one model's training time")
    parser.add_argument("--batch-size", type=int, default=2, help="videos per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--eval-videos", type=int, default=4, help="held-out videos reconstructed per model")
    parser.add_argument("--objects", type=int, nargs=2, default=[2, 5], help="objects per synthetic video (range)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and training videos")
    parser.add_argument("--workdir", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("trajtok").setLevel(logging.WARNING)
    models = model_sets(args.frames, args.size)[args.models]
    if args.only:
        wanted = [m.strip() for m in args.only.split(",") if m.strip()]
        unknown = sorted(set(wanted) - set(models))
        if unknown:
            parser.error(f"unknown models {unknown}; the {args.models} set has {sorted(models)}")
        models = {k: v for k, v in models.items() if k in wanted}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        rows = [run_one(name, cfg, args, workdir) for name, cfg in models.items()]
    print(f"\n### CoordTok vs patch autoencoder ({args.frames} frames at {args.size}x{args.size}, {args.steps} steps x "
          f"{args.batch_size} videos, {args.eval_videos} held-out videos)\n")  # fmt: skip
    table = [
        [r["model"], f"{r['tokens']:,}", r["channels"], f"{r['params_m']:.2f}", r["steps"], f"{r['train_s']:.0f}",
         f"{r['final_loss']:.5f}", f"{r['psnr_db']:.2f}"]
        for r in rows
    ]  # fmt: skip
    header = ["model", "tokens", "channels / token", "params M", "steps", "train s", "final train loss", "PSNR dB"]
    _common.print_table(header, table, "lrrrrrrr")
    print("\n" + verdict(rows))
    _common.write_json(args.json, {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
