"""python eval/bench/bench_trajvit2.py --quick --seed 0 --json runs/bench_trajvit2/results.json

TrajViT2 against ViT3D and TrajViT, and TrajAdapter against linear / attentive probes, on a synthetic world
generated from ``--seed`` (``trajtok synth``: videos with captions and exact trajectory labels):

0. Segmentation-only pretraining of the same tiny TrajTok (``objective=segmentation``, same steps): the
   pretrained segmenter of TrajAdapter and the starting point of ``trajvit2_segpre``.
1. Retrieval. Each video encoder is trained with the same ``trajtok train`` recipe (preset ``trajvit2_quick``:
   same steps, batch, schedule, transformer and text tower): ``trajvit2`` (TrajTok co-trained from scratch),
   ``trajvit2_segpre`` (TrajTok started from step 0's segmenter, then co-trained), ``vit3d`` (space-time patches),
   ``vit3d_2x`` (twice the steps: as many as trajvit2_segpre's pretraining + training), ``trajvit`` (one token per
   ground-truth trajectory). Evaluated on the held-out test split: text->video and
   video->text R@1/5/10 (each video's first caption), zero-shot object counting by text prompts, video tokens per
   clip, training time (``trajvit2_segpre``: with its pretraining) and inference time per video.
2. Probes. A classification task of the world (number of objects visible in the clip) on the frozen dense features
   of the trained ViT3D: linear probe, attentive probe, and TrajAdapter (step 0's segmenter, frozen; encoder and
   head trained by the probe's loss) with 1 / 2 / 4 tokens per trajectory.
3. Whether TrajViT2 trained the trajectory encoder (its tensors against the seed's initialisation).

Writes ``--json``: {"retrieval": [{"model", "r1_t2v", "r5_t2v", "r10_t2v", "r1_v2t", "r5_v2t", "r10_v2t",
"tokens_mean", "train_s", ...}], "probe": [{"probe", "tokens_per_trajectory", "accuracy", ...}]} (rows carry a few
more keys: zero-shot accuracy and its chance level, retrieval chance, inference time) and prints markdown tables.
``--quick`` sizes everything to fit in 15 minutes on a 2-core CPU; ``--work`` keeps the data and runs (reused when
present: delete the folder to retrain).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

# retrieval rows: name -> (video encoder, tokenizer initialised from the segmentation-pretrained run, step factor)
MODELS = {
    "trajvit2": ("trajtok", False, 1),
    "trajvit2_segpre": ("trajtok", True, 1),
    "vit3d": ("vit3d", False, 1),
    "vit3d_2x": ("vit3d", False, 2),  # as many optimizer steps as trajvit2_segpre's pretraining + training
    "trajvit": ("trajvit", False, 1),
}

SIZES = {
    # world: videos per split; frames / objects ranges; steps: CLIP training steps per model; probe_steps per probe
    "quick": dict(videos="train=160,val=8,test=48", frames=(8, 16), objects=(1, 5), steps=200, probe_steps=150),
    "full": dict(videos="train=800,val=32,test=128", frames=(8, 24), objects=(1, 6), steps=1500, probe_steps=600),
}
PROBE_BATCH = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small world and short training (fits in 15 min on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the models and the probes")
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--work", default=None, help="data + runs folder (default: beside --json)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--steps", type=int, default=None, help="override the CLIP training steps")
    p.add_argument("--probe-steps", type=int, default=None, help="override the probe training steps")
    return p.parse_args(argv)


def make_world(root: Path, size: dict, seed: int) -> Path:
    from trajtok.synth import write_dataset

    if not (root / "manifest.json").is_file():
        write_dataset(root, size["videos"], frames=size["frames"], size=64, objects=size["objects"], seed=seed)
    return root


def train_model(run: Path, overrides: list[str], data: Path, steps: int, seed: int, threads: int) -> tuple[Path, float]:
    """One ``trajtok train`` run of the ``trajvit2_quick`` recipe (reused when its folder is complete)."""
    from trajtok.training.train import latest_checkpoint, load_config, train

    done = run / "train_s.txt"
    if done.is_file() and latest_checkpoint(run) is not None:
        return latest_checkpoint(run), float(done.read_text())
    common = [f"data={data}", f"steps={steps}", f"seed={seed}", f"threads={threads}", "val_split=null"]
    cfg = load_config("trajvit2_quick", [*common, "save_every=null", *overrides])
    start = time.perf_counter()
    ckpt = train(cfg, run)
    elapsed = time.perf_counter() - start
    done.write_text(f"{elapsed}\n")
    return ckpt, elapsed


def encoder_change(ckpt: Path, seed: int) -> dict:
    """How far TrajViT2's trajectory encoder moved from the seed's initialisation (train() builds TrajTok first)."""
    import torch

    from trajtok.core.modeling import TrajTok

    trained = TrajTok.from_pretrained(ckpt)
    torch.manual_seed(seed)
    init = TrajTok(trained.config.replace(encoder_trained_by=None))
    a, b = trained.state_dict(), init.state_dict()
    keys = [k for k in a if k.startswith("encoder.")]
    changed = [k for k in keys if not torch.equal(a[k], b[k])]
    moved = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in keys) ** 0.5
    size = sum(float(b[k].double().pow(2).sum()) for k in keys) ** 0.5
    return {
        "encoder_tensors": len(keys),
        "encoder_tensors_changed": len(changed),
        "encoder_relative_change": moved / max(size, 1e-12),  # ||trained - init|| / ||init|| over all tensors
        "encoder_trained_by": trained.config.encoder_trained_by,
    }


def probe_data(vit3d, root: Path, split: str, clip_len: int, windows: int, seed: int):
    """Frozen ViT3D features, frames and labels (objects visible in the clip) of ``windows`` clips per video."""
    import numpy as np
    import torch

    from trajtok.adapter import ProbeData, vit3d_dense_features
    from trajtok.data import TrajectoryClipDataset

    data = TrajectoryClipDataset(root, split, clip_len=clip_len, size=vit3d.tok_cfg.image_size, train=False)
    rng = np.random.default_rng([seed, 7])
    pixels, labels = [], []
    for i, v in enumerate(data.videos):
        span = max(v.num_frames - clip_len, 0)
        starts = [span // 2] if windows == 1 else sorted(int(s) for s in rng.integers(span + 1, size=windows))
        for s in starts:
            clip = data.clip(i, s)
            pixels.append((clip["pixel_values"] * 255).round().to(torch.uint8))
            labels.append(int((torch.unique(clip["target_ids"]) > 0).sum()))
    pixels = torch.stack(pixels)  # (S, T, C, H, W)
    feats = torch.cat([vit3d_dense_features(vit3d, pixels[s : s + 64]) for s in range(0, len(pixels), 64)])
    return ProbeData(feats, pixels, torch.tensor(labels))


def run_probes(work: Path, vit3d_ckpt: Path, segmenter_ckpt: Path, steps: int, seed: int) -> list[dict]:
    import torch

    from trajtok.adapter import build_probe, fit_probe, probe_accuracy
    from trajtok.core.modeling import TrajTok
    from trajtok.trajvit2 import TrajViT2

    vit3d = TrajViT2.from_pretrained(vit3d_ckpt)
    for p in vit3d.parameters():
        p.requires_grad_(False)
    tokenizer = TrajTok.from_pretrained(segmenter_ckpt)
    data = work / "data"
    train = probe_data(vit3d, data, "train", 4, 2, seed)
    test = probe_data(vit3d, data, "test", 4, 3, seed)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    majority = float(torch.bincount(test.labels).max() / len(test.labels) * 100)
    dim = train.features.shape[-1]
    rows = []
    for kind, n in (("linear", 0), ("attentive", 0), ("trajadapter", 1), ("trajadapter", 2), ("trajadapter", 4)):
        torch.manual_seed(seed)
        probe = build_probe(kind, dim, num_classes, tokenizer=tokenizer, tokens_per_trajectory=max(n, 1))
        start = time.perf_counter()
        losses = fit_probe(probe, train, steps=steps, batch_size=PROBE_BATCH, seed=seed)
        elapsed = time.perf_counter() - start
        acc = probe_accuracy(probe, test)
        rows.append(
            {
                "probe": kind,
                "tokens_per_trajectory": n or None,
                "accuracy": acc["accuracy"],
                "tokens_mean": acc["tokens_mean"],
                "chance_majority": majority,
                "predicted_classes": acc["predicted_classes"],
                "test_classes": torch.bincount(test.labels, minlength=num_classes).tolist(),
                "train_s": elapsed,
                "final_loss": sum(losses[-10:]) / len(losses[-10:]),
                "train_clips": len(train.labels),
                "test_clips": len(test.labels),
            }
        )
        logging.info("probe %s n=%s: accuracy %.1f (majority %.1f)", kind, n, acc["accuracy"], majority)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    from trajtok.trajvit2 import TrajViT2, evaluate_clip

    torch.set_num_threads(args.threads)
    size = dict(SIZES["quick" if args.quick else "full"])
    steps = args.steps or size["steps"]
    probe_steps = args.probe_steps or size["probe_steps"]
    out = Path(args.json)
    work = Path(args.work) if args.work else out.parent / f"work_{'quick' if args.quick else 'full'}_seed{args.seed}"
    t0 = time.perf_counter()
    data = make_world(work / "data", size, args.seed)

    # segmentation-only pretraining of the same tiny TrajTok (same steps): the TrajAdapter's segmenter and the
    # starting point of trajvit2_segpre; the trajectory encoder is not run there (it stays at init)
    seg_overrides = ["objective=segmentation", "trajvit2=null", "focal_weight=1.0", "dice_weight=2.0"]
    seg_ckpt, seg_s = train_model(work / "run_segmentation", seg_overrides, data, steps, args.seed, args.threads)

    retrieval, ckpts = [], {}
    for name, (enc, segpre, factor) in MODELS.items():
        overrides = [f"trajvit2.video_encoder={enc}"] + ([f"trajvit2.init_tokenizer={seg_ckpt}"] if segpre else [])
        ckpt, train_s = train_model(work / f"run_{name}", overrides, data, steps * factor, args.seed, args.threads)
        ckpts[name] = ckpt
        model = TrajViT2.from_pretrained(ckpt)
        r = evaluate_clip(model, data, "test", clip_len=4)
        row = {"model": name, **{k: r[k] for k in ("r1_t2v", "r5_t2v", "r10_t2v", "r1_v2t", "r5_v2t")}}
        # train_s of trajvit2_segpre includes its segmentation pretraining
        row.update(r10_v2t=r["r10_v2t"], tokens_mean=r["tokens_mean"], train_s=train_s + (seg_s if segpre else 0.0))
        row.update(steps=steps * factor + (steps if segpre else 0))
        row.update(
            chance_r1=r["chance_r1"],
            zero_shot_count_accuracy=r["zero_shot_count_accuracy"],
            zero_shot_count_chance=r["zero_shot_count_chance"],
            infer_s_per_video=r["infer_s_per_video"],
            test_videos=r["videos"],
        )
        if enc == "trajtok" and not segpre:
            row.update(encoder_change(ckpt, args.seed))
        retrieval.append(row)
        logging.info("%s: %s", enc, row)

    probes = run_probes(work, ckpts["vit3d"], seg_ckpt, probe_steps, args.seed)
    result = {"retrieval": retrieval, "probe": probes}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result, time.perf_counter() - t0)
    return 0


def print_tables(result: dict, total_s: float) -> None:
    print(
        "| model | R@1 t2v | R@5 t2v | R@10 t2v | R@1 v2t | R@5 v2t | R@10 v2t | zero-shot count % | tokens | train s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["retrieval"]:
        print(
            f"| {r['model']} | {r['r1_t2v']:.1f} | {r['r5_t2v']:.1f} | {r['r10_t2v']:.1f} | {r['r1_v2t']:.1f} | "
            f"{r['r5_v2t']:.1f} | {r['r10_v2t']:.1f} | {r['zero_shot_count_accuracy']:.1f} | {r['tokens_mean']:.1f} | "
            f"{r['train_s']:.0f} |"
        )
    r0 = result["retrieval"][0]
    print(
        f"\nchance: R@1 {r0['chance_r1']:.1f} %, R@5 {5 * r0['chance_r1']:.1f} %, R@10 {10 * r0['chance_r1']:.1f} % "
        f"({r0['test_videos']} test videos); zero-shot count majority class {r0['zero_shot_count_chance']:.1f} %"
    )
    print("\n| probe | tokens / trajectory | accuracy % | tokens read | train s |")
    print("|---|---:|---:|---:|---:|")
    for p in result["probe"]:
        n = p["tokens_per_trajectory"] or "-"
        print(f"| {p['probe']} | {n} | {p['accuracy']:.1f} | {p['tokens_mean']:.1f} | {p['train_s']:.0f} |")
    print(f"\nprobe majority class {result['probe'][0]['chance_majority']:.1f} %; total {total_s:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
