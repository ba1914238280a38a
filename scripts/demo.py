"""The main job, end to end on small defaults: TrajTok vs patch pooling on the synthetic long-video world.

    make demo                       # = .venv/bin/python scripts/demo.py  (about 25 minutes on 2 CPU cores)
    python scripts/demo.py --preset large --out runs/demo-large

Steps (each is skipped when its output already exists, so an interrupted run continues where it stopped):
  1. generate the synthetic world (train / val / test) and draw one test video's ground-truth trajectories;
  2. pretrain TrajTok on the ground-truth trajectories and evaluate it on the test split (mIoU, association);
  3. build a tiny LLaVA-OneVision base in code (SigLIP tower, Qwen2 LLM, tokenizer trained on the world's text);
  4. train TrajVLM with the `trajtok` connector and the same base with `pool` on the world's QA;
  5. evaluate both through lmms-eval on the held-out split (plus `pool` at a matched token budget and `trajtok`
     at several frame counts), time the prefill, and write results.json, report.md, a plot and one chat answer.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

PRESETS: dict[str, dict] = {
    # about 25 minutes on 2 CPU cores
    "small": {
        "synth": ["--num-videos", "train=160,val=8,test=32", "--frames", "32-96", "--size", "64", "--objects", "2-6"],
        # the quickstart preset shortened to fit the demo's budget: 64 px, 8-frame clips, 300 steps
        "tokenizer_overrides": [
            "steps=300",
            "clip_len=8",
            "lr=2.0e-3",
            "multires=false",
            "model.image_size=64",
            "model.clip_len=8",
        ],
        "vlm_overrides": ["max_steps=60"],
        "frames": 32,
        "trajtok_sweep": [16, 64],
    },
    # a few hours on CPU; minutes on a GPU
    "large": {
        "synth": [
            "--num-videos",
            "train=800,val=32,test=200",
            "--frames",
            "64-512",
            "--size",
            "64",
            "--objects",
            "2-10",
        ],
        "tokenizer_overrides": ["steps=2000"],
        "vlm_overrides": ["max_steps=600"],
        "frames": 64,
        "trajtok_sweep": [16, 32, 128],
    },
}
QTYPES = ("count", "order", "exit_side", "attribute", "collision", "first_event", "event_count", "change")


class StageFailed(Exception):
    """A stage of the demo failed; the message is the one line the user reads."""


LOG_DIR: Path = ROOT / "runs" / "demo" / "logs"  # set in main() to <out>/logs
# lmms-eval 0.7.3 logs evaluation errors and still exits 0: these lines in its log mean the stage failed
LMMS_EVAL_ERRORS = ("Traceback (most recent call last)", "Error during evaluation")


def step(name: str, done: Path, cmd: list[str], env: dict | None = None, *, error_markers: tuple = ()) -> None:
    """Run one stage unless its output exists; its output goes to the console and to ``<out>/logs/<stage>.log``.

    A stage fails on a non-zero exit, on a line of ``error_markers`` in its output (for tools that exit 0 on
    errors), or when it did not write ``done``; the demo then stops with one line naming the stage, the exit status
    and the log, and a rerun continues from this stage.
    """
    if done.exists():
        print(f"[demo] {name}: already done ({done})", flush=True)
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / ("".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") + ".log")
    print(f"[demo] {name}: {shlex.join(cmd)}  (log: {log})", flush=True)
    t0 = time.time()
    marker = None
    with open(log, "w") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
            if marker is None and any(m in line for m in error_markers):
                marker = line.strip()
        code = proc.wait()
    if code != 0:
        raise StageFailed(f"stage '{name}' failed with exit status {code}; read {log}")
    if marker is not None:
        raise StageFailed(f"stage '{name}' exited 0 but logged an error ({marker[:120]}); read {log}")
    if not done.exists() and done.name != "done":
        raise StageFailed(f"stage '{name}' exited 0 but wrote no {done}; read {log}")
    print(f"[demo] {name}: {time.time() - t0:.0f} s", flush=True)


def latest_checkpoint(run: Path) -> Path:
    """Newest `step_*` folder of a `trajtok train` run."""
    steps = sorted(run.glob("step_*")) or sorted(run.glob("checkpoints/step_*"))
    if not steps:
        raise StageFailed(f"no checkpoint in {run}; delete {run} and rerun to train again")
    return steps[-1]


def lmms_eval(name: str, out: Path, data: Path, model: Path, num_frames: int) -> dict:
    """One evaluation through the real lmms-eval CLI; returns its task metrics."""
    run_dir = out / "eval" / name
    args = f"pretrained={model},num_frames={num_frames},batch_size=8,failures_path={run_dir / 'failed.jsonl'}"
    cmd = [
        PY,
        "-m",
        "lmms_eval",
        "--model",
        "trajvlm",
        "--model_args",
        args,
        "--tasks",
        "trajworld",
        "--include_path",
        str(ROOT / "eval" / "tasks"),
        "--output_path",
        str(run_dir),
        "--batch_size",
        "8",
    ]
    env = {"TRAJWORLD_DIR": str(data), "TRAJWORLD_SPLIT": "test"}
    step(f"evaluate {name}", run_dir / "done", cmd, env=env, error_markers=LMMS_EVAL_ERRORS)
    results = sorted(run_dir.rglob("*_results.json"))
    if not results:
        raise StageFailed(f"stage 'evaluate {name}': lmms-eval wrote no results under {run_dir}; read {LOG_DIR}")
    (run_dir / "done").touch()
    metrics = json.loads(results[-1].read_text())["results"]["trajworld"]
    return {k.split(",")[0]: v for k, v in metrics.items() if not k.endswith("_stderr,none") and k != "alias"}


def measure(model: Path, video: Path, num_frames: int) -> dict:
    """Visual tokens, LLM prefill time and peak memory of one prompt, in a fresh process (clean peak RSS)."""
    code = MEASURE.format(model=str(model), video=str(video), num_frames=num_frames)
    proc = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"measure-{model.name}-{num_frames}f.log"
        log.write_text(proc.stdout + proc.stderr)
        raise StageFailed(
            f"stage 'measure {model.name} at {num_frames} frames' failed with exit {proc.returncode}; read {log}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Runs in a subprocess: the LLM prefill is timed by hooks on the language model inside a real forward.
MEASURE = """
import json, resource, statistics, time, torch
from trajvlm.inference import load_model
torch.set_num_threads(2)
model, processor = load_model({model!r}, num_frames={num_frames})
video = processor.load_video({video!r})
messages = [{{"role": "user", "content": [{{"type": "video"}}, {{"type": "text", "text": "What happened first?"}}]}}]
prompt = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
inputs = processor(text=[prompt], videos=[video], return_tensors="pt")
llm, times, t0 = model.model.language_model, [], [0.0]
llm.register_forward_pre_hook(lambda m, a, k: t0.__setitem__(0, time.perf_counter()), with_kwargs=True)
llm.register_forward_hook(lambda m, a, o: times.append(time.perf_counter() - t0[0]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
e2e = []
with torch.inference_mode():
    for _ in range(4):
        t = time.perf_counter(); model(**inputs, use_cache=True, logits_to_keep=1); e2e.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"visual_tokens": int(sum(model.last_visual_token_counts)),
                  "prefill_ms": 1000 * statistics.median(times[1:]), "ttft_ms": 1000 * statistics.median(e2e[1:]),
                  "peak_mb": peak / 1024}}))
"""


def table(rows: list[dict]) -> str:
    head = (
        ["connector", "frames", "visual tokens / video", "accuracy %"]
        + [q for q in QTYPES]
        + ["failed", "prefill ms", "TTFT ms", "peak MB"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r["metrics"]
        cells = [r["label"], str(r["frames"]), f"{r['visual_tokens']:.0f}", f"{m.get('accuracy', float('nan')):.1f}"]
        cells += [f"{m.get('acc_' + q, float('nan')):.0f}" for q in QTYPES]
        cells += [f"{m.get('failed', 0):.0f}", f"{r['prefill_ms']:.1f}", f"{r['ttft_ms']:.1f}", f"{r['peak_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[demo] matplotlib missing: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for conn, marker in (("trajtok", "o"), ("pool", "s")):
        pts = sorted(
            (r["visual_tokens"], r["metrics"].get("accuracy", 0.0), r["frames"]) for r in rows if r["connector"] == conn
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=conn)
            for x, y, f in pts:
                ax.annotate(f"{f}f", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("visual tokens per video (log)")
    ax.set_ylabel("accuracy on held-out QA (%)")
    ax.axhline(25, ls=":", c="grey", lw=1)
    ax.legend()
    ax.set_title("TrajTok vs patch pooling (synthetic long-video QA)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; a failed stage prints one line (a traceback only with -v) and exits 1."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv or "--verbose" in argv
    try:
        return run(argv)
    except StageFailed as exc:
        print(f"[demo] error: {exc}; rerun the same command to continue from this stage", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the demo's own bug or environment problem: one line, -v for more
        if verbose:
            raise
        print(f"[demo] error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)", file=sys.stderr)
        return 1


def run(argv: list[str]) -> int:
    global LOG_DIR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="tracebacks of the demo's own errors")
    args = ap.parse_args(argv)
    p = PRESETS[args.preset]
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    LOG_DIR = out / "logs"
    data, frames = out / "data", p["frames"]
    t_start = time.time()

    # 1. the synthetic world, and one test video's ground truth drawn
    step(
        "synthetic world",
        data / "manifest.json",
        [PY, "-m", "trajtok.cli", "synth", "--out", str(data), *p["synth"], "--seed", str(args.seed), "--workers", "2"],
    )
    test_video = sorted((data / "test").glob("*.mp4"))[0]
    step(
        "ground-truth overlay",
        out / "gt_trajectories.png",
        [
            PY,
            "-m",
            "trajtok.cli",
            "viz",
            "--video",
            str(test_video),
            "--labels",
            str(test_video.with_suffix(".npz")),
            "--out",
            str(out / "gt_trajectories.png"),
        ],
    )

    # 2. pretrain TrajTok on the ground-truth trajectories; evaluate on the test split
    tok_run = out / "tokenizer"
    step(
        "pretrain TrajTok",
        tok_run / "done",
        [
            PY,
            "-m",
            "trajtok.cli",
            "train",
            "--config",
            "quickstart",
            "--out",
            str(tok_run),
            f"data={data}",
            f"seed={args.seed}",
            *p["tokenizer_overrides"],
            *(["--resume"] if tok_run.exists() else []),
        ],
    )
    (tok_run / "done").touch()
    tok_ckpt = latest_checkpoint(tok_run)
    step(
        "evaluate TrajTok",
        out / "tokenizer_eval.json",
        [
            PY,
            "-m",
            "trajtok.cli",
            "eval",
            "--checkpoint",
            str(tok_ckpt),
            "--data",
            str(data),
            "--split",
            "test",
            "--json",
            str(out / "tokenizer_eval.json"),
        ],
    )
    step(
        "predicted trajectories",
        out / "pred_trajectories.gif",
        [
            PY,
            "-m",
            "trajtok.cli",
            "tokenize",
            str(test_video),
            "--checkpoint",
            str(tok_ckpt),
            "--viz",
            str(out / "pred_trajectories.gif"),
        ],
    )

    # 3. a tiny LLaVA-OneVision base built in code, loaded later through from_pretrained like a real checkpoint
    base = out / "base"
    step(
        "tiny base",
        base / "config.json",
        [
            PY,
            "-m",
            "trajvlm.cli",
            "build-base",
            "--out",
            str(base),
            "--vocab-from",
            str(data),
            "--num-frames",
            str(frames),
            "--seed",
            str(args.seed),
        ],
    )

    # 4. the same recipe with the two connectors
    common = [
        f"base_model={base}",
        f"train_json={data / 'train' / 'qa.json'}",
        f"video_root={data / 'train'}",
        f"num_frames={frames}",
        f"seed={args.seed}",
        *p["vlm_overrides"],
    ]
    models = {}
    for conn, preset, extra in (
        ("trajtok", "demo_trajtok.yaml", [f"trajtok={tok_ckpt}"]),
        ("pool", "demo_pool.yaml", []),
    ):
        run = out / f"vlm-{conn}-run"
        step(
            f"train TrajVLM ({conn})",
            run / "final" / "config.json",
            [
                PY,
                "-m",
                "trajvlm.cli",
                "train",
                "--config",
                str(ROOT / "trajvlm" / "presets" / preset),
                f"output_dir={run}",
                *common,
                *extra,
                *(["--resume"] if run.exists() else []),
            ],
        )
        models[conn] = out / f"vlm-{conn}"
        if not models[conn].exists():
            models[conn].symlink_to(run / "final", target_is_directory=True)

    # 5. evaluation through lmms-eval: both at the training frame count, pool at trajtok's token budget,
    #    trajtok at other frame counts
    rows = []

    def evaluate(label: str, conn: str, n: int) -> dict:
        cost = measure(models[conn], test_video, n)
        row = {
            "label": label,
            "connector": conn,
            "frames": n,
            **cost,
            "metrics": lmms_eval(f"{conn}-{n}f", out, data, models[conn], n),
        }
        rows.append(row)
        return row

    traj = evaluate("trajtok", "trajtok", frames)
    pool = evaluate("pool (2x2 bilinear)", "pool", frames)
    per_frame = pool["visual_tokens"] / frames
    matched = max(1, round(traj["visual_tokens"] / per_frame))
    if matched != frames:
        evaluate("pool, matched budget", "pool", matched)
    for n in p["trajtok_sweep"]:
        evaluate("trajtok", "trajtok", n)

    # 6. one chat answer on a test video
    chat = subprocess.run(
        [
            PY,
            "-m",
            "trajvlm.cli",
            "chat",
            "--model",
            str(models["trajtok"]),
            "--video",
            str(test_video),
            "--prompt",
            "How many different objects appear in the video?",
            "--max-new-tokens",
            "16",
            "--viz",
            str(out / "chat_trajectories.gif"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    (out / "chat.txt").write_text(chat.stdout + chat.stderr[-2000:])

    tok_eval = json.loads((out / "tokenizer_eval.json").read_text())
    results = {
        "preset": args.preset,
        "tokenizer": {k: tok_eval.get(k) for k in ("miou", "association", "tokens_mean", "gt_objects_mean")},
        "rows": rows,
        "chat": chat.stdout.strip().splitlines()[-3:],
        "minutes": (time.time() - t_start) / 60,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, out / "accuracy_vs_tokens.png")
    report = [
        "# TrajVLM demo report",
        "",
        f"TrajTok pretraining, test split: space-time mIoU {tok_eval.get('miou', float('nan')):.3f}, "
        f"association {tok_eval.get('association', float('nan')):.3f}, "
        f"{tok_eval.get('tokens_mean', float('nan')):.1f} tokens per video for "
        f"{tok_eval.get('gt_objects_mean', float('nan')):.1f} ground-truth objects.",
        "",
        "Held-out long-video QA (4 options, chance 25 %), evaluated through lmms-eval:",
        "",
        table(rows),
        "",
        "Chat on " + test_video.name + ":",
        "",
        "```",
        chat.stdout.strip(),
        "```",
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    print(f"[demo] done in {(time.time() - t_start) / 60:.1f} min; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
