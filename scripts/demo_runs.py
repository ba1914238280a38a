"""python scripts/demo_runs.py runs/demo runs/demo-seed1 runs/demo-seed2 [--json summary.json]

Put several runs of the main job (`make demo`, e.g. with different ``--seed``) side by side: held-out accuracy of
every row in every run with the mean and the range, the paired differences the targets ask about (trajtok - pool,
each connector - its no-video control), descriptions, visual tokens and wall time, and which targets each run
meets. One run's intervals say how sure its numbers are on its own questions; the spread across seeds says how
much a number moves when the world, the initialisations and the batches are drawn again. Prints markdown.

``--against BASE...`` (one per run) compares two recipes on the same worlds: each row of each run minus the same row
of its base run, paired question by question (both runs must have asked the same questions: the same seed and
world, checked by the fingerprint of the test questions in ``results.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # demo_stats


def load(run: Path) -> dict:
    path = run / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json (has `make demo` finished in {run}?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _all_rows(r: dict) -> list[dict]:
    return r["rows"] + r.get("controls", [])


def _trajtok_description(r: dict) -> dict:
    """The run's scores of trajtok's descriptions ({} when it has none): a short-clip run keys them by connector, a
    long-video run has one model's, named by its key."""
    desc = r.get("description") or {}
    if "names_a_correct_object_pct" in desc:
        return desc if str(desc.get("model", "")).startswith("trajtok") else {}
    return desc.get("trajtok") or {}


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def accuracy_table(names: list[str], results: list[dict]) -> str:
    """Accuracy % of every row (and control) in every run; mean (min-max) over the runs that have it."""
    labels: list[str] = []
    for r in results:
        labels += [row["label"] for row in _all_rows(r) if row["label"] not in labels]
    lines = ["| model | " + " | ".join(names) + " | mean (range) |", "|---|" + "---:|" * (len(names) + 1)]
    for label in labels:
        accs = []
        cells = []
        for r in results:
            row = next((x for x in _all_rows(r) if x["label"] == label), None)
            if row is None:
                cells.append("-")
                continue
            acc = row["metrics"]["accuracy"]
            accs.append(acc)
            cells.append(f"{acc:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_spread(accs)} |")
    return "\n".join(lines)


def first_rows(r: dict) -> dict[str, dict]:
    """Each connector's first row (the default frame count)."""
    first: dict[str, dict] = {}
    for row in r["rows"]:
        first.setdefault(row["connector"], row)
    return first


def matched_row(r: dict, trajtok: dict | None = None) -> dict | None:
    """The pool row at trajtok's budget: a long-video run's pool model trained nearest trajtok's tokens (chosen on
    val, ``paired[].why``), or a short-clip run's "(matched budget)" row."""
    if trajtok is not None:
        for d in r.get("paired", []):
            if d["a"] == trajtok["label"] and "nearest its token count" in d.get("why", ""):
                return next((row for row in r["rows"] if row["label"] == d["b"]), None)
    return next((row for row in r["rows"] if row["label"].endswith("(matched budget)")), None)


def targets(r: dict) -> dict[str, bool | None]:
    """The main job's targets in one run (None: the run lacks the rows to judge)."""
    first = first_rows(r)
    tt, pool = first.get("trajtok"), first.get("pool")
    matched = matched_row(r, tt)

    def acc(row: dict) -> float:
        return row["metrics"]["accuracy"]

    desc = _trajtok_description(r) or None
    return {
        "trajtok >= 45 %": None if tt is None else acc(tt) >= 45.0,
        "trajtok >= pool at <= 1/4 of its tokens": None
        if tt is None or pool is None
        else acc(tt) >= acc(pool) and tt["visual_tokens"] <= pool["visual_tokens"] / 4,
        "trajtok >= pool + 5 at a matched budget": None
        if tt is None or matched is None
        else acc(tt) >= acc(matched) + 5.0,
        "descriptions >= 60 %": None if desc is None else desc["names_a_correct_object_pct"] >= 60.0,
    }


def _questions(r: dict) -> int | None:
    """How many test questions the run asked (from its per-question answers or its paired differences)."""
    for row in _all_rows(r):
        if "answers" in row:
            return len(row["answers"])
    return next((d["n"] for d in r.get("paired", []) if "n" in d), None)


def summary(names: list[str], results: list[dict]) -> str:
    sizes = [_questions(r) for r in results]
    known = ", ".join(f"{n}: {q}" for n, q in zip(names, sizes, strict=True) if q)
    out = [
        f"Held-out QA accuracy % per run (the test split of each run's world{'; questions ' + known if known else ''}):"
    ]
    out += [""]
    out += [accuracy_table(names, results), ""]
    comparisons: list[tuple[str, str]] = []
    for r in results:
        comparisons += [(d["a"], d["b"]) for d in r.get("paired", []) if (d["a"], d["b"]) not in comparisons]
    if comparisons:
        out += [
            "Paired differences in points (same questions; 95 % bootstrap interval over questions):",
            "",
            "| comparison | " + " | ".join(names) + " | mean |",
            "|---|" + "---:|" * (len(names) + 1),
        ]
        for a, b in comparisons:
            cells, diffs = [], []
            for r in results:
                d = next((x for x in r.get("paired", []) if (x["a"], x["b"]) == (a, b)), None)
                cells.append("-" if d is None else f"{d['diff']:+.1f} [{d['lo']:+.0f}, {d['hi']:+.0f}]")
                diffs += [] if d is None else [d["diff"]]
            mean = f"{statistics.mean(diffs):+.1f}" if diffs else "-"
            out.append(f"| {a} - {b} | " + " | ".join(cells) + f" | {mean} |")
        out.append("")
    rows = {
        "trajtok visual tokens (mean)": [first_rows(r).get("trajtok", {}).get("visual_tokens") for r in results],
        "descriptions naming a correct object %": [
            _trajtok_description(r).get("names_a_correct_object_pct") for r in results
        ],
        "named objects with a colour of the video %": [
            _trajtok_description(r).get("named_colour_in_video_pct") for r in results
        ],
        "named objects with a shape of the video % (at random)": [
            _shape_cell(_trajtok_description(r)) for r in results
        ],
        "wall minutes": [r.get("minutes") for r in results],
    }
    out += ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, values in rows.items():
        out.append(
            f"| {label} | "
            + " | ".join("-" if v is None else v if isinstance(v, str) else f"{v:.1f}" for v in values)
            + " |"
        )
    out += ["", "Targets met per run:", "", "| target | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    met = [targets(r) for r in results]
    for t in met[0] if met else []:
        out.append(f"| {t} | " + " | ".join({True: "met", False: "missed", None: "-"}[m[t]] for m in met) + " |")
    return "\n".join(out)


def _shape_cell(desc: dict) -> str | None:
    """'named shape % (random shape %)' of a run's descriptions; None for a run from before they were scored."""
    if "named_shape_in_video_pct" not in desc:
        return None
    return f"{desc['named_shape_in_video_pct']:.1f} ({desc['named_shape_chance_pct']:.1f})"


def against_table(names: list[str], results: list[dict], bases: list[dict]) -> str:
    """Each row of each run minus the same row of its base run, in points, paired over the same questions."""
    from demo_stats import clustered_difference

    from trajvlm.integrations.lmms_eval_tasks import paired_difference

    for name, r, b in zip(names, results, bases, strict=True):
        fa, fb = r.get("test_questions_sha256"), b.get("test_questions_sha256")
        if fa is None or fb is None:
            raise ValueError(f"{name}: a run without a test-question fingerprint (rebuild its report with the demo)")
        if fa != fb:
            raise ValueError(f"{name}: the run and its base asked different questions (another world); no pairing")
    labels: list[str] = []
    for r in results:
        labels += [row["label"] for row in _all_rows(r) if row["label"] not in labels]
    lines = [
        "| model | " + " | ".join(names) + " | mean |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for label in labels:
        cells, diffs = [], []
        for r, b in zip(results, bases, strict=True):
            ra = next((x for x in _all_rows(r) if x["label"] == label and "answers" in x), None)
            rb = next((x for x in _all_rows(b) if x["label"] == label and "answers" in x), None)
            if ra is None or rb is None:
                cells.append("-")
                continue
            if all(a.get("video") for a in ra["answers"] + rb["answers"]):
                d = clustered_difference(ra["answers"], rb["answers"])  # long-video runs: resample whole videos
            else:
                d = paired_difference(ra["answers"], rb["answers"])
            cells.append(f"{d['diff']:+.1f} [{d['lo']:+.0f}, {d['hi']:+.0f}]")
            diffs.append(d["diff"])
        mean = f"{statistics.mean(diffs):+.1f}" if diffs else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="output folders of `make demo` / scripts/demo.py --out")
    ap.add_argument("--names", nargs="*", help="column names (default: the folders' names)")
    ap.add_argument("--json", default=None, help="also write the per-run targets and paired differences here")
    ap.add_argument(
        "--against", nargs="*", default=None, help="one base run per run, on the same world: paired row differences"
    )
    args = ap.parse_args(argv)
    runs = [Path(r) for r in args.runs]
    names = args.names or [r.name for r in runs]
    if len(names) != len(runs):
        print(f"error: {len(names)} names for {len(runs)} runs", file=sys.stderr)
        return 2
    if args.against is not None and len(args.against) != len(runs):
        print(f"error: {len(args.against)} --against runs for {len(runs)} runs", file=sys.stderr)
        return 2
    try:
        results = [load(r) for r in runs]
        bases = [load(Path(b)) for b in args.against or []]
        versus = against_table(names, results, bases) if bases else None
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(names, results))
    if versus is not None:
        print("\nEach row minus the same row of the base run, in points (same questions; 95 % paired bootstrap):\n")
        print(versus)
    if args.json:
        keep = {n: {"targets": targets(r), "paired": r.get("paired", [])} for n, r in zip(names, results, strict=True)}
        Path(args.json).write_text(json.dumps(keep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
