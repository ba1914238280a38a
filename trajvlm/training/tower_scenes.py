"""Fresh scenes of a synthetic world for the tower: every step draws new objects, so nothing can be memorised.

The tower's training split is a few hundred videos read at a few frames each (600 x 2 = 1,200 images in the main
job). On those it learns to name the shapes of the objects it was trained on and no others: after 1,600 steps its
per-patch shape head is right on 99 % of a training video's object patches and on 25 % of a val video's (colour:
100 % and 95 %), because in a few hundred videos the set of colours in view tells which video it is, and with it
the shapes. A pretrained tower (SigLIP) has seen millions of images; the synthetic world's stand-in is its own
renderer. :class:`SceneSampler` draws scenes with the world's settings (frame size, object count and size, noise
and blur, read from the world's ``manifest.json``), renders ``frames`` frames of each with the world's sprites and
backgrounds (objects move between frames and are out of view in some), and writes the cast caption in the world's
words (:func:`trajtok.synth.text.still_caption`). ``TowerConfig.scene_frac`` sets the share of each batch drawn so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset

from trajtok.synth.longworld import LongWorldConfig
from trajtok.synth.text import still_caption
from trajtok.synth.world import COLOURS, SHAPES, TEXTURES, ObjectSpec, Shot, Simulation, make_background, render


@dataclass(frozen=True)
class SceneSettings:
    """What a scene copies from its world (all read from the world's manifest)."""

    height: int
    width: int
    objects: tuple[int, int]  # fewest and most objects of a video
    object_size: tuple[float, float]  # diameter range, fraction of min(height, width)
    noise_std: tuple[float, float]  # per-pixel noise std range (0-255)
    blur_prob: float  # chance a scene is blurred as the world's videos are
    world_scale: float  # the background's extent over the view's (the camera shows part of it)


def _pair(value: object) -> tuple:
    return (value, value) if isinstance(value, (int, float)) else tuple(value)  # type: ignore[arg-type]


def scene_settings(data: str | Path) -> SceneSettings:
    """The settings of the world written to ``data`` (``trajtok synth --world long --out data``)."""
    path = Path(data) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: scenes copy the settings of a world written by `trajtok synth`")
    try:
        gen = json.loads(path.read_text())["generator"]
        size, objects, world = gen["size"], gen["objects"], gen.get("world")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a `trajtok synth` manifest.json ({type(e).__name__}: {e})") from None
    if world != "long":
        raise ValueError(f"{path}: scenes are drawn for the long world (`--world long`), not {world!r}")
    config, default = gen.get("config", {}), LongWorldConfig()  # a setting the manifest lacks is the default's

    def pair(name: str) -> tuple[float, float]:
        lo, hi = _pair(config.get(name, getattr(default, name)))
        return float(lo), float(hi)

    height, width = _pair(size)
    fewest, most = _pair(objects)
    return SceneSettings(
        height=int(height),
        width=int(width),
        objects=(int(fewest), int(most)),
        object_size=pair("object_size"),
        noise_std=pair("noise_std"),
        blur_prob=float(config.get("blur_prob", default.blur_prob)),
        world_scale=float(config.get("world_scale", default.world_scale)),
    )


class SceneSampler:
    """Draws scenes of a world: ``draw(n)`` -> frames, captions and per-frame object masks.

    ``frames`` frames per scene; an object is in view in each frame with probability ``visible_prob`` (and in at
    least one), at a new place in each (the tower's frames are spread over a long video, where objects move far
    between them). Objects are distinct (colour, shape) pairs, as in the world; textures and sizes are drawn as
    the world draws them.
    """

    def __init__(self, settings: SceneSettings, frames: int, seed: int, visible_prob: float = 0.75) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if not 0.0 < visible_prob <= 1.0:
            raise ValueError(f"visible_prob must be in (0, 1], got {visible_prob}")
        self.settings = settings
        self.frames = frames
        self.visible_prob = visible_prob
        self.rng = np.random.default_rng([seed, 7])  # its own stream: the tower's batches are unchanged

    def scene(self) -> tuple[np.ndarray, np.ndarray, dict, str]:
        """One scene: frames (T, H, W, 3) uint8, masks (T, H, W) int32 (object + 1), its record, its caption."""
        s, rng, T = self.settings, self.rng, self.frames
        H, W = s.height, s.width
        unit = float(min(H, W))
        n = int(rng.integers(s.objects[0], s.objects[1] + 1))
        pairs = [(c, sh) for c in COLOURS for sh in SHAPES]
        chosen = rng.permutation(len(pairs))[:n]
        objects = []
        for k, j in enumerate(chosen):
            colour, shape = pairs[int(j)]
            objects.append(
                ObjectSpec(
                    shape=shape,
                    colour=colour,
                    texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
                    size_name="",
                    size=float(rng.uniform(*s.object_size)) * unit,
                    motion="bounce",
                    speed=0.0,
                    collides=False,
                    depth=k,
                    start=0,
                    end=T,
                )
            )
        alive = rng.random((T, n)) < self.visible_prob
        for never in np.nonzero(~alive.any(0))[0]:
            alive[int(rng.integers(T)), never] = True
        pos = np.zeros((T, n, 2))
        for i, o in enumerate(objects):  # centres at least a radius from the edges: the whole sprite in view
            r = min(o.size / 2.0, H / 2.0 - 1, W / 2.0 - 1)
            pos[:, i, 0] = rng.uniform(r, H - r, size=T)
            pos[:, i, 1] = rng.uniform(r, W - r, size=T)
        bg = make_background(rng, int(math.ceil(H * s.world_scale)), int(math.ceil(W * s.world_scale)))
        # the camera shows a random view of the larger background; pixels are addressed in view coordinates
        oy, ox = rng.uniform(0, bg.image.shape[0] - H), rng.uniform(0, bg.image.shape[1] - W)
        sim = Simulation(
            height=H,
            width=W,
            objects=objects,
            shots=[Shot(0, T, bg, "static")],
            shot_of=np.zeros(T, dtype=np.int64),
            cam_center=np.tile([oy + H / 2.0, ox + W / 2.0], (T, 1)),
            cam_zoom=np.ones(T),
            pos=pos + [oy, ox],
            alive=alive,
            colour=np.tile([COLOURS.index(o.colour) for o in objects], (T, 1)),
            noise_std=float(rng.uniform(*s.noise_std)),
            blur=bool(rng.random() < s.blur_prob),
        )
        frames, masks, _ = render(sim, rng)
        described = [{"shape": o.shape, "colour": o.colour, "texture": o.texture} for o in objects]
        record = {"objects": described, "events": []}  # what trajvlm.training.tower.patch_labels reads
        caption = still_caption(rng, [described[i] for i in rng.permutation(n)], {"tone": bg.tone, "kind": bg.kind})
        return frames, masks, record, caption

    def draw(self, n: int, image_size: int) -> tuple[torch.Tensor, list[str], list[tuple[dict, np.ndarray]]]:
        """``n`` scenes: uint8 frames (n, T, 3, image_size, image_size), their captions, and (record, masks) per
        scene for patch labels (masks at the world's frame size, as a video's ``.npz``)."""
        frames, captions, labels = [], [], []
        for _ in range(n):
            f, m, record, caption = self.scene()
            x = torch.from_numpy(f).permute(0, 3, 1, 2)  # (T, 3, H, W)
            if x.shape[-2:] != (image_size, image_size):
                x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", antialias=True)
                x = x.round().clamp(0, 255).to(torch.uint8)
            frames.append(x)
            captions.append(caption)
            labels.append((record, m))
        return torch.stack(frames), captions, labels


class _Draws(IterableDataset):
    """Endless ``SceneSampler.draw(n, image_size)`` results, each with its scenes' labels (``label(record, masks)``
    stacked; None without ``label``); one sampler per stream: a single worker."""

    def __init__(self, sampler: SceneSampler, n: int, image_size: int, label: Callable | None) -> None:
        self.sampler, self.n, self.image_size, self.label = sampler, n, image_size, label

    def __iter__(self):
        while True:
            frames, captions, drawn = self.sampler.draw(self.n, self.image_size)
            labels = None if self.label is None else torch.stack([self.label(r, m) for r, m in drawn])
            yield frames, captions, drawn, labels


def scene_batches(sampler: SceneSampler, n: int, image_size: int, workers: int = 1, label: Callable | None = None):
    """An endless iterator of ``sampler.draw(n, image_size)`` plus the scenes' stacked ``label(record, masks)``
    (None without ``label``); with ``workers=1`` the scenes are rendered and labelled in a background process while
    the tower trains (the same scenes, in the same order, as ``workers=0``)."""
    if workers not in (0, 1):
        raise ValueError(f"scene workers must be 0 or 1 (one sampler, one stream), got {workers}")
    loader = DataLoader(
        _Draws(sampler, n, image_size, label),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        collate_fn=lambda x: x,
    )
    return iter(loader)
