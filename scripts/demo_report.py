"""The main job's report: tables, the two figures, description scoring, and report.md from results.json."""

from __future__ import annotations

import math
import re
from pathlib import Path

CHANCE = 25.0  # four options


def object_names(record: dict) -> set[str]:
    """'colour shape' of every object of a video, with every colour it takes."""
    names = {f"{o['colour']} {o['shape']}" for o in record["objects"]}
    for ev in record["events"]:
        if ev["type"] == "colour_change":
            names.add(f"{ev['to']} {record['objects'][ev['objects'][0]]['shape']}")
    return names


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


def ci(b: dict | None) -> str:
    if not b or b["n"] == 0:
        return "n/a"
    return f"{b['acc']:.1f} [{b['lo']:.0f}, {b['hi']:.0f}] ({b['n']})"


def tokens_cell(r: dict) -> str:
    """Mean visual tokens per video, with the range where they vary (adaptive connectors)."""
    lo, hi = r.get("visual_tokens_min"), r.get("visual_tokens_max")
    if lo is None or lo == hi:
        return f"{r['visual_tokens']:.0f}"
    return f"{r['visual_tokens']:.1f} ({lo}-{hi})"


def qtypes(rows: list[dict], split: str) -> list[str]:
    """The question types of ``split`` in the order first met."""
    seen: list[str] = []
    for r in rows:
        seen += [q for q in (r.get(split) or {}).get("ci", {}) if q != "all" and q not in seen]
    return seen


def table(rows: list[dict], split: str) -> str:
    """One line per model: budget, compute, accuracy on ``split`` with its clustered interval and per type."""
    types = qtypes(rows, split)
    head = ["model", "frames", "visual tokens (mean)", "steps (s0+s1+s2)", "CPU s (own + TrajTok)", "TTFT ms"]
    head += [f"{split} accuracy % [95% CI] (questions)", *types]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        res = r.get(split)
        if res is None:
            continue
        cost = r.get("compute", {})
        cells = [
            r["label"],
            str(r["frames"]),
            tokens_cell(r),
            r.get("steps", "-"),
            f"{cost.get('cpu_s', math.nan):.0f} + {cost.get('tokenizer_cpu_s', 0.0):.0f}" if cost else "-",
            "-" if r.get("ttft_ms") is None or r["ttft_ms"] != r["ttft_ms"] else f"{r['ttft_ms']:.0f}",
            ci(res["ci"]["all"]),
        ]
        cells += [ci(res["ci"].get(q)) for q in types]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def plot(rows: list[dict], path: Path, x: str, split: str = "test") -> bool:
    """Accuracy on ``split`` with its interval against ``x`` (``visual_tokens`` or ``frames``): one line per connector
    (and pool stride / TrajTok variant), one point per trained model. False when matplotlib is missing."""
    plt = _plt()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = "os^vDPX*"
    for k, line in enumerate(dict.fromkeys(r["line"] for r in rows if r.get(split))):
        pts = sorted(
            ((r[x], r[split]["ci"]["all"]) for r in rows if r["line"] == line and r.get(split)), key=lambda p: p[0]
        )
        xs, ys = [p[0] for p in pts], [p[1]["acc"] for p in pts]
        err = [[p[1]["acc"] - p[1]["lo"] for p in pts], [p[1]["hi"] - p[1]["acc"] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker=markers[k % len(markers)], capsize=3, label=line)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib_ticker().ScalarFormatter())
    ax.set_xlabel("visual tokens per video (log)" if x == "visual_tokens" else "frames per video (log)")
    ax.set_ylabel(f"{split} accuracy (%, 95% CI over videos)")
    ax.axhline(CHANCE, ls=":", c="grey", lw=1)
    ax.legend(fontsize=8)
    ax.set_title("Long-video QA: each point a model trained at its budget")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _per_split(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _diff(d: dict) -> str:
    return f"{d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] ({d['n']} questions, {d['videos']} videos)"


def report(results: dict) -> str:
    """report.md from results.json."""
    rows, controls = results["rows"], results.get("controls", [])
    world = results["world"]
    lines = [
        f"# TrajVLM main job: {results['preset']} preset ({world['kind']} world)",
        "",
        f"World: {_per_split(world['videos'])} videos, {_per_split(world['questions'])} questions; seed "
        f"{results['seed']}. Each model is trained at the frames (and pool stride) it is evaluated at. Recipe choices "
        f"read val only; test is evaluated once per model. Intervals: 95 % percentile bootstrap resampling whole "
        f"videos ({results['bootstrap_samples']} draws); (n) = questions.",
        "",
    ]
    if results.get("tokenizer"):
        for name, t in results["tokenizer"].items():
            lines.append(
                f"TrajTok `{name}` on val: space-time mIoU {t.get('miou', math.nan):.3f}, association "
                f"{t.get('association', math.nan):.3f}, {t.get('tokens_mean', math.nan):.1f} tokens per video; "
                f"pretraining {t.get('cpu_s', math.nan):.0f} CPU s."
            )
        lines.append("")
    if results.get("tower"):
        tw = results["tower"]
        lines += [
            f"Tower retrieval ({tw.get('split', 'test')} split, {tw.get('num_pairs')} videos): video->text R@5 "
            f"{tw.get('video_to_text_r5', math.nan):.1f} %, text->video R@5 {tw.get('text_to_video_r5', math.nan):.1f} %.",
            "",
        ]
    lines += [
        "## Test (once per model)",
        "",
        "CPU s = the model's own warm-up + stage 1 + stage 2 CPU seconds (all processes of those stages) + TrajTok's "
        "pretraining CPU seconds for trajtok models (counted whole for each). The tower and the base are shared by "
        "every model and not counted.",
        "",
        table(rows + controls, "test"),
        "",
        "## Val (what the choices below read)",
        "",
        table(rows + controls, "val"),
        "",
        "## Choices made on val",
        "",
    ]
    for conn, key in results["selection"]["best_on_val"].items():
        lines.append(f"- {conn}: best model on val: {key}")
    lines += ["", "## Paired differences on test (a - b, points; clustered bootstrap over videos)", ""]
    for d in results["paired"]:
        lines.append(f"- {d['a']} - {d['b']} ({d['why']}): {_diff(d)}")
    if results.get("description"):
        d = results["description"]
        lines += [
            "",
            f"Descriptions ({d['model']}, {d['videos']} test videos of {d.get('world', 'the test split')}): "
            "names a correct object in "
            f"{d['names_a_correct_object_pct']:.0f} %; {d['named_objects_correct_pct']:.0f} % of named objects are in "
            f'the video. Example: "{d["example"]}"',
        ]
    lines += ["", "## Stage times (this machine)", ""]
    lines += [f"- {k}: {v['wall_s']:.0f} s wall, {v['cpu_s']:.0f} s CPU" for k, v in results["stage_times"].items()]
    return "\n".join(lines) + "\n"
