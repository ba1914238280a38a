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
2. Probes. A classification task of the world (number of objects visible in a 4-frame clip: 1 = at most one, 2, 3,
   ...) on the frozen dense features of the trained ViT3D: linear probe, attentive probe, and TrajAdapter (step 0's
   segmenter, frozen; encoder and head trained by the probe's loss) with 1 / 2 / 4 tokens per trajectory. Each is
   trained with class-balanced cross-entropy at ``PROBE_LRS``; the learning rate, the step and TrajAdapter's tokens
   per trajectory are chosen on a validation split (the world's val videos 0..probe_val-1, written to
   ``probe_val/``) and only the chosen states are scored on the test split: balanced accuracy (chance 1 / classes)
   and accuracy against three chance levels (test majority, training majority, stratified), and TrajAdapter minus
   the attentive probe with an interval from resampling test videos.
3. Whether TrajViT2 trained the trajectory encoder (its tensors against the seed's initialisation).

Writes ``--json``: {"seed", "retrieval": [{"model", "r1_t2v", "r5_t2v", "r10_t2v", "r1_v2t", "r5_v2t", "r10_v2t",
"tokens_mean", "train_s", ...}], "probe": [{"probe", "tokens_per_trajectory", "lr", "step", "val_balanced_accuracy",
"balanced_accuracy", "accuracy", ...}], "probe_info": {"chance", "classes", "trajadapter_minus_attentive", ...}}; with
``--seeds`` several of them under "runs" plus a "summary" (mean, sd, min, max over seeds). Prints markdown tables;
``--report FILES`` prints those of saved files, pooled. ``--probes-only`` trains only the segmenter and ViT3D.
``--quick`` is the small world and short training (one ``--probes-only`` seed: about 30-35 minutes on a shared
2-core CPU); ``--work`` keeps the data and runs (reused when present: delete the folder to retrain).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))  # demo_stats: the clustered bootstrap

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
    # (and learning rate) run; probe_val: videos of the probes' validation split (the world's val videos 0..n-1)
    "quick": dict(
        videos="train=160,val=8,test=48", frames=(8, 16), objects=(1, 5), steps=200, probe_steps=150, probe_val=32
    ),
    "full": dict(
        videos="train=800,val=32,test=128", frames=(8, 24), objects=(1, 6), steps=1500, probe_steps=600, probe_val=64
    ),
}
PROBE_BATCH = 16
PROBE_LRS = (1e-3, 3e-3)  # each probe is trained at both; the validation split picks the learning rate and the step
PROBE_EVERY = 25  # validation every this many probe steps
PROBE_WINDOWS = {"train": 4, "val": 3, "test": 3}  # 4-frame clips drawn per video
PROBES = (("linear", 0), ("attentive", 0), ("trajadapter", 1), ("trajadapter", 2), ("trajadapter", 4))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small world and short training")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the models and the probes")
    p.add_argument("--seeds", default=None, help="several seeds, comma list (overrides --seed): mean and spread")
    p.add_argument("--report", nargs="+", default=None, help="only print the tables of these --json files, pooled")
    p.add_argument("--json", default=None, help="write the results here (required unless --report)")
    p.add_argument("--work", default=None, help="data + runs folder (default: beside --json)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--steps", type=int, default=None, help="override the CLIP training steps")
    p.add_argument("--probe-steps", type=int, default=None, help="override the probe training steps")
    p.add_argument("--probes-only", action="store_true", help="train only what the probes read (segmenter, ViT3D)")
    p.add_argument("--no-probes", action="store_true", help="retrieval only (skip the probes)")
    args = p.parse_args(argv)
    if args.report is None and args.json is None:
        p.error("--json is required (or --report FILES to print saved results)")
    try:
        args.seeds = [int(v) for v in args.seeds.split(",") if v.strip()] if args.seeds else [args.seed]
    except ValueError:
        p.error(f"--seeds must be a comma list of integers, got {args.seeds!r}")
    if not args.seeds:
        p.error("--seeds names no seed")
    return args


def make_world(root: Path, size: dict, seed: int) -> Path:
    from trajtok.synth import write_dataset

    if not (root / "manifest.json").is_file():
        write_dataset(root, size["videos"], frames=size["frames"], size=64, objects=size["objects"], seed=seed)
    return root


def train_model(run: Path, overrides: list[str], data: Path, steps: int, seed: int, threads: int) -> tuple[Path, float]:
    """One ``trajtok train`` run of the ``trajvit2_quick`` recipe (reused when its folder is complete)."""
    from trajtok.io.checkpoints import latest_checkpoint
    from trajtok.training.train import load_config, train

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
    pixels, labels, videos = [], [], []
    for i, v in enumerate(data.videos):
        span = max(v.num_frames - clip_len, 0)
        starts = [span // 2] if windows == 1 else sorted(int(s) for s in rng.integers(span + 1, size=windows))
        for s in starts:
            clip = data.clip(i, s)
            pixels.append((clip["pixel_values"] * 255).round().to(torch.uint8))
            # classes: 1 (at most one object visible: no object at all is too rare to score), 2, 3, ...
            labels.append(max(int((torch.unique(clip["target_ids"]) > 0).sum()), 1))
            videos.append(i)
    pixels = torch.stack(pixels)  # (S, T, C, H, W)
    feats = torch.cat([vit3d_dense_features(vit3d, pixels[s : s + 64]) for s in range(0, len(pixels), 64)])
    return ProbeData(feats, pixels, torch.tensor(labels), torch.tensor(videos))


def run_probes(
    work: Path, vit3d_ckpt: Path, segmenter_ckpt: Path, size: dict, steps: int, seed: int
) -> tuple[list[dict], dict]:
    """Every probe chosen on the validation split (learning rate, step; TrajAdapter also its tokens per
    trajectory), scored once on the test split; (rows, {chance levels, class counts, the paired difference})."""
    import torch

    from trajtok.adapter import build_probe, chance_levels, class_weights, probe_accuracy, select_probe
    from trajtok.core.modeling import TrajTok
    from trajtok.synth import write_dataset
    from trajtok.trajvit2 import TrajViT2

    vit3d = TrajViT2.from_pretrained(vit3d_ckpt)
    for p in vit3d.parameters():
        p.requires_grad_(False)
    tokenizer = TrajTok.from_pretrained(segmenter_ckpt)
    data = work / "data"
    # the probes' validation split: the world's val videos 0..probe_val-1 (a video's seed depends only on the
    # world's seed, its split and its index, so the first ones are the world's own val videos)
    val_root = work / "probe_val"
    if not (val_root / "manifest.json").is_file():
        w = size_of_world(data)
        write_dataset(
            val_root,
            f"train=0,val={size['probe_val']},test=0",
            frames=w["frames"],
            size=64,
            objects=w["objects"],
            seed=w["seed"],
        )
    clip_len = 4
    train = probe_data(vit3d, data, "train", clip_len, PROBE_WINDOWS["train"], seed)
    val = probe_data(vit3d, val_root, "val", clip_len, PROBE_WINDOWS["val"], seed)
    test = probe_data(vit3d, data, "test", clip_len, PROBE_WINDOWS["test"], seed)
    num_classes = int(max(train.labels.max(), val.labels.max(), test.labels.max())) + 1
    weight = class_weights(train.labels, num_classes)
    chance = chance_levels(train.labels, test.labels)
    dim = train.features.shape[-1]
    rows, correct = [], {}
    for kind, n in PROBES:

        def build(kind: str = kind, n: int = n):
            return build_probe(kind, dim, num_classes, tokenizer=tokenizer, tokens_per_trajectory=max(n, 1))

        start = time.perf_counter()
        probe, chosen = select_probe(
            build,
            train,
            val,
            lrs=PROBE_LRS,
            steps=steps,
            every=PROBE_EVERY,
            batch_size=PROBE_BATCH,
            seed=seed,
            class_weight=weight,
        )
        elapsed = time.perf_counter() - start
        acc = probe_accuracy(probe, test)
        name = kind if not n else f"{kind}_n{n}"
        correct[name] = acc["correct"]
        rows.append(
            {
                "probe": kind,
                "tokens_per_trajectory": n or None,
                "lr": chosen["lr"],
                "step": chosen["step"],
                "val_balanced_accuracy": chosen["val_balanced_accuracy"],
                "balanced_accuracy": acc["balanced_accuracy"],
                "accuracy": acc["accuracy"],
                "tokens_mean": acc["tokens_mean"],
                "predicted_classes": acc["predicted_classes"],
                "train_s": elapsed,
                "final_loss": chosen.get("final_loss"),
            }
        )
        logging.info(
            "probe %s: balanced accuracy %.1f (chance %.1f), accuracy %.1f (test majority %.1f), chosen %s",
            name,
            acc["balanced_accuracy"],
            chance["balanced"],
            acc["accuracy"],
            chance["majority"],
            {k: chosen[k] for k in ("lr", "step", "val_balanced_accuracy")},
        )
    # TrajAdapter: the tokens per trajectory the validation split prefers (ties: fewer tokens)
    adapters = [r for r in rows if r["probe"] == "trajadapter"]
    best = max(adapters, key=lambda r: (r["val_balanced_accuracy"], -r["tokens_per_trajectory"]))
    best_name = f"trajadapter_n{best['tokens_per_trajectory']}"
    info = {
        "chance": chance,
        "classes": {
            split: torch.bincount(d.labels, minlength=num_classes).tolist()
            for split, d in (("train", train), ("val", val), ("test", test))
        },
        "clips": {"train": len(train.labels), "val": len(val.labels), "test": len(test.labels)},
        "videos": {
            "train": int(train.videos.max()) + 1,
            "val": int(val.videos.max()) + 1,
            "test": int(test.videos.max()) + 1,
        },
        "trajadapter_chosen": best["tokens_per_trajectory"],
        "trajadapter_minus_attentive": paired_difference(correct[best_name], correct["attentive"], test.videos, seed),
    }
    return rows, info


def size_of_world(root: Path) -> dict:
    """The generator settings a synthetic world's manifest records (frames, objects, seed)."""
    gen = json.loads((root / "manifest.json").read_text())["generator"]
    return {"frames": tuple(gen["frames"]), "objects": tuple(gen["objects"]), "seed": int(gen["seed"])}


def paired_difference(a: list[bool], b: list[bool], videos, seed: int) -> dict:
    """Accuracy of ``a`` minus ``b`` (points) on the same test clips, with a 95 % interval from resampling test
    videos (clips of one video move together)."""
    from demo_stats import clustered_difference

    ids = [str(i) for i in range(len(a))]
    vids = [str(int(v)) for v in videos]
    first = [{"id": i, "video": v, "correct": c} for i, v, c in zip(ids, vids, a, strict=True)]
    second = [{"id": i, "video": v, "correct": c} for i, v, c in zip(ids, vids, b, strict=True)]
    return clustered_difference(first, second, seed=seed)


def run_seed(args: argparse.Namespace, size: dict, seed: int) -> dict:
    """Every model and probe of one seed's world: {"seed", "retrieval": [rows], "probe": [rows], "probe_info"}."""
    from trajtok.trajvit2 import TrajViT2, evaluate_clip

    steps = args.steps or size["steps"]
    probe_steps = args.probe_steps or size["probe_steps"]
    name = "quick" if args.quick else "full"
    work = Path(args.work) / f"seed{seed}" if args.work else Path(args.json).parent / f"work_{name}_seed{seed}"
    data = make_world(work / "data", size, seed)

    # segmentation-only pretraining of the same tiny TrajTok (same steps): the TrajAdapter's segmenter and the
    # starting point of trajvit2_segpre; the trajectory encoder is not run there (it stays at init)
    seg_overrides = ["objective=segmentation", "trajvit2=null", "focal_weight=1.0", "dice_weight=2.0"]
    seg_ckpt, seg_s = train_model(work / "run_segmentation", seg_overrides, data, steps, seed, args.threads)

    retrieval, ckpts = [], {}
    for model_name, (enc, segpre, factor) in MODELS.items():
        if args.probes_only and model_name != "vit3d":
            continue
        overrides = [f"trajvit2.video_encoder={enc}"] + ([f"trajvit2.init_tokenizer={seg_ckpt}"] if segpre else [])
        ckpt, train_s = train_model(work / f"run_{model_name}", overrides, data, steps * factor, seed, args.threads)
        ckpts[model_name] = ckpt
        model = TrajViT2.from_pretrained(ckpt)
        r = evaluate_clip(model, data, "test", clip_len=4)
        row = {"model": model_name, **{k: r[k] for k in ("r1_t2v", "r5_t2v", "r10_t2v", "r1_v2t", "r5_v2t")}}
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
            row.update(encoder_change(ckpt, seed))
        retrieval.append(row)
        logging.info("%s: %s", enc, row)

    if args.no_probes:
        return {"seed": seed, "retrieval": retrieval, "probe": []}
    probes, info = run_probes(work, ckpts["vit3d"], seg_ckpt, size, probe_steps, seed)
    return {"seed": seed, "retrieval": retrieval, "probe": probes, "probe_info": info}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        runs = [r for path in args.report for r in load_runs(Path(path))]
        for run in runs:
            print_tables(run)
        print_summary(runs)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    size = dict(SIZES["quick" if args.quick else "full"])
    out = Path(args.json)
    t0 = time.perf_counter()
    runs = [run_seed(args, size, seed) for seed in args.seeds]
    result = runs[0] if len(runs) == 1 else {"runs": runs, "summary": summarize(runs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        print_tables(run)
    print_summary(runs)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


def load_runs(path: Path) -> list[dict]:
    """The per-seed results in a --json file (one seed, or several under "runs")."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--report {path}: cannot read a results file ({e})") from None
    runs = saved.get("runs", [saved]) if isinstance(saved, dict) else None
    if not runs or not all(isinstance(r, dict) and "probe" in r and "retrieval" in r for r in runs):
        raise SystemExit(f"--report {path}: not a bench_trajvit2 results file (no 'probe' / 'retrieval' rows)")
    return runs


def _spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values), "n": len(values)}


def probe_name(row: dict) -> str:
    n = row.get("tokens_per_trajectory")
    return row["probe"] if not n else f"{row['probe']}_n{n}"


def summarize(runs: list[dict]) -> dict:
    """Mean and spread over seeds: each probe's balanced accuracy and accuracy, the chance levels, TrajAdapter (its
    tokens per trajectory chosen on val) minus attentive, and each retrieval model's R@5."""
    out: dict = {"seeds": [r.get("seed") for r in runs], "probe": {}, "chance": {}, "retrieval": {}}
    probed = [r for r in runs if "probe_info" in r]  # probes from before the validation protocol are left out
    for name in dict.fromkeys(probe_name(p) for r in probed for p in r["probe"]):
        rows = [p for r in probed for p in r["probe"] if probe_name(p) == name]
        out["probe"][name] = {
            "balanced_accuracy": _spread([p["balanced_accuracy"] for p in rows]),
            "accuracy": _spread([p["accuracy"] for p in rows]),
        }
    if probed:
        for key in probed[0]["probe_info"]["chance"]:
            out["chance"][key] = _spread([r["probe_info"]["chance"][key] for r in probed])
        chosen = []
        for r in probed:
            n = r["probe_info"]["trajadapter_chosen"]
            chosen += [p for p in r["probe"] if probe_name(p) == f"trajadapter_n{n}"]
        out["probe"]["trajadapter_chosen_on_val"] = {
            "balanced_accuracy": _spread([p["balanced_accuracy"] for p in chosen]),
            "accuracy": _spread([p["accuracy"] for p in chosen]),
        }
        out["trajadapter_minus_attentive_accuracy"] = _spread(
            [r["probe_info"]["trajadapter_minus_attentive"]["diff"] for r in probed]
        )
    for name in dict.fromkeys(m["model"] for r in runs for m in r["retrieval"]):
        rows = [m for r in runs for m in r["retrieval"] if m["model"] == name]
        out["retrieval"][name] = {k: _spread([m[k] for m in rows]) for k in ("r5_t2v", "r5_v2t", "tokens_mean")}
    return out


def print_tables(run: dict) -> None:
    print(f"\n### seed {run.get('seed')}\n")
    if run["retrieval"]:
        print(
            "| model | R@1 t2v | R@5 t2v | R@10 t2v | R@1 v2t | R@5 v2t | R@10 v2t | zero-shot count % | tokens "
            "| train s |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in run["retrieval"]:
            print(
                f"| {r['model']} | {r['r1_t2v']:.1f} | {r['r5_t2v']:.1f} | {r['r10_t2v']:.1f} | {r['r1_v2t']:.1f} | "
                f"{r['r5_v2t']:.1f} | {r['r10_v2t']:.1f} | {r['zero_shot_count_accuracy']:.1f} | "
                f"{r['tokens_mean']:.1f} | {r['train_s']:.0f} |"
            )
        r0 = run["retrieval"][0]
        print(
            f"\nchance: R@1 {r0['chance_r1']:.1f} %, R@5 {5 * r0['chance_r1']:.1f} %, R@10 "
            f"{10 * r0['chance_r1']:.1f} % ({r0['test_videos']} test videos); zero-shot count majority class "
            f"{r0['zero_shot_count_chance']:.1f} %"
        )
    info = run.get("probe_info")
    if info is None:  # a results file from before the validation protocol
        print("\n| probe | tokens / trajectory | accuracy % |\n|---|---:|---:|")
        for p in run["probe"]:
            print(f"| {p['probe']} | {p['tokens_per_trajectory'] or '-'} | {p['accuracy']:.1f} |")
        return
    print("\n| probe | tokens / trajectory | lr | step | val balanced % | test balanced % | test accuracy % | tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in run["probe"]:
        print(
            f"| {p['probe']} | {p['tokens_per_trajectory'] or '-'} | {p['lr']:g} | {p['step']} | "
            f"{p['val_balanced_accuracy']:.1f} | {p['balanced_accuracy']:.1f} | {p['accuracy']:.1f} | "
            f"{p['tokens_mean']:.1f} |"
        )
    c, d = info["chance"], info["trajadapter_minus_attentive"]
    print(
        f"\nchance on test: balanced {c['balanced']:.1f} %; accuracy: test majority {c['majority']:.1f} %, train "
        f"majority {c['train_majority']:.1f} %, stratified {c['stratified']:.1f} %. Clips per class: train "
        f"{info['classes']['train']}, val {info['classes']['val']}, test {info['classes']['test']}; videos "
        f"{info['videos']}"
    )
    print(
        f"TrajAdapter (n = {info['trajadapter_chosen']}, chosen on val) - attentive, test accuracy: {d['diff']:+.1f} "
        f"points [{d['lo']:+.1f}, {d['hi']:+.1f}] (95 %, resampling {d['videos']} test videos)"
    )


def print_summary(runs: list[dict]) -> None:
    if len(runs) < 2:
        return
    s = summarize(runs)

    def fmt(v: dict) -> str:
        return f"{v['mean']:.1f} ± {v['sd']:.1f} ({v['min']:.1f}-{v['max']:.1f})"

    print(f"\n### mean ± sd (min-max) over seeds {s['seeds']}\n")
    if s["probe"]:
        print("| probe | test balanced % | test accuracy % |\n|---|---:|---:|")
        for name, v in s["probe"].items():
            print(f"| {name} | {fmt(v['balanced_accuracy'])} | {fmt(v['accuracy'])} |")
        for key, v in s["chance"].items():
            print(
                f"| chance: {key} | {fmt(v) if key == 'balanced' else '-'} | {fmt(v) if key != 'balanced' else '-'} |"
            )
        d = s["trajadapter_minus_attentive_accuracy"]
        print(f"\nTrajAdapter (chosen on val) - attentive, test accuracy points: {fmt(d)}")
    if s["retrieval"]:
        print("\n| model | R@5 t2v | R@5 v2t | tokens |\n|---|---:|---:|---:|")
        for name, v in s["retrieval"].items():
            print(f"| {name} | {fmt(v['r5_t2v'])} | {fmt(v['r5_v2t'])} | {fmt(v['tokens_mean'])} |")


if __name__ == "__main__":
    sys.exit(main())
