"""python eval/bench/bench_release_parity.py --upstream /tmp/upstream-trajtok --dinov3 /tmp/upstream-trajtok/dinov3

Parity of ``segmenter_variant="release"`` with the authors' own segmenter code. Both models get the same random
weights through the release's key names: the authors' ``SimpleSegmenter`` (their ``configs/pretrain.yaml``, with
the 4x high-resolution decoder their ``SegmentWrapper`` trains) is built and randomly initialised, its state dict is
saved as a release checkpoint (``module.vision_encoder.*``) and converted by ``trajtok convert-release`` into a
TrajTok. Both then read the same real clips (``--frames`` frames at 224 px, fp32) and the table gives, per clip, the
largest absolute difference of the backbone features, of the Perceiver's queries, of the assignment logits and of
the soft masks (softmax over K), and the agreement of the hard masks (argmax over K), at the 56 x 56 grid and at
the 224 x 224 output of the high-resolution head.

``--upstream``: a checkout of the authors' repository (the folder holding ``segmenter/trajtok_segmenter``, or
``segmenter/`` itself), never part of this repository. ``--dinov3``: a checkout of the DINOv3 repository, whose
``ConvNeXt`` their backbone loads (their ``TRAJTOK_DINOV3_ROOT``). ``--deps``: a folder with their pure-Python
dependencies (rotary-embedding-torch, einops-exts, easydict, omegaconf), e.g. made by
``pip install --no-deps --target DIR rotary-embedding-torch einops-exts easydict omegaconf antlr4-python3-runtime``.

The harness around their code changes no computation of the segmenter; it only makes it importable here:
``timm`` (their CLIP-ResNet option; absent on this CPU build) is a stub that raises, two pruning helpers that
transformers 5 removed (imported by their TrajViT module, unused by the segmenter) are stubs that raise, their
``torch.hub.load(dinov3, "dinov3_convnext_small")`` calls that entry point of ``dinov3.hub.backbones`` directly
(DINOv3's ``hubconf.py`` imports its detection heads, which need torchvision), and their backbone is built without
the pretrained DINOv3 file (the weights are random anyway).

Exits 0 with a "skipped:" line when the upstream code, DINOv3 or the data is absent. ``--json`` keeps the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import types
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tokenizer"), str(Path(__file__).resolve().parent)]
import _common  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("TRAJVLM_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CLIPS = ("masks/blackswan/video.mp4", "clips/cartoon_pan.mp4")
UPSTREAM_DEPS = ("einops", "einops_exts", "rotary_embedding_torch", "easydict", "omegaconf", "yaml")


class Skip(Exception):
    """The comparison cannot run here (the message says what is missing)."""


def find_upstream(path: Path) -> Path:
    """The folder that holds their ``trajtok_segmenter`` package."""
    for cand in (path, path / "segmenter"):
        if (cand / "trajtok_segmenter" / "model" / "segmenter.py").is_file():
            return cand
    raise Skip(f"--upstream {path}: no trajtok_segmenter/model/segmenter.py there or under segmenter/")


def upstream_commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _unavailable(what: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{what} is not available in the parity harness")

    return fail


def import_upstream(seg_root: Path, dinov3: Path, deps: Path | None):
    """Their ``SimpleSegmenter`` class and their ``configs/pretrain.yaml``, importable on this CPU build."""
    if not (dinov3 / "dinov3" / "models" / "convnext.py").is_file():
        raise Skip(f"--dinov3 {dinov3}: no dinov3/models/convnext.py there (a checkout of the DINOv3 repository)")
    for p in (deps, seg_root, dinov3):
        if p is not None and str(p) not in sys.path:
            sys.path.insert(0, str(p))
    missing = [m for m in UPSTREAM_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"their segmenter imports {missing}: install them into a scratch folder and pass it as --deps")
    if importlib.util.find_spec("timm") is None:  # their CLIP-ResNet option only; the release uses DINOv3
        stub = types.ModuleType("timm")
        stub.create_model = _unavailable("timm (CLIP-ResNet backbone)")
        sys.modules["timm"] = stub
    import transformers.pytorch_utils as pu

    for name in ("find_pruneable_heads_and_indices", "prune_linear_layer"):  # their TrajViT's imports only
        if not hasattr(pu, name):
            setattr(pu, name, _unavailable(name))
    from dinov3.hub import backbones as dinov3_backbones

    def hub_load(repo, model, source=None, **kwargs):  # what torch.hub.load(repo, model, source="local") returns
        if Path(repo).resolve() != dinov3.resolve():
            raise RuntimeError(f"parity harness: unexpected torch.hub.load({repo!r}, {model!r})")
        return getattr(dinov3_backbones, model)(**kwargs)

    torch.hub.load = hub_load
    os.environ["TRAJTOK_DINOV3_ROOT"] = str(dinov3)  # where their DINOResNetHierFeat looks
    from trajtok_segmenter.model.backbones import dinov3_convnext

    defaults = dinov3_convnext.DINOResNetHierFeat.__init__.__defaults__  # (model_size, out, upsample, pretrained)
    dinov3_convnext.DINOResNetHierFeat.__init__.__defaults__ = (*defaults[:-1], False)
    import yaml
    from trajtok_segmenter.model.segmenter import SimpleSegmenter

    cfg = yaml.safe_load((seg_root / "configs" / "pretrain.yaml").read_text())
    return SimpleSegmenter, cfg


def build_upstream(simple_segmenter, cfg: dict):
    """Their segmenter as their ``SegmentWrapper`` builds it (output_res = image_res // mask_down_factor)."""
    from easydict import EasyDict

    traj = dict(cfg["traj_model"])
    traj["output_res"] = cfg["image_res"] // cfg["mask_down_factor"]
    model = simple_segmenter(
        config=EasyDict(traj),
        backbone_config=EasyDict(cfg["backbone"]),
        perceiver_config=EasyDict(cfg["perceiver"]),
        high_res=not traj["no_high_res"],
    )
    return model.eval()


def _canonical(key: str) -> str:
    return key.replace(".backbone.norms.3.", ".backbone.norm.")  # one module under two names in the release


def random_release_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors for release keys (``vision_encoder.*``), each a function of (seed, key, shape) alone, so that
    any model holding these names gets the same values. Scales where each part matters: layer scales 0.1-0.9 (not
    DINOv3's 1e-6), norms' weights around 1, stored rotary frequencies rescaled, logit scale below its cap."""
    out = {}
    for key, shape in shapes.items():
        name = _canonical(key)
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("rotary_emb.freqs"):
            dim = 2 * shape[0]  # RotaryEmbedding(dim) stores dim / 2 frequencies
            ladder = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
            value = ladder * (0.5 + torch.rand(shape, generator=g))
        elif name.endswith("log_scale"):
            value = 1.0 + torch.rand(shape, generator=g)  # softplus(s) + 1 in [2.3, 3.1]
        elif leaf == "gamma":
            value = 0.1 + 0.8 * torch.rand(shape, generator=g)
        elif name.endswith("latents"):
            value = torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            transposed = ".conv_up." in name and shape[-1] > 1  # ConvTranspose2d weights are (in, out, k, k)
            fan_in = shape[0] if transposed else math.prod(shape[1:])
            value = torch.randn(shape, generator=g) / fan_in**0.5
        elif leaf == "bias":
            value = 0.1 * torch.randn(shape, generator=g)
        else:  # norms' weights, the pretraining's scalars
            value = 1.0 + 0.2 * torch.randn(shape, generator=g)
        out[key] = value
    return out


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    """Their segmenter's every tensor from ``random_release_state`` (strict load: their names are the release's)."""
    shapes = {f"vision_encoder.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    state = random_release_state(shapes, seed)
    model.load_state_dict({k[len("vision_encoder.") :]: v for k, v in state.items()}, strict=True)


def convert_into_ours(upstream: torch.nn.Module, workdir: Path):
    """Their state dict -> a release checkpoint (as their training saves it) -> ``trajtok convert-release``."""
    from trajtok import TrajTok
    from trajtok.io.release import convert

    state = {f"module.vision_encoder.{k}": v.clone() for k, v in upstream.state_dict().items()}
    path = workdir / "model.pth"
    torch.save({"model": state, "meta": {"epoch": 0}}, path)
    out = convert(path, workdir / "converted")
    return TrajTok.from_pretrained(out).eval()


# the tiny layout of tests/tokenizer/test_release.py: E = 64, K = 8, ConvNeXt widths 8-32, depths 1-1-2-1, 2 layers
TINY = {"width": 64, "queries": 8, "dims": (8, 16, 24, 32), "depths": (1, 1, 2, 1), "seg_depth": 2, "grid": 8}


def build_tiny_upstream(simple_segmenter, cfg: dict):
    """Their segmenter at the tiny test size: their SimpleSegmenter with E = 64, K = 8, an 8 x 8 grid and the 4x
    decoder; their DINOResNetHierFeat keeps its forward, with its ConvNeXt-Small swapped for a smaller instance of
    the same DINOv3 class (and 1x1 projections from those widths)."""
    from dinov3.models.convnext import ConvNeXt
    from easydict import EasyDict

    e, grid = TINY["width"], TINY["grid"]
    traj = dict(cfg["traj_model"], embed_dim=e, segment_embed_dim=e, num_traj=TINY["queries"])
    traj.update(latent_res=grid, output_res=4 * grid)
    model = simple_segmenter(
        config=EasyDict(traj),
        backbone_config=EasyDict(cfg["backbone"]),
        perceiver_config=EasyDict(depth=TINY["seg_depth"]),
        high_res=True,
    )
    model.patch_encoder.backbone = ConvNeXt(depths=list(TINY["depths"]), dims=list(TINY["dims"]))
    model.patch_encoder.proj = torch.nn.ModuleList(torch.nn.Conv2d(c, e, kernel_size=1) for c in TINY["dims"])
    return model.eval()


@torch.no_grad()
def write_fixture(simple_segmenter, cfg: dict, path: Path, commits: dict[str, str], seed: int = 0) -> None:
    """Their tiny segmenter's outputs on 2 random normalised 32 px frames, weights from ``random_release_state``:
    what ``test_release.py`` checks our converted model against without their code."""
    from safetensors.torch import save_file

    model = build_tiny_upstream(simple_segmenter, cfg)
    randomise(model, seed)
    frames = torch.randn(2, 3, 4 * TINY["grid"], 4 * TINY["grid"], generator=torch.Generator().manual_seed(seed))
    caught: dict[str, torch.Tensor] = {}
    hook = model.trajectory_perceiver.register_forward_hook(lambda m, i, o: caught.__setitem__("queries", o))
    low, high = model(video=frames[None], output_high_res=True)  # (1, T*h*w, K), (1, T*H*W, K)
    hook.remove()
    tensors = {"frames": frames, "queries": caught["queries"], "logits": low, "high_res_logits": high}
    meta = {"seed": str(seed), "tiny": json.dumps(TINY), **commits}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    print(f"wrote {path}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))


def load_clip(path: Path, frames: int, size: int) -> torch.Tensor:
    """(T, 3, size, size) float in [0, 1]: ``frames`` frames spread over the clip, resized as TrajTok resizes."""
    from trajtok.io.video import load_video

    x = load_video(path, num_frames=frames).frames.float() / 255.0  # (T, 3, H, W)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


@torch.no_grad()
def compare(upstream: torch.nn.Module, ours, frames: torch.Tensor) -> dict[str, float]:
    """Both models on one clip ``frames`` (T, 3, S, S) in [0, 1]; differences of every stage."""
    t = frames.shape[0]
    mean, std = ours.pixel_mean.float(), ours.pixel_std.float()
    caught: dict[str, torch.Tensor] = {}
    hook = upstream.trajectory_perceiver.register_forward_hook(lambda m, i, o: caught.__setitem__("queries", o))
    try:
        (low, high), their_feats = upstream(
            video=((frames - mean) / std)[None], output_high_res=True, return_intermediate_feature=True
        )  # (1, T*h*w, K), (1, T*H*W, K), (1, T*h*w, E)
    finally:
        hook.remove()
    feats = ours.encode_pixels(frames[None])  # (1, T, h, w, E): normalised inside with the same mean / std
    queries, logits = ours.segmenter(feats)  # (1, K, E), (1, K, T, h, w)
    hi = ours.segmenter.high_res_logits(feats, queries)  # (1, K, T, 4h, 4w)
    k = logits.shape[1]
    ours_low = logits.reshape(1, k, -1).transpose(1, 2)  # (1, T*h*w, K) in their order (t, row, column)
    ours_high = hi.reshape(1, k, -1).transpose(1, 2)  # (1, T*H*W, K)
    row = {"frames": t, "grid": tuple(feats.shape[2:4]), "hires": tuple(hi.shape[-2:])}
    row["features"] = _maxdiff(feats.reshape(1, -1, feats.shape[-1]), their_feats)
    row["features_scale"] = their_feats.abs().max().item()
    row["queries"] = _maxdiff(queries, caught["queries"])
    for tag, a, b in (("low", ours_low, low), ("high", ours_high, high)):
        row[f"{tag}_logits"] = _maxdiff(a, b)
        row[f"{tag}_soft"] = _maxdiff(a.softmax(-1), b.softmax(-1))
        agree = a.argmax(-1) == b.argmax(-1)  # (1, pixels)
        row[f"{tag}_hard_agree"] = 100.0 * agree.double().mean().item()
        top2 = b.topk(2, dim=-1).values  # (1, pixels, 2): a flipped pixel is a near tie when its margin is tiny
        row[f"{tag}_flip_margin"] = (top2[..., 0] - top2[..., 1])[~agree].max().item() if (~agree).any() else 0.0
        row[f"{tag}_used"] = int(b.argmax(-1).unique().numel())  # queries that win a pixel (upstream)
    return row


def print_table(rows: dict[str, dict]) -> None:
    cols = [
        ("features", "feat max|d|", "{:.2e}"),
        ("queries", "queries", "{:.2e}"),
        ("low_logits", "logits 56", "{:.2e}"),
        ("low_soft", "soft 56", "{:.2e}"),
        ("low_hard_agree", "hard 56 %", "{:.3f}"),
        ("high_logits", "logits 224", "{:.2e}"),
        ("high_soft", "soft 224", "{:.2e}"),
        ("high_hard_agree", "hard 224 %", "{:.3f}"),
    ]
    table = [[clip, *(fmt.format(row[key]) for key, _, fmt in cols)] for clip, row in rows.items()]
    _common.print_table(["clip", *(title for _, title, _ in cols)], table, "l" + "r" * len(cols))
    margin = max(row[f"{tag}_flip_margin"] for row in rows.values() for tag in ("low", "high"))
    print(f"largest top-2 logit margin (upstream) of a pixel whose hard mask differs: {margin:.2e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--upstream", type=Path, help="checkout of the authors' repository (outside this repository)")
    ap.add_argument("--dinov3", type=Path, default=None, help="DINOv3 checkout (default $TRAJTOK_DINOV3_ROOT)")
    ap.add_argument("--deps", type=Path, default=None, help="folder of their pure-Python dependencies")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared real clips")
    ap.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clips under --data")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip (the release was trained at T <= 8)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    ap.add_argument("--write-fixture", type=Path, default=None, help="write the tiny parity fixture here and stop")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    try:
        if args.upstream is None:
            raise Skip("no --upstream given (a checkout of the authors' repository)")
        if not args.upstream.is_dir():
            raise Skip(f"--upstream {args.upstream} does not exist")
        if args.write_fixture is None and not (args.data / "manifest.json").is_file():
            raise Skip(f"real-video data not found at {args.data} (set --data or TRAJVLM_SHARED_DATA)")
        seg_root = find_upstream(args.upstream)
        dinov3 = args.dinov3 or Path(os.environ.get("TRAJTOK_DINOV3_ROOT", args.upstream / "dinov3"))
        simple_segmenter, cfg = import_upstream(seg_root, dinov3, args.deps)
    except Skip as e:
        print(f"skipped: {e}")
        return 0
    commit = upstream_commit(seg_root)
    if args.write_fixture is not None:
        commits = {"upstream_commit": commit, "dinov3_commit": upstream_commit(dinov3)}
        write_fixture(simple_segmenter, cfg, args.write_fixture, commits, args.seed)
        return 0
    missing = [c for c in args.clips if not (args.data / c).exists()]
    if missing:
        print(f"error: clips not found under {args.data}: {missing}", file=sys.stderr)
        return 2
    upstream = build_upstream(simple_segmenter, cfg)
    randomise(upstream, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ours = convert_into_ours(upstream, Path(tmp))
    size = ours.config.image_size
    rows = {}
    for clip in args.clips:
        rows[clip] = compare(upstream, ours, load_clip(args.data / clip, args.frames, size))
        print(f"{clip}: done", file=sys.stderr)
    print(f"upstream {commit}; fp32; {args.frames} frames at {size} px; random weights (seed {args.seed})")
    print_table(rows)
    _common.write_json(args.json, {"upstream_commit": commit, "seed": args.seed, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
