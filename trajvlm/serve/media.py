"""Video URLs of a request -> decoded frames, with the server's safety rules.

Accepted, as vLLM accepts them for video models:

- ``file:///abs/path.mp4`` (or a folder of frames): only inside ``--media-root``; ``..`` and symlinks are resolved
  first, so nothing outside the root can be named. Without a media root every file URL is refused (403).
- ``data:video/<type>;base64,<bytes>``: an uploaded video, at most ``--max-upload-mb`` once decoded (413).
- ``data:video/jpeg;base64,<f1>,<f2>,...`` (or ``video/png``): pre-sampled frames, one base64 image each. Each
  frame's header is read first: more than ``trajtok.io.video.MAX_IMAGE_PIXELS`` pixels is a 422. Frames larger than the
  model's input are decoded one at a time and resized at once to it, so a request holds its frames at model size
  (plus one full-size frame while it is decoded) whatever the upload.
- ``http(s)://`` is refused (400): the server assumes no network access.

Per-request sampling comes from ``media_io_kwargs: {"video": {"num_frames": n}}`` or ``{"fps": f}``; every video is
capped at ``--max-frames``. Decoding goes through the processor (``trajtok.io.video.load_video``), the same path as
``trajvlm chat`` and evaluation; an undecodable video is a 422 naming the reason. Hidden files and folders (names
starting with ``.``) under the media root are neither listed nor served, and no error names the root's own path.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import torch
from PIL import Image, UnidentifiedImageError

from trajtok.io.video import MAX_IMAGE_PIXELS, VideoDecodeError, load_video
from trajvlm.serve.config import ServeConfig
from trajvlm.serve.errors import APIError

logger = logging.getLogger(__name__)

# data URL media types of pre-sampled frames, and the image suffix each frame is written with
FRAME_TYPES = {"video/jpeg": ".jpg", "video/jpg": ".jpg", "video/png": ".png"}
# data URL media types of whole videos -> the suffix of the temporary file (the decoder probes the content anyway)
VIDEO_SUFFIXES = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/mpeg": ".mpg",
    "video/ogg": ".ogv",
}
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".m4v", ".gif")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


@dataclass
class Sampling:
    """How frames are taken from one video: a count or a rate, bounded by ``max_frames``."""

    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None


def parse_sampling(media_io_kwargs: Any, cfg: ServeConfig) -> Sampling:
    """``media_io_kwargs`` of a request -> :class:`Sampling` (400 for unknown keys or bad values)."""
    video: dict[str, Any] = {}
    if media_io_kwargs is not None:
        if not isinstance(media_io_kwargs, dict):
            raise APIError(
                400, 'media_io_kwargs must be an object like {"video": {"num_frames": 8}}', param="media_io_kwargs"
            )
        unknown = sorted(set(media_io_kwargs) - {"video"})
        if unknown:
            raise APIError(
                400, f"media_io_kwargs: unknown media {unknown}; only 'video' is supported", param="media_io_kwargs"
            )
        video = media_io_kwargs.get("video") or {}
        if not isinstance(video, dict):
            raise APIError(400, "media_io_kwargs.video must be an object", param="media_io_kwargs")
    unknown = sorted(set(video) - {"num_frames", "fps"})
    if unknown:
        raise APIError(
            400,
            f"media_io_kwargs.video: unknown keys {unknown}; expected 'num_frames' or 'fps'",
            param="media_io_kwargs",
        )
    num_frames, fps = video.get("num_frames"), video.get("fps")
    if num_frames is not None and fps is not None:
        raise APIError(400, "media_io_kwargs.video: give num_frames or fps, not both", param="media_io_kwargs")
    if num_frames is not None:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise APIError(
                400,
                f"media_io_kwargs.video.num_frames must be a positive integer, got {num_frames!r}",
                param="media_io_kwargs",
            )
        if num_frames > cfg.max_frames:
            raise APIError(
                400,
                f"media_io_kwargs.video.num_frames {num_frames} is over this server's limit of "
                f"{cfg.max_frames} frames per video (--max-frames)",
                param="media_io_kwargs",
            )
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000):
        raise APIError(
            400, f"media_io_kwargs.video.fps must be a number in (0, 1000], got {fps!r}", param="media_io_kwargs"
        )
    return Sampling(num_frames=num_frames, fps=None if fps is None else float(fps), max_frames=cfg.max_frames)


def resolve_file_url(url: str, media_root: Path | None) -> Path:
    """A ``file://`` URL -> the resolved path inside ``media_root`` (403 outside it or without a root)."""
    if media_root is None:
        raise APIError(
            403,
            "file:// video URLs are disabled on this server; start it with --media-root DIR to "
            "serve videos from DIR, or upload the video as a data:video/<type>;base64 URL",
            code="media_root_not_set",
            param="messages",
        )
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise APIError(
            400,
            f"file URL with a host {parsed.netloc!r}: only local paths (file:///path) are accepted",
            param="messages",
        )
    raw = unquote(parsed.path)
    if "\x00" in raw or not raw.startswith("/"):
        raise APIError(400, f"file URL must hold an absolute path, got {url!r}", param="messages")
    try:
        path = Path(raw).resolve()  # removes '..' and follows every symlink, so the check below sees the real target
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise APIError(
            403, f"{raw} cannot be resolved inside the media root ({e})", code="outside_media_root", param="messages"
        ) from e
    if not path.is_relative_to(media_root):
        raise APIError(
            403,
            f"{raw} is outside the media root (after resolving '..' and symlinks)",
            code="outside_media_root",
            param="messages",
        )
    named = Path(os.path.normpath(raw))
    if _hidden(path, media_root) or (named.is_relative_to(media_root) and _hidden(named, media_root)):
        raise APIError(
            403,
            f"{raw} is hidden (a name under the media root starts with '.'); hidden files are not served",
            code="hidden_media",
            param="messages",
        )
    if not path.exists():
        raise APIError(404, f"video not found under the media root: {raw}", code="media_not_found", param="messages")
    return path


def split_data_url(url: str) -> tuple[str, str]:
    """``data:<type>[;params];base64,<payload>`` -> (lower-case media type, payload) (400 if not base64)."""
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        raise APIError(400, "a data URL must look like data:video/<type>;base64,<data>", param="messages")
    return match.group("type").lower(), url[match.end() :]


def b64decode(payload: str, what: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise APIError(400, f"{what} is not valid base64 ({e})", param="messages") from e


def check_upload_size(payload_chars: int, cfg: ServeConfig) -> None:
    """413 when base64 text of ``payload_chars`` decodes to more than ``--max-upload-mb``, before decoding it."""
    size = payload_chars * 3 // 4
    if size > cfg.max_upload_bytes:
        raise APIError(
            413,
            f"uploaded video is {size / 2**20:.1f} MiB, over this server's limit of "
            f"{cfg.max_upload_mb:g} MiB (--max-upload-mb)",
            code="upload_too_large",
            param="messages",
        )


def load_video_url(url: str, processor, cfg: ServeConfig, sampling: Sampling) -> torch.Tensor:
    """Decode the video a URL names -> uint8 frames (T, C, H, W). Raises :class:`APIError` with the right status."""

    if not isinstance(url, str) or not url:
        raise APIError(400, "video_url.url must be a non-empty string", param="messages")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("http", "https"):
        raise APIError(
            400,
            f"{scheme} video URLs are not fetched: this server assumes no network access. Send the "
            "video as data:video/<type>;base64,... or as a file:// path under the server's --media-root",
            code="remote_url_refused",
            param="messages",
        )
    # the request's count or rate replaces the model's saved sampling; both bounds (saved, server) apply
    bounds = [b for b in (processor.max_frames, sampling.max_frames) if b is not None]
    settings: dict[str, Any] = {"max_frames": min(bounds) if bounds else None}
    if sampling.num_frames is not None:
        settings["num_frames"] = sampling.num_frames
    if sampling.fps is not None:
        settings["fps"] = sampling.fps
    if scheme == "file":
        path = resolve_file_url(url, cfg.media_root)
        try:
            return processor.load_video(path, **settings)
        except VideoDecodeError as e:
            named = unquote(urlparse(url).path)
            reason = str(e).replace(str(path), named).replace(str(cfg.media_root), "<media root>")
            raise APIError(422, f"cannot decode the video: {reason}", code="invalid_video", param="messages") from e
    if scheme != "data":
        raise APIError(
            400,
            f"unsupported video URL scheme {scheme or url[:20]!r}: use data:video/...;base64 or file://",
            param="messages",
        )
    media_type, payload = split_data_url(url)
    check_upload_size(len(payload), cfg)
    with tempfile.TemporaryDirectory(prefix="trajvlm-serve-") as tmp:
        if media_type in FRAME_TYPES:  # pre-sampled frames: every one of them, unless num_frames asks otherwise
            if sampling.fps is not None:
                raise APIError(
                    400,
                    "fps sampling needs a video with timestamps; pre-sampled frames take num_frames",
                    param="media_io_kwargs",
                )
            parts = [p for p in payload.split(",") if p]
            if not parts:
                raise APIError(400, "a frames data URL holds no frames", param="messages")
            largest = 0
            side = int(processor.image_size)
            for k, part in enumerate(parts):
                data = b64decode(part, f"frame {k}")
                height, width = _frame_header_size(data, k)
                suffix = FRAME_TYPES[media_type]
                if max(height, width) > side:  # decoded now, alone, and kept at the model's size only
                    data, suffix, height, width = _shrink_frame(data, k, side), ".png", side, side
                largest = max(largest, height, width)
                (Path(tmp) / f"frame_{k:06d}{suffix}").write_bytes(data)
                del data
            source, label = Path(tmp), f"uploaded frames ({len(parts)} {media_type.split('/')[1]} images)"
            size = (side, side) if largest > side else None  # as processor.load_video sizes a video: the model's input
            try:
                return load_video(
                    source, num_frames=sampling.num_frames, max_frames=sampling.max_frames, size=size
                ).frames
            except VideoDecodeError as e:
                raise APIError(
                    422, f"cannot decode {label}: {_hide(e, tmp)}", code="invalid_video", param="messages"
                ) from e
        if not media_type.startswith("video/"):
            raise APIError(
                400,
                f"data URL of type {media_type!r}: send a video (data:video/mp4;base64,...) or "
                "frames (data:video/jpeg;base64,<f1>,<f2>,...)",
                param="messages",
            )
        source = Path(tmp) / f"upload{VIDEO_SUFFIXES.get(media_type, '.bin')}"
        source.write_bytes(b64decode(payload, "the uploaded video"))
        try:
            return processor.load_video(source, **settings)
        except VideoDecodeError as e:
            raise APIError(
                422,
                f"cannot decode the uploaded {media_type} video: {_hide(e, tmp)}",
                code="invalid_video",
                param="messages",
            ) from e


def _frame_header_size(data: bytes, k: int) -> tuple[int, int]:
    """(height, width) of an uploaded frame from its header alone; 422 when it is not an image or too large."""

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:  # far over the limit: Pillow refuses it from the header
        raise APIError(422, f"frame {k} is too large: {e}", code="image_too_large", param="messages") from e
    except (OSError, UnidentifiedImageError) as e:
        raise APIError(422, f"frame {k} is not a readable image ({e})", code="invalid_video", param="messages") from e
    if width * height > MAX_IMAGE_PIXELS:
        raise APIError(
            422,
            f"frame {k} is {width}x{height} pixels, over this server's limit of {MAX_IMAGE_PIXELS:,} pixels per "
            "frame; send frames at the model's size",
            code="image_too_large",
            param="messages",
        )
    return height, width


# EXIF orientation -> the transpose that shows the image upright (as PIL.ImageOps.exif_transpose does)
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270"}
_ORIENTATION |= {7: "TRANSVERSE", 8: "ROTATE_90"}


def _shrink_frame(data: bytes, k: int, side: int) -> bytes:
    """A frame larger than the model's input -> PNG bytes of it at ``side x side``, upright (EXIF orientation).

    Only one full-size copy is ever held: JPEG is decoded at a reduced scale (``draft``), the resize comes straight
    after decoding and the orientation is applied to the small image. The pixels equal ``trajtok.io.video``'s reading
    of the frame at ``size=(side, side)`` (transposes commute with the square resize), JPEG's reduced decoding aside.
    """

    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = im.getexif().get(0x0112, 1)
            im.draft("RGB", (side, side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still >= side (no-op otherwise)
            image = im if im.mode in ("RGB", "L") else im.convert("RGB")
            small = image.resize((side, side), Image.Resampling.BILINEAR)
            del image
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise APIError(422, f"frame {k} is not a readable image ({e})", code="invalid_video", param="messages") from e
    if orientation in _ORIENTATION:
        small = small.transpose(getattr(Image.Transpose, _ORIENTATION[orientation]))
    buf = io.BytesIO()
    small.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _hidden(path: Path, media_root: Path) -> bool:
    """True when a part of ``path`` below the media root starts with '.' (a dotfile or a dot-directory)."""
    return any(part.startswith(".") for part in path.relative_to(media_root).parts)


def media_file(name: str, media_root: Path | None) -> Path:
    """A video of :func:`list_media` by its relative name (the page's preview); 403/404 as for file URLs."""
    if media_root is None:
        raise APIError(404, "this server has no media root (--media-root)", code="media_root_not_set")
    path = resolve_file_url((media_root / name.lstrip("/")).as_uri(), media_root)
    if path.suffix.lower() not in VIDEO_EXTENSIONS or not path.is_file():
        raise APIError(404, f"no video named {name!r} under the media root", code="media_not_found")
    return path


def _hide(error: Exception, tmp: str) -> str:
    """The decoder's message without the server's temporary path."""
    return str(error).replace(str(Path(tmp)) + "/", "").replace(tmp, "upload")


def list_media(media_root: Path | None, limit: int = 500) -> list[dict[str, Any]]:
    """Videos under the media root (sorted, at most ``limit``), as ``file://`` URLs the page can send back."""
    if media_root is None:
        return []
    found = []
    for folder, dirs, files in os.walk(media_root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # hidden folders are not entered
        found += [Path(folder) / f for f in files if not f.startswith(".") and f.lower().endswith(VIDEO_EXTENSIONS)]
    out: list[dict[str, Any]] = []
    for path in sorted(found):
        if len(out) >= limit:
            break
        real = path.resolve()
        if not real.is_relative_to(media_root) or _hidden(real, media_root) or not real.is_file():
            continue
        name = str(path.relative_to(media_root))
        out.append(
            {
                "name": name,
                "url": real.as_uri(),
                "bytes": real.stat().st_size,
                "preview": "/v1/media/" + quote(name),
            }
        )
    return out
