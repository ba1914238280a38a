"""Prompts and inputs: chat-templated text, decoded videos, generation settings, the context check, and the LLM
inputs of a batch with the videos spliced in (:func:`prepare_inputs`), shared by generation, scoring and chat.

Every prompt is built the same way: the chat template of the processor, one ``<video>`` part in the first user
message, then the model's own video splicing (:meth:`trajvlm.modeling.TrajVLMModel.merge_video_tokens`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Video inputs: a path (decoded with the processor's sampling settings) or uint8 frames (T, C, H, W) / (T, H, W, C).
VideoInput = str | Path | torch.Tensor
# One request of generate_batch: (video(s) or None, prompt text or chat messages, generation kwargs).
Request = tuple[VideoInput | Sequence[VideoInput] | None, str | list[dict], dict[str, Any]]

# Generation settings passed on to ``model.generate``; anything else in a request's kwargs is ignored (logged).
GENERATE_KEYS: frozenset[str] = frozenset(
    {
        "max_new_tokens",
        "min_new_tokens",
        "do_sample",
        "temperature",
        "top_p",
        "top_k",
        "num_beams",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
    }
)
DEFAULT_MAX_NEW_TOKENS = 256


class ContextLengthError(ValueError):
    """The prompt (text + visual tokens) plus the tokens to generate do not fit the model's context."""


def load_frames(processor, video: VideoInput) -> torch.Tensor:
    """A video as uint8 frames (T, C, H, W): paths are decoded with the processor's sampling settings.

    Raises ``trajtok.io.video.VideoDecodeError`` (a ValueError naming the path and the reason) for a missing or
    unreadable file.
    """
    if isinstance(video, (str, Path)):
        return processor.load_video(video)
    if isinstance(video, torch.Tensor):
        return video
    raise ValueError(f"a video must be a path or a uint8 frame tensor (T, C, H, W), got {type(video).__name__}")


def video_list(video: VideoInput | Sequence[VideoInput] | None) -> list[VideoInput]:
    """A request's videos as a list: none, one, or a list / tuple of them."""
    if video is None:
        return []
    if isinstance(video, (str, Path, torch.Tensor)):
        return [video]
    if isinstance(video, (list, tuple)):
        return list(video)
    raise ValueError(
        f"a video must be a path, a uint8 frame tensor (T, C, H, W) or a list of them, got {type(video).__name__}"
    )


def user_message(text: str, num_videos: int = 0) -> dict[str, Any]:
    """A chat message of the user with ``num_videos`` video parts (rendered as ``<video>`` before the text)."""
    return {"role": "user", "content": [*([{"type": "video"}] * num_videos), {"type": "text", "text": text}]}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def build_prompt(processor, prompt: str | list[dict], num_videos: int) -> str:
    """Chat-template text for a plain prompt (one user turn with the videos) or a message list, ready to answer.

    A plain prompt that already holds ``<video>`` placeholders is used as the user text as it is.
    """
    if isinstance(prompt, str):
        if processor.video_token in prompt:
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = [user_message(prompt, num_videos)]
    else:
        messages = list(prompt)
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def split_generation_kwargs(gen_kwargs: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """lmms-eval / user generation kwargs -> (kwargs for ``model.generate``, stop strings).

    ``temperature`` 0 (or ``do_sample`` false) means greedy decoding: sampling settings are dropped.
    """
    kwargs = dict(gen_kwargs or {})
    until = kwargs.pop("until", None) or []
    stops = [until] if isinstance(until, str) else [s for s in until if s]
    out = {k: v for k, v in kwargs.items() if k in GENERATE_KEYS and v is not None}
    ignored = sorted(k for k in kwargs if k not in GENERATE_KEYS)
    if ignored:
        logger.debug("ignoring generation settings %s", ignored)
    out["max_new_tokens"] = int(out.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    if out["max_new_tokens"] < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {out['max_new_tokens']}")
    sample = out.get("do_sample")
    if sample is None:
        sample = float(out.get("temperature", 0) or 0) > 0
    out["do_sample"] = bool(sample)
    if not out["do_sample"]:
        for key in ("temperature", "top_p", "top_k"):
            out.pop(key, None)
    if "num_beams" in out:
        out["num_beams"] = int(out["num_beams"])
    return out, stops


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def context_limit(model, max_context: int | None = None) -> int:
    """Most LLM positions a request may use: the LLM's ``max_position_embeddings``, or ``max_context`` if smaller."""
    limit = int(getattr(model.config.text_config, "max_position_embeddings", 0) or 0) or math.inf
    if max_context is not None:
        if max_context < 1:
            raise ValueError(f"max_context must be a positive number of tokens, got {max_context}")
        limit = min(limit, int(max_context))
    return int(limit) if limit != math.inf else 2**62


def _too_long_message(total: int, visual: int, new: int, limit: int, num_frames: int | None) -> str:
    frames = f" (now {num_frames} per video)" if num_frames else ""
    fixes = "lower max_new_tokens or shorten the conversation"
    if visual:
        fixes = f"sample fewer frames{frames}, " + fixes
    return (
        f"context too long: the prompt takes {total} tokens ({visual} visual + {total - visual} text) and up to "
        f"{new} new tokens follow, {total + new} > {limit}, the model's context (max_position_embeddings or "
        f"max_context); {fixes}"
    )


@dataclass
class Prepared:
    """LLM inputs of a batch after the videos were spliced in."""

    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, L)
    visual_tokens: list[int]  # per row
    num_frames: int | None  # frames per video of the batch (None without video)
    lengths: list[int] = field(default_factory=list)  # attended prompt tokens per row


@torch.no_grad()
def prepare_inputs(model, processor, texts: list[str], videos: list[list[torch.Tensor]]) -> Prepared:
    """Chat-templated ``texts`` (B) + each row's videos (uint8 frames) -> embedded LLM inputs, left padded."""
    processor.tokenizer.padding_side = "left"
    flat = [v for row in videos for v in row]
    batch = processor(text=texts, videos=flat or None, return_tensors="pt", padding=True)
    device = model.device
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    if flat:
        pixels = batch["pixel_values_videos"].to(device=device, dtype=model.dtype)  # (V, T, C, H, W)
        merged = model.model.merge_video_tokens(input_ids, pixels, attention_mask, padding_side="left")
        embeds, mask = merged.inputs_embeds, merged.attention_mask
        counts = iter(merged.visual_token_counts)
        visual = [sum(next(counts) for _ in row) for row in videos]
        num_frames = int(pixels.shape[1])
    else:
        embeds, mask = model.get_input_embeddings()(input_ids), attention_mask
        model.model.last_visual_token_counts = []
        visual, num_frames = [0] * len(texts), None
    return Prepared(embeds, mask, visual, num_frames, [int(n) for n in mask.sum(-1).tolist()])


def select_rows(prep: Prepared, rows: list[int]) -> Prepared:
    """Keep ``rows`` of a left-padded batch and drop the padding columns no remaining row needs."""
    mask = prep.attention_mask[rows]
    used = mask.any(0).nonzero()
    start = int(used[0]) if used.numel() else 0
    return Prepared(
        prep.inputs_embeds[rows, start:],
        mask[:, start:],
        [prep.visual_tokens[r] for r in rows],
        prep.num_frames,
        [prep.lengths[r] for r in rows],
    )


def check_context(prep: Prepared, max_new_tokens: int, limit: int) -> list[str | None]:
    """Per row: None when prompt + ``max_new_tokens`` fits ``limit``, else the error message."""
    return [
        _too_long_message(n, v, max_new_tokens, limit, prep.num_frames) if n + max_new_tokens > limit else None
        for n, v in zip(prep.lengths, prep.visual_tokens, strict=True)
    ]


def load_request(
    processor, video: VideoInput | Sequence[VideoInput] | None, prompt, index: int, failures: dict[int, str] | None
) -> tuple[list[torch.Tensor], str] | None:
    """(decoded frames of each video, chat-templated prompt) of one request. An unreadable video raises, or with a
    ``failures`` dict records ``failures[index] = reason`` and gives None."""
    try:
        frames = [load_frames(processor, v) for v in video_list(video)]
        return frames, build_prompt(processor, prompt, len(frames))
    except ValueError as e:  # VideoDecodeError is a ValueError naming the path and the reason
        if failures is None:
            raise
        failures[index] = str(e)
        logger.warning("request %d failed: %s", index, e)
        return None


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "GENERATE_KEYS",
    "ContextLengthError",
    "Prepared",
    "Request",
    "VideoInput",
    "assistant_message",
    "build_prompt",
    "check_context",
    "context_limit",
    "cut_at_stops",
    "load_frames",
    "load_request",
    "prepare_inputs",
    "select_rows",
    "split_generation_kwargs",
    "user_message",
    "video_list",
]
