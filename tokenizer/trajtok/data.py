"""Clip datasets for TrajTok pretraining and evaluation: videos with trajectory labels -> (pixels, target ids).

Three on-disk layouts are read (``find_videos`` picks by what the folder holds):

- the synthetic world (``trajtok synth``): ``ROOT/manifest.json`` lists the videos of each split;
- pseudo-labels (``trajtok pseudolabel``): ``ROOT/labels.json`` maps video paths to npz files in ROOT;
- a plain folder: every ``X.mp4`` (or .mkv/.webm/.avi/.mov) with an ``X.npz`` beside it (``ROOT/SPLIT/`` when it
  exists, else ``ROOT``).

Videos are small, so each is decoded once (all frames, resized to ``size``) and kept in memory as uint8 with its
per-pixel trajectory ids (``TrajectoryLabels.trajectory_ids``: 0 = background, m + 1 = trajectory m). A video that
cannot be read is skipped, counted and logged with its path; too many skips raise.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from trajtok.io.labels import load_labels
from trajtok.io.video import load_video

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass
class VideoItem:
    """One labelled video on disk."""

    id: str  # video id (manifest id, or the file stem)
    video: Path  # video file (or frame folder)
    labels: Path  # label npz (masks + graph)
    captions: list[str] = field(default_factory=list)  # optional texts for CLIP co-training


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _llava_captions(path: Path) -> dict[str, list[str]]:
    """video file name -> caption texts from a LLaVA list (the gpt turns), e.g. ``captions.json`` of the synth world."""
    if not path.is_file():
        return {}
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a LLaVA-format JSON list, got {type(entries).__name__}")
    out: dict[str, list[str]] = {}
    for e in entries:
        if not isinstance(e, dict) or not e.get("video"):
            continue
        texts = [c["value"] for c in e.get("conversations", []) if c.get("from") == "gpt" and c.get("value")]
        out.setdefault(Path(e["video"]).name, []).extend(texts)
    return out


def find_videos(root: str | os.PathLike, split: str = "train") -> list[VideoItem]:
    """The labelled videos of ``split`` under ``root`` (see the module docstring for the layouts).

    Folders without splits (pseudo-label index, plain folder without ``ROOT/SPLIT``) return all their videos
    whatever ``split`` is.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    manifest = root / "manifest.json"
    if manifest.is_file():
        m = _read_json(manifest)
        if not isinstance(m, dict) or "splits" not in m or "videos" not in m:
            raise ValueError(f"{manifest}: expected a synth manifest with 'splits' and 'videos' keys")
        if split not in m["splits"]:
            raise ValueError(f"{manifest}: unknown split {split!r}; available splits: {sorted(m['splits'])}")
        captions = _llava_captions(root / split / "captions.json")
        items = []
        for vid in m["splits"][split]["videos"]:
            entry = m["videos"][vid]
            video = root / entry["video"]
            items.append(VideoItem(vid, video, root / entry["labels"], captions.get(video.name, [])))
        return items
    index = root / "labels.json"
    if index.is_file():
        table = _read_json(index)
        if not isinstance(table, dict):
            raise ValueError(f"{index}: expected a JSON object mapping video paths to npz names")
        captions = _llava_captions(root / "captions.json")
        items = []
        for video, npz in sorted(table.items()):
            v = Path(video)
            if not v.is_absolute() and not v.exists() and (root / v).exists():
                v = root / v  # a path relative to the dataset folder rather than to the working directory
            items.append(VideoItem(Path(npz).stem, v, root / npz, captions.get(v.name, [])))
        return items
    folder = root / split if (root / split).is_dir() else root
    captions = _llava_captions(folder / "captions.json")
    items = []
    for v in sorted(folder.iterdir()):
        if v.suffix.lower() in VIDEO_EXTENSIONS and v.with_suffix(".npz").is_file():
            items.append(VideoItem(v.stem, v, v.with_suffix(".npz"), captions.get(v.name, [])))
    if not items:
        raise FileNotFoundError(
            f"no labelled videos in {folder}: expected manifest.json (trajtok synth), labels.json "
            f"(trajtok pseudolabel) or video files with a .npz of the same name beside them"
        )
    return items


def resize_ids(ids: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest (pixel-centre) resize of integer ids (T, H, W) -> (T, h, w); exact for integer scale factors."""
    h, w = (size, size) if isinstance(size, int) else size
    t, hi, wi = ids.shape
    if (hi, wi) == (h, w):
        return ids
    rows = ((np.arange(h) + 0.5) * hi / h).astype(np.int64).clip(0, hi - 1)
    cols = ((np.arange(w) + 0.5) * wi / w).astype(np.int64).clip(0, wi - 1)
    return ids[:, rows[:, None], cols[None, :]]  # (T, h, w)


@dataclass
class LoadedVideo:
    """A decoded video and its labels, as held in memory."""

    id: str
    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB at the dataset size
    ids: np.ndarray  # (T, H', W') int16 trajectory ids (0 background, m + 1 trajectory m) at the label size
    captions: list[str]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def load_item(item: VideoItem, size: int, label_size: int) -> LoadedVideo:
    """Decode a video at ``size`` x ``size`` and read its labels at ``label_size``.

    Labels with fewer frames than the video (a pseudo-label run with ``--num-frames``) take the video frames at
    the same evenly spaced times. Raises VideoDecodeError / FileNotFoundError / ValueError naming the path.
    """
    labels = load_labels(item.labels)
    num = labels.masks.shape[0]
    video = load_video(item.video, size=(size, size))
    if video.frames.shape[0] != num:
        video = load_video(item.video, num_frames=num, size=(size, size))
    if video.frames.shape[0] != num:
        raise ValueError(f"{item.video}: decoded {video.frames.shape[0]} frames but {item.labels} has {num}")
    ids = labels.trajectory_ids()
    if ids.max(initial=0) > np.iinfo(np.int16).max:
        raise ValueError(f"{item.labels}: more than {np.iinfo(np.int16).max} trajectories")
    frames = video.frames.permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
    return LoadedVideo(item.id, str(item.video), frames, resize_ids(ids, label_size).astype(np.int16), item.captions)


class TrajectoryClipDataset(torch.utils.data.Dataset):
    """Clips of ``clip_len`` frames with per-pixel trajectory targets.

    ``dataset[i]`` returns a dict with ``pixel_values`` float (T, 3, H, W) in [0, 1], ``target_ids`` long
    (T, H', W') (0 background, m + 1 trajectory m), ``video_id``, ``start`` (first frame) and, when the video has
    captions, ``caption``. Training mode takes a random window (seeded by ``seed``, the epoch and the index, so a
    resumed run sees the same clips) and a random horizontal flip; eval mode takes the centre window. Videos
    shorter than ``clip_len`` repeat their last frame.

    Args:
        root: dataset folder (see ``find_videos``).
        split: split name of a synth dataset ("train", "val", "test").
        clip_len: frames per clip.
        size: frames are resized to size x size.
        label_size: side of the target ids (default ``size``).
        train: random windows and flips (True) or the centre window (False).
        hflip: allow horizontal flips in training.
        max_frame_stride: in training, each clip takes every k-th frame, k drawn in 1..max_frame_stride (capped
            so the clip fits in the video); eval mode always takes consecutive frames.
        max_videos: use only the first n videos (None = all).
        max_skip_fraction: raise if more than this fraction of the videos cannot be read.
        seed: base seed of the clip sampling.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        clip_len: int = 16,
        size: int = 64,
        *,
        label_size: int | None = None,
        train: bool = True,
        hflip: bool = True,
        max_frame_stride: int = 1,
        max_videos: int | None = None,
        max_skip_fraction: float = 0.1,
        seed: int = 0,
        progress: bool = False,
    ):
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        if size < 1 or (label_size is not None and label_size < 1):
            raise ValueError(f"size and label_size must be >= 1, got size={size}, label_size={label_size}")
        if not 0.0 <= max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        self.root = Path(root)
        self.split = split
        self.clip_len = clip_len
        self.size = size
        self.label_size = label_size or size
        self.train = train
        self.hflip = hflip
        if max_frame_stride < 1:
            raise ValueError(f"max_frame_stride must be >= 1, got {max_frame_stride}")
        self.max_frame_stride = max_frame_stride
        self.seed = seed
        self.epoch = 0
        items = find_videos(root, split)
        if max_videos is not None:
            items = items[:max_videos]
        if not items:
            raise ValueError(f"no videos in split {split!r} of {root}")
        self.videos: list[LoadedVideo] = []
        self.skipped: list[tuple[str, str]] = []  # (path, reason)
        for item in tqdm(items, desc=f"decode {split}", unit="video", disable=not progress, leave=False):
            try:
                self.videos.append(load_item(item, size, self.label_size))
            except (OSError, ValueError) as e:  # VideoDecodeError and FileNotFoundError included
                self.skipped.append((str(item.video), str(e)))
                logger.warning("skipping %s: %s", item.video, e)
        fraction = len(self.skipped) / len(items)
        if self.skipped:
            logger.warning("skipped %d of %d videos of %s/%s", len(self.skipped), len(items), root, split)
        if fraction > max_skip_fraction or not self.videos:
            raise ValueError(
                f"{len(self.skipped)} of {len(items)} videos in {root} ({split}) could not be read "
                f"({fraction:.0%} > max_skip_fraction {max_skip_fraction:.0%}); first: {self.skipped[0]}"
            )

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        """Training windows depend on (seed, epoch, index): call once per pass over the data."""
        self.epoch = int(epoch)

    def clip(self, index: int, start: int, flip: bool = False, stride: int = 1) -> dict:
        """The clip of video ``index`` from frame ``start``, every ``stride``-th frame (keys: the class docstring)."""
        v = self.videos[index]
        frame_idx = np.minimum(start + stride * np.arange(self.clip_len), v.num_frames - 1)
        frames = torch.from_numpy(v.frames[frame_idx]).permute(0, 3, 1, 2)  # (T, 3, H, W)
        ids = torch.from_numpy(v.ids[frame_idx].astype(np.int64))  # (T, H', W')
        if flip:
            frames, ids = frames.flip(-1), ids.flip(-1)
        out = {
            "pixel_values": frames.float() / 255.0,
            "target_ids": ids,
            "video_id": v.id,
            "start": int(start),
            "stride": int(stride),
        }
        if v.captions:
            out["caption"] = v.captions[0]
        return out

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int = 0) -> dict:
        """The clip of video ``index`` for ``epoch``: random window and flip from (seed, epoch, index) in training."""
        v = self.videos[index]
        span = max(v.num_frames - self.clip_len, 0)
        if not self.train:
            return self.clip(index, span // 2)
        rng = np.random.default_rng([self.seed, epoch, index])
        stride = 1
        if self.max_frame_stride > 1 and self.clip_len > 1:  # the longest step that still fits, at most the maximum
            fits = max(1, (v.num_frames - 1) // (self.clip_len - 1))
            stride = int(rng.integers(1, min(self.max_frame_stride, fits) + 1))
            span = max(v.num_frames - 1 - stride * (self.clip_len - 1), 0)
        out = self.clip(index, int(rng.integers(span + 1)), flip=self.hflip and bool(rng.integers(2)), stride=stride)
        if v.captions:
            out["caption"] = v.captions[int(rng.integers(len(v.captions)))]
        return out


def collate(samples: list[dict]) -> dict:
    """Stack samples: pixel_values (B, T, 3, H, W), target_ids (B, T, H', W'), lists for the rest."""
    out: dict = {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),  # (B, T, 3, H, W)
        "target_ids": torch.stack([s["target_ids"] for s in samples]),  # (B, T, H', W')
        "video_id": [s["video_id"] for s in samples],
        "start": [s["start"] for s in samples],
    }
    if all("caption" in s for s in samples):
        out["caption"] = [s["caption"] for s in samples]
    return out
