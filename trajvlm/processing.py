"""TrajVLM processor: the tokenizer, the ChatML chat template, torch video preprocessing and placeholder expansion.

transformers' ``LlavaOnevisionVideoProcessor`` needs torchvision, which has no working CPU build here, so the
video path is our own :class:`TrajVLMVideoProcessor` (resize to the tower's size, rescale 1/255, SigLIP
normalisation), producing ``pixel_values_videos`` of shape (B, T, C, H, W) exactly like upstream.

Where ``<video>`` is expanded depends on the connector (``processor.for_model(model.config)`` syncs it), which
says so through its class (``Connector.placeholder_count``):

- a connector that ``expands_in_processor`` (``pool``, upstream behaviour): its own count, e.g. for ``pool``
  ``T * ceil(g / stride)^2 + 1`` video tokens (pooled patches of every frame plus one newline),
  ``g = image_size // patch_size``; with ``mode="average"``/``"max"`` the pooled grid is ``floor(g / stride)`` as in
  LLaVA-NeXT's ``get_2dPool``.
- any other connector with ``token_mode="fixed"``: ``video_token_budget`` tokens per video (padded and masked in the
  model).
- any other connector with ``token_mode="adaptive"``: ONE ``<video>`` token per video; the model splices in however
  many tokens the video produced (e.g. trajectory tokens), so the LLM sequence really shrinks when trajectories are
  dropped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from trajtok.io.video import load_video, probe_video
from trajvlm.connectors.pool import pooled_grid
from trajvlm.connectors.registry import get_connector_class

logger = logging.getLogger(__name__)

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
# Files of a checkpoint that may hold its image normalisation, in the order they are read: our processor's own
# config, then the llava-hf video / image processor configs.
STATS_FILES = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")


def checkpoint_image_stats(path: str | Path) -> tuple[list[float], list[float], str] | None:
    """(image_mean, image_std, file) a checkpoint directory records for its tower, or None when no file has them."""

    for name in STATS_FILES:
        file = Path(path) / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{file} is not valid JSON ({e})") from e
        # transformers >= 4.47 nests the sub-processors' settings in processor_config.json
        for section in (data, data.get("video_processor") or {}, data.get("image_processor") or {}):
            mean, std = section.get("image_mean"), section.get("image_std")
            if mean is not None and std is not None:
                if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                    raise ValueError(f"{file}: image_mean / image_std must be 3 values (std > 0), got {mean}, {std}")
                return [float(v) for v in mean], [float(v) for v in std], str(file)
    return None


def video_token_count(
    num_frames: int,
    *,
    connector: str,
    token_mode: str,
    video_token_budget: int,
    grid: int,
    pool_stride: int = 2,
    pool_mode: str = "bilinear",
    connector_kwargs: dict[str, Any] | None = None,
) -> int:
    """Number of ``<video>`` placeholder tokens one video of ``num_frames`` frames takes in the text.

    ``pool_stride`` / ``pool_mode`` are the defaults of ``connector_kwargs``' ``stride`` / ``mode``."""
    kwargs = {"stride": pool_stride, "mode": pool_mode, **(connector_kwargs or {})}
    return get_connector_class(connector).placeholder_count(
        num_frames, grid=grid, token_mode=token_mode, video_token_budget=video_token_budget, connector_kwargs=kwargs
    )


def check_sampling(num_frames: Any, fps: Any, max_frames: Any) -> None:
    """Raise ValueError for a video sampling setting that can never give a frame (0, negative, not a number)."""
    for name, value in (("num_frames", num_frames), ("max_frames", max_frames)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer (frames per video) or unset, got {value!r}")
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0
    ):
        raise ValueError(f"fps must be a positive number (frames per second) or unset, got {fps!r}")


def to_tchw(video: Any) -> torch.Tensor:
    """A video as a float tensor (T, C, H, W) with C = 3; accepts (T, C, H, W) or (T, H, W, C), uint8 or float."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(np.ascontiguousarray(video))
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"a video must be a tensor, an array or a path, got {type(video).__name__}")
    if video.ndim != 4:
        raise ValueError(f"a video must have 4 dims (T, C, H, W) or (T, H, W, C), got shape {tuple(video.shape)}")
    if video.shape[1] not in (1, 3) and video.shape[-1] in (1, 3):
        video = video.permute(0, 3, 1, 2)  # (T, C, H, W)
    if video.shape[1] not in (1, 3):
        raise ValueError(f"a video needs 1 or 3 channels in dim 1 or 3, got shape {tuple(video.shape)}")
    if video.shape[1] == 1:
        video = video.expand(-1, 3, -1, -1)
    return video.float()


class TrajVLMVideoProcessor:
    """Resize every frame to ``size x size`` (bicubic, antialiased), rescale by 1/255 and normalise, all in torch.

    Input pixel values are on the 0..255 scale (uint8, or float as upstream treats it).
    """

    def __init__(
        self,
        size: int,
        image_mean: Sequence[float] = SIGLIP_MEAN,
        image_std: Sequence[float] = SIGLIP_STD,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)
        self.image_mean = torch.tensor(list(image_mean), dtype=torch.float32).view(1, 3, 1, 1)
        self.image_std = torch.tensor(list(image_std), dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, video: Any) -> torch.Tensor:
        """One video (T, C, H, W) or (T, H, W, C) -> normalised float pixels (T, 3, size, size)."""
        frames = to_tchw(video)
        if frames.shape[-2:] != (self.size, self.size):
            frames = F.interpolate(frames, size=(self.size, self.size), mode="bicubic", antialias=True)
            frames = frames.clamp(0.0, 255.0)
        return (frames / 255.0 - self.image_mean) / self.image_std  # (T, 3, S, S)

    def unnormalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Inverse of the normalisation: (..., 3, H, W) normalised -> RGB in [0, 1]."""
        mean = self.image_mean.to(pixel_values)
        std = self.image_std.to(pixel_values)
        return (pixel_values * std + mean).clamp(0.0, 1.0)


class TrajVLMProcessor(ProcessorMixin):
    """Tokenizer + chat template + video preprocessing + ``<video>`` expansion for TrajVLM (and llava-hf bases).

    ``processor(text=[...], videos=[...], return_tensors="pt", padding=True)`` takes one text per sample (with one
    ``<video>`` per video of that sample) and the videos of the whole batch in order (a flat list, or one list per
    sample). A video is a uint8 tensor/array (T, C, H, W) or (T, H, W, C), or a path read with
    :meth:`load_video` at the processor's sampling settings. All videos of a batch must have the same T.
    Returns ``input_ids``, ``attention_mask`` and, when there are videos, ``pixel_values_videos`` (V, T, C, H, W).
    """

    def __init__(
        self,
        tokenizer=None,
        chat_template: str | None = None,
        image_size: int = 384,
        patch_size: int = 14,
        num_frames: int | None = 32,
        fps: float | None = None,
        max_frames: int | None = None,
        image_mean: Sequence[float] = SIGLIP_MEAN,
        image_std: Sequence[float] = SIGLIP_STD,
        connector: str = "pool",
        token_mode: str = "adaptive",
        video_token_budget: int = 256,
        pool_stride: int = 2,
        pool_mode: str = "bilinear",
        connector_kwargs: dict[str, Any] | None = None,
        video_token: str = "<video>",
        image_token: str = "<image>",
    ) -> None:
        if tokenizer is None:
            raise ValueError("TrajVLMProcessor needs a tokenizer")
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        if image_size < patch_size:
            raise ValueError(f"image_size {image_size} must be at least patch_size {patch_size}")
        if token_mode not in ("adaptive", "fixed"):
            raise ValueError(f"token_mode must be 'adaptive' or 'fixed', got {token_mode!r}")
        if num_frames is None and fps is None:
            raise ValueError("set num_frames (frames per video) or fps (frames per second) for video sampling")
        check_sampling(num_frames, fps, max_frames)
        if video_token_budget <= 0:
            raise ValueError(f"video_token_budget must be positive, got {video_token_budget}")
        pooled_grid(image_size // patch_size, pool_stride, pool_mode)  # validates the pool mode
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.num_frames = num_frames
        self.fps = fps
        self.max_frames = max_frames
        self.image_mean = [float(x) for x in image_mean]
        self.image_std = [float(x) for x in image_std]
        self.connector = connector
        self.token_mode = token_mode
        self.video_token_budget = int(video_token_budget)
        self.pool_stride = int(pool_stride)
        self.pool_mode = pool_mode
        self.connector_kwargs = dict(connector_kwargs or {})
        self.video_token = video_token
        self.image_token = image_token
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
        if self.video_token_id is None or self.video_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {video_token!r} token; add it as a special token")
        super().__init__(tokenizer, chat_template=chat_template)

    # ----------------------------------------------------------------------------------------------------------
    # settings

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args: Any, **kwargs: Any) -> TrajVLMProcessor:
        """Load a saved TrajVLM processor, or build one for a llava-hf checkpoint with the checkpoint's own image
        mean / std (from its processor or image/video processor config)."""
        processor = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        path = Path(pretrained_model_name_or_path)
        if "image_mean" in kwargs or not path.is_dir():
            return processor
        stats = checkpoint_image_stats(path)
        if stats is None:
            logger.warning(
                "%s records no image_mean / image_std (%s): normalising with SigLIP's %s / %s",
                path,
                ", ".join(STATS_FILES),
                list(SIGLIP_MEAN),
                list(SIGLIP_STD),
            )
            return processor
        mean, std, source = stats
        if (mean, std) != (processor.image_mean, processor.image_std):
            logger.info("image mean %s / std %s from %s", mean, std, source)
            processor.image_mean, processor.image_std = mean, std
        return processor

    @property
    def video_processor_(self) -> TrajVLMVideoProcessor:
        return TrajVLMVideoProcessor(self.image_size, self.image_mean, self.image_std)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values_videos"]

    def for_model(self, config) -> TrajVLMProcessor:
        """Sync the connector settings (and the tower's geometry) from a model config; returns ``self``.

        Works with a ``TrajVLMConfig`` and with a plain ``LlavaOnevisionConfig`` (which means the ``pool`` connector).
        """
        self.connector = getattr(config, "connector", "pool")
        self.token_mode = getattr(config, "token_mode", self.token_mode)
        self.video_token_budget = int(getattr(config, "video_token_budget", self.video_token_budget))
        self.connector_kwargs = dict(getattr(config, "connector_kwargs", None) or {})
        self.pool_stride, self.pool_mode = 2, "bilinear"  # upstream's, where connector_kwargs leaves them out
        vision = getattr(config, "vision_config", None)
        if vision is not None:
            self.image_size = int(vision.image_size)
            self.patch_size = int(vision.patch_size)
        return self

    def num_video_tokens(self, num_frames: int) -> int:
        """Placeholder tokens one video of ``num_frames`` frames takes in ``input_ids``."""
        return video_token_count(
            num_frames,
            connector=self.connector,
            token_mode=self.token_mode,
            video_token_budget=self.video_token_budget,
            grid=self.image_size // self.patch_size,
            pool_stride=self.pool_stride,
            pool_mode=self.pool_mode,
            connector_kwargs=self.connector_kwargs,
        )

    # ----------------------------------------------------------------------------------------------------------
    # video

    def load_video(self, path: str | Path, **overrides: Any) -> torch.Tensor:
        """Decode ``path`` at the processor's sampling settings -> uint8 frames (T, C, H, W).

        Frames larger than the tower's input are resized by the decoder to ``image_size x image_size`` (what the
        tower reads), so memory holds the sampled frames at model size whatever the source resolution; smaller
        sources keep their size (``preprocess_videos`` resizes them). ``overrides`` (``num_frames``, ``fps``,
        ``max_frames``, ``size``, ``start``, ``end``, ...) go to ``trajtok.io.video.load_video`` in place of these.
        """

        settings: dict[str, Any] = {"num_frames": self.num_frames, "fps": self.fps, "max_frames": self.max_frames}
        if "num_frames" in overrides or "fps" in overrides:  # one sampling rule replaces the other
            settings["num_frames"] = settings["fps"] = None
        if "size" not in overrides:
            info = probe_video(path)
            if info.height > self.image_size or info.width > self.image_size:
                settings["size"] = (self.image_size, self.image_size)
        settings.update(overrides)
        video = load_video(path, **settings)
        if video.num_source_frames <= 1 and video.frames.shape[0] > 1:
            logger.warning("%s is a still image (1 frame): it is read as %d copies", path, video.frames.shape[0])
        return video.frames

    def preprocess_videos(self, videos: Sequence[Any]) -> torch.Tensor:
        """Videos (tensors, arrays or paths) -> ``pixel_values_videos`` (V, T, 3, S, S) float."""
        proc = self.video_processor_
        out = [proc(self.load_video(v) if isinstance(v, (str, Path)) else v) for v in videos]
        lengths = sorted({v.shape[0] for v in out})
        if len(lengths) > 1:
            raise ValueError(
                f"all videos of a batch need the same number of frames, got {lengths}; sample them with the same "
                "num_frames (processor.num_frames) or pass one video per call"
            )
        return torch.stack(out)  # (V, T, 3, S, S)

    # ----------------------------------------------------------------------------------------------------------
    # call

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        videos: Any = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        **kwargs: Any,
    ) -> BatchFeature:
        if images is not None:
            raise ValueError("TrajVLMProcessor handles text and videos; images are not supported yet (got images=)")
        if text is None:
            raise ValueError("text is required (one string per sample, with one <video> per video)")
        texts = [text] if isinstance(text, str) else list(text)
        video_list = self._flatten_videos(videos)
        n_placeholders = sum(t.count(self.video_token) for t in texts)
        if n_placeholders != len(video_list):
            raise ValueError(
                f"the texts hold {n_placeholders} {self.video_token} placeholders but {len(video_list)} videos were "
                "given; put exactly one placeholder per video, in order"
            )
        data: dict[str, Any] = {}
        if video_list:
            pixel_values = self.preprocess_videos(video_list)
            data["pixel_values_videos"] = pixel_values
            n = self.num_video_tokens(pixel_values.shape[1])
            texts = [t.replace(self.video_token, self.video_token * n) for t in texts]
        encoded = self.tokenizer(texts, padding=padding, return_tensors=return_tensors, **kwargs)
        data.update(encoded)
        return BatchFeature(data=data, tensor_type=return_tensors)

    @staticmethod
    def _flatten_videos(videos: Any) -> list[Any]:
        if videos is None:
            return []
        if isinstance(videos, (str, Path, torch.Tensor, np.ndarray)):
            return [videos]
        flat: list[Any] = []
        for item in videos:
            if isinstance(item, (list, tuple)):
                flat.extend(item)  # one list per sample
            elif item is not None:
                flat.append(item)
        return flat


__all__ = [
    "TrajVLMProcessor",
    "TrajVLMVideoProcessor",
    "check_sampling",
    "checkpoint_image_stats",
    "pooled_grid",
    "video_token_count",
]
