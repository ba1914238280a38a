"""Events and per-object facts of a rendered synthetic video, read from the simulation and the painted masks.

Every event is a dict ``{"type", "frames": [first, last], "objects": [ids], ...}`` with types
``enter`` / ``exit`` (+ ``side``), ``appear``, ``vanish``, ``occlusion`` (objects = [front, back]),
``collision`` (two objects), ``colour_change`` (+ ``from``, ``to``), ``stop`` and ``cut`` (objects = those that
persist through the cut). Events are defined by what a viewer can see: visibility is "owns at least one pixel",
so the record's visible ranges match the masks exactly.
"""

from __future__ import annotations

import numpy as np

from trajtok.synth.world import COLOURS, RenderStats, Simulation

EVENT_TYPES: tuple[str, ...] = (
    "cut",
    "appear",
    "enter",
    "exit",
    "vanish",
    "collision",
    "colour_change",
    "stop",
    "occlusion",
)
SIDES: tuple[str, ...] = ("left", "right", "top", "bottom")


def frame_side(y: float, x: float, height: int, width: int) -> str:
    """The side of the frame that a point outside (or near the border) lies beyond the most."""
    over = {"left": -x, "right": x - width, "top": -y, "bottom": y - height}
    return max(SIDES, key=lambda s: over[s])


def ranges(flags: np.ndarray) -> list[list[int]]:
    """Inclusive [first, last] runs of True in a (T,) bool array."""
    f = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    d = np.diff(f.astype(np.int8))
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1
    return [[int(s), int(e)] for s, e in zip(starts, ends, strict=True)]


def extract_events(sim: Simulation, stats: RenderStats, min_occlusion: int = 2) -> tuple[list[dict], np.ndarray]:
    """Events of all N simulated objects, sorted by first frame; and ``vis`` (T, N) bool (owns a pixel)."""
    T, N = sim.num_frames, len(sim.objects)
    H, W = sim.height, sim.width
    vis = stats.visible > 0  # (T, N)
    cuts = set(sim.cuts)
    events: list[dict] = []
    for i in range(N):
        for t in range(1, T):
            if vis[t, i] == vis[t - 1, i] or t in cuts:
                continue  # a cut changes everything at once: only the cut event is recorded there
            if vis[t, i]:  # became visible: spawned, came in from outside, or came out from behind (no event)
                if not sim.alive[t - 1, i]:
                    events.append({"type": "appear", "frames": [t, t], "objects": [i]})
                elif not stats.drawn[t - 1, i]:
                    side = frame_side(float(stats.screen[t - 1, i, 0]), float(stats.screen[t - 1, i, 1]), H, W)
                    events.append({"type": "enter", "frames": [t, t], "objects": [i], "side": side})
            else:  # stopped being visible at t
                if not sim.alive[t, i]:
                    events.append({"type": "vanish", "frames": [t, t], "objects": [i]})
                elif not stats.drawn[t, i]:
                    side = frame_side(float(stats.screen[t, i, 0]), float(stats.screen[t, i, 1]), H, W)
                    events.append({"type": "exit", "frames": [t, t], "objects": [i], "side": side})
    for i, s, e in sim.stops:
        if e - s + 1 >= 3 and vis[s : e + 1, i].all():
            events.append({"type": "stop", "frames": [s, e], "objects": [i]})
    for t, a, b in sim.collisions:
        if vis[t, a] and vis[t, b]:
            events.append({"type": "collision", "frames": [t, t], "objects": [a, b]})
    # Colour changes are facts whether or not they are seen (later frames show the new colour).
    for t, i, c0, c1 in sim.colour_changes:
        events.append(
            {"type": "colour_change", "frames": [t, t], "objects": [i], "from": COLOURS[c0], "to": COLOURS[c1]}
        )
    for t in sim.cuts:
        kept = [i for i in range(N) if sim.alive[t - 1, i] and sim.alive[t, i] and vis[t, i]]
        events.append({"type": "cut", "frames": [t, t], "objects": kept})
    # Occlusions: runs of frames where one object hides >= the set fraction of another, split at cuts.
    pairs: dict[tuple[int, int], list[int]] = {}
    for t, front, back in stats.occlusions:
        pairs.setdefault((front, back), []).append(t)
    for (front, back), frames in pairs.items():
        flags = np.zeros(T, dtype=bool)
        flags[frames] = True
        for s, e in ranges(flags):
            for piece in _split_at(s, e, sorted(cuts)):
                if piece[1] - piece[0] + 1 >= min_occlusion:
                    events.append({"type": "occlusion", "frames": piece, "objects": [front, back]})
    order = {k: n for n, k in enumerate(EVENT_TYPES)}
    events.sort(key=lambda ev: (ev["frames"][0], order[ev["type"]], ev["objects"]))
    return events, vis


def _split_at(s: int, e: int, cuts: list[int]) -> list[list[int]]:
    out, cur = [], s
    for c in cuts:
        if cur < c <= e:
            out.append([cur, c - 1])
            cur = c
    out.append([cur, e])
    return out


def keep_visible(events: list[dict], vis: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """Drop objects never visible (and their events), renumber the rest 0..M-1 in their old order.

    Returns the events with new ids and ``old_ids`` (M,): the simulated index of each kept object.
    """
    old_ids = np.nonzero(vis.any(axis=0))[0]
    new_id = {int(o): n for n, o in enumerate(old_ids)}
    out = []
    for ev in events:
        if ev["type"] == "cut":
            out.append({**ev, "objects": [new_id[o] for o in ev["objects"] if o in new_id]})
        elif all(o in new_id for o in ev["objects"]):
            out.append({**ev, "objects": [new_id[o] for o in ev["objects"]]})
    return out, old_ids
