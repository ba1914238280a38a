"""Scene simulation and rendering of the synthetic world.

A world larger than the view holds a textured background (one per shot) and a set of objects (shape, colour,
texture, size, motion). A camera pans and zooms over the world; hard cuts switch to another background and camera.
Simulation runs first (positions, colours, lifetimes for all frames), then rendering paints each object from a
cached sprite (shape mask + texture at the needed pixel size) back to front, so the per-pixel owner map is the
instance mask with occlusion already applied.

Coordinates are (y, x), height before width. World units equal view pixels at zoom 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Object colours: names are used in captions and questions, so they must be distinct to a viewer.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 85, 235),
    "yellow": (245, 225, 40),
    "purple": (155, 60, 205),
    "orange": (250, 140, 20),
    "cyan": (40, 215, 225),
    "white": (248, 248, 248),
    "pink": (250, 125, 195),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "diamond", "cross", "hexagon")
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
MOTIONS: tuple[str, ...] = ("linear", "bounce", "stop_and_go", "turn")
SIZES: dict[str, tuple[float, float]] = {  # diameter as a fraction of min(H, W)
    "small": (0.09, 0.12),
    "medium": (0.13, 0.17),
    "large": (0.18, 0.24),
}
CAMERA_KINDS: tuple[str, ...] = ("static", "pan", "zoom", "pan_zoom")
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "stripes", "checker", "noise")


@dataclass
class WorldConfig:
    """Knobs of the world; every video draws its own values inside these ranges from its seed."""

    world_scale: float = 1.6  # world extent / view extent at zoom 1 (> 1: objects can leave the view)
    max_zoom: float = 1.35  # camera zoom varies in [1, max_zoom]
    speed: tuple[float, float] = (0.008, 0.03)  # object speed range, in min(H, W) per frame
    pan_speed: tuple[float, float] = (0.002, 0.008)  # camera pan speed range, in min(H, W) per frame
    motion_probs: tuple[float, float, float, float] = (0.3, 0.3, 0.2, 0.2)  # linear, bounce, stop_and_go, turn
    camera_probs: tuple[float, float, float, float] = (0.35, 0.35, 0.1, 0.2)  # static, pan, zoom, pan_zoom
    collide_prob: float = 0.5  # chance an object collides with other colliders (others pass over/under)
    late_start_prob: float = 0.35  # chance an object starts after frame 0 (appears or enters later)
    early_end_prob: float = 0.2  # chance an object vanishes before the end
    brief_prob: float = 0.15  # in videos of >= 128 frames: chance an object lives only 8-30 frames
    start_outside_prob: float = 0.3  # chance an object starts outside the view and moves into it
    colour_change_prob: float = 0.15  # chance an object changes colour once while in view
    cut_prob: float = 0.0  # chance a video contains hard scene cuts (1 to 3 of them)
    persist_prob: float = 0.6  # chance an object survives a cut (keeps its identity, new place)
    noise_std: tuple[float, float] = (1.0, 4.0)  # per-pixel Gaussian noise std range (0-255 scale)
    blur_prob: float = 0.5  # chance a video is mildly blurred ([1, 2, 1] / 4 filter)

    def __post_init__(self) -> None:
        if self.world_scale <= 1.0:
            raise ValueError(f"world_scale must be > 1 (the world is larger than the view), got {self.world_scale}")
        if self.max_zoom < 1.0:
            raise ValueError(f"max_zoom must be >= 1, got {self.max_zoom}")
        for name in ("speed", "pan_speed", "noise_std"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        for name in ("motion_probs", "camera_probs"):
            p = getattr(self, name)
            if len(p) != 4 or min(p) < 0 or sum(p) <= 0:
                raise ValueError(f"{name} must be 4 non-negative weights with a positive sum, got {p}")
        for name in (
            "collide_prob",
            "late_start_prob",
            "early_end_prob",
            "brief_prob",
            "start_outside_prob",
            "colour_change_prob",
            "cut_prob",
            "persist_prob",
            "blur_prob",
        ):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def noisy_moving_world(**overrides) -> WorldConfig:
    """A harder world for long-video tests: the camera always pans and/or zooms (faster), sensor noise is strong,
    and objects often enter late, leave early, start outside the view or live only briefly. The defaults of
    ``WorldConfig`` are untouched, so existing seeds render byte-identical videos."""
    base = dict(
        camera_probs=(0.0, 0.4, 0.2, 0.4),
        pan_speed=(0.004, 0.012),
        noise_std=(6.0, 12.0),
        late_start_prob=0.6,
        early_end_prob=0.5,
        start_outside_prob=0.6,
        brief_prob=0.3,
    )
    return WorldConfig(**{**base, **overrides})


# ---------------------------------------------------------------------------------------------------------------
# Sprites


def shape_mask(shape: str, s: int) -> np.ndarray:
    """Boolean (s, s) mask of ``shape`` filling an s x s box."""
    c = (np.arange(s, dtype=np.float32) + 0.5) / s * 2.0 - 1.0
    v, u = np.meshgrid(c, c, indexing="ij")  # v: down, u: right, both in [-1, 1]
    r = np.sqrt(u * u + v * v)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "triangle":
        return (v <= 0.8) & (np.abs(u) <= 0.95 * (v + 1.0) / 1.8)
    if shape == "star":
        k = (np.arctan2(u, -v) * 5.0 / (2.0 * math.pi)) % 1.0
        tip = np.abs(k - 0.5) * 2.0  # 1 at the five tips, 0 between them
        return r <= 0.42 + 0.58 * tip**2
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.33) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 0.95))
    if shape == "hexagon":
        return (np.abs(v) <= 0.866) & (np.abs(u) * 0.866 + np.abs(v) * 0.5 <= 0.866)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def sprite(shape: str, texture: str, colour: str, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask (s, s) bool and RGB (s, s, 3) uint8 of an object drawn at s pixels."""
    mask = shape_mask(shape, s)
    rgb = np.empty((s, s, 3), dtype=np.float32)
    rgb[:] = np.asarray(PALETTE[colour], dtype=np.float32)
    yy, xx = np.mgrid[0:s, 0:s]
    if texture == "striped":
        period = max(3, s // 4)
        dark = ((yy + xx) // max(1, period // 2)) % 2 == 1
        rgb[dark] *= 0.55
    elif texture == "dotted":
        period = max(4, s // 3)
        rad = max(1.0, period / 4.0)
        dy = (yy % period) - period / 2.0 + 0.5
        dx = (xx % period) - period / 2.0 + 0.5
        rgb[dy * dy + dx * dx <= rad * rad] *= 0.45
    elif texture != "solid":
        raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")
    shade = 1.08 - 0.16 * (yy / max(1, s - 1))  # light from above
    rgb *= shade[..., None]
    return mask, np.clip(rgb, 0, 255).astype(np.uint8)


class SpriteCache:
    """Sprites keyed by (shape, texture, colour, size); zoom changes slowly, so most frames hit the cache."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, shape: str, texture: str, colour: str, s: int) -> tuple[np.ndarray, np.ndarray]:
        key = (shape, texture, colour, s)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = sprite(shape, texture, colour, s)
        return hit


# ---------------------------------------------------------------------------------------------------------------
# Backgrounds


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb, dtype=np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, H: int, W: int, cell: int) -> np.ndarray:
    """(H, W) float noise in [-1, 1], bilinearly upsampled from a grid with ``cell`` pixel spacing."""
    gh, gw = H // cell + 2, W // cell + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
    fy = np.arange(H, dtype=np.float32) / cell
    fx = np.arange(W, dtype=np.float32) / cell
    y0, x0 = fy.astype(np.int64), fx.astype(np.int64)
    wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bot = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bot * wy


@dataclass
class Background:
    image: np.ndarray  # (Hw, Ww, 3) uint8 world texture
    kind: str  # one of BACKGROUND_KINDS
    tone: str  # words for captions, e.g. "dark bluish"


def make_background(rng: np.random.Generator, Hw: int, Ww: int) -> Background:
    """A muted procedural texture: a two-tone gradient plus stripes, a checkerboard or smooth noise, plus grain."""
    hue = float(rng.uniform(0, 1))
    a = _hsv_to_rgb(hue, float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.25, 0.5)))
    b = _hsv_to_rgb(
        (hue + rng.uniform(-0.12, 0.12)) % 1.0, float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.3, 0.55))
    )
    angle = float(rng.uniform(0, 2 * math.pi))
    yy, xx = np.mgrid[0:Hw, 0:Ww].astype(np.float32)
    proj = (yy * math.sin(angle) + xx * math.cos(angle)) / max(Hw, Ww)
    g = (proj - proj.min()) / max(1e-6, float(proj.max() - proj.min()))
    img = a[None, None, :] * (1 - g[..., None]) + b[None, None, :] * g[..., None]  # (Hw, Ww, 3)
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    amp = float(rng.uniform(10, 22))
    if kind == "stripes":
        period = float(rng.uniform(6, 24))
        ang = float(rng.uniform(0, math.pi))
        img += amp * np.sin(2 * math.pi * (yy * math.sin(ang) + xx * math.cos(ang)) / period)[..., None]
    elif kind == "checker":
        cell = int(rng.integers(6, 20))
        img += amp * (((yy // cell + xx // cell) % 2) * 2.0 - 1.0)[..., None]
    elif kind == "noise":
        img += 1.5 * amp * _smooth_noise(rng, Hw, Ww, int(rng.integers(6, 16)))[..., None]
    img += rng.normal(0, 3.0, size=img.shape).astype(np.float32)
    tone_hue = ["reddish", "orange", "yellowish", "greenish", "greenish", "teal", "bluish", "bluish", "purplish"][
        int(hue * 9) % 9
    ]
    tone = f"{'dark ' if (a.max() + b.max()) / 2 < 100 else ''}{tone_hue}"
    return Background(np.clip(img, 0, 255).astype(np.uint8), kind, tone)


# ---------------------------------------------------------------------------------------------------------------
# Simulation


@dataclass
class ObjectSpec:
    shape: str  # one of SHAPES
    colour: str  # initial colour name (PALETTE key)
    texture: str  # one of TEXTURES
    size_name: str  # small / medium / large
    size: float  # diameter in world units
    motion: str  # one of MOTIONS
    speed: float  # world units per frame while moving
    collides: bool  # collides with other colliders (otherwise passes over or under)
    depth: int  # paint order, 0 = back
    start: int  # first frame alive
    end: int  # one past the last frame alive


@dataclass
class Shot:
    start: int  # first frame of the shot
    end: int  # one past its last frame
    background: Background
    camera: str  # one of CAMERA_KINDS


@dataclass
class Simulation:
    """Everything a frame needs, for all T frames and N objects."""

    height: int
    width: int
    objects: list[ObjectSpec]
    shots: list[Shot]
    shot_of: np.ndarray  # (T,) shot index per frame
    cam_center: np.ndarray  # (T, 2) camera centre (y, x) in world units
    cam_zoom: np.ndarray  # (T,) zoom (view pixels per world unit)
    pos: np.ndarray  # (T, N, 2) object centres (y, x) in world units
    alive: np.ndarray  # (T, N) bool
    colour: np.ndarray  # (T, N) int index into COLOURS
    stops: list[tuple[int, int, int]] = field(default_factory=list)  # (object, first frame, last frame)
    collisions: list[tuple[int, int, int]] = field(default_factory=list)  # (frame, a, b) with a < b
    colour_changes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (frame, obj, from, to)
    cuts: list[int] = field(default_factory=list)  # first frame of each new shot
    noise_std: float = 0.0
    blur: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.pos.shape[0])


def _choice(rng: np.random.Generator, items: tuple[str, ...], probs: tuple[float, ...] | None = None) -> str:
    if probs is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(probs, dtype=np.float64)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def _camera_path(
    rng: np.random.Generator, n: int, H: int, W: int, Hw: float, Ww: float, kind: str, cfg: WorldConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Centre (n, 2) and zoom (n,) of one shot; the view always stays inside the world."""
    unit = min(H, W)
    zoom = np.ones(n, dtype=np.float64)
    if kind in ("zoom", "pan_zoom"):
        period = float(rng.uniform(60, 200))
        phase = float(rng.uniform(0, 2 * math.pi))
        amp = float(rng.uniform(0.5, 1.0)) * (cfg.max_zoom - 1.0)
        zoom = 1.0 + amp * (0.5 - 0.5 * np.cos(2 * math.pi * np.arange(n) / period + phase))
    lo = np.array([H / 2.0, W / 2.0])  # view half extents at zoom 1: the tightest bounds
    hi = np.array([Hw - H / 2.0, Ww - W / 2.0])
    c = rng.uniform(lo, hi)
    centre = np.empty((n, 2), dtype=np.float64)
    vel = np.zeros(2)
    if kind in ("pan", "pan_zoom"):
        ang = float(rng.uniform(0, 2 * math.pi))
        vel = float(rng.uniform(*cfg.pan_speed)) * unit * np.array([math.sin(ang), math.cos(ang)])
    for t in range(n):
        centre[t] = c
        c = c + vel
        for d in range(2):
            if c[d] < lo[d] or c[d] > hi[d]:
                vel[d] = -vel[d]
                c[d] = min(max(c[d], lo[d]), hi[d])
    return centre, zoom


def _view_box(centre: np.ndarray, zoom: float, H: int, W: int) -> tuple[float, float, float, float]:
    """(top, bottom, left, right) of the view in world units."""
    hh, hw = H / (2.0 * zoom), W / (2.0 * zoom)
    return centre[0] - hh, centre[0] + hh, centre[1] - hw, centre[1] + hw


def _place_inside(
    rng: np.random.Generator, box: tuple[float, float, float, float], r: float, others: list[tuple[np.ndarray, float]]
) -> np.ndarray:
    """A point inside the view box, at least r from its edges, avoiding overlap with ``others`` when it can."""
    top, bottom, left, right = box
    m = min(r, (bottom - top) / 2 - 1, (right - left) / 2 - 1)
    p = np.array([rng.uniform(top + m, bottom - m), rng.uniform(left + m, right - m)])
    for _ in range(12):
        if all(np.hypot(*(p - q)) > r + rq for q, rq in others):
            break
        p = np.array([rng.uniform(top + m, bottom - m), rng.uniform(left + m, right - m)])
    return p


def _place_outside(
    rng: np.random.Generator, box: tuple[float, float, float, float], r: float, Hw: float, Ww: float
) -> tuple[np.ndarray, float]:
    """A point just outside one side of the view (inside the world margin) and a heading towards the view."""
    top, bottom, left, right = box
    side = int(rng.integers(4))
    gap = r * float(rng.uniform(1.1, 2.0))
    if side == 0:  # above
        p = np.array([top - gap, rng.uniform(left, right)])
    elif side == 1:  # below
        p = np.array([bottom + gap, rng.uniform(left, right)])
    elif side == 2:  # left
        p = np.array([rng.uniform(top, bottom), left - gap])
    else:  # right
        p = np.array([rng.uniform(top, bottom), right + gap])
    centre = np.array([(top + bottom) / 2, (left + right) / 2])
    d = centre - p
    heading = math.atan2(d[0], d[1]) + float(rng.uniform(-0.5, 0.5))
    return p, heading


def simulate(
    rng: np.random.Generator, num_frames: int, H: int, W: int, num_objects: int, cfg: WorldConfig
) -> Simulation:
    """Draw a scene and move everything in it for ``num_frames`` frames."""
    T, N = num_frames, num_objects
    unit = float(min(H, W))
    Hw, Ww = H * cfg.world_scale, W * cfg.world_scale
    Hwi, Wwi = int(math.ceil(Hw)), int(math.ceil(Ww))

    # Shots: hard cuts at least 8 frames apart.
    cuts: list[int] = []
    if T >= 24 and rng.random() < cfg.cut_prob:
        n_cuts = int(rng.integers(1, min(3, T // 24) + 1))
        cut_cand = np.arange(8, T - 7)
        for _ in range(50):
            pick = np.sort(rng.choice(cut_cand, size=n_cuts, replace=False))
            if np.all(np.diff(np.concatenate([[0], pick, [T]])) >= 8):
                cuts = [int(c) for c in pick]
                break
    bounds = [0, *cuts, T]
    shots: list[Shot] = []
    shot_of = np.zeros(T, dtype=np.int64)
    cam_center = np.zeros((T, 2))
    cam_zoom = np.ones(T)
    for k in range(len(bounds) - 1):
        s, e = bounds[k], bounds[k + 1]
        kind = _choice(rng, CAMERA_KINDS, cfg.camera_probs)
        shots.append(Shot(s, e, make_background(rng, Hwi, Wwi), kind))
        shot_of[s:e] = k
        cam_center[s:e], cam_zoom[s:e] = _camera_path(rng, e - s, H, W, Hw, Ww, kind, cfg)

    # Objects: unique (colour, shape) pairs so that "the red circle" names one object.
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    order = rng.permutation(len(pairs))[:N]
    if N > len(pairs):
        raise ValueError(f"num_objects must be <= {len(pairs)} (distinct colour-shape pairs), got {N}")
    depth = rng.permutation(N)
    objects: list[ObjectSpec] = []
    for i in range(N):
        colour_name, shape = pairs[int(order[i])]
        size_name = _choice(rng, tuple(SIZES))
        size = float(rng.uniform(*SIZES[size_name])) * unit
        start, end = 0, T
        if T >= 128 and rng.random() < cfg.brief_prob:
            life = int(rng.integers(8, 31))
            start = int(rng.integers(1, T - life))
            end = start + life
        else:
            if T >= 16 and rng.random() < cfg.late_start_prob:
                start = int(rng.integers(1, T - 4))
            if T >= 16 and rng.random() < cfg.early_end_prob:
                end = int(rng.integers(start + max(4, (T - start) // 3), T + 1))
        objects.append(
            ObjectSpec(
                shape=shape,
                colour=colour_name,
                texture=_choice(rng, TEXTURES),
                size_name=size_name,
                size=size,
                motion=_choice(rng, MOTIONS, cfg.motion_probs),
                speed=float(rng.uniform(*cfg.speed)) * unit,
                collides=bool(rng.random() < cfg.collide_prob),
                depth=int(depth[i]),
                start=start,
                end=end,
            )
        )

    # Per-object motion schedules.
    radius = np.array([o.size / 2.0 for o in objects])
    moving = np.ones(N, dtype=bool)
    next_switch = np.full(N, T + 1, dtype=np.int64)  # stop-and-go toggles and turns
    for i, o in enumerate(objects):
        if o.motion in ("stop_and_go", "turn"):
            next_switch[i] = o.start + int(rng.integers(8, 30))
    change_at = np.full(N, -1, dtype=np.int64)
    for i, o in enumerate(objects):
        if o.end - o.start >= 6 and rng.random() < cfg.colour_change_prob:
            change_at[i] = int(rng.integers(o.start + 2, o.end - 2))
    used_pairs = {(o.colour, o.shape) for o in objects}

    pos = np.zeros((T, N, 2))
    alive = np.zeros((T, N), dtype=bool)
    colour = np.zeros((T, N), dtype=np.int64)
    p = np.zeros((N, 2))
    vel = np.zeros((N, 2))  # heading * speed while moving
    cur_colour = np.array([COLOURS.index(o.colour) for o in objects])
    stop_start = np.full(N, -1, dtype=np.int64)
    stops: list[tuple[int, int, int]] = []
    collisions: list[tuple[int, int, int]] = []
    colour_changes: list[tuple[int, int, int, int]] = []
    dead_after_cut = np.zeros(N, dtype=bool)
    cut_set = set(cuts)

    def spawn(i: int, t: int, inside: bool) -> None:
        box = _view_box(cam_center[t], cam_zoom[t], H, W)
        if inside:
            others = [(p[j], radius[j]) for j in range(N) if j != i and alive_now[j]]
            p[i] = _place_inside(rng, box, radius[i], others)
            heading = float(rng.uniform(0, 2 * math.pi))
        else:
            p[i], heading = _place_outside(rng, box, radius[i], Hw, Ww)
        vel[i] = objects[i].speed * np.array([math.sin(heading), math.cos(heading)])

    alive_now = np.zeros(N, dtype=bool)
    for t in range(T):
        box = _view_box(cam_center[t], cam_zoom[t], H, W)
        if t in cut_set:  # a cut: survivors jump into the new view, the rest leave the story
            for i in range(N):
                if alive_now[i]:
                    if rng.random() < cfg.persist_prob:
                        spawn(i, t, inside=True)
                    else:
                        alive_now[i] = False
                        dead_after_cut[i] = True
                        if stop_start[i] >= 0:
                            stops.append((i, int(stop_start[i]), t - 1))
                            stop_start[i] = -1
                            moving[i] = True
        for i, o in enumerate(objects):
            if t == o.start and not dead_after_cut[i]:
                # Starting outside needs time to walk in; brief objects always start in view.
                p_out = cfg.start_outside_prob if t == 0 else 0.5
                outside = T >= 48 and o.end - o.start > 30 and rng.random() < p_out
                alive_now[i] = True
                spawn(i, t, inside=not outside)
            if t == o.end and alive_now[i]:
                alive_now[i] = False
                if stop_start[i] >= 0:
                    stops.append((i, int(stop_start[i]), t - 1))
                    stop_start[i] = -1
        if t > 0:
            # Move, then schedules, walls and collisions (these set the velocity for the next step).
            p += vel * moving[:, None] * alive_now[:, None]
        for i, o in enumerate(objects):
            if not alive_now[i]:
                continue
            if t == next_switch[i]:
                if o.motion == "turn":
                    ang = math.atan2(vel[i, 0], vel[i, 1]) + float(rng.choice([-1, 1]) * rng.uniform(0.7, 2.1))
                    vel[i] = o.speed * np.array([math.sin(ang), math.cos(ang)])
                    next_switch[i] = t + int(rng.integers(15, 41))
                elif moving[i]:
                    moving[i] = False
                    stop_start[i] = t
                    next_switch[i] = t + int(rng.integers(4, 16))
                else:
                    moving[i] = True
                    stops.append((i, int(stop_start[i]), t - 1))
                    stop_start[i] = -1
                    next_switch[i] = t + int(rng.integers(10, 41))
            r = radius[i]
            # World walls: objects may leave the view, never the world (they come back).
            for d, ext in ((0, Hw), (1, Ww)):
                if p[i, d] < -1.2 * r and vel[i, d] < 0 or p[i, d] > ext + 1.2 * r and vel[i, d] > 0:
                    vel[i, d] = -vel[i, d]
            if o.motion == "bounce":  # bounce off the frame edges once inside the view
                top, bottom, left, right = box
                if top < p[i, 0] < bottom and left < p[i, 1] < right:
                    if (p[i, 0] - r < top and vel[i, 0] < 0) or (p[i, 0] + r > bottom and vel[i, 0] > 0):
                        vel[i, 0] = -vel[i, 0]
                    if (p[i, 1] - r < left and vel[i, 1] < 0) or (p[i, 1] + r > right and vel[i, 1] > 0):
                        vel[i, 1] = -vel[i, 1]
            if t == change_at[i]:
                ci = cur_colour[i]
                free = [
                    k for k, c in enumerate(COLOURS) if k != ci and (c, o.shape) not in used_pairs
                ]  # a new colour must not make the name of another object
                top, bottom, left, right = box
                if free and top < p[i, 0] < bottom and left < p[i, 1] < right:
                    new = int(free[int(rng.integers(len(free)))])
                    used_pairs.add((COLOURS[new], o.shape))
                    colour_changes.append((t, i, int(ci), new))
                    cur_colour[i] = new
                elif t + 1 < o.end:
                    change_at[i] = t + 1  # try again when the object is in view
        # Collisions between colliders in view (both must be seen for the event to be real).
        if t > 0:
            top, bottom, left, right = box
            cand = [
                i
                for i, o in enumerate(objects)
                if alive_now[i]
                and o.collides
                and top - radius[i] < p[i, 0] < bottom + radius[i]
                and left - radius[i] < p[i, 1] < right + radius[i]
            ]
            for ai, a in enumerate(cand):
                for b in cand[ai + 1 :]:
                    d = p[b] - p[a]
                    dist = float(np.hypot(d[0], d[1]))
                    if dist >= radius[a] + radius[b] or dist == 0:
                        continue
                    n = d / dist
                    va, vb = vel[a] * moving[a], vel[b] * moving[b]
                    if float(np.dot(vb - va, n)) >= 0:
                        continue  # already separating
                    if np.dot(vel[a], n) > 0:
                        vel[a] = vel[a] - 2 * np.dot(vel[a], n) * n
                    if np.dot(vel[b], n) < 0:
                        vel[b] = vel[b] - 2 * np.dot(vel[b], n) * n
                    collisions.append((t, a, b))
        pos[t] = p
        alive[t] = alive_now
        colour[t] = cur_colour
    for i in range(N):
        if stop_start[i] >= 0:
            stops.append((i, int(stop_start[i]), T - 1))
    noise_std = float(rng.uniform(*cfg.noise_std))
    blur = bool(rng.random() < cfg.blur_prob)
    return Simulation(
        height=H,
        width=W,
        objects=objects,
        shots=shots,
        shot_of=shot_of,
        cam_center=cam_center,
        cam_zoom=cam_zoom,
        pos=pos,
        alive=alive,
        colour=colour,
        stops=sorted(stops, key=lambda s: (s[1], s[0])),
        collisions=collisions,
        colour_changes=colour_changes,
        cuts=cuts,
        noise_std=noise_std,
        blur=blur,
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class RenderStats:
    """Per-frame facts the event extraction needs (all from the painted owner map)."""

    drawn: np.ndarray  # (T, N) bool: some sprite pixel landed inside the frame (before occlusion)
    visible: np.ndarray  # (T, N) int: pixels the object owns after occlusion
    screen: np.ndarray  # (T, N, 2) object centre (y, x) in frame pixels
    occlusions: list[tuple[int, int, int]]  # (frame, front, back): front hides >= 30% of back's drawn pixels


def render(
    sim: Simulation, rng: np.random.Generator, occlusion_frac: float = 0.3
) -> tuple[np.ndarray, np.ndarray, RenderStats]:
    """Paint all frames. Returns frames (T, H, W, 3) uint8, masks (T, H, W) int32 (object index + 1), stats."""
    T, H, W, N = sim.num_frames, sim.height, sim.width, len(sim.objects)
    frames = np.empty((T, H, W, 3), dtype=np.uint8)
    masks = np.zeros((T, H, W), dtype=np.int32)
    drawn = np.zeros((T, N), dtype=bool)
    visible = np.zeros((T, N), dtype=np.int64)
    screen = np.zeros((T, N, 2))
    occlusions: list[tuple[int, int, int]] = []
    cache = SpriteCache()
    paint_order = sorted(range(N), key=lambda i: sim.objects[i].depth)
    noise_bank = None
    if sim.noise_std > 0:
        noise_bank = np.clip(rng.normal(0, sim.noise_std, size=(5, H, W, 3)), -127, 127).astype(np.int16)
    ys, xs = np.arange(H) + 0.5 - H / 2.0, np.arange(W) + 0.5 - W / 2.0
    last_view: tuple = ()
    view = np.empty((H, W, 3), dtype=np.uint8)
    buf = np.empty((H, W, 3), dtype=np.int16)
    for t in range(T):
        bg = sim.shots[int(sim.shot_of[t])].background.image
        cy, cx = sim.cam_center[t]
        z = float(sim.cam_zoom[t])
        rows = np.clip(np.floor(cy + ys / z).astype(np.int64), 0, bg.shape[0] - 1)
        cols = np.clip(np.floor(cx + xs / z).astype(np.int64), 0, bg.shape[1] - 1)
        key = (int(sim.shot_of[t]), rows[0], rows[-1], cols[0], cols[-1])
        if key != last_view:
            view = bg[rows[:, None], cols[None, :]]  # (H, W, 3)
            last_view = key
        frame = view.copy()
        owner = masks[t]
        placed: list[tuple[int, int, int, int, int, np.ndarray]] = []
        for i in paint_order:
            if not sim.alive[t, i]:
                continue
            o = sim.objects[i]
            sy = (sim.pos[t, i, 0] - cy) * z + H / 2.0
            sx = (sim.pos[t, i, 1] - cx) * z + W / 2.0
            screen[t, i] = (sy, sx)
            s = max(3, int(round(o.size * z)))
            y0, x0 = int(round(sy - s / 2.0)), int(round(sx - s / 2.0))
            ya, yb, xa, xb = max(y0, 0), min(y0 + s, H), max(x0, 0), min(x0 + s, W)
            if ya >= yb or xa >= xb:
                continue
            mask, rgb = cache.get(o.shape, o.texture, COLOURS[int(sim.colour[t, i])], s)
            m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
            if not m.any():
                continue
            frame[ya:yb, xa:xb][m] = rgb[ya - y0 : yb - y0, xa - x0 : xb - x0][m]
            owner[ya:yb, xa:xb][m] = i + 1
            drawn[t, i] = True
            placed.append((i, ya, yb, xa, xb, m))
        counts = np.bincount(owner.ravel(), minlength=N + 1)
        visible[t] = counts[1:]
        for i, ya, yb, xa, xb, m in placed:
            area = int(m.sum())
            if visible[t, i] >= area:
                continue
            hidden = np.bincount(owner[ya:yb, xa:xb][m], minlength=N + 1)
            for j in np.nonzero(hidden[1:] >= occlusion_frac * area)[0]:
                if j != i:
                    occlusions.append((t, int(j), i))
        if sim.blur:
            f = frame.astype(np.int16)
            f[1:-1] = (f[:-2] + 2 * f[1:-1] + f[2:] + 2) >> 2
            f[:, 1:-1] = (f[:, :-2] + 2 * f[:, 1:-1] + f[:, 2:] + 2) >> 2
            if noise_bank is not None:
                f += noise_bank[t % len(noise_bank)]
            np.clip(f, 0, 255, out=f)
            frames[t] = f
        elif noise_bank is not None:
            np.add(frame, noise_bank[t % len(noise_bank)], out=buf, dtype=np.int16)
            np.clip(buf, 0, 255, out=buf)
            frames[t] = buf
        else:
            frames[t] = frame
    return frames, masks, RenderStats(drawn=drawn, visible=visible, screen=screen, occlusions=occlusions)
