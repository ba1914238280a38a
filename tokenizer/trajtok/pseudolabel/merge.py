"""Merging across key frames: segments of a new key frame continue the trajectories they overlap.

At each key frame after the first, the segmentation of that frame is compared with the label map tracked into
it from the previous key frame. A segment whose IoU with a tracked region is >= ``iou_threshold`` (0.5) takes that
region's global trajectory id; every other segment starts a new trajectory. With a threshold above 0.5 a segment
can overlap at most one region that much (regions of a map are disjoint), so matches are unique; lower thresholds
are resolved greedily, highest IoU first.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every nonzero id of map ``a`` (H, W) with every nonzero id of map ``b`` (H, W).

    Returns (ids_a (A,), ids_b (B,), iou (A, B)).
    """
    if a.shape != b.shape:
        raise ValueError(f"label maps must have the same shape, got {a.shape} and {b.shape}")
    ids_a, inv_a = np.unique(a, return_inverse=True)
    ids_b, inv_b = np.unique(b, return_inverse=True)
    inter = np.zeros((len(ids_a), len(ids_b)), dtype=np.int64)
    np.add.at(inter, (inv_a.ravel(), inv_b.ravel()), 1)
    area_a, area_b = inter.sum(1), inter.sum(0)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter / np.maximum(union, 1)
    keep_a, keep_b = ids_a != 0, ids_b != 0
    return ids_a[keep_a], ids_b[keep_b], iou[np.ix_(keep_a, keep_b)]


def match_segments(tracked: np.ndarray, segments: np.ndarray, iou_threshold: float = 0.5) -> dict[int, int]:
    """Map segment id -> tracked id for pairs with IoU >= ``iou_threshold`` (one-to-one, highest IoU first)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    ids_t, ids_s, iou = iou_matrix(tracked, segments)
    pairs = np.argwhere(iou >= iou_threshold)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_t: set[int] = set()
    out: dict[int, int] = {}
    for i, j in pairs[order].tolist():
        if i not in used_t and int(ids_s[j]) not in out:
            used_t.add(i)
            out[int(ids_s[j])] = int(ids_t[i])
    return out


class TrajectoryLinker:
    """Assigns global trajectory ids to key-frame segmentations.

    ``link(segments, tracked)`` returns ``segments`` (H, W) relabelled with global ids: matched segments continue
    the tracked trajectory, the rest get fresh ids (``tracked=None`` at the first key frame or after a cut that
    should not be linked across).
    """

    def __init__(self, iou_threshold: float = 0.5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.next_id = 1
        self.continued = 0  # segments that continued a trajectory, over all calls
        self.started = 0  # segments that started one

    def link(self, segments: np.ndarray, tracked: np.ndarray | None = None) -> np.ndarray:
        segments = np.asarray(segments)
        matches = {} if tracked is None else match_segments(tracked, segments, self.iou_threshold)
        ids = [int(i) for i in np.unique(segments) if i != 0]
        lut = np.zeros(int(segments.max(initial=0)) + 1, dtype=np.int32)
        for i in ids:
            if i in matches:
                lut[i] = matches[i]
                self.continued += 1
            else:
                lut[i] = self.next_id
                self.next_id += 1
                self.started += 1
        return lut[segments]


def to_masks_and_graph(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global trajectory ids (T, H, W) -> (``masks`` (T, H, W), ``graph`` (M, T)) in the label format.

    Trajectories are numbered 1..M in order of first appearance (frame, then id); ``masks`` holds that number as the instance id
    and ``graph[m, t] = m + 1`` where trajectory m is present in frame t (0 = absent).
    """
    ids = np.asarray(ids)
    if ids.ndim != 3:
        raise ValueError(f"ids must be (T, H, W), got shape {ids.shape}")
    T = ids.shape[0]
    present = [np.unique(ids[t]) for t in range(T)]
    order: dict[int, int] = {}
    for p in present:
        for i in p.tolist():
            if i != 0 and i not in order:
                order[i] = len(order) + 1
    lut = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int32)
    for i, m in order.items():
        lut[i] = m
    masks = lut[ids]  # (T, H, W)
    graph = np.zeros((len(order), T), dtype=np.int32)  # (M, T)
    for t, p in enumerate(present):
        m = lut[p[p != 0]]
        graph[m - 1, t] = m
    return masks, graph


def merge_small_trajectories(
    ids: np.ndarray, max_trajectories: int, keep: set[int] | frozenset[int] = frozenset()
) -> np.ndarray:
    """Object-level labels: merge the smallest trajectories of ``ids`` (T, H, W) int, 0 = none, into their
    neighbours until at most ``max_trajectories`` remain; returns the merged (T, H, W) ids (surviving ids kept).

    Smallest = fewest pixels over the whole video. A trajectory joins the one it shares the most boundary with (4-
    neighbour pixel pairs, summed over frames); one with no neighbour joins the largest. Ids in ``keep`` (e.g.
    moving objects) are never merged away, though others may join them, so more than ``max_trajectories`` can
    remain when ``keep`` holds more.
    """
    ids = np.asarray(ids)
    if ids.ndim != 3:
        raise ValueError(f"ids must be (T, H, W), got shape {ids.shape}")
    if max_trajectories < 1:
        raise ValueError(f"max_trajectories must be >= 1, got {max_trajectories}")
    present, inv = np.unique(ids, return_inverse=True)
    inv = inv.reshape(ids.shape)
    n = len(present)
    volume = np.bincount(inv.ravel(), minlength=n).astype(np.int64)
    adj = np.zeros((n, n), np.int64)  # shared boundary (pixel pairs) between trajectories, symmetric
    for a, b in ((inv[:, :, :-1], inv[:, :, 1:]), (inv[:, :-1, :], inv[:, 1:, :])):
        diff = a != b
        np.add.at(adj, (a[diff], b[diff]), 1)
    adj = adj + adj.T
    alive = present != 0
    if present[0] == 0:  # 0 (no trajectory) is neither merged nor merged into
        adj[0, :] = adj[:, 0] = 0
    protected = np.isin(present, list(keep))
    parent = np.arange(n)
    while alive.sum() > max_trajectories:
        candidates = np.nonzero(alive & ~protected)[0]
        if len(candidates) == 0:
            break
        small = candidates[np.argmin(volume[candidates])]
        others = alive.copy()
        others[small] = False
        if not others.any():
            break
        shared = np.where(others, adj[small], -1)
        into = int(np.argmax(shared)) if shared.max() > 0 else int(np.argmax(np.where(others, volume, -1)))
        parent[small] = into
        volume[into] += volume[small]
        adj[into] += adj[small]
        adj[:, into] += adj[:, small]
        adj[into, into] = 0
        adj[small, :] = adj[:, small] = 0
        alive[small] = False
    for i in range(n):  # follow the merges to the surviving trajectory
        j = i
        while parent[j] != j:
            j = parent[j]
        parent[i] = j
    return present[parent][inv].astype(ids.dtype)
