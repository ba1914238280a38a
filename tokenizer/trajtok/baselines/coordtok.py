"""CoordTok (arXiv 2411.14762): a video tokenizer into factorised triplane latents, decoded at query coordinates.

    model = CoordTok(CoordTokConfig.tiny())
    latents = model.encode(video)                  # (B, T, 3, H, W) RGB in [0, 1] -> (B, N, C) triplane tokens
    loss = model(video).loss                       # l2 on a random fraction of the video's patches
    recon = model.reconstruct(video)               # (B, T, 3, H, W)
    trajtok coordtok-train --out runs/coordtok steps=2000   # pretraining (trajtok.baselines.coordtok_train)

Encoder: the video is cut into tubelets (``tubelet_frames`` x ``tubelet_size`` x ``tubelet_size``; the paper:
8 x 16 x 16), each linearly embedded with a fixed sin/cos encoding of its normalised (t, y, x) centre. Learned
triplane queries (the planes xy of ``plane_size`` x ``plane_size``, yt and xt of ``plane_frames`` x
``plane_size``; the paper: 16x16, 32x16, 32x16 = 1,280 positions) are concatenated with the tubelet tokens and
updated by a transformer; the plane part, projected to ``latent_dim`` channels (the paper: 8), is the latent:
N = S^2 + 2 * T_p * S tokens of C channels, whatever the video's length and size.

Decoder: each query is a patch coordinate (t, y, x) (a ``patch_size`` x ``patch_size`` patch of frame t, the
paper: 8 x 8). The three planes (lifted to ``plane_dim`` channels) are sampled bilinearly at (x, y), (y, t) and
(x, t), summed, embedded with the coordinates' sin/cos encoding, and a transformer runs self-attention over the
sampled queries before a linear head predicts the patch's RGB values. Training reconstructs a random
``sample_fraction`` of the patches (the paper: ~3 %) with l2; the paper's second stage (whole frames + LPIPS) is
not implemented (no LPIPS weights offline). Because every position is normalised to [0, 1], one model encodes and
decodes videos of any length and of any size divisible by the tubelet size.

:class:`PatchAutoencoder` is the plain baseline of the benchmark (``eval/bench/bench_coordtok.py``): one latent of
``latent_dim`` channels per tubelet, a transformer encoder and decoder, the tubelet's pixels predicted back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from trajtok.io.config import unknown_fields
from trajtok.io.weights import load_strict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
KINDS = ("coordtok", "patch_ae")


@dataclass
class CoordTokConfig:
    """Architecture of a CoordTok (``kind="coordtok"``) or of the patch-autoencoder baseline (``kind="patch_ae"``)."""

    kind: str = "coordtok"  # "coordtok" (triplane latents) or "patch_ae" (one latent per tubelet, the baseline)
    image_size: int = 128  # H = W of the training videos (any multiple of tubelet_size and patch_size works later)
    num_frames: int = 128  # T of the training clips (positions are normalised, so other lengths encode too)
    tubelet_frames: int = 8  # frames of one encoder tubelet
    tubelet_size: int = 16  # pixels (height = width) of one encoder tubelet
    plane_size: int = 16  # S: side of the xy plane and the spatial side of the yt / xt planes
    plane_frames: int = 32  # T_p: temporal side of the yt and xt planes
    latent_dim: int = 8  # C: channels of a latent token (the bottleneck)
    width: int = 256  # encoder transformer width
    depth: int = 4  # encoder transformer layers
    heads: int = 4  # encoder attention heads
    plane_dim: int = 64  # decoder: channels the triplane latents are lifted to before sampling
    decoder_width: int = 256  # decoder transformer width
    decoder_depth: int = 4  # decoder transformer layers
    decoder_heads: int = 4  # decoder attention heads
    patch_size: int = 8  # side of one decoded patch (coordtok)
    sample_fraction: float = 0.03  # fraction of the patches reconstructed per training video (coordtok)
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio x width

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in (
            "image_size", "num_frames", "tubelet_frames", "tubelet_size", "plane_size", "plane_frames", "latent_dim",
            "width", "depth", "heads", "plane_dim", "decoder_width", "decoder_depth", "decoder_heads", "patch_size",
        ):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.image_size % self.tubelet_size or self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by tubelet_size {self.tubelet_size} and "
                f"patch_size {self.patch_size}"
            )
        if self.width % self.heads or self.decoder_width % self.decoder_heads:
            raise ValueError(
                f"width {self.width} / decoder_width {self.decoder_width} must be divisible by heads {self.heads} / "
                f"decoder_heads {self.decoder_heads}"
            )
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")

    @property
    def num_tokens(self) -> int:
        """Latent tokens of one training-size video: S^2 + 2 T_p S (coordtok) or the tubelet count (patch_ae)."""
        if self.kind == "coordtok":
            return self.plane_size**2 + 2 * self.plane_frames * self.plane_size
        t = math.ceil(self.num_frames / self.tubelet_frames)
        return t * (self.image_size // self.tubelet_size) ** 2

    @classmethod
    def paper(cls, **overrides: Any) -> CoordTokConfig:
        """The paper's CoordTok geometry: 128 frames at 128x128, 1,280 tokens of 8 channels."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> CoordTokConfig:
        """A seconds-on-CPU model for tests: 8 frames at 32x32, 4x4 + 2 x 4x4 planes (48 tokens)."""
        values: dict[str, Any] = dict(
            image_size=32, num_frames=8, tubelet_frames=4, tubelet_size=8, plane_size=4, plane_frames=4,
            latent_dim=4, width=32, depth=1, heads=2, plane_dim=16, decoder_width=32, decoder_depth=1,
            decoder_heads=2, patch_size=8, sample_fraction=0.25,
        )  # fmt: skip
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoordTokConfig:
        unknown_fields(cls, data)
        return cls(**data)


def sincos(coords: Tensor, dim: int) -> Tensor:
    """(..., k) coordinates in [0, 1] -> (..., dim) fixed sin/cos features (zero padded to ``dim``)."""
    k = coords.shape[-1]
    per = max(1, dim // (2 * k))
    freqs = torch.exp(torch.linspace(0.0, math.log(64.0), per, device=coords.device, dtype=coords.dtype)) * math.pi
    angles = coords[..., None] * freqs  # (..., k, per)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    return F.pad(enc, (0, dim - enc.shape[-1]))


def grid_coords(*sizes: int, device=None) -> Tensor:
    """Normalised cell centres of a grid of ``sizes``: (prod(sizes), len(sizes)) in (0, 1)."""
    axes = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n for n in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(sizes))


def transformer(width: int, depth: int, heads: int, mlp_ratio: float) -> nn.TransformerEncoder:
    def layer() -> nn.TransformerEncoderLayer:
        return nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )

    encoder = nn.TransformerEncoder(layer(), depth, enable_nested_tensor=False)
    # layers built one by one, not nn.TransformerEncoder's deep copies of one: DeepSpeed ZeRO-3 partitions parameters
    # as modules are built (zero.Init), and a deep copy of a partitioned parameter is an empty, unmanaged tensor
    encoder.layers = nn.ModuleList(layer() for _ in range(depth))
    return encoder


@dataclass
class CoordTokOutput:
    loss: Tensor  # scalar l2 over the sampled patches
    pred: Tensor  # (B, Q, P) predicted patches (P = pixels x 3)
    target: Tensor  # (B, Q, P)
    latents: Tensor  # (B, N, C)


class _Persistence:
    """save_pretrained / from_pretrained shared by CoordTok and PatchAutoencoder (atomic, strict)."""

    config: CoordTokConfig

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``config.json`` into the folder ``path`` (each atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]  # mixed into nn.Modules
        for name, write in (
            (WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt", "model": self.config.kind})),
            (CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")),
        ):
            fd, tmp = tempfile.mkstemp(dir=path, suffix=".tmp")
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, path / name)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike):
        """Load a folder written by ``save_pretrained``; strict: key or shape mismatches raise ValueError."""
        path = Path(path)
        if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} + {WEIGHTS_NAME} in {path} (a CoordTok save_pretrained folder)")
        config = CoordTokConfig.from_dict(json.loads((path / CONFIG_NAME).read_text()))
        model = build_coordtok(config)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {config.kind!r} model, not a {cls.__name__}")
        model.load_state_dict_strict(load_file(str(path / WEIGHTS_NAME)), source=str(path / WEIGHTS_NAME))
        return model.eval()

    def load_state_dict_strict(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        load_strict(self, state, source, self.config.kind)  # type: ignore[arg-type]  # mixed into nn.Modules


def check_video(video: Tensor, multiple: int, what: str) -> None:
    if not isinstance(video, Tensor) or video.ndim != 5 or video.shape[2] != 3:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"{what} needs a video (B, T, 3, H, W) RGB in [0, 1], got {shape}")
    h, w = video.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{what}: frame size {h}x{w} must be divisible by {multiple} (tubelet / patch size)")


def to_tubelets(video: Tensor, tf: int, ts: int) -> tuple[Tensor, tuple[int, int, int]]:
    """(B, T, 3, H, W) -> (B, t*h*w, tf*ts*ts*3) tubelets (T padded by repeating the last frame) and (t, h, w)."""
    b, t, c, h, w = video.shape
    pad = (-t) % tf
    if pad:
        video = torch.cat([video, video[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
    nt, nh, nw = video.shape[1] // tf, h // ts, w // ts
    x = video.reshape(b, nt, tf, c, nh, ts, nw, ts).permute(0, 1, 4, 6, 2, 5, 7, 3)  # (B, t, h, w, tf, ts, ts, C)
    return x.reshape(b, nt * nh * nw, tf * ts * ts * c), (nt, nh, nw)


def from_tubelets(x: Tensor, grid: tuple[int, int, int], tf: int, ts: int, num_frames: int) -> Tensor:
    """Inverse of :func:`to_tubelets`: (B, t*h*w, tf*ts*ts*3) -> (B, T, 3, H, W) (padding frames dropped)."""
    b = x.shape[0]
    nt, nh, nw = grid
    x = x.reshape(b, nt, nh, nw, tf, ts, ts, 3).permute(0, 1, 4, 7, 2, 5, 3, 6)  # (B, t, tf, C, h, ts, w, ts)
    return x.reshape(b, nt * tf, 3, nh * ts, nw * ts)[:, :num_frames]


class CoordTok(_Persistence, nn.Module):
    """Triplane encoder + coordinate-query decoder (see the module docstring)."""

    def __init__(self, config: CoordTokConfig) -> None:
        super().__init__()
        if config.kind != "coordtok":
            raise ValueError(f"CoordTok needs kind='coordtok', got {config.kind!r} (use build_coordtok)")
        self.config = c = config
        tub = c.tubelet_frames * c.tubelet_size**2 * 3
        self.embed = nn.Linear(tub, c.width)
        s, tp = c.plane_size, c.plane_frames
        self.plane_shapes = {"xy": (s, s), "yt": (tp, s), "xt": (tp, s)}  # (rows, cols) of each plane
        coords = [grid_coords(*shape) for shape in self.plane_shapes.values()]
        self.num_plane_tokens = sum(x.shape[0] for x in coords)
        # learned queries start from the sin/cos of their plane coordinates + a plane-type offset
        init = torch.cat([sincos(x, c.width) for x in coords])  # (N, E)
        self.plane_counts = [x.shape[0] for x in coords]  # positions per plane (xy, yt, xt)
        self.queries = nn.Parameter(init * 0.1 + torch.randn_like(init) * 0.02)
        self.kind_embed = nn.Embedding(3, c.width)
        self.encoder = transformer(c.width, c.depth, c.heads, c.mlp_ratio)
        self.enc_norm = nn.LayerNorm(c.width)
        self.to_latent = nn.Linear(c.width, c.latent_dim)
        # decoder
        self.lift = nn.ModuleDict({k: nn.Linear(c.latent_dim, c.plane_dim) for k in self.plane_shapes})
        self.query_in = nn.Linear(c.plane_dim, c.decoder_width)
        self.decoder = transformer(c.decoder_width, c.decoder_depth, c.decoder_heads, c.mlp_ratio)
        self.dec_norm = nn.LayerNorm(c.decoder_width)
        self.head = nn.Linear(c.decoder_width, c.patch_size**2 * 3)

    @property
    def num_tokens(self) -> int:
        return self.num_plane_tokens

    def encode(self, video: Tensor) -> Tensor:
        """(B, T, 3, H, W) RGB in [0, 1] -> triplane latents (B, N, C): xy, then yt, then xt, row-major."""
        c = self.config
        check_video(video, c.tubelet_size, "CoordTok.encode")
        x, (nt, nh, nw) = to_tubelets(video.to(self.queries.dtype), c.tubelet_frames, c.tubelet_size)
        pos = grid_coords(nt, nh, nw, device=x.device).to(x.dtype)  # (t*h*w, 3)
        x = self.embed(x * 2 - 1) + sincos(pos, c.width)  # (B, t*h*w, E)
        # plane type of each query (computed, not a buffer: loading code never has to restore it)
        kind = torch.repeat_interleave(
            torch.arange(3, device=x.device), torch.tensor(self.plane_counts, device=x.device)
        )
        q = (self.queries + self.kind_embed(kind))[None].expand(x.shape[0], -1, -1)  # (B, N, E)
        h = self.encoder(torch.cat([x, q], dim=1))[:, x.shape[1] :]  # (B, N, E)
        return self.to_latent(self.enc_norm(h))  # (B, N, C)

    def planes(self, latents: Tensor) -> dict[str, Tensor]:
        """(B, N, C) latents -> the three lifted planes, each (B, plane_dim, rows, cols)."""
        if latents.ndim != 3 or latents.shape[1:] != (self.num_plane_tokens, self.config.latent_dim):
            raise ValueError(
                f"latents must be (B, {self.num_plane_tokens}, {self.config.latent_dim}), got {tuple(latents.shape)}"
            )
        out, start = {}, 0
        for name, (rows, cols) in self.plane_shapes.items():
            part = self.lift[name](latents[:, start : start + rows * cols])  # (B, rows*cols, Cp)
            out[name] = part.transpose(1, 2).reshape(latents.shape[0], -1, rows, cols)
            start += rows * cols
        return out

    def decode_queries(self, planes: dict[str, Tensor], coords: Tensor) -> Tensor:
        """Planes and (B, Q, 3) patch-centre coordinates (t, y, x) in [0, 1] -> (B, Q, patch_size^2 * 3) pixels."""
        g = coords * 2 - 1  # grid_sample's [-1, 1]
        t, y, x = g[..., 0], g[..., 1], g[..., 2]
        pairs = {"xy": (x, y), "yt": (y, t), "xt": (x, t)}  # (column, row) of each plane
        feat: Tensor | None = None
        for name, (col, row) in pairs.items():
            grid = torch.stack([col, row], dim=-1)[:, :, None]  # (B, Q, 1, 2)
            sampled = F.grid_sample(planes[name], grid.to(planes[name].dtype), mode="bilinear", align_corners=False)
            term = sampled[..., 0].transpose(1, 2)  # (B, Q, Cp)
            feat = term if feat is None else feat + term
        assert feat is not None  # three planes
        h = self.query_in(feat) + sincos(coords.to(feat.dtype), self.config.decoder_width)
        h = self.decoder(h)
        return self.head(self.dec_norm(h))  # (B, Q, p*p*3)

    def patch_grid(self, num_frames: int, height: int, width: int, device=None) -> Tensor:
        """Coordinates (t, y, x) in (0, 1) of every patch centre: (T * H/p * W/p, 3), frame-major."""
        p = self.config.patch_size
        return grid_coords(num_frames, height // p, width // p, device=device)

    def patches(self, video: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, T*H/p*W/p, p*p*3) target patches, ordered as :meth:`patch_grid`."""
        p = self.config.patch_size
        b, t, c, h, w = video.shape
        x = video.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 4, 6, 2)  # (B, T, h, w, p, p, C)
        return x.reshape(b, t * (h // p) * (w // p), p * p * c)

    def forward(self, video: Tensor, num_samples: int | None = None, generator=None) -> CoordTokOutput:
        """l2 reconstruction of ``num_samples`` random patches per video (default ``sample_fraction`` of them)."""
        c = self.config
        check_video(video, max(c.tubelet_size, c.patch_size), "CoordTok")
        b, t, _, h, w = video.shape
        latents = self.encode(video)
        target_all = self.patches(video.to(latents.dtype))  # (B, P_all, p*p*3)
        coords_all = self.patch_grid(t, h, w, device=video.device).to(latents.dtype)
        n_all = coords_all.shape[0]
        q = num_samples or max(1, round(c.sample_fraction * n_all))
        idx = torch.stack([torch.randperm(n_all, generator=generator)[:q] for _ in range(b)]).to(video.device)
        coords = coords_all[idx]  # (B, Q, 3)
        target = torch.gather(target_all, 1, idx[..., None].expand(-1, -1, target_all.shape[-1]))
        pred = self.decode_queries(self.planes(latents), coords)
        return CoordTokOutput(F.mse_loss(pred, target), pred, target, latents)

    @torch.no_grad()
    def decode(self, latents: Tensor, num_frames: int, height: int, width: int, chunk: int | None = None) -> Tensor:
        """Latents (B, N, C) -> video (B, T, 3, H, W): every patch queried, ``chunk`` queries attending together.

        Chunks are a fixed random permutation of the patches (as training samples them), ``chunk`` defaults to the
        training query count of a ``num_frames`` x ``height`` x ``width`` video.
        """
        p = self.config.patch_size
        coords = self.patch_grid(num_frames, height, width, device=latents.device).to(latents.dtype)
        n = coords.shape[0]
        chunk = chunk or max(1, round(self.config.sample_fraction * n))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(latents.device)
        planes = self.planes(latents)
        out = latents.new_zeros(latents.shape[0], n, p * p * 3)
        for s in range(0, n, chunk):
            idx = order[s : s + chunk]
            out[:, idx] = self.decode_queries(planes, coords[idx][None].expand(latents.shape[0], -1, -1))
        b = latents.shape[0]
        x = out.reshape(b, num_frames, height // p, width // p, p, p, 3).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(b, num_frames, 3, height, width).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, video: Tensor, chunk: int | None = None) -> Tensor:
        b, t, _, h, w = video.shape
        return self.decode(self.encode(video), t, h, w, chunk)


class PatchAutoencoder(_Persistence, nn.Module):
    """Baseline: one ``latent_dim``-channel latent per tubelet; transformer encoder and decoder over the tubelets."""

    def __init__(self, config: CoordTokConfig) -> None:
        super().__init__()
        if config.kind != "patch_ae":
            raise ValueError(f"PatchAutoencoder needs kind='patch_ae', got {config.kind!r}")
        self.config = c = config
        tub = c.tubelet_frames * c.tubelet_size**2 * 3
        self.embed = nn.Linear(tub, c.width)
        self.encoder = transformer(c.width, c.depth, c.heads, c.mlp_ratio)
        self.enc_norm = nn.LayerNorm(c.width)
        self.to_latent = nn.Linear(c.width, c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, c.decoder_width)
        self.decoder = transformer(c.decoder_width, c.decoder_depth, c.decoder_heads, c.mlp_ratio)
        self.dec_norm = nn.LayerNorm(c.decoder_width)
        self.head = nn.Linear(c.decoder_width, tub)

    def encode(self, video: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, t*h*w, C): one latent per tubelet."""
        c = self.config
        check_video(video, c.tubelet_size, "PatchAutoencoder.encode")
        x, grid = to_tubelets(video.to(self.embed.weight.dtype), c.tubelet_frames, c.tubelet_size)
        pos = grid_coords(*grid, device=x.device).to(x.dtype)
        x = self.encoder(self.embed(x * 2 - 1) + sincos(pos, c.width))
        self._grid = grid
        return self.to_latent(self.enc_norm(x))

    def decode(self, latents: Tensor, grid: tuple[int, int, int], num_frames: int) -> Tensor:
        c = self.config
        pos = grid_coords(*grid, device=latents.device).to(latents.dtype)
        h = self.decoder(self.from_latent(latents) + sincos(pos, c.decoder_width))
        x = self.head(self.dec_norm(h))  # (B, t*h*w, tub)
        return from_tubelets(x, grid, c.tubelet_frames, c.tubelet_size, num_frames)

    def forward(self, video: Tensor, num_samples: int | None = None, generator=None) -> CoordTokOutput:
        latents = self.encode(video)
        recon = self.decode(latents, self._grid, video.shape[1])
        target = video.to(recon.dtype)
        return CoordTokOutput(F.mse_loss(recon, target), recon, target, latents)

    @torch.no_grad()
    def reconstruct(self, video: Tensor, chunk: int | None = None) -> Tensor:
        latents = self.encode(video)
        return self.decode(latents, self._grid, video.shape[1]).clamp(0, 1)


def build_coordtok(config: CoordTokConfig) -> CoordTok | PatchAutoencoder:
    """The model of ``config.kind``."""
    return CoordTok(config) if config.kind == "coordtok" else PatchAutoencoder(config)


def psnr(recon: Tensor, target: Tensor) -> float:
    """PSNR in dB of videos in [0, 1] (mean squared error over every pixel of the batch)."""
    mse = float(F.mse_loss(recon.float(), target.float()))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


__all__ = [
    "CoordTok",
    "CoordTokConfig",
    "CoordTokOutput",
    "PatchAutoencoder",
    "build_coordtok",
    "psnr",
]
