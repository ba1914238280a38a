"""python eval/bench/bench_object_probe.py --data runs/demo/data --tower runs/demo/tower --trajtok runs/demo/tokenizer

Which features know an object's shape? ``bench_probe.py`` asks per video ("is there a star?"), where the mean and the
max over a frame of several objects blur what one object looks like. This probe asks per object: each object of each
video gets one feature vector, the mean of a feature map over its ground-truth pixels in ``--frames`` frames spread
over the video (the frames a VLM reads), and a multinomial logistic regression names its shape (8 classes) and its
colour (9), fitted on the objects of ``--train-videos`` training videos and scored by accuracy on the held-out split's
objects (``--split``: test by default, val where a choice reads it). Features:

- ``colour``: the mean RGB of its pixels (no learning; the floor for colour, near chance for shape);
- ``mask, W px``: the geometry of its ground-truth mask at the video's resolution: the share of its box it fills, its
  box's height / width, the square root of its area (per frame, averaged): what a mask as fine as the frame gives;
- ``mask, G x G grid``: the same geometry of the mask on TrajTok's segmentation grid (``--grid``; default the
  checkpoint's ``image_size / 4``, else 16), each cell the object's when it holds half of it or more: what
  TrajTok's own masks could give at best;
- ``tower``: a tower's patch features (``trajvlm pretrain-tower``; each pixel takes its patch's feature);
- ``trajtok backbone``: the pixel features of a TrajTok checkpoint's backbone (on its grid, each pixel its cell's);
- ``trajtok masks``: the same geometry of TrajTok's own mask for the object: the trajectory that holds most of the
  object's cells on its grid, all of that trajectory's cells (what TrajTok's segmentation gives to read).

Prints a table; ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tokenizer"), str(Path(__file__).resolve().parent)]
import _common  # noqa: E402

MIN_PIXELS = 4  # an object with fewer pixels in the sampled frames is left out (it is barely in them)


def mask_geometry(mask: torch.Tensor) -> torch.Tensor:
    """(T, H, W) bool mask of one object -> (3,): box fill share, box height / width, sqrt(area) / side, averaged
    over the frames where it has pixels (zeros when it has none)."""
    rows = []
    for m in mask:
        if not m.any():
            continue
        ys, xs = torch.nonzero(m, as_tuple=True)
        h, w = (ys.max() - ys.min() + 1).item(), (xs.max() - xs.min() + 1).item()
        area = m.sum().item()
        rows.append([area / (h * w), h / w, (area**0.5) / max(m.shape)])
    return torch.tensor(rows, dtype=torch.float32).mean(0) if rows else torch.zeros(3)


def on_grid(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """(T, H, W) bool -> (T, grid, grid) bool: a cell is the object's when it covers half the cell or more."""
    return F.adaptive_avg_pool2d(mask[:, None].float(), grid)[:, 0] >= 0.5


def upsample(feats: torch.Tensor, size: int) -> torch.Tensor:
    """(T, h, w, E) -> (T, size, size, E): each pixel takes the feature of its cell (nearest)."""
    return F.interpolate(feats.permute(0, 3, 1, 2), size=size, mode="nearest").permute(0, 2, 3, 1)


def trajectory_of(mask: torch.Tensor, assignment: torch.Tensor) -> int:
    """The trajectory id that holds most of an object's cells: ``mask`` (T, H, W) bool at the video's resolution,
    ``assignment`` (T, g, g) ids on the segmentation grid; an object smaller than half a cell counts every cell it
    touches."""
    share = F.adaptive_avg_pool2d(mask[:, None].float(), assignment.shape[-1])[:, 0]
    cells = share >= 0.5 if (share >= 0.5).any() else share > 0
    return int(torch.mode(assignment[cells]).values)


def read_objects(
    split_dir: Path, limit: int, frames: int, grid: int, extractors: dict, segment=None
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Per object of the first ``limit`` videos of a split: its features by name, its shape and its colour.
    ``segment``: frames (T, C, H, W) uint8 -> (T, grid, grid) trajectory ids (TrajTok's masks), or None."""
    from trajtok.io.video import load_video

    feats: dict[str, list[torch.Tensor]] = {}
    shapes, colours = [], []
    for path, meta in _common.synth_videos(split_dir, limit, (".json", ".npz")):
        video = load_video(path, num_frames=frames)
        ids = np.load(path.with_suffix(".npz"))["masks"][
            video.indices.numpy()
        ]  # (T, H, W): 0 background, object id + 1
        ids = torch.from_numpy(ids).long()
        size = ids.shape[-1]
        maps = {name: fn(video.frames) for name, fn in extractors.items()}  # name -> (T, H, W, E) per pixel
        assignment = segment(video.frames) if segment is not None else None  # (T, grid, grid) trajectory ids
        rgb = video.frames.permute(0, 2, 3, 1).float() / 255.0
        for obj in meta["objects"]:
            mask = ids == obj["id"] + 1
            if mask.sum() < MIN_PIXELS:
                continue
            row = {
                "colour": rgb[mask].mean(0),
                f"mask, {size} px": mask_geometry(mask),
                f"mask, {grid} x {grid} grid": mask_geometry(on_grid(mask, grid)),
            }
            row |= {name: m[mask].mean(0) for name, m in maps.items()}
            if assignment is not None:
                row["trajtok masks"] = mask_geometry(assignment == trajectory_of(mask, assignment))
            for name, value in row.items():
                feats.setdefault(name, []).append(value)
            shapes.append(obj["shape"])
            colours.append(obj["colour"])
    if not shapes:
        raise ValueError(f"{split_dir}: no object with {MIN_PIXELS}+ pixels in the sampled frames")
    return {k: torch.stack(v).float() for k, v in feats.items()}, shapes, colours


def probe_accuracy(x_train, y_train, x_test, y_test, classes: int, l2: float = 1e-3, iters: int = 300) -> float:
    """Multinomial logistic regression on standardised features -> held-out accuracy in percent."""
    logits = _common.linear_probe(x_train, y_train, x_test, classes, F.cross_entropy, l2, iters)
    return 100.0 * (logits.argmax(1) == y_test).float().mean().item()


def tower_extractor(tower_dir: Path):
    from trajvlm.training.tower import load_tower, normalise

    tower = load_tower(tower_dir).eval()
    patch = tower.config.patch_size

    @torch.no_grad()
    def extract(frames: torch.Tensor) -> torch.Tensor:
        size = frames.shape[-1]
        h = tower(pixel_values=normalise(frames)).last_hidden_state  # (T, g*g, E)
        g = size // patch
        return upsample(h.reshape(frames.shape[0], g, g, -1), size)

    return extract


def trajtok_extractor(model):
    @torch.no_grad()
    def extract(frames: torch.Tensor) -> torch.Tensor:
        return upsample(model.encode_pixels(frames[None])[0].float(), frames.shape[-1])

    return extract


def trajtok_segmenter(model):
    @torch.no_grad()
    def segment(frames: torch.Tensor) -> torch.Tensor:
        return model.tokenize_video(frames[None]).assignment[0]  # (T, h, w)

    return segment


def run(args: argparse.Namespace) -> dict:
    from trajtok.synth.world import COLOURS, SHAPES

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    extractors, grid, segment = {}, args.grid, None
    for tower_dir in map(Path, args.tower or []):
        extractors[f"tower {tower_dir}"] = tower_extractor(tower_dir)
    if args.trajtok:
        from trajtok import TrajTok
        from trajtok.io.checkpoints import resolve_checkpoint

        model = TrajTok.from_pretrained(resolve_checkpoint(args.trajtok)).eval()
        extractors[f"trajtok backbone {args.trajtok}"] = trajtok_extractor(model)
        segment = trajtok_segmenter(model)
        grid = model.config.image_size // 4  # its masks' grid
        if args.grid not in (None, grid):
            raise ValueError(f"--grid {args.grid}: the TrajTok checkpoint segments on a {grid} x {grid} grid")
    grid = grid or 16
    t0 = time.time()
    x_train, s_train, c_train = read_objects(data / "train", args.train_videos, args.frames, grid, extractors, segment)
    x_test, s_test, c_test = read_objects(data / args.split, args.test_videos, args.frames, grid, extractors, segment)
    targets = {"shape": (SHAPES, s_train, s_test), "colour": (COLOURS, c_train, c_test)}
    rows: dict[str, dict] = {}
    chance = {}
    for task, (names, train, test) in targets.items():
        y_train = torch.tensor([names.index(v) for v in train])
        y_test = torch.tensor([names.index(v) for v in test])
        chance[task] = round(100.0 * torch.bincount(y_test).max().item() / len(y_test), 1)  # the commonest class
        for name in x_train:
            acc = probe_accuracy(x_train[name], y_train, x_test[name], y_test, len(names))
            rows.setdefault(name, {"dim": x_train[name].shape[1]})[task] = round(acc, 1)
    result = {
        "train_objects": len(s_train),
        "split": args.split,
        "test_objects": len(s_test),
        "frames": args.frames,
        "grid": grid,
        "chance": chance,
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
    }
    print(
        f"\nObject-level linear probe, held-out accuracy %, {len(s_train)} train / {len(s_test)} {args.split} objects "
        f"(chance, the commonest class: shape {chance['shape']}, colour {chance['colour']})"
    )
    table = [[name, row["dim"], f"{row['shape']:.1f}", f"{row['colour']:.1f}"] for name, row in rows.items()]
    _common.print_table(["features", "dim", "shape", "colour"], table, "lrrr")
    _common.write_json(args.json, result, indent=2)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = _common.probe_arguments(__doc__, 600, "a `trajtok synth --out` folder (train + test, with masks)")
    ap.add_argument("--trajtok", default=None, help="a TrajTok checkpoint or `trajtok train` run folder")
    ap.add_argument("--grid", type=int, default=None, help="grid side of the mask geometry (default: TrajTok's, or 16)")
    return _common.run_cli(run, ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
