"""Trajectory label format shared by the synthetic world, the pseudo-label pipeline, training and evaluation.

One ``.npz`` per video with
  ``masks``: (T, H, W) integer instance ids per frame, 0 = no instance;
  ``graph``: (M, T) integer, for trajectory m the instance id it has in frame t (0 = absent).
This is the format of the TrajTok authors' release; trajectory m covers pixel (t, y, x) iff
``masks[t, y, x] == graph[m, t] != 0``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TrajectoryLabels:
    masks: np.ndarray  # (T, H, W) int32 instance ids
    graph: np.ndarray  # (M, T) int32 instance id of trajectory m in frame t

    def __post_init__(self) -> None:
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (T, H, W), got shape {tuple(self.masks.shape)}")
        if self.graph.ndim != 2 or self.graph.shape[1] != self.masks.shape[0]:
            raise ValueError(
                f"graph must be (M, T) with T = {self.masks.shape[0]} (frames in masks), got {tuple(self.graph.shape)}"
            )

    @property
    def num_trajectories(self) -> int:
        return int(self.graph.shape[0])

    def trajectory_ids(self) -> np.ndarray:
        """Per-pixel trajectory index (T, H, W): m + 1 for trajectory m, 0 where no trajectory covers the pixel."""
        T = self.masks.shape[0]
        out = np.zeros(self.masks.shape, dtype=np.int32)
        for t in range(T):
            for m in np.nonzero(self.graph[:, t])[0]:
                out[t][self.masks[t] == self.graph[m, t]] = m + 1
        return out

    def subsample(self, frame_indices: np.ndarray) -> TrajectoryLabels:
        """Labels of the selected frames (trajectories absent from all of them are dropped)."""
        idx = np.asarray(frame_indices, dtype=np.int64)
        graph = self.graph[:, idx]
        keep = graph.any(axis=1)
        return TrajectoryLabels(self.masks[idx], graph[keep])


def save_labels(path: str | os.PathLike, masks: np.ndarray, graph: np.ndarray) -> None:
    """Write ``masks`` + ``graph`` atomically (compressed npz)."""
    labels = TrajectoryLabels(np.asarray(masks, dtype=np.int32), np.asarray(graph, dtype=np.int32))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=labels.masks, graph=labels.graph)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_labels(path: str | os.PathLike) -> TrajectoryLabels:
    """Read a label npz; raises FileNotFoundError / ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory labels not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read label file ({type(e).__name__}: {e})") from e
    missing = {"masks", "graph"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: label file lacks {sorted(missing)} (has {sorted(arrays)})")
    return TrajectoryLabels(arrays["masks"].astype(np.int32), arrays["graph"].astype(np.int32))
