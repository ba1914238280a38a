"""What the benchmark scripts of eval/bench share: the end of a run (its markdown table, its ``--json`` file, its exit
status on bad input), the synthetic H.264 clips they time decoding on, the videos of a ``trajtok synth`` split, and
the linear probe of the probe benchmarks.

A script imports it after putting its own folder first on ``sys.path`` (``python eval/bench/x.py`` does that already;
tests load the scripts by path):

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np


def print_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str) -> None:
    """A markdown table on stdout: ``header``, then one line per row (cells printed with ``str``); ``align`` holds one
    letter per column, ``l`` (``---``) or ``r`` (``---:``)."""
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r}: expected one 'l' or 'r' per column of {list(header)}")
    print("| " + " | ".join(header) + " |")
    print("|" + "".join("---|" if a == "l" else "---:|" for a in align))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def write_json(path: str | os.PathLike | None, obj: Any, indent: int | None = 1, **dumps: Any) -> None:
    """``obj`` as JSON in ``path`` (its folder made first); nothing when ``path`` is None or empty (no ``--json``)."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, **dumps) + "\n")


def run_cli(run: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    """``run(args)``; a missing file or a bad value ends it with one line ``error: ...`` on stderr and status 2."""
    try:
        run(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def probe_arguments(doc: str, train_videos: int, data_help: str) -> argparse.ArgumentParser:
    """The probe benchmarks' parser (its description the second paragraph of ``doc``) with the options they share:
    ``--data`` (``data_help``), ``--tower``, ``--frames``, ``--train-videos`` (default ``train_videos``),
    ``--split`` (the held-out split scored), ``--test-videos``, ``--threads``, ``--json``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help=data_help)
    ap.add_argument("--tower", nargs="*", help="tower folders written by `trajvlm pretrain-tower`")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--train-videos", type=int, default=train_videos)
    ap.add_argument(
        "--split",
        default="test",
        choices=("val", "test"),
        help="held-out split the probe is scored on (test: the numbers in the docs; val: when a choice reads it)",
    )
    ap.add_argument("--test-videos", type=int, default=0, help="held-out videos read (0 = the whole split)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    return ap


def write_h264(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: int, options: dict) -> Path:
    """Encode RGB uint8 (H, W, 3) ``frames`` with libx264 ``options`` into ``path`` (``size`` = (W, H)), one frame at a
    time so that a long or 4K clip never sits in memory; kept when ``path`` exists already (the benchmarks cache
    their clips). Written under a temporary name and renamed, so an interrupted run leaves no truncated clip."""
    import av  # local: PyAV only where a clip is written

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options=options)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def synth_videos(split_dir: Path, limit: int, sidecars: Sequence[str] = (".json",)) -> list[tuple[Path, dict]]:
    """The first ``limit`` videos of a ``trajtok synth --out`` split (0 = all), each with its metadata (the ``.json``
    beside it); FileNotFoundError for a split without videos or a video without one of its ``sidecars``, ValueError
    (naming the file) for a record that is not JSON."""
    paths = sorted(split_dir.glob("*.mp4"))[: limit or None]
    if not paths:
        raise FileNotFoundError(f"no .mp4 videos in {split_dir}: expected a `trajtok synth --out` split folder")
    videos = []
    for path in paths:
        for needed in (path.with_suffix(suffix) for suffix in sidecars):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed} not found: the synthetic world writes one per video")
        record = path.with_suffix(".json")
        try:
            videos.append((path, json.loads(record.read_text())))
        except json.JSONDecodeError as e:
            raise ValueError(f"{record} is not valid JSON ({e})") from e
    return videos


def visual_tokens(model, processor, paths: Sequence[Path], progress: str | None = None) -> list:
    """The visual tokens a loaded TrajVLM gives its LLM for each video (``encode_videos`` at the processor's frames):
    one (N_i, D) float32 CPU tensor per video; ``progress`` names the bench in a line on stderr every 100 videos."""
    import torch

    out = []
    with torch.no_grad():
        for k, path in enumerate(paths):
            pixels = processor(text=["<video>"], videos=[processor.load_video(str(path))], return_tensors="pt")
            tokens = model.model.encode_videos(pixels["pixel_values_videos"].to(model.dtype)).tokens[0]
            out.append(tokens.float().cpu())
            if progress and (k + 1) % 100 == 0:
                print(f"[{progress}] encoded {k + 1}/{len(paths)} videos", file=sys.stderr, flush=True)
    return out


def linear_probe(x_train, y_train, x_test, outputs: int, loss: Callable, l2: float, iters: int):
    """A linear map fitted with L-BFGS on standardised features (statistics of ``x_train``): ``loss(logits, y_train)``
    plus ``l2`` times the squared weights. Returns the logits of ``x_test``, (N_test, outputs), detached."""
    import torch  # local: the video benchmarks that import this module do not need torch

    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(x_train.shape[1], outputs, requires_grad=True)
    b = torch.zeros(outputs, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss(x_train @ w + b, y_train) + l2 * w.pow(2).sum()
        value.backward()
        return value

    opt.step(closure)
    return (x_test @ w + b).detach()
