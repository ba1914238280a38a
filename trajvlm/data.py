"""LLaVA-format video conversations -> supervised ChatML token sequences, and a padding collator.

The JSON is a list of ``{"id", "video": path or [paths], "conversations": [{"from": "human"|"gpt", "value"}...]}``
with ``video`` relative to ``video_root`` and one ``<video>`` per video in the human turns (when a sample has
videos but no placeholder, one ``<video>\\n`` is put in front of the first human turn, as LLaVA does).

Labels are -100 everywhere except the assistant answers and the ``<|im_end|>`` that ends each of them, so the
model learns what to say and when to stop, never the prompt. The text is the processor's chat template; each
``<video>`` becomes ``processor.num_video_tokens(T)`` placeholder tokens (one in TrajTok's adaptive mode).

Failed samples (a missing or undecodable video, a sequence longer than ``max_length``) are skipped: the dataset
logs the path and reason, counts it, and returns the next good sample instead (index + 1, wrapping), so batches
keep their size under HF ``Trainer`` and DeepSpeed. Once more than ``max_skip_fraction`` of the samples have
failed, it raises :class:`SkipLimitError` (a ``RuntimeError``) naming how many of the samples actually tried failed and
the first failures: a broken dataset stops the run early. Counts are kept per process (each rank, and each DataLoader
worker, sees its own share of the samples). :func:`check_samples` finds malformed rows and missing videos up front
(``trajvlm validate`` and the start of ``trajvlm train``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class SampleError(ValueError):
    """A sample that cannot be used (missing/corrupt video, malformed conversation, too long)."""


class SkipLimitError(RuntimeError):
    """More samples failed than ``max_skip_fraction`` allows: the data is broken, not a few samples."""


def load_samples(json_path: str | Path) -> list[dict[str, Any]]:
    """Read a LLaVA-format JSON (a list) or JSON-lines file of samples.

    Raises FileNotFoundError for a missing file and ValueError naming the file (and line) for malformed JSON.
    """
    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {path}")
    text = path.read_text()
    if path.suffix == ".jsonl":
        samples = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    samples.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from err
    else:
        try:
            samples = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(samples, list):
        raise ValueError(f"{path} must hold a JSON list of samples, got {type(samples).__name__}")
    return samples


def check_samples(
    json_path: str | Path, video_root: str | Path, *, max_skip_fraction: float = 0.0, max_problems: int = 5
) -> int:
    """Check a LLaVA-format file without decoding videos; returns the number of samples.

    Raises ValueError naming the file when it is malformed or empty, or when more than ``max_skip_fraction`` of its
    rows are unusable: not objects, no ``conversations`` list of ``{"from", "value"}`` turns, or videos that do not
    exist under ``video_root`` (the first ``max_problems`` problems are listed, with the total). Fewer unusable rows
    are logged as warnings (training skips them).
    """
    path = Path(json_path)
    samples = load_samples(path)
    if not samples:
        raise ValueError(f"{path} holds an empty list: no samples to train on")
    problems: list[str] = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            problems.append(f"row {i} is a {type(sample).__name__}, not an object")
            continue
        name = f"row {i} (id {sample.get('id')!r})"
        turns = sample.get("conversations")
        if not isinstance(turns, list) or not turns:
            problems.append(f"{name} has no 'conversations' list")
        elif not all(
            isinstance(t, dict) and ROLES.get(t.get("from")) and isinstance(t.get("value"), str) for t in turns
        ):
            problems.append(f"{name} has a turn without from (human|gpt) and a string value")
        videos = sample.get("video")
        for v in [] if videos is None else [videos] if isinstance(videos, str) else videos:
            if not isinstance(v, str):
                problems.append(f"{name} has a video entry {v!r} that is not a path")
            elif not (Path(video_root) / v).is_file():
                problems.append(f"{name}: video not found: {Path(video_root) / v}")
    if problems:
        shown = "; ".join(problems[:max_problems])
        more = f" (and {len(problems) - max_problems} more)" if len(problems) > max_problems else ""
        message = f"{path}: {len(problems)} of {len(samples)} samples are unusable: {shown}{more}"
        if len(problems) > max_skip_fraction * len(samples):
            raise ValueError(message)
        logger.warning("%s (within max_skip_fraction=%s: they will be skipped)", message, max_skip_fraction)
    return len(samples)


class LlavaVideoDataset(Dataset):
    """Samples of a LLaVA-format JSON as ``{"input_ids", "labels", "pixel_values_videos"}`` tensors.

    Args:
        json_path: the LLaVA-format JSON (list) or JSON-lines file.
        video_root: directory the samples' ``video`` paths are relative to.
        processor: a :class:`~trajvlm.processing.TrajVLMProcessor` (tokenizer with a ChatML chat template,
            ``load_video``, ``preprocess_videos``, ``num_video_tokens``), synced to the model with ``for_model``.
        num_frames: frames per video; None = the processor's saved sampling settings.
        max_length: longest ``input_ids`` allowed; longer samples are skipped (never truncated through a video).
        max_skip_fraction: raise once more than this fraction of the samples has failed.
        system_prompt: optional system message put before every conversation.

    Each item: ``input_ids`` (L,) long, ``labels`` (L,) long, ``pixel_values_videos`` (V, T, C, S, S) float
    (absent for text-only samples), ``id``.
    """

    def __init__(
        self,
        json_path: str | Path,
        video_root: str | Path,
        processor: Any,
        *,
        num_frames: int | None = None,
        max_length: int = 4096,
        max_skip_fraction: float = 0.05,
        system_prompt: str | None = None,
    ) -> None:
        if not 0.0 <= max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.json_path = Path(json_path)
        self.samples = load_samples(self.json_path)
        if not self.samples:
            raise ValueError(f"{self.json_path} holds no samples")
        self.video_root = Path(video_root)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.num_frames = num_frames
        self.max_length = int(max_length)
        self.max_skip_fraction = float(max_skip_fraction)
        self.system_prompt = system_prompt
        self.video_token = processor.video_token
        self.end_token = "<|im_end|>"
        if self.tokenizer.convert_tokens_to_ids(self.end_token) in (None, self.tokenizer.unk_token_id):
            raise ValueError(f"the tokenizer has no {self.end_token!r} token (a ChatML chat template is expected)")
        # index -> reason for every sample that failed so far (a failed index is never decoded again)
        self.failed: dict[int, str] = {}
        self.tried: set[int] = set()  # indices built at least once (successfully or not) by this process
        self.chat_template = self.tokenizer.chat_template
        if not self.chat_template:
            raise ValueError("the processor's tokenizer has no chat_template (a ChatML template is expected)")
        # llava-hf templates read message content as a list of {"type": ...} parts; ours also takes plain strings
        self.string_content = self._template_takes_strings()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_skipped(self) -> int:
        """How many distinct samples have failed so far."""
        return len(self.failed)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.samples)
        for offset in range(n):
            i = (index + offset) % n
            if i in self.failed:
                continue
            self.tried.add(i)
            try:
                return self.build(i)
            except SampleError as err:
                self._record_failure(i, str(err))
        raise SkipLimitError(
            f"every sample of {self.json_path} failed ({len(self.failed)} of {n}); first: {self._first_failures()}"
        )

    def _record_failure(self, index: int, reason: str) -> None:
        self.failed[index] = reason
        logger.warning(
            "skipping sample %d of %s: %s (%d skipped so far)", index, self.json_path, reason, len(self.failed)
        )
        if len(self.failed) > self.max_skip_fraction * len(self.samples):
            tried = len(self.tried)
            every = " (every sample tried failed)" if tried == len(self.failed) else ""
            raise SkipLimitError(
                f"{len(self.failed)} of the {tried} samples tried so far failed{every}, more than "
                f"max_skip_fraction={self.max_skip_fraction} of the {len(self.samples)} samples of {self.json_path}; "
                f"first failures: {self._first_failures()}"
            )

    def _first_failures(self, k: int = 5) -> str:
        return "; ".join(f"[{i}] {r}" for i, r in list(self.failed.items())[:k])

    # ----------------------------------------------------------------------------------------------------------

    def video_paths(self, sample: dict[str, Any]) -> list[Path]:
        videos = sample.get("video")
        if videos is None:
            return []
        videos = [videos] if isinstance(videos, str) else list(videos)
        return [self.video_root / v for v in videos]

    def messages(self, sample: dict[str, Any], num_videos: int) -> list[dict[str, Any]]:
        """The conversation as chat messages ``[{"role", "content"}]``, with exactly one placeholder per video.

        Content is a string, or a list of parts when the chat template only reads parts (llava-hf templates).
        """
        turns = sample.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise SampleError(f"sample {sample.get('id')!r} has no 'conversations' list")
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for turn in turns:
            role = ROLES.get(turn.get("from"))
            if role is None or not isinstance(turn.get("value"), str):
                raise SampleError(f"sample {sample.get('id')!r}: bad turn {turn!r}; expected from human|gpt + value")
            messages.append({"role": role, "content": turn["value"]})
        placeholders = sum(m["content"].count(self.video_token) for m in messages)
        if placeholders == 0 and num_videos:
            first_user = next(m for m in messages if m["role"] == "user")
            first_user["content"] = self.video_token * num_videos + "\n" + first_user["content"]
        elif placeholders != num_videos:
            raise SampleError(
                f"sample {sample.get('id')!r} has {placeholders} {self.video_token} placeholders for {num_videos} videos"
            )
        if not any(m["role"] == "assistant" for m in messages):
            raise SampleError(f"sample {sample.get('id')!r} has no gpt answer to learn from")
        if not self.string_content:
            return [{"role": m["role"], "content": self._as_parts(m["content"])} for m in messages]
        return messages

    def _template_takes_strings(self) -> bool:
        probe = [{"role": "user", "content": f"{self.video_token}\nprobe"}]
        text = self.tokenizer.apply_chat_template(probe, tokenize=False, chat_template=self.chat_template)
        return "probe" in text and self.video_token in text

    def _as_parts(self, content: str) -> list[dict[str, str]]:
        """``"<video>\ntext"`` -> ``[{"type": "video"}, {"type": "text", "text": "text"}]`` (media first, as LLaVA)."""
        n = content.count(self.video_token)
        text = content.replace(self.video_token + "\n", "").replace(self.video_token, "")
        return [{"type": "video"}] * n + [{"type": "text", "text": text}]

    def segments(self, messages: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        """The rendered chat text cut into ``(text, supervised)`` pieces: answers + their end token supervised.

        Relies on the chat template rendering a prefix of the conversation as a prefix of the text (ChatML does).
        """
        template = self.chat_template

        def render(msgs: list[dict[str, Any]], generation_prompt: bool) -> str:
            return self.tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=generation_prompt, chat_template=template
            )

        pieces: list[tuple[str, bool]] = []
        done = ""
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = render(messages[:k], True)
            full = render(messages[: k + 1], False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise SampleError("the chat template does not render conversation prefixes as text prefixes")
            answer = full[len(prompt) :]
            stop = answer.find(self.end_token)
            answer_end = len(answer) if stop < 0 else stop + len(self.end_token)
            pieces.append((prompt[len(done) :], False))
            pieces.append((answer[:answer_end], True))
            done = prompt + answer[:answer_end]
        full = render(messages, False)
        if len(full) > len(done):
            pieces.append((full[len(done) :], False))
        return [(text, supervised) for text, supervised in pieces if text]

    def build(self, index: int) -> dict[str, Any]:
        """Sample ``index`` as tensors; raises SampleError when it cannot be used."""
        sample = self.samples[index]
        paths = self.video_paths(sample)
        messages = self.messages(sample, len(paths))
        frames = []
        for path in paths:
            if not path.is_file():
                raise SampleError(f"video not found: {path}")
            try:
                video = (
                    self.processor.load_video(path)
                    if self.num_frames is None
                    else self.processor.load_video(path, num_frames=self.num_frames)
                )
            except (ValueError, OSError, RuntimeError) as err:  # VideoDecodeError is a ValueError
                raise SampleError(f"cannot decode {path}: {err}") from err
            frames.append(video)
        item: dict[str, Any] = {"id": str(sample.get("id", index))}
        n_tokens = 0
        if frames:
            try:
                pixel_values = self.processor.preprocess_videos(frames)  # (V, T, C, S, S)
            except ValueError as err:
                raise SampleError(f"videos of sample {item['id']!r} ({[str(p) for p in paths]}): {err}") from err
            item["pixel_values_videos"] = pixel_values
            n_tokens = self.processor.num_video_tokens(pixel_values.shape[1])
        input_ids: list[int] = []
        labels: list[int] = []
        for text, supervised in self.segments(messages):
            if n_tokens > 1:
                text = text.replace(self.video_token, self.video_token * n_tokens)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            input_ids += ids
            labels += ids if supervised else [IGNORE_INDEX] * len(ids)
        if len(input_ids) > self.max_length:
            raise SampleError(
                f"sample {item['id']!r} has {len(input_ids)} tokens, more than max_length={self.max_length}"
            )
        item["input_ids"] = torch.tensor(input_ids, dtype=torch.long)  # (L,)
        item["labels"] = torch.tensor(labels, dtype=torch.long)  # (L,)
        return item


@dataclass
class DataCollator:
    """Pads ``input_ids`` / ``labels`` to the longest sample on the tokenizer's ``padding_side`` and stacks videos.

    Returns ``input_ids`` (B, L), ``attention_mask`` (B, L), ``labels`` (B, L) with -100 on padding, and
    ``pixel_values_videos`` (V, T, C, S, S): the videos of all samples, in order (V = total videos in the batch).
    """

    # the tokenizer whose pad_token_id and padding_side are used
    tokenizer: Any
    # pad lengths up to a multiple of this (tensor-core friendly on GPU); None = no rounding
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("DataCollator got an empty batch")
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError("the tokenizer has no pad_token; set tokenizer.pad_token before training")
        side = self.tokenizer.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"tokenizer.padding_side must be 'left' or 'right', got {side!r}")
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(features)
        input_ids = torch.full((batch, length), pad_id, dtype=torch.long)  # (B, L)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)  # (B, L)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)  # (B, L)
        for b, f in enumerate(features):
            n = len(f["input_ids"])
            span = slice(length - n, length) if side == "left" else slice(0, n)
            input_ids[b, span] = f["input_ids"]
            labels[b, span] = f["labels"]
            attention_mask[b, span] = 1
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        videos = [f["pixel_values_videos"] for f in features if f.get("pixel_values_videos") is not None]
        if videos:
            frames = sorted({v.shape[1] for v in videos})
            if len(frames) > 1:
                raise ValueError(f"videos of one batch need the same number of frames, got {frames}")
            out["pixel_values_videos"] = torch.cat(videos)  # (V, T, C, S, S)
        return out


__all__ = [
    "DataCollator",
    "IGNORE_INDEX",
    "LlavaVideoDataset",
    "SampleError",
    "SkipLimitError",
    "check_samples",
    "load_samples",
]
