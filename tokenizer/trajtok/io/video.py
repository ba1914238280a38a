"""Video I/O: decode a file (PyAV) or a folder of images into uint8 frames (T, C, H, W), RGB, display orientation.

Selection is driven by frame timestamps (pts * time_base, seconds from the stream start), never by frame counts
from the container, which may be missing (0) or wrong:

- ``num_frames=n``: n target times evenly spaced from the first to the last frame of the window; each target takes
  the frame whose timestamp is nearest (ties go to the earlier frame). Exactly n frames come back; when the window
  holds fewer frames than n, frames repeat.
- ``fps=r``: targets every 1/r seconds from the window start; the nearest frame to each, without repeats.
- ``max_frames=m``: caps the count by thinning the targets uniformly (also when neither of the above is given).
- nothing: every frame of the window.

Two decoding strategies give the same frames: ``sequential`` decodes straight through the window and keeps the
wanted frames; ``seek`` jumps to the key frame before each target (when one lies between the current position and
the target) and decodes forward from there. ``auto`` estimates the number of frames each would decode from the
key-frame index and picks the cheaper. Either way only the sampled frames are held, resized (``size``) by the
decoder's own scaler as they are converted, so memory follows the sampled frames at the requested size whatever the
source resolution. Frames decoded only to reach a later target skip non-reference frames when the container's index
gives every frame's position (mp4/mov), with threaded decoding throughout.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from trajtok.checks import missing_reason

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "sequential", "seek")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Cost model used only to choose between strategies (measured on 2 CPU cores, eval/bench/bench_video_io.py): a seek
# (demuxer seek, decoder flush, thread restart) costs about SEEK_OVERHEAD_S; H.264 decoding about DECODE_S_PER_PIXEL
# per stored pixel per frame. So a seek is worth ~40 frames at 112x112 and ~0.5 frame at 1280x720.
SEEK_OVERHEAD_S = 2e-3
DECODE_S_PER_PIXEL = 4e-9
# Key-frame spacing assumed when a file has no key-frame index (x264's default key-frame interval).
DEFAULT_GOP_FRAMES = 250
# Two candidate frames whose distances to a target differ by less than this fraction of a frame period are a tie.
_TIE_FRACTION = 0.02
# FFmpeg decoder threading ("AUTO" = frame + slice threads).
THREAD_TYPE = "AUTO"
# Frames that are decoded only to reach a later target need not all be decoded: while the next target is further
# away than a margin, the decoder skips non-reference frames (FFmpeg's skip_frame NONREF: B-frames no other frame
# predicts from; they change nothing that is decoded later). The margin covers the frames already in flight when
# skipping stops: one per decoder thread, the codec's reordering delay (at most 16 for H.264) and a few spare.
SKIP_MARGIN_FRAMES = 16 + 4
# Largest still image (frame of an image folder) decoded: 8192 x 8192 pixels, checked from its header first.
MAX_IMAGE_PIXELS = 8192 * 8192


class VideoDecodeError(ValueError):
    """A video (or image folder) could not be read; the message names the path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path!r}: {reason}")


class VideoNotFoundError(VideoDecodeError, FileNotFoundError):
    """The video path does not exist (also a FileNotFoundError); ``reason`` says a symlink loop or a broken link."""

    def __init__(self, path: str | os.PathLike, reason: str = "not found"):
        super().__init__(path, reason)


@dataclass
class Video:
    """Decoded frames and where they came from."""

    frames: torch.Tensor  # (T, C, H, W) uint8 RGB, display orientation (rotation metadata applied)
    timestamps: torch.Tensor  # (T,) float64 seconds from the stream start (pts * time_base)
    indices: torch.Tensor  # (T,) int64 source frame index of each frame (0 = first decodable frame)
    fps: float  # average frame rate of the source
    num_source_frames: int  # frames in the source: exact if decoded to the end or an image folder, else metadata
    path: str  # the file or folder read
    strategy: str = "sequential"  # how it was decoded: "sequential", "seek" or "images"


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from the container and its first frame."""

    path: str  # the file or folder probed
    num_frames: int  # frame count: container metadata, or duration * fps when that is missing (see exact)
    num_frames_exact: bool  # True when num_frames was counted (packets or images), False for metadata / estimate
    fps: float  # average frame rate
    duration: float  # seconds from the first frame to the end of the last
    height: int  # displayed height (rotation applied)
    width: int  # displayed width (rotation applied)
    rotation: int  # degrees the stored frame turns counterclockwise to display (PyAV's frame.rotation): 0/±90/180
    codec: str  # decoder name ("h264", "vp9", ...; "image" for a folder)
    num_keyframes: int  # key frames in the container index (0 when the container has no index)


def probe_video(source: str | os.PathLike, *, count_frames: bool = False, folder_fps: float = 24.0) -> VideoInfo:
    """Read size, rate, duration, rotation and codec without decoding the whole file (one frame is decoded).

    ``count_frames=True`` counts the video packets (demuxing only, no decoding) for an exact frame count when the
    container's own count is missing or unreliable (Matroska, WebM, MPEG-TS).
    """
    path = _check_exists(source)
    if path.is_dir() or is_image_file(path):
        files = _list_images(path) if path.is_dir() else [path]
        h, w = _read_image(files[0], None).shape[:2]
        return VideoInfo(str(path), len(files), True, folder_fps, len(files) / folder_fps, h, w, 0, "image", 0)
    with _open(path) as src:
        num, exact = src.num_frames, src.num_frames_exact
        if count_frames and not exact:
            num, exact = src.count_packets(), True
        h, w = src.display_size
        return VideoInfo(
            str(path), num, exact, src.fps, src.duration, h, w, src.rotation, src.codec, len(src.keyframes)
        )


def load_video(
    source: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    start: float | None = None,
    end: float | None = None,
    strategy: str = "auto",
    folder_fps: float = 24.0,
) -> Video:
    """Decode ``source`` (a video file or a folder of .jpg/.jpeg/.png frames sorted by name) into a :class:`Video`.

    Args:
        source: video file path, or a folder of images (its frame rate is ``folder_fps``).
        num_frames: n frames evenly spaced over the window (exactly n, repeating frames if the window is shorter).
        fps: sample at this rate (distinct frames only). Exclusive with ``num_frames``.
        max_frames: upper bound on the number of frames; thins the selection uniformly.
        size: int = shorter displayed side becomes ``size`` (aspect kept); (H, W) = exact displayed size.
        start, end: window [start, end) in seconds from the stream start; default the whole video.
        strategy: "auto", "sequential" or "seek" (same frames; different speed).
        folder_fps: frame rate given to an image folder.

    Returns:
        Video with frames (T, C, H, W) uint8 RGB in display orientation.

    Raises:
        VideoDecodeError: missing path (VideoNotFoundError, also a FileNotFoundError), empty folder, not a video,
            truncated or corrupt data, no video stream, or no decodable frame in the window.
        ValueError: invalid arguments.
    """
    _check_args(num_frames, fps, max_frames, size, start, end, strategy, folder_fps)
    path = _check_exists(source)
    if path.is_dir():
        return _load_images(path, _list_images(path), num_frames, fps, max_frames, size, start, end, folder_fps)
    if is_image_file(path):
        video = _load_images(path, [path], num_frames, fps, max_frames, size, start, end, folder_fps)
        if video.frames.shape[0] > 1:
            logger.warning("%s is a still image, not a video: read as %d copies of it", path, video.frames.shape[0])
        return video
    with _open(path) as src:
        lo = 0.0 if start is None else float(start)
        hi = math.inf if end is None else float(end)
        period = 1.0 / src.fps
        if lo >= src.duration:
            raise VideoDecodeError(
                path, f"window start {lo:.3f} s is at or after the end of the video ({src.duration:.3f} s)"
            )
        # Estimated timestamps of the first and last frame inside [lo, hi).
        first = lo
        last = max(first, min(hi, src.duration) - period)
        targets = _targets(first, last, period, num_frames, fps, max_frames)
        if strategy == "auto":
            strategy = _choose_strategy(src, targets, lo, last)
        logger.debug("%s: %s decoding, %s targets", path, strategy, "all" if targets is None else len(targets))
        expected = int((last - first) * src.fps) + 2
        picker = _Picker(targets, period, dedupe=fps is not None, convert=src.converter(size), expected=expected)
        if targets is None:
            strategy = "sequential"
        if strategy == "seek":
            _decode_seek(src, picker, lo, hi)
        else:
            _decode_sequential(src, picker, lo, hi)
        frames, timestamps, indices = picker.result(path)
        return Video(frames, timestamps, indices, src.fps, src.num_frames, str(path), strategy)


# ----------------------------------------------------------------------------------------------- arguments


def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """Source frame indices that ``load_video(num_frames=...)`` returns for a constant-rate video of ``total`` frames.

    The targets are evenly spaced from the first frame to the last, and each takes its nearest frame; a target within
    ``_TIE_FRACTION`` of a frame period of the midpoint between two frames takes the earlier one, as the decoder's
    picker does (``np.round`` would round half to even instead). For labels stored per frame (masks, trajectory ids)
    that must line up with decoded frames.
    """
    if total < 1 or num_frames < 1:
        raise ValueError(f"total and num_frames must be >= 1, got total={total}, num_frames={num_frames}")
    x = np.linspace(0, total - 1, num_frames)
    index = np.floor(x)
    index += (x - index) > 0.5 + _TIE_FRACTION
    return index.astype(np.int64)


def _check_args(num_frames, fps, max_frames, size, start, end, strategy, folder_fps) -> None:
    if num_frames is not None and fps is not None:
        raise ValueError(f"give num_frames or fps, not both (got num_frames={num_frames}, fps={fps})")
    for name, value in (("num_frames", num_frames), ("max_frames", max_frames)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    for name, value in (("fps", fps), ("folder_fps", folder_fps)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if size is not None:
        ok = (isinstance(size, int) and not isinstance(size, bool) and size > 0) or (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        )
        if not ok:
            raise ValueError(f"size must be a positive int (shorter side) or an (H, W) pair of ints, got {size!r}")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end must be after start, got start={start}, end={end}")
    if end is not None and end <= 0:
        raise ValueError(f"end must be > 0 seconds, got {end}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


def _check_exists(source: str | os.PathLike) -> Path:
    path = Path(source)
    if not path.exists():
        raise VideoNotFoundError(path, missing_reason(path))  # "not found", "symlink loop" or "broken symlink"
    return path


def _targets(
    first: float, last: float, period: float, num_frames: int | None, fps: float | None, max_frames: int | None
) -> np.ndarray | None:
    """Target times (seconds, non-decreasing) or None for every frame of the window."""
    if num_frames is not None:
        targets = np.linspace(first, last, num_frames)
    elif fps is not None:
        count = int(math.floor((last - first) * fps + 0.5 * fps * period + 1e-9)) + 1
        targets = first + np.arange(count) / fps
    elif max_frames is not None and (last - first) / period + 1 > max_frames:
        targets = np.linspace(first, last, max_frames)
    else:
        return None
    if max_frames is not None and len(targets) > max_frames:
        targets = targets[np.round(np.linspace(0, len(targets) - 1, max_frames)).astype(np.int64)]
    return targets


# ------------------------------------------------------------------------------------------ frame selection


class _Picker:
    """Assigns each target time to its nearest frame as frames arrive in presentation order.

    Frames are fed as (index, time, payload); only chosen payloads are converted (``convert(payload) -> (H, W, 3)
    uint8``) and copied into a buffer preallocated for the targets, so memory holds the sampled frames only.
    """

    def __init__(
        self,
        targets: np.ndarray | None,
        period: float,
        *,
        dedupe: bool,
        convert: Callable[[Any], np.ndarray],
        expected: int = 16,
    ):
        self.targets = targets
        self.capacity = len(targets) if targets is not None else max(1, expected)  # frames the buffer holds
        self.tie = _TIE_FRACTION * period
        self.dedupe = dedupe
        self.convert = convert
        self.next = 0  # first unassigned target
        self.prev: tuple[int, float, Any] | None = None  # last frame fed (candidate for the next target)
        self.buffer: torch.Tensor | None = None  # (capacity, C, H, W), allocated at the first frame
        self._array: np.ndarray | None = None  # numpy view of buffer
        self.chosen: list[tuple[int, float]] = []  # (index, time) per filled slot
        self._last_slot: tuple[int, int] | None = None  # (source index, slot) of the last converted frame

    @property
    def done(self) -> bool:
        return self.targets is not None and self.next >= len(self.targets)

    def next_target(self) -> float:
        assert self.targets is not None  # targets mode only
        return float(self.targets[self.next])

    def reset(self) -> None:
        """Forget the previous frame (after a seek it is no longer the frame before the next one)."""
        self.prev = None

    def feed(self, index: int, time: float, payload: Any) -> None:
        frame = (index, time, payload)
        if self.targets is None:
            self._store(frame)
            return
        while self.next < len(self.targets) and time >= self.targets[self.next]:
            target = self.targets[self.next]
            if self.prev is not None and (target - self.prev[1]) <= (time - target) + self.tie:
                self._store(self.prev)
            else:
                self._store(frame)
            self.next += 1
        self.prev = frame

    def finish(self) -> None:
        """The stream (or window) ended: remaining targets take the last frame."""
        if self.targets is None:
            return
        while self.prev is not None and self.next < len(self.targets):
            self._store(self.prev)
            self.next += 1

    def _store(self, frame: tuple[int, float, Any]) -> None:
        index, time, payload = frame
        slot = len(self.chosen)
        if self._last_slot is not None and self._last_slot[0] == index:
            if self.dedupe or self.targets is None:
                return
            assert self._array is not None  # a frame was stored before
            image = self._array[self._last_slot[1]]  # (C, H, W) view of the repeated frame
        else:
            image = self.convert(payload).transpose(2, 0, 1)  # (C, H, W) view of the (H, W, 3) conversion
            if self.buffer is None:
                self._allocate(self.capacity, image.shape)
            elif slot == len(self.buffer):  # every-frame mode and the count estimate was short: grow by half
                old = self._array
                self._allocate(slot + slot // 2 + 1, image.shape)
                assert self._array is not None
                self._array[:slot] = old
            self._last_slot = (index, slot)
        assert self._array is not None  # allocated at the first frame
        # numpy's single-threaded copy: torch's strided copy into the (C, H, W) layout goes through its intra-op
        # thread pool, which on busy cores costs up to 20 ms per 640x360 frame (measured, 2 threads)
        self._array[slot] = image
        self.chosen.append((index, time))

    def _allocate(self, capacity: int, shape: tuple[int, ...]) -> None:
        self.buffer = torch.empty((capacity, *shape), dtype=torch.uint8)  # (capacity, C, H, W)
        self._array = self.buffer.numpy()  # the same memory, written with numpy

    def result(self, path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.chosen:
            raise VideoDecodeError(path, "no decodable frames in the requested window")
        assert self.buffer is not None  # allocated at the first chosen frame
        frames = self.buffer[: len(self.chosen)]
        if len(frames) < 0.9 * len(self.buffer):
            frames = frames.clone()  # release the unused capacity
        indices = torch.tensor([c[0] for c in self.chosen], dtype=torch.int64)
        timestamps = torch.tensor([c[1] for c in self.chosen], dtype=torch.float64)
        return frames, timestamps, indices  # (T, C, H, W), (T,), (T,)


# -------------------------------------------------------------------------------------------- video files


class _Source:
    """An open PyAV container with its video stream's metadata resolved."""

    def __init__(self, path: Path):
        self.av = av
        self.path = path
        try:
            self.container = av.open(str(path), mode="r")
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f"not a readable video container ({_reason(e)})") from e
        try:
            self._read_metadata()
        except BaseException:
            self.container.close()
            raise

    def _read_metadata(self) -> None:
        path, container = self.path, self.container
        if not container.streams.video:
            kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
        stream = self.stream = container.streams.video[0]
        stream.thread_type = THREAD_TYPE
        if stream.time_base is None:
            raise VideoDecodeError(path, "the video stream has no time base (its timestamps cannot be read)")
        self.time_base = float(stream.time_base)
        self.codec = stream.codec_context.name
        self.stream_start = stream.start_time or 0  # pts units; timestamps are measured from here
        first = self._first_frame()
        self.first_pts = first.pts if first.pts is not None else self.stream_start
        self.rotation = int(round(first.rotation or 0)) % 360
        if self.rotation > 180:
            self.rotation -= 360
        self.stored_size = (first.height, first.width)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        tagged = _parse_duration_tag(stream.metadata.get("DURATION"))  # Matroska/WebM per-track duration
        if stream.duration:
            duration = stream.duration * self.time_base
        elif tagged:
            duration = tagged
        elif container.duration:
            duration = container.duration / 1e6 - (self.stream_start * self.time_base)
        else:
            duration = 0.0
        # The container's duration can belong to a longer audio track: trust it only for a video-only file.
        self.duration_trusted = bool(stream.duration or tagged or (container.duration and len(container.streams) == 1))
        if self.fps <= 0 and duration > 0 and stream.frames > 0:
            self.fps = stream.frames / duration
        if self.fps <= 0:
            raise VideoDecodeError(path, "no frame rate in the container metadata")
        if duration <= 0:
            duration = self.count_packets() / self.fps
        self.duration = duration
        if stream.frames > 0:
            self.num_frames, self.num_frames_exact = int(stream.frames), False
        else:
            self.num_frames, self.num_frames_exact = max(1, int(round(duration * self.fps))), False
        self._read_index()
        # Skipping frames is safe only where a frame's index comes from its timestamp (full index), not a count.
        self.can_skip = self.dts_table is not None
        self.skipping = False
        threads = max(1, int(stream.codec_context.thread_count or 1))
        self.skip_margin = (threads + SKIP_MARGIN_FRAMES) / self.fps  # seconds

    def set_skip(self, skip: bool) -> None:
        """Skip (True) or decode (False) non-reference frames from the next packet on."""
        if skip != self.skipping:
            self.stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self.skipping = skip

    def _first_frame(self):
        try:
            for frame in self.container.decode(self.stream):
                return frame
        except self.av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"corrupt or truncated data ({_reason(e)})") from e
        raise VideoDecodeError(self.path, "zero decodable frames")

    def _read_index(self) -> None:
        """Key-frame times and, when the index lists every frame (mp4/mov), a dts table for exact frame indices."""
        entries = self.stream.index_entries
        dts = [e.timestamp for e in entries]
        shift = self.first_pts - dts[0] if dts else 0  # decoding delay: pts of a frame ~ its dts + shift
        self.keyframes = sorted(self._seconds(e.timestamp + shift) for e in entries if e.is_keyframe)
        full = self.stream.frames > 0 and len(dts) == self.stream.frames
        self.dts_table = sorted(dts) if full else None
        # x264-style files: the k-th smallest dts equals the k-th smallest pts shifted by `delay` positions.
        self.delay = bisect.bisect_left(self.dts_table, self.first_pts) if self.dts_table is not None else 0

    def _seconds(self, pts: int) -> float:
        return (pts - self.stream_start) * self.time_base

    def exact_index(self, pts: int) -> int | None:
        """Source frame index of a frame from its pts when the full index holds that pts, else None."""
        if self.dts_table is not None:
            k = bisect.bisect_left(self.dts_table, pts)
            if k < len(self.dts_table) and self.dts_table[k] == pts:
                return k - self.delay
        return None

    def index_of(self, pts: int) -> int:
        """Source frame index of a frame from its pts (used after seeking, where frames cannot be counted)."""
        exact = self.exact_index(pts)
        if exact is not None:
            return exact
        return int(round((pts - self.first_pts) * self.time_base * self.fps))

    @property
    def display_size(self) -> tuple[int, int]:
        h, w = self.stored_size
        return (w, h) if self.rotation in (90, -90) else (h, w)

    def count_packets(self) -> int:
        """Video packets in the file (demux only); reopens so the decode position is unaffected."""
        av = self.av
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                return sum(1 for p in container.demux(stream) if p.size > 0)
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"corrupt or truncated data ({_reason(e)})") from e

    def converter(self, size: int | tuple[int, int] | None) -> Callable[[Any], np.ndarray]:
        """Frame -> (H, W, 3) uint8 RGB at the displayed ``size``; resizing happens in the RGB conversion."""
        dh, dw = self.display_size
        if size is None:
            out = (dh, dw)
        elif isinstance(size, int):
            scale = size / min(dh, dw)
            out = (size, max(1, round(dw * scale))) if dh <= dw else (max(1, round(dh * scale)), size)
        else:
            out = (int(size[0]), int(size[1]))
        turned = self.rotation in (90, -90)
        sh, sw = (out[1], out[0]) if turned else out  # size in stored orientation
        k = (self.rotation // 90) % 4  # np.rot90 turns counterclockwise, as the display matrix does

        def convert(frame) -> np.ndarray:
            image = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="BILINEAR")
            return np.rot90(image, k) if k else image  # (H, W, 3)

        return convert

    def frames(self) -> Iterator[tuple[float, Any]]:
        """Yield (seconds, frame) in presentation order from the current position."""
        try:
            for frame in self.container.decode(self.stream):
                if frame.pts is None:  # some AVI/raw streams carry decode timestamps only
                    if frame.dts is None:
                        raise VideoDecodeError(self.path, "a decoded frame has no timestamp (neither pts nor dts)")
                    frame.pts = frame.dts
                yield self._seconds(frame.pts), frame
        except self.av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"corrupt or truncated data ({_reason(e)})") from e

    def seek(self, seconds: float) -> None:
        """Position the demuxer at the key frame at or before ``seconds`` (in the dts domain of the index)."""
        lowest = self.dts_table[0] if self.dts_table else self.stream_start
        pts = int(math.floor(seconds / self.time_base)) + self.stream_start - (self.first_pts - lowest)
        try:
            self.container.seek(max(pts, lowest), stream=self.stream, backward=True, any_frame=False)
        except self.av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"seek to {seconds:.3f} s failed ({_reason(e)})") from e

    def check_complete(self, last_time: float | None, wanted_until: float) -> None:
        """Raise when decoding stopped well before where the stream's own metadata says the video ends."""
        if not self.duration_trusted or last_time is None:
            return
        end = min(wanted_until, self.duration)
        missing = end - (last_time + 1.0 / self.fps)
        if missing > max(1.0, 0.05 * self.duration):
            raise VideoDecodeError(
                self.path,
                f"truncated or corrupt: frames stop at {last_time:.3f} s but the stream lasts {self.duration:.3f} s",
            )

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open(path: Path) -> _Source:
    return _Source(path)


def _parse_duration_tag(tag: str | None) -> float:
    """'HH:MM:SS.fffffffff' (the DURATION tag FFmpeg writes per Matroska track) -> seconds; 0.0 when absent/invalid."""
    if not tag:
        return 0.0
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 0.0


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _decode_sequential(src: _Source, picker: _Picker, lo: float, hi: float) -> None:
    """Decode straight through [lo, hi) (after one seek to lo when a key frame after the first precedes it)."""
    seeked = lo > 0 and bisect.bisect_right(src.keyframes, lo) > 1
    if seeked:
        stream = _numbered(src, _seek_to(src, lo))
    else:
        src.seek(0.0)
        counted = not src.can_skip or picker.targets is None  # every frame decoded: counting is exact
        stream = _enumerate_frames(src.frames()) if counted else _numbered(src, src.frames())
    index, last_time, reached_end = 0, None, True
    for index, time, frame in stream:
        _update_skip(src, picker, time)
        if time < lo - picker.tie:
            continue
        if time >= hi:
            reached_end = False
            break
        picker.feed(index, time, frame)
        last_time = time
        if picker.done:
            reached_end = False
            break
    if reached_end:
        if picker.targets is None and not seeked and last_time is not None:
            src.num_frames, src.num_frames_exact = index + 1, True
        src.check_complete(last_time, hi if picker.targets is None else float(picker.targets[-1]))
    picker.finish()


def _decode_seek(src: _Source, picker: _Picker, lo: float, hi: float) -> None:
    """For each target, seek to the key frame before it when that skips frames, then decode forward to it."""
    stream: Iterator | None = None
    position: float | None = None  # time of the last frame decoded
    last_time = None  # time of the last frame fed
    while not picker.done:
        target, pending = picker.next_target(), picker.next
        if stream is None or _keyframe_between(src, position, target):
            stream = _numbered(src, _seek_to(src, target))
            picker.reset()
        for index, time, frame in stream:
            position = time
            _update_skip(src, picker, time)
            if time < lo - picker.tie:
                continue
            if time >= hi:
                break
            picker.feed(index, time, frame)
            last_time = time
            if picker.next != pending:
                break
        else:  # end of stream
            assert picker.targets is not None  # seeking serves targets only
            src.check_complete(last_time, float(picker.targets[-1]))
        if picker.next == pending:  # the stream or the window ended before this target
            break
    picker.finish()


def _keyframe_between(src: _Source, position: float | None, target: float) -> bool:
    """True when a key frame lies in (position, target]: seeking there skips decoding frames."""
    if position is None:
        return True
    if not src.keyframes:
        return (target - position) * src.fps > DEFAULT_GOP_FRAMES
    return bisect.bisect_right(src.keyframes, target) > bisect.bisect_right(src.keyframes, position)


def _seek_to(src: _Source, target: float) -> Iterator:
    """Seek so that the first frame decoded is at or before ``target`` (or is the first frame of the video)."""
    back = 0.0
    while True:
        src.seek(target - back)
        frames = src.frames()
        head = next(frames, None)
        if head is None or head[0] <= target + 1e-9 or target - back <= 0:
            return _prepend(head, frames)
        back = max(1.0, 2 * back)  # the index put a later key frame first: back off further


def _enumerate_frames(frames: Iterator[tuple[float, Any]]) -> Iterator[tuple[int, float, Any]]:
    """Number frames decoded from the start of the stream: (index, seconds, frame)."""
    for index, (time, frame) in enumerate(frames):
        yield index, time, frame


def _numbered(src: _Source, frames: Iterator[tuple[float, Any]]) -> Iterator[tuple[int, float, Any]]:
    """Number frames decoded after a seek: the key frame's index from the container index, then count on (or, where
    frames may be skipped, every frame's index from the index)."""
    base, previous = None, None
    for k, (time, frame) in enumerate(frames):
        if src.can_skip:  # the last few frames' pts may be missing from the dts table: count on from the previous
            exact = src.exact_index(frame.pts)
            previous = exact if exact is not None else previous + 1 if previous is not None else src.index_of(frame.pts)
            yield previous, time, frame
            continue
        if base is None:
            base = src.index_of(frame.pts)
        yield base + k, time, frame


def _update_skip(src: _Source, picker: _Picker, time: float) -> None:
    """Skip non-reference frames while the next target is more than the margin ahead of the decoded frame."""
    if src.can_skip and picker.targets is not None and not picker.done:
        src.set_skip(picker.next_target() - time > src.skip_margin)


def _prepend(head, rest: Iterator) -> Iterator:
    if head is not None:
        yield head
    yield from rest


def _choose_strategy(src: _Source, targets: np.ndarray | None, lo: float, last: float) -> str:
    """Pick the strategy that decodes fewer frames, estimated from the key-frame index."""
    if targets is None or len(targets) == 0:
        return "sequential"
    fps = src.fps
    overhead = SEEK_OVERHEAD_S / (DECODE_S_PER_PIXEL * src.stored_size[0] * src.stored_size[1])  # in frames
    keyframes = src.keyframes if len(src.keyframes) > 1 else None
    start_kf = _keyframe_before(keyframes, lo) if keyframes else 0.0
    sequential = (float(targets[-1]) - start_kf) * fps + 1
    seek = 0.0
    position: float | None = None
    for target in np.unique(targets):
        if keyframes is None:
            # No index: seeking lands on average half a key-frame interval before the target.
            jump = position is None or (target - position) * fps > DEFAULT_GOP_FRAMES
            seek += overhead + DEFAULT_GOP_FRAMES / 2 if jump else (target - position) * fps
        elif position is None or _keyframe_between(src, position, target):
            seek += overhead + (target - _keyframe_before(keyframes, target)) * fps + 1
        else:
            seek += (target - position) * fps
        position = float(target)
    return "seek" if seek < 0.8 * sequential else "sequential"


def _keyframe_before(keyframes: Sequence[float] | None, t: float) -> float:
    if not keyframes:
        return 0.0
    k = bisect.bisect_right(keyframes, t + 1e-9)
    return keyframes[max(k - 1, 0)]


# ------------------------------------------------------------------------------------------- image folders


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a still image file (.jpg, .jpeg, .png) that ``load_video`` reads as a one-frame video."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _list_images(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise VideoDecodeError(path, f"directory has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _read_image(file: Path, size: int | tuple[int, int] | None) -> np.ndarray:
    """One image as (H, W, 3) uint8 RGB, EXIF orientation applied, resized like video frames."""
    try:
        with Image.open(file) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:  # from the header, before any pixel is decoded
                raise VideoDecodeError(
                    file, f"image is {im.width}x{im.height}, over the limit of {MAX_IMAGE_PIXELS:,} pixels per image"
                )
            image = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise VideoDecodeError(file, f"not a readable image ({e})") from e
    if size is not None:
        w, h = image.size
        if isinstance(size, int):
            scale = size / min(h, w)
            out = (size, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), size)
        else:
            out = (int(size[0]), int(size[1]))
        image = image.resize((out[1], out[0]), Image.Resampling.BILINEAR)
    return np.array(image)  # (H, W, 3), writable


def _load_images(
    path: Path,
    files: list[Path],
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    size: int | tuple[int, int] | None,
    start: float | None,
    end: float | None,
    folder_fps: float,
) -> Video:
    """Image files read as consecutive frames at ``folder_fps`` (a folder, or one still image)."""
    period = 1.0 / folder_fps
    times = np.arange(len(files)) * period
    lo = 0.0 if start is None else float(start)
    hi = math.inf if end is None else float(end)
    inside = np.flatnonzero((times >= lo - _TIE_FRACTION * period) & (times < hi))
    if len(inside) == 0:
        raise VideoDecodeError(path, f"no images in the window [{lo}, {hi}) s at {folder_fps} fps")
    targets = _targets(lo, float(times[inside[-1]]), period, num_frames, fps, max_frames)
    convert = lambda f: _read_image(f, size)  # noqa: E731
    picker = _Picker(targets, period, dedupe=fps is not None, convert=convert, expected=len(inside))
    for i in inside:
        picker.feed(int(i), float(times[i]), files[i])
        if picker.done:
            break
    picker.finish()
    frames, timestamps, indices = picker.result(path)
    return Video(frames, timestamps, indices, float(folder_fps), len(files), str(path), "images")
