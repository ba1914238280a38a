"""Write frames to a video file with PyAV (H.264 in mp4 by default).

Used by the synthetic world, visualisation and tests. Frames are uint8 RGB, (T, H, W, 3) (numpy, channels
last: the layout encoders take); odd sizes are padded by one pixel for yuv420p.

libx264 is not byte-reproducible here: encoding the same frames twice gives different files now and then (60
encodes of one 48-frame 64 px video gave 18 different files on a busy machine, and 3 with one encoder thread),
differing by up to ~17 levels in some pixels. FFmpeg's own MPEG-4 Part 2 encoder (``codec="mpeg4"``) gave one
file every time; the synthetic world uses it so that one seed gives one dataset, byte for byte.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 10.0,
    *,
    codec: str = "libx264",
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    threads: int = 0,
) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB into ``path``; the container follows the file extension.

    ``crf`` is libx264's quality; ``codec="mpeg4"`` encodes at quantiser 1-3 (near-constant quality, about as
    close to the frames as crf 18 at 64 px). ``threads`` sets the encoder's threads (0 = FFmpeg's choice).
    Writes to a temporary name and renames, so an interrupted write never leaves a truncated video behind.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty (T = 0): nothing to encode")
    T, H, W, _ = frames.shape
    pad_h, pad_w = H % 2, W % 2
    if (pad_h or pad_w) and pix_fmt == "yuv420p":
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    rate = Fraction(fps).limit_denominator(1001)
    opts = {"libx264": {"crf": str(crf), "preset": "veryfast"}, "mpeg4": {"qmin": "1", "qmax": "3"}}.get(codec, {})
    opts = {**opts, **(options or {})}
    try:
        with av.open(str(tmp), mode="w") as container:
            # a video codec gives a video stream (PyAV types add_stream of a codec name as any kind of stream)
            stream = cast(av.VideoStream, container.add_stream(codec, rate=rate, options=opts))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = pix_fmt
            if threads:
                stream.codec_context.thread_count = threads
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
