"""The main job, end to end: long-video QA with TrajTok against patch pooling, each model trained at its budget.

    make demo                                            # = python scripts/demo.py  (preset small, 2 CPU cores)
    python scripts/demo.py --preset smoke --out runs/demo-smoke     # every stage in miniature (minutes)
    python scripts/demo.py --preset sweep --out runs/demo-sweep     # every budget (hours)
    python scripts/demo.py --connectors trajtok,pool --seed 1 --out runs/demo-seed1

Presets are YAML files (scripts/presets/demo_<name>.yaml, fields in scripts/demo_config.py). Stages, each skipped when
its output exists (an interrupted run continues where it stopped; a failed stage prints one line):
  1. the world: `trajtok synth` train / val / test (the long world by default: hundreds of frames per video,
     questions about the whole video);
  2. the vision tower pretrained on frames + captions (SigLIP sigmoid loss + word detectors), with an llm;
  3. the base (the LLM + the tower as a llava-hf checkpoint) beside each TrajTok pretraining (evaluated on val);
  4. for every model of the preset (connector, frames, pool stride): stage 0 warm-up, stage 1 align, stage 2 LoRA,
     all at the model's own frames on the same data;
  5. lmms-eval (task trajworld_open) on val and on test for every model, the no-video control of each connector's
     first model on test; visual tokens counted on val videos; first-token time;
  6. choices on val (each connector's best model; the pool model nearest each trajtok model in tokens), paired
     differences on test, clustered bootstrap over videos; results.json, report.md, accuracy_vs_tokens.png and
     accuracy_vs_frames.png.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import random
import resource
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))  # the demo's own modules (demo_config, demo_stats, demo_report, demo_probe)

from demo_config import (  # noqa: E402
    CAPTION_KINDS,
    DemoPreset,
    ModelSpec,
    as_dict,
    holds_trajtok,
    is_reference,
    load_preset,
    preset_names,
)

from trajtok.synth.text import views_caption  # noqa: E402  (no torch: the driver runs every stage as a subprocess)

LETTERS = "ABCD"
# stage 2's question whose answer is the views caption (stage2_views_frac)
VIEWS_QUESTION = "Which objects are in view at the start, half-way through and at the end?"
# the held-out QA task: questions asked open, each option's text scored by log-likelihood (eval/tasks/trajworld)
TASK = "trajworld_open"
# lmms-eval 0.7.3 logs evaluation errors and still exits 0: these lines in its log mean the stage failed
LMMS_EVAL_ERRORS = ("Traceback (most recent call last)", "Error during evaluation")
SPLITS = ("val", "test")
# the descriptions' world: the run's settings with seed + this (no stage trains or chooses on it)
FRESH_SEED_OFFSET = 1000


class StageFailed(Exception):
    """A stage of the demo failed; the message is the one line the user reads."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def latest_checkpoint(run: Path) -> Path:
    """Newest `step_*` folder of a `trajtok train` run."""
    steps = sorted(run.glob("step_*")) or sorted(run.glob("checkpoints/step_*"))
    if not steps:
        raise StageFailed(f"no checkpoint in {run}; delete {run} and rerun to train again")
    return steps[-1]


def train_metrics(run: Path) -> dict:
    """Steps and training time of a `trajvlm train` run (from its metrics.jsonl)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = next((r for r in reversed(rows) if "train_runtime" in r), rows[-1] if rows else {})
    losses = [r["loss"] for r in rows if "loss" in r]
    return {
        "steps": int(final.get("step", 0)),
        "train_s": float(final.get("train_runtime", final.get("time_s", 0.0))),
        "tflop": float(final.get("total_flos", 0.0)) / 1e12,  # the Trainer's 6 * params * tokens estimate
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }


def write_stage_data(data: Path, out: Path, p: DemoPreset | SimpleNamespace, seed: int) -> tuple[Path, Path]:
    """stage1.json: the captions of each training video of the kinds ``stage1_captions`` names (``cast``: the
    world's first caption, the objects; ``timeline``: its second, the events in order; ``summary``: its third, when
    the video has one; ``views``: what is in view at the start, half-way and at the end, from the record), shuffled,
    at most ``stage1_samples`` of them. stage2.json: one multi-turn conversation per training video, LLaVA-style: up
    to ``stage2_turns`` of its questions asked open (no options; the answer is the right option's text; a question
    whose text an earlier turn already asked is skipped), with its caption on a ``stage2_caption_frac`` share of the
    videos, an open count question (answered in a sentence) on a ``stage2_open_frac`` share and a question about
    what is in view at the start, half-way and at the end (answered with the ``views`` caption) on a
    ``stage2_views_frac`` share, in random order. Every model trains on the same files."""
    stage1, stage2 = out / "stage1.json", out / "stage2.json"
    if stage1.exists() and stage2.exists():
        return stage1, stage2
    kinds = list(p.stage1_captions)
    unknown = sorted(set(kinds) - set(CAPTION_KINDS))
    if unknown:
        raise ValueError(f"stage1_captions: unknown kind {unknown[0]!r}; expected some of {CAPTION_KINDS}")
    rng = random.Random(seed)

    @functools.cache
    def record(video: str) -> dict:  # a training video's world record, read once however many turns use it
        return json.loads((data / "train" / video.replace(".mp4", ".json")).read_text())

    by_video: dict[str, list[dict]] = {}
    for row in json.loads((data / "train" / "captions.json").read_text()):
        by_video.setdefault(row["video"], []).append({k: row[k] for k in ("id", "video", "conversations")})
    cast = [rows[0] for rows in by_video.values()]  # stage 2's caption turn, whatever stage 1 reads
    rng.shuffle(cast)
    captions = []
    for row in cast:
        rows = by_video[row["video"]]
        for kind in kinds:
            if kind == "views":
                turns = [
                    dict(rows[0]["conversations"][0]),
                    {"from": "gpt", "value": views_caption(record(row["video"]))},
                ]
                captions.append(
                    {"id": f"{Path(row['video']).stem}_views", "video": row["video"], "conversations": turns}
                )
            elif CAPTION_KINDS.index(kind) < len(rows):
                captions.append(rows[CAPTION_KINDS.index(kind)])
    if len(kinds) > 1:
        rng.shuffle(captions)
    questions: dict[str, list[dict]] = {}
    for q in json.loads((data / "train" / "qa.json").read_text()):
        questions.setdefault(q["video"], []).append(q)
    words = "zero one two three four five six seven eight nine ten eleven twelve".split()
    conversations = []
    for row in cast[: p.stage2_videos]:
        video = row["video"]
        qs = list(questions.get(video, []))
        rng.shuffle(qs)
        asked = {q["question"]: q for q in reversed(qs)}  # the first of each question text in the shuffled order
        qs = [q for q in qs if asked[q["question"]] is q]
        turns = [(q["question"], q["options"][LETTERS.index(q["answer"])]) for q in qs[: p.stage2_turns]]
        if rng.random() < p.stage2_caption_frac:
            turns.insert(rng.randrange(len(turns) + 1), tuple(t["value"] for t in row["conversations"][:2]))
        if rng.random() < p.stage2_open_frac:
            n = len(record(video)["objects"])
            answer = f"{words[n].capitalize() if n < len(words) else n} object{'s' * (n != 1)} appear in the video."
            turns.insert(rng.randrange(len(turns) + 1), ("How many different objects appear in the video?", answer))
        if p.stage2_views_frac > 0 and rng.random() < p.stage2_views_frac:  # no draw at 0: older runs' files stay
            turns.insert(rng.randrange(len(turns) + 1), (VIEWS_QUESTION, views_caption(record(video))))
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
    stage1.write_text(json.dumps(captions[: p.stage1_samples]))
    stage2.write_text(json.dumps(conversations))
    return stage1, stage2


def nearest_in_tokens(target: dict, candidates: list[dict]) -> dict | None:
    """The candidate row whose mean visual tokens are nearest ``target``'s on a log scale (ties: fewer tokens)."""
    if not candidates:
        return None
    t = max(target["visual_tokens"], 1e-9)
    return min(candidates, key=lambda r: (abs(math.log(max(r["visual_tokens"], 1e-9) / t)), r["visual_tokens"]))


def held_out_retrieval(metrics: dict) -> dict:
    """The tower's retrieval with the split it was measured on (towers saved before ``eval_split`` measured test)."""
    split = metrics.get("eval_split", "test")
    return {"split": split, **metrics[split]}


def best_on_val(rows: list[dict]) -> dict[str, str]:
    """Each connector's model with the best val accuracy (ties: fewer visual tokens): the val-chosen budget."""
    best: dict[str, dict] = {}
    for r in rows:
        acc = r["val"]["ci"]["all"]["acc"]
        cur = best.get(r["connector"])
        if cur is None or (acc, -r["visual_tokens"]) > (cur["val"]["ci"]["all"]["acc"], -cur["visual_tokens"]):
            best[r["connector"]] = r
    return {conn: r["key"] for conn, r in best.items()}


class DemoRunner:
    """One run of the main job in ``out``: the stages as methods, their wall and CPU times in
    ``out/stage_times.json`` (kept across reruns), their logs in ``out/logs``."""

    def __init__(self, out: Path, preset: DemoPreset, *, preset_name: str, seed: int, python: str = sys.executable):
        self.out = out
        self.preset = preset
        self.preset_name = preset_name
        self.seed = seed
        self.python = python
        self.log_dir = out / "logs"
        self.data = out / "data"
        self.times: dict[str, dict[str, float]] = {}  # the stages run by this invocation
        self._lock = threading.Lock()

    # -- running stages -------------------------------------------------------------------------------------------

    def step(
        self,
        name: str,
        done: Path,
        cmd: list[str],
        env: dict | None = None,
        *,
        error_markers: tuple = (),
        echo: bool = True,
    ) -> None:
        """Run one stage unless ``done`` exists; its output goes to the console and to ``logs/<stage>.log``.

        A stage fails on a non-zero exit, on a line of ``error_markers`` in its output (for tools that exit 0 on
        errors), or when it did not write ``done``: :class:`StageFailed` names the stage, the exit status and the
        log. Its wall and CPU seconds (its own process tree, via wait4, so stages side by side stay apart) are
        recorded. ``echo=False`` keeps the output in the log only (stages run side by side).
        """
        if done.exists():
            print(f"[demo] {name}: already done ({done})", flush=True)
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / ("".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") + ".log")
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
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use, with its reaped descendants
            proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise StageFailed(f"stage '{name}' failed with exit status {code}; read {log}")
        if marker is not None:
            raise StageFailed(f"stage '{name}' exited 0 but logged an error ({marker[:120]}); read {log}")
        if not done.exists() and done.name != "done":
            raise StageFailed(f"stage '{name}' exited 0 but wrote no {done}; read {log}")
        self.record_time(name, time.time() - t0, usage.ru_utime + usage.ru_stime)
        print(f"[demo] {name}: {self.times[name]['wall_s']:.0f} s ({self.times[name]['cpu_s']:.0f} CPU s)", flush=True)

    @staticmethod
    def concurrently(*branches: Callable[[], None]) -> None:
        """Run independent chains of stages side by side (threads; each stage is its own process) and wait for all.
        When a chain fails the others still finish (their stages are then done for the rerun); the first failure
        is raised."""
        with ThreadPoolExecutor(max_workers=len(branches)) as pool:
            futures = [pool.submit(branch) for branch in branches]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def record_time(self, name: str, wall_s: float, cpu_s: float) -> None:
        """A stage's wall and CPU seconds, in :attr:`times` and in ``out/stage_times.json`` (across reruns)."""
        with self._lock:
            self.times[name] = {"wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1)}
            path = self.out / "stage_times.json"
            past = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps({**past, name: self.times[name]}, indent=2))

    def stage_times(self) -> dict[str, dict[str, float]]:
        path = self.out / "stage_times.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def cpu_s(self, *names: str) -> float:
        """CPU seconds of stages (from stage_times.json, so a resumed run still counts stages run before)."""
        times = self.stage_times()
        return sum(times.get(n, {}).get("cpu_s", 0.0) for n in names)

    def run_python(self, name: str, args: list[str], log_name: str) -> str:
        """A demo_probe command in a fresh process; its last stdout line (JSON), or StageFailed with its log."""
        t0, c0 = time.time(), _children_cpu()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(
            [self.python, "-m", "demo_probe", *args], cwd=ROOT, capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{log_name}.log"
            log.write_text(proc.stdout + proc.stderr)
            raise StageFailed(f"stage '{name}' failed with exit status {proc.returncode}; read {log}")
        lines = proc.stdout.strip().splitlines()
        if not lines:
            raise StageFailed(f"stage '{name}' printed nothing")
        # the children's CPU since t0: probes run one at a time, never beside another stage
        self.record_time(name, time.time() - t0, _children_cpu() - c0)
        return lines[-1]

    # -- stages ---------------------------------------------------------------------------------------------------

    def world(self) -> None:
        p = self.preset
        counts = ",".join(f"{k}={p.splits[k]}" for k in ("train", "val", "test"))
        cmd = [self.python, "-m", "trajtok.cli", "synth", "--out", str(self.data)]
        cmd += (["--world", "long"] if p.world == "long" else []) + ["--num-videos", counts, *p.synth]
        self.step("synthetic world", self.data / "manifest.json", cmd + ["--seed", str(self.seed), "--workers", "2"])

    def tower(self) -> Path | None:
        if self.preset.tower_overrides is None:
            return None
        tower = self.out / "tower"
        self.step(
            "pretrain tower",
            tower / "tower_metrics.json",
            [self.python, "-m", "trajvlm.cli", "pretrain-tower", "--data", str(self.data), "--out", str(tower)]
            + [f"seed={self.seed}", *self.preset.tower_overrides],
        )
        return tower

    def base(self, tower: Path | None) -> Path:
        base = self.out / "base"
        cmd = [self.python, "-m", "trajvlm.cli", "build-base", "--out", str(base), "--seed", str(self.seed)]
        cmd += ["--num-frames", str(self.preset.models[0].frames)]
        if self.preset.llm is not None:
            cmd += ["--llm", self.preset.llm] + (["--tower", str(tower)] if tower is not None else [])
        else:
            cmd += ["--vocab-from", str(self.data)]
        self.step("base (LLM + tower)", base / "config.json", cmd, echo=False)
        return base

    def tokenizer(self, name: str) -> Path:
        """Pretrain one TrajTok on the ground-truth trajectories and evaluate it on val."""
        run = self.out / f"tokenizer-{name}"
        overrides = [*self.preset.tokenizer_overrides, *self.preset.tokenizers[name]]
        self.step(
            f"pretrain TrajTok ({name})",
            run / "done",
            [self.python, "-m", "trajtok.cli", "train", "--config", "quickstart", "--out", str(run)]
            + [f"data={self.data}", f"seed={self.seed}", *overrides, *(["--resume"] if run.exists() else [])],
            echo=False,
        )
        (run / "done").touch()
        ckpt = latest_checkpoint(run)
        self.step(
            f"evaluate TrajTok ({name})",
            run / "eval_val.json",
            [self.python, "-m", "trajtok.cli", "eval", "--checkpoint", str(ckpt), "--data", str(self.data)]
            + ["--split", "val", "--max-videos", str(self.preset.tokenizer_eval_videos)]
            + ["--json", str(run / "eval_val.json")],
            echo=False,
        )
        return ckpt

    def train_model(self, spec: ModelSpec, base: Path, tokenizers: dict[str, Path], data: tuple[Path, Path]) -> dict:
        """Warm-up, stage 1 and stage 2 of one model at its own frames; its training record."""
        p, key = self.preset, spec.key
        stage1_json, stage2_json = data
        video_root = self.data / "train"
        extra, warm_extra = [], []
        if spec.holds_trajtok:
            tpt = spec.tokens_per_trajectory or p.tokens_per_trajectory
            extra = [f"trajtok={tokenizers[spec.tokenizer]}", f"tokens_per_trajectory={tpt}"]
        if spec.stride is not None:
            warm_extra = [f"connector_kwargs={{stride: {spec.stride}}}"]
        warm, s1, s2 = self.out / f"vlm-{key}-warmup", self.out / f"vlm-{key}-stage1", self.out / f"vlm-{key}-run"
        names = (f"stage 0 warm-up ({key})", f"stage 1 align ({key})", f"stage 2 LoRA ({key})")
        self.step(
            names[0],
            warm / "warmup_metrics.json",
            [self.python, "-m", "trajvlm.cli", "warmup", "--base", str(base), "--out", str(warm)]
            + ["--train-json", str(video_root / "captions.json"), "--video-root", str(video_root)]
            + [f"connector={spec.connector}", *extra, *warm_extra, f"frames={spec.frames}", f"seed={self.seed}"]
            + p.warmup_overrides,
        )
        presets = ROOT / "trajvlm" / "presets"
        for name, preset, run, start, train_json, overrides in (
            (names[1], "demo_stage1.yaml", s1, warm, stage1_json, p.stage1_overrides),
            (names[2], "demo_stage2.yaml", s2, s1 / "final", stage2_json, p.stage2_overrides),
        ):
            self.step(
                name,
                run / "final" / "config.json",
                [self.python, "-m", "trajvlm.cli", "train", "--config", str(presets / preset), f"output_dir={run}"]
                + [f"connector={spec.connector}", f"base_model={start}", f"train_json={train_json}", *extra]
                + [*overrides, f"video_root={video_root}", f"num_frames={spec.frames}", f"seed={self.seed}"]
                + (["--resume"] if any(run.glob("checkpoint-*")) else []),
            )
        m0 = json.loads((warm / "warmup_metrics.json").read_text())
        m1, m2 = train_metrics(s1), train_metrics(s2)
        tok_cpu = self.cpu_s(f"pretrain TrajTok ({spec.tokenizer})") if spec.tokenizer else 0.0
        return {
            "model": str(s2 / "final"),
            "steps": f"{m0['config']['steps']}+{m1['steps']}+{m2['steps']}",
            "warmup": {k: m0[k] for k in ("held_out_word_auc_before", "held_out_word_auc_after", "train_s")},
            "stage1": m1,
            "stage2": m2,
            "compute": {"cpu_s": self.cpu_s(*names), "tokenizer_cpu_s": tok_cpu},
        }

    def split_videos(self, split: str) -> dict[str, str]:
        """question id -> video of a split (the clusters of the bootstrap)."""
        return {q["id"]: q["video"] for q in json.loads((self.data / split / "qa.json").read_text())}

    def evaluate(self, name: str, model: Path, frames: int, split: str, *, blind: bool = False) -> list[dict]:
        """One lmms-eval run (task trajworld_open) on ``split``; the per-question answers with their videos."""
        run_dir = self.out / "eval" / f"{name}-{split}"
        args = f"pretrained={model},num_frames={frames},batch_size={self.preset.eval_batch_size}"
        args += f",failures_path={run_dir / 'failed.jsonl'}" + (",blind=true" if blind else "")
        cmd = [self.python, "-m", "lmms_eval", "--model", "trajvlm", "--model_args", args, "--tasks", TASK]
        cmd += ["--include_path", str(ROOT / "eval" / "tasks"), "--output_path", str(run_dir)]
        cmd += ["--batch_size", str(self.preset.eval_batch_size), "--log_samples"]
        env = {"TRAJWORLD_DIR": str(self.data), "TRAJWORLD_SPLIT": split}
        self.step(f"evaluate {name} on {split}", run_dir / "done", cmd, env=env, error_markers=LMMS_EVAL_ERRORS)
        if not sorted(run_dir.rglob("*_results.json")):
            raise StageFailed(f"stage 'evaluate {name} on {split}': lmms-eval wrote no results under {run_dir}")
        (run_dir / "done").touch()
        videos = self.split_videos(split)
        answers = []
        for path in sorted(run_dir.rglob("*samples_trajworld*.jsonl")):
            for line in path.read_text().splitlines():
                row = json.loads(line)
                scored = row.get("accuracy") or {}
                qid = scored.get("id", row.get("doc", {}).get("id"))
                answers.append(
                    {
                        "id": qid,
                        "video": videos.get(qid),
                        "qtype": scored.get("qtype", row.get("doc", {}).get("qtype")),
                        "correct": bool(scored.get("correct")),
                    }
                )
        if not answers:
            raise StageFailed(f"stage 'evaluate {name} on {split}': no per-question samples under {run_dir}")
        return answers

    def measure(self, key: str, model: Path, frames: int) -> dict:
        """Visual tokens per val video (mean over token_videos), first-token time; cached in eval/<key>/cost.json."""
        cache = self.out / "eval" / key / "cost.json"
        if cache.exists():
            return json.loads(cache.read_text())
        ids = sorted(json.loads((self.data / "manifest.json").read_text())["splits"]["val"]["videos"])
        videos = [str(self.data / "val" / f"{i}.mp4") for i in ids[: self.preset.token_videos]]
        line = self.run_python(
            f"measure {key}",
            ["measure", "--model", str(model), "--frames", str(frames), "--video", videos[0]]
            + ["--token-videos", *videos],
            f"measure-{key}",
        )
        cost = json.loads(line)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(cost))
        return cost

    def fresh_world(self) -> Path:
        """A world no stage has seen: the run's world settings (``--like`` its manifest) with another seed,
        ``describe_videos`` test videos only; what the descriptions are scored on."""
        fresh = self.out / "fresh"
        cmd = [self.python, "-m", "trajtok.cli", "synth", "--like", str(self.data / "manifest.json")]
        cmd += ["--out", str(fresh), "--seed", str(self.fresh_seed), "--num-videos", "0"]
        cmd += ["--test", str(self.preset.describe_videos), "--workers", "2"]
        self.step("fresh world (descriptions)", fresh / "manifest.json", cmd)
        return fresh

    @property
    def fresh_seed(self) -> int:
        return self.seed + FRESH_SEED_OFFSET

    def describe(self, key: str, model: Path, frames: int) -> dict:
        """Share of videos of a fresh world (:meth:`fresh_world`) whose description names at least one of their
        objects (colour + shape)."""
        from demo_report import object_names, score_descriptions

        data = self.fresh_world()
        out_json = self.out / "eval" / f"describe-{key}.json"
        if not out_json.exists():
            ids = sorted(json.loads((data / "manifest.json").read_text())["splits"]["test"]["videos"])
            ids = ids[: self.preset.describe_videos]
            videos = [str(data / "test" / f"{i}.mp4") for i in ids]
            line = self.run_python(
                f"describe {key}",
                ["describe", "--model", str(model), "--frames", str(frames), "--videos", *videos],
                f"describe-{key}",
            )
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps({"ids": ids, "answers": json.loads(line)}, indent=1))
        saved = json.loads(out_json.read_text())
        truths = [object_names(json.loads((data / "test" / f"{v}.json").read_text())) for v in saved["ids"]]
        scored = score_descriptions(saved["answers"], truths)
        example = saved["answers"][0] if saved["answers"] else ""
        return {**scored, "model": key, "world": f"fresh, seed {self.fresh_seed}", "example": example}

    # -- the job --------------------------------------------------------------------------------------------------

    def run(self, stop_after: str | None = None) -> int:
        from demo_report import plot, report
        from demo_stats import clustered_difference, per_type

        p, out = self.preset, self.out
        out.mkdir(parents=True, exist_ok=True)
        (out / "preset.json").write_text(json.dumps({"name": self.preset_name, **as_dict(p)}, indent=2))
        t_start = time.time()
        self.world()
        tower = self.tower()
        base_box: list[Path] = []
        tokenizers: dict[str, Path] = {}

        def pretrain(name: str) -> Callable[[], None]:
            return lambda: tokenizers.__setitem__(name, self.tokenizer(name))

        # the base build (one thread: the GGUF LLM is dequantised) beside TrajTok's pretrainings (threads=1)
        self.concurrently(lambda: base_box.append(self.base(tower)), *(pretrain(n) for n in p.tokenizers_used))
        base = base_box[0]
        stage_data = write_stage_data(self.data, out, p, self.seed)
        training = {m.key: self.train_model(m, base, tokenizers, stage_data) for m in p.models}
        if stop_after == "train":
            print(f"[demo] trained {', '.join(training)}; stopping (--stop-after train)", flush=True)
            return 0

        samples = p.bootstrap_samples
        rows: list[dict] = []
        for m in p.models:
            model = Path(training[m.key]["model"])
            cost = self.measure(m.key, model, m.frames)
            row = {
                "key": m.key,
                "label": m.label,
                "connector": m.connector,
                "line": m.connector
                + (f" {m.stride}x{m.stride}" if m.stride else (" 2x2" if m.strides_patch_grid else ""))
                + (f" ({m.tokenizer})" if m.tokenizer and len(p.tokenizers_used) > 1 else ""),
                "frames": m.frames,
                "stride": m.stride,
                "tokenizer": m.tokenizer,
                **cost,
                "tokens_counted_on": "val",
                **{k: training[m.key][k] for k in ("steps", "compute", "warmup", "stage1", "stage2")},
            }
            answers = self.evaluate(m.key, model, m.frames, "val")
            row["val"] = {"split": "val", "ci": per_type(answers, samples=samples), "answers": answers}
            rows.append(row)
        if stop_after == "val":  # for tuning a recipe: val numbers only, test untouched
            from demo_report import table

            print(table(rows, "val"), flush=True)
            print(f"[demo] evaluated {len(rows)} models on val; stopping (--stop-after val)", flush=True)
            return 0
        # test: once per reported model
        for m, row in zip(p.models, rows, strict=True):
            answers = self.evaluate(m.key, Path(training[m.key]["model"]), m.frames, "test")
            row["test"] = {"split": "test", "ci": per_type(answers, samples=samples), "answers": answers}
        controls: list[dict] = []
        if p.controls:
            for conn in dict.fromkeys(m.connector for m in p.models):
                m = next(x for x in p.models if x.connector == conn)
                control = {"key": f"{m.key}-blind", "label": f"{m.label}, no video (control)", "connector": conn}
                control.update(frames=m.frames, visual_tokens=0, ttft_ms=None, line="control", of=m.key)
                # test only: the control is a reported number, no choice reads it
                model = Path(training[m.key]["model"])
                answers = self.evaluate(f"{m.key}-blind", model, m.frames, "test", blind=True)
                control["test"] = {"split": "test", "ci": per_type(answers, samples=samples), "answers": answers}
                controls.append(control)
        if stop_after == "eval":
            print(f"[demo] evaluated {len(rows)} models; stopping (--stop-after eval)", flush=True)
            return 0

        # choices read val only; the comparisons they pick are then read on test
        chosen = best_on_val(rows)
        by_key = {r["key"]: r for r in rows}
        pairs: list[tuple[dict, dict, str]] = []
        for tested in filter(holds_trajtok, chosen):
            for reference in filter(is_reference, chosen):
                pairs.append((by_key[chosen[tested]], by_key[chosen[reference]], "each connector's best model on val"))
        pools = [r for r in rows if is_reference(r["connector"])]
        for r in rows:
            if holds_trajtok(r["connector"]):
                near = nearest_in_tokens(r, pools)
                if near is not None:
                    pairs.append((r, near, "the pool model trained nearest its token count (val videos)"))
        for c in controls:
            pairs.append((by_key[c["of"]], c, "its no-video control"))
        paired = [
            {
                "a": a["label"],
                "b": b["label"],
                "why": why,
                "split": "test",
                **clustered_difference(a["test"]["answers"], b["test"]["answers"], samples=samples),
            }
            for a, b, why in pairs
        ]
        description = None
        if p.describe_videos > 0:
            m = p.models[0]
            description = self.describe(m.key, Path(training[m.key]["model"]), m.frames)

        if self.times:
            stages_cpu = sum(v["cpu_s"] for v in self.times.values())  # every stage of this run, its process tree
            self.record_time("total (this invocation)", time.time() - t_start, stages_cpu)
        results = self._results(rows, controls, chosen, paired, description)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        plotted = plot(rows, out / "accuracy_vs_tokens.png", "visual_tokens")
        plot(rows, out / "accuracy_vs_frames.png", "frames")
        if not plotted:
            print("[demo] matplotlib missing: no figures (pip install matplotlib)", flush=True)
        text = report(results)
        (out / "report.md").write_text(text)
        print(text)
        print(f"[demo] done in {(time.time() - t_start) / 60:.1f} min; outputs in {out}", flush=True)
        return 0

    def _results(self, rows, controls, chosen, paired, description) -> dict:
        tok = {}
        for name in self.preset.tokenizers_used:
            path = self.out / f"tokenizer-{name}" / "eval_val.json"
            ev = json.loads(path.read_text()) if path.exists() else {}
            tok[name] = {k: ev.get(k) for k in ("miou", "association", "tokens_mean", "gt_objects_mean")}
            tok[name].update(split="val", cpu_s=self.cpu_s(f"pretrain TrajTok ({name})"))
        tower_json = self.out / "tower" / "tower_metrics.json"
        manifest = json.loads((self.data / "manifest.json").read_text())
        questions = {s: len(json.loads((self.data / s / "qa.json").read_text())) for s in ("train", *SPLITS)}
        for r in rows + controls:  # what scripts/demo_runs.py reads: the test accuracy and answers
            r["metrics"] = {"accuracy": r["test"]["ci"]["all"]["acc"], "split": "test"}
            r["answers"] = r["test"]["answers"]
        return {
            "preset": self.preset_name,
            "seed": self.seed,
            "world": {
                "kind": self.preset.world,
                "videos": {s: len(manifest["splits"][s]["videos"]) for s in ("train", *SPLITS)},
                "questions": questions,
            },
            "bootstrap_samples": self.preset.bootstrap_samples,
            "test_questions_sha256": hashlib.sha256((self.data / "test" / "qa.json").read_bytes()).hexdigest(),
            "tower": held_out_retrieval(json.loads(tower_json.read_text())) if tower_json.exists() else None,
            "tokenizer": tok,
            "rows": rows,
            "controls": controls,
            "selection": {"split": "val", "best_on_val": chosen},
            "paired": paired,
            "description": description,
            "stage_times": self.stage_times(),
        }


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help=f"a preset name ({', '.join(preset_names())}) or a YAML file")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="tracebacks of the demo's own errors")
    ap.add_argument("--stage-steps", default=None, help="S1,S2: optimizer steps of stage 1 and 2 (default: preset's)")
    ap.add_argument(
        "--stop-after",
        choices=("train", "val", "eval"),
        default=None,
        help="stop after training / the val evaluations (test untouched: for tuning) / all evaluations",
    )
    ap.add_argument(
        "--connectors", default=None, help="comma-separated registered connector names (default: the preset's models)"
    )
    return ap.parse_args(argv)


def build_runner(argv: list[str]) -> tuple[DemoRunner, argparse.Namespace]:
    """The runner for a command line: the preset loaded and validated, --connectors and --stage-steps applied."""
    import dataclasses

    args = parse_args(argv)
    preset = load_preset(args.preset)
    if args.stage_steps:
        try:
            s1, s2 = (int(x) for x in args.stage_steps.split(","))
        except ValueError:
            raise ValueError(f"--stage-steps must be two integers S1,S2, got {args.stage_steps!r}") from None
        preset = dataclasses.replace(
            preset,
            stage1_overrides=[*preset.stage1_overrides, f"max_steps={s1}"],
            stage2_overrides=[*preset.stage2_overrides, f"max_steps={s2}"],
        )
    if args.connectors is not None:
        sys.path.insert(0, str(ROOT))
        from trajvlm.configuration import CONNECTOR_NAMES

        connectors = [c.strip() for c in args.connectors.split(",") if c.strip()]
        unknown = [c for c in connectors if c not in CONNECTOR_NAMES]
        if unknown or not connectors:
            raise ValueError(
                f"unknown connector(s) {unknown} in --connectors; registered: {', '.join(CONNECTOR_NAMES)}"
            )
        preset = preset.select(connectors)
    name = Path(args.preset).stem if args.preset.endswith((".yaml", ".yml")) else args.preset
    return DemoRunner(args.out.resolve(), preset, preset_name=name, seed=args.seed), args


def main(argv: list[str] | None = None) -> int:
    """Run the demo; a failed stage or a bad option prints one line (a traceback only with -v) and exits 1."""
    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv or "--verbose" in argv
    try:
        runner, args = build_runner(argv)
        return runner.run(args.stop_after)
    except StageFailed as exc:
        print(f"[demo] error: {exc}; rerun the same command to continue from this stage", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the demo's own bug or environment problem: one line, -v for more
        if verbose:
            raise
        print(f"[demo] error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
