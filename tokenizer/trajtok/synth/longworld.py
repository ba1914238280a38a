"""The long-video world: a few objects visit the view again and again over hundreds of frames.

Each object gets a schedule of visits (disjoint frame ranges, at least ``min_gap`` frames apart). A visit begins
with the object walking in from a side of the frame (``enter``) or popping up in place (``appear``) and ends with it
walking out (``exit``) or disappearing (``vanish``); in between it bounces inside the view, so it stays visible.
Between visits the object is not in the scene. Some objects are in view from the first frame, some stay to the
last. An object may change colour once during a visit. There are no cuts and no collisions: the questions of this
world are about what happens across the whole video (who came first, who came back, what changed).

The result is an ordinary :class:`~trajtok.synth.world.Simulation`, so rendering, event extraction and labels are
those of the short world, and every fact in the record is read from the painted masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trajtok.synth.world import (
    CAMERA_KINDS,
    COLOURS,
    SHAPES,
    SIZES,
    TEXTURES,
    ObjectSpec,
    Shot,
    Simulation,
    WorldConfig,
    _camera_path,
    _choice,
    _place_inside,
    _view_box,
    make_background,
)

MIN_VISIT = 12  # frames a visit lasts at least when visits are shortened to fit the video (balance=True)


@dataclass
class LongWorldConfig:
    """Knobs of the long world (each one is a ``trajtok synth`` option); every video draws inside these ranges."""

    visits: tuple[int, int] = (1, 4)  # visits per object (times it comes into view), an inclusive range
    visit_frames: tuple[int, int] = (48, 160)  # frames one visit lasts (from arrival to the start of leaving)
    min_gap: int = 24  # frames at least between two visits of one object (it is out of the scene meanwhile)
    start_prob: float = 0.4  # chance an object is in view from the first frame
    end_prob: float = 0.4  # chance an object's last visit lasts to the last frame
    # chance a visit begins by walking in through a side (else the object pops up in place); balance=False only
    enter_prob: float = 0.6
    # chance a visit ends by walking out through a side (else the object disappears); balance=False only
    exit_prob: float = 0.6
    object_size: tuple[float, float] = (0.14, 0.22)  # object diameter as a fraction of min(H, W)
    speed: tuple[float, float] = (0.01, 0.03)  # object speed range, in min(H, W) per frame
    colour_change_prob: float = 0.15  # chance an object changes colour once (during one of its visits, in view)
    camera: str = "static"  # one of CAMERA_KINDS: static, pan, zoom, pan_zoom
    pan_speed: tuple[float, float] = (0.002, 0.006)  # camera pan speed range, in min(H, W) per frame
    max_zoom: float = 1.2  # camera zoom varies in [1, max_zoom] (zoom cameras)
    world_scale: float = 1.6  # world extent / view extent (room for the camera to pan)
    noise_std: tuple[float, float] = (1.0, 4.0)  # per-pixel Gaussian noise std range (0-255 scale)
    blur_prob: float = 0.5  # chance a video is mildly blurred ([1, 2, 1] / 4 filter)
    # answers carry no text prior: every drawn visit is kept (shortened to fit the video) so that return counts
    # spread evenly, the numbers of walk-ins and walk-outs are drawn evenly (enter_prob / exit_prob are not read),
    # the object count is drawn so that each count question's options are equally likely, and the question
    # generators balance their answers (trajtok.synth.text). False: the first long world (visits that do not fit
    # are dropped; manifests written before this field read back as False)
    balance: bool = True

    def __post_init__(self) -> None:
        for name in ("visits", "visit_frames"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must be a range lo-hi with 1 <= lo <= hi, got {lo}-{hi}")
        if self.min_gap < 2:
            raise ValueError(f"min_gap must be >= 2 frames (an object must be seen gone), got {self.min_gap}")
        for name in ("start_prob", "end_prob", "enter_prob", "exit_prob", "colour_change_prob", "blur_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        lo, hi = self.object_size
        if not 0.0 < lo <= hi <= 0.5:
            raise ValueError(
                f"object_size must be a range lo-hi with 0 < lo <= hi <= 0.5 (of min(H, W)), got {lo}-{hi}"
            )
        for name in ("speed", "pan_speed", "noise_std"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range lo-hi with 0 <= lo <= hi, got {lo}-{hi}")
        if self.speed[0] <= 0:
            raise ValueError(
                f"speed must be > 0 (objects have to walk in and out), got {self.speed[0]}-{self.speed[1]}"
            )
        if self.camera not in CAMERA_KINDS:
            raise ValueError(f"camera must be one of {CAMERA_KINDS}, got {self.camera!r}")
        # the camera's own limits (world_scale > 1, max_zoom >= 1) are WorldConfig's
        WorldConfig(world_scale=self.world_scale, max_zoom=self.max_zoom, pan_speed=self.pan_speed)


def _size_name(fraction: float) -> str:
    """small / medium / large by the short world's size classes (a caption word only)."""
    for name, (_, hi) in SIZES.items():
        if fraction <= hi:
            return name
    return "large"


def schedule_visits(rng: np.random.Generator, num_frames: int, cfg: LongWorldConfig) -> list[tuple[int, int]]:
    """Disjoint [start, end) visits of one object inside [0, num_frames), at least ``cfg.min_gap`` apart.

    The number of visits and their lengths are drawn from the config; visits that do not fit are dropped (at least
    one is kept, shortened to the video if needed). The first visit starts at frame 0 with ``start_prob`` and the
    last ends at the last frame with ``end_prob``; the remaining frames are spread at random over the gaps.
    """
    T = num_frames
    v = int(rng.integers(cfg.visits[0], cfg.visits[1] + 1))
    lengths = [int(x) for x in rng.integers(cfg.visit_frames[0], cfg.visit_frames[1] + 1, size=v)]
    at_start = bool(rng.random() < cfg.start_prob)
    at_end = bool(rng.random() < cfg.end_prob)
    if cfg.balance:  # keep every visit: shorten them (to MIN_VISIT frames at least) until they fit
        while len(lengths) > 1 and len(lengths) * MIN_VISIT + (len(lengths) - 1) * cfg.min_gap > T:
            lengths.pop()
        room = T - (len(lengths) - 1) * cfg.min_gap
        if sum(lengths) > room and len(lengths) > 1:
            scale = (room - MIN_VISIT * len(lengths)) / max(1, sum(n - MIN_VISIT for n in lengths))
            lengths = [MIN_VISIT + int((n - MIN_VISIT) * scale) for n in lengths]
    while len(lengths) > 1 and sum(lengths) + (len(lengths) - 1) * cfg.min_gap > T:
        lengths.pop()
    lengths[0] = min(lengths[0], T)
    v = len(lengths)
    slack = T - sum(lengths) - (v - 1) * cfg.min_gap
    free = [j for j in range(v + 1) if not (j == 0 and at_start) and not (j == v and at_end)]
    extra = [0] * (v + 1)
    if free:
        cuts = np.sort(rng.integers(0, slack + 1, size=len(free) - 1))
        for j, amount in zip(free, np.diff(np.concatenate([[0], cuts, [slack]])), strict=True):
            extra[j] = int(amount)
    else:  # in view from the first to the last frame: the single visit takes the whole video
        lengths[-1] += slack
    visits, t = [], extra[0]
    for j, n in enumerate(lengths):
        visits.append((t, t + n))
        t += n + cfg.min_gap + extra[j + 1]
    return visits


def _deal_kinds(rng: np.random.Generator, visits: list[list[tuple[int, int, str, str]]], T: int) -> None:
    """``balance``: how many visits begin by walking in is drawn uniformly from 0 to all of those that can (not in
    view at frame 0), and how many end by walking out from 0 to all of those that can (not in view at the last
    frame); which ones, at random (in place of ``enter_prob`` / ``exit_prob``). A video's count of each kind of
    event is then spread evenly, not piled around its mean, so four consecutive counts are about equally likely."""
    arrivals = [(i, j) for i, plan in enumerate(visits) for j, v in enumerate(plan) if v[0] > 0]
    leaves = [(i, j) for i, plan in enumerate(visits) for j, v in enumerate(plan) if v[1] < T]
    n_in, n_out = int(rng.integers(len(arrivals) + 1)), int(rng.integers(len(leaves) + 1))
    walk_in = {arrivals[int(k)] for k in rng.permutation(len(arrivals))[:n_in]}
    walk_out = {leaves[int(k)] for k in rng.permutation(len(leaves))[:n_out]}
    for i, plan in enumerate(visits):
        plan[:] = [
            (s, e, "enter" if (i, j) in walk_in else "appear", "exit" if (i, j) in walk_out else "vanish")
            for j, (s, e, _, _) in enumerate(plan)
        ]


def _outside(p: np.ndarray, r: float, box: tuple[float, float, float, float], margin: float) -> bool:
    """The object's whole box (centre p, radius r) lies beyond some side of the view by ``margin``."""
    top, bottom, left, right = box
    return (
        p[0] + r < top - margin or p[0] - r > bottom + margin or p[1] + r < left - margin or p[1] - r > right + margin
    )


def _inside(p: np.ndarray, r: float, box: tuple[float, float, float, float]) -> bool:
    top, bottom, left, right = box
    return top + r <= p[0] <= bottom - r and left + r <= p[1] <= right - r


def simulate_long(
    rng: np.random.Generator, num_frames: int, H: int, W: int, num_objects: int, cfg: LongWorldConfig
) -> Simulation:
    """Draw a long-video scene (one shot, scheduled visits) and move everything in it for ``num_frames`` frames."""
    T, N = num_frames, num_objects
    unit = float(min(H, W))
    Hw, Ww = H * cfg.world_scale, W * cfg.world_scale
    cam_cfg = WorldConfig(world_scale=cfg.world_scale, max_zoom=cfg.max_zoom, pan_speed=cfg.pan_speed)
    shot = Shot(0, T, make_background(rng, int(math.ceil(Hw)), int(math.ceil(Ww))), cfg.camera)
    cam_center, cam_zoom = _camera_path(rng, T, H, W, Hw, Ww, cfg.camera, cam_cfg)

    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    if N > len(pairs):
        raise ValueError(f"num_objects must be <= {len(pairs)} (distinct colour-shape pairs), got {N}")
    order = rng.permutation(len(pairs))[:N]
    depth = rng.permutation(N)
    objects: list[ObjectSpec] = []
    visits: list[list[tuple[int, int, str, str]]] = []  # per object: (start, end, arrive, leave)
    for i in range(N):
        colour_name, shape = pairs[int(order[i])]
        fraction = float(rng.uniform(*cfg.object_size))
        plan = []
        for s, e in schedule_visits(rng, T, cfg):
            arrive = "enter" if s > 0 and rng.random() < cfg.enter_prob else "appear"
            leave = "exit" if e < T and rng.random() < cfg.exit_prob else "vanish"
            plan.append((s, e, arrive, leave))
        visits.append(plan)
        objects.append(
            ObjectSpec(
                shape=shape,
                colour=colour_name,
                texture=_choice(rng, TEXTURES),
                size_name=_size_name(fraction),
                size=fraction * unit,
                motion="bounce",
                speed=float(rng.uniform(*cfg.speed)) * unit,
                collides=False,
                depth=int(depth[i]),
                start=plan[0][0],
                end=plan[-1][1],
            )
        )
    if cfg.balance:
        _deal_kinds(rng, visits, T)
    # one colour change per chosen object: tried from a random frame of a random visit while the object is in view
    change_at = np.full(N, -1, dtype=np.int64)
    for i in range(N):
        if rng.random() < cfg.colour_change_prob:
            s, e, _, _ = visits[i][int(rng.integers(len(visits[i])))]
            if e - s >= 8:
                change_at[i] = int(rng.integers(s + 2, e - 2))
    used_pairs = {(o.colour, o.shape) for o in objects}

    radius = np.array([o.size / 2.0 for o in objects])
    pos = np.zeros((T, N, 2))
    alive = np.zeros((T, N), dtype=bool)
    colour = np.zeros((T, N), dtype=np.int64)
    p = np.zeros((N, 2))
    vel = np.zeros((N, 2))
    cur_colour = np.array([COLOURS.index(o.colour) for o in objects])
    colour_changes: list[tuple[int, int, int, int]] = []
    state = ["off"] * N  # off / arriving / in / leaving
    gone_next = np.zeros(N, dtype=bool)  # a leaving object whose box left the view: out of the scene next frame
    nxt = [0] * N  # index of the next visit to start
    end_of = np.full(N, T + 1, dtype=np.int64)  # frame at which the current visit ends (leaving starts)
    leave_of = ["vanish"] * N

    for t in range(T):
        box = _view_box(cam_center[t], cam_zoom[t], H, W)
        margin = 2.0 / float(cam_zoom[t])  # two pixels: rounding of the painted sprite
        for i, o in enumerate(objects):
            if gone_next[i]:
                gone_next[i] = False
                state[i] = "off"
            if state[i] in ("in", "arriving") and t == end_of[i]:
                if leave_of[i] == "vanish":
                    state[i] = "off"
                else:  # walk out through the nearest side
                    top, bottom, left, right = box
                    dist = (p[i, 0] - top, bottom - p[i, 0], p[i, 1] - left, right - p[i, 1])
                    side = int(np.argmin(dist))
                    direction = ((-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))[side]
                    vel[i] = o.speed * np.asarray(direction)
                    state[i] = "leaving"
            # a visit starts on schedule, or as soon as the object has finished leaving after its previous one
            if state[i] == "off" and nxt[i] < len(visits[i]) and t >= visits[i][nxt[i]][0]:
                s, e, arrive, leave = visits[i][nxt[i]]
                nxt[i] += 1
                end_of[i], leave_of[i] = max(e, t + 4), leave
                heading = float(rng.uniform(0, 2 * math.pi))
                if arrive == "enter" and t > 0:
                    top, bottom, left, right = box
                    side = int(rng.integers(4))
                    gap = radius[i] + 2 * margin + o.speed  # still unseen after this frame's step
                    y, x = float(rng.uniform(top, bottom)), float(rng.uniform(left, right))
                    p[i] = ((top - gap, x), (bottom + gap, x), (y, left - gap), (y, right + gap))[side]
                    aim = np.array([rng.uniform(top + radius[i], bottom - radius[i]), rng.uniform(left, right)])
                    heading = math.atan2(aim[0] - p[i, 0], aim[1] - p[i, 1])
                    state[i] = "arriving"
                else:
                    others = [(p[j], radius[j]) for j in range(N) if j != i and state[j] != "off"]
                    p[i] = _place_inside(rng, box, radius[i], others)
                    state[i] = "in"
                vel[i] = o.speed * np.array([math.sin(heading), math.cos(heading)])
        on = np.array([s != "off" for s in state])
        if t > 0:
            p += vel * on[:, None]
        for i in range(N):
            r = radius[i]
            if state[i] == "arriving" and _inside(p[i], r, box):
                state[i] = "in"
            elif state[i] == "in":  # bounce off the frame edges: the object stays in view during its visit
                top, bottom, left, right = box
                if (p[i, 0] - r < top and vel[i, 0] < 0) or (p[i, 0] + r > bottom and vel[i, 0] > 0):
                    vel[i, 0] = -vel[i, 0]
                if (p[i, 1] - r < left and vel[i, 1] < 0) or (p[i, 1] + r > right and vel[i, 1] > 0):
                    vel[i, 1] = -vel[i, 1]
            elif state[i] == "leaving" and _outside(p[i], r, box, margin):
                gone_next[i] = True  # alive (and not drawn) this frame: the exit is seen here
            if t == change_at[i]:
                free = [
                    k for k, c in enumerate(COLOURS) if k != cur_colour[i] and (c, objects[i].shape) not in used_pairs
                ]
                if state[i] == "in" and free:
                    new = int(free[int(rng.integers(len(free)))])
                    used_pairs.add((COLOURS[new], objects[i].shape))
                    colour_changes.append((t, i, int(cur_colour[i]), new))
                    cur_colour[i] = new
                elif t + 1 < end_of[i] and t + 1 < T:
                    change_at[i] = t + 1  # try again when the object is in view
        pos[t] = p
        alive[t] = on
        colour[t] = cur_colour
    return Simulation(
        height=H,
        width=W,
        objects=objects,
        shots=[shot],
        shot_of=np.zeros(T, dtype=np.int64),
        cam_center=cam_center,
        cam_zoom=cam_zoom,
        pos=pos,
        alive=alive,
        colour=colour,
        colour_changes=colour_changes,
        noise_std=float(rng.uniform(*cfg.noise_std)),
        blur=bool(rng.random() < cfg.blur_prob),
    )
