"""LLaVA-format conversations (LLaVA-Video-178K, LLaVA-NeXT) -> supervised token sequences, and a padding collator.

Data files (see docs/data.md):

- a JSON list, or a JSON-lines file, of ``{"id", "video": path or [paths], "conversations": [{"from":
  "human"|"gpt", "value"}...]}``; ``"image"`` in place of ``"video"`` is a still image, trained as a one-frame video;
  neither key is a text-only sample. Paths are relative to ``video_root`` (images: ``image_root``, default the same).
- a LLaVA-NeXT mixture YAML, ``datasets: [{json_path, sampling_strategy}]`` with ``all``, ``first:N``, ``end:N`` or
  ``random:N`` (N a count or a percentage such as ``10%``, rounded up); a relative ``json_path`` is taken from the
  YAML's folder; ``random`` shuffles with the run's seed, so every process picks the same samples.

The media placeholder in the human turns is ``<video>`` or, as LLaVA-Video-178K and LLaVA-NeXT write it,
``<image>``: both stand for the sample's video (or image), one per file. A sample with media but no placeholder gets
one in front of its first human turn, as LLaVA does; a text-only sample with a placeholder is refused.

Labels are -100 everywhere except the assistant answers and the end-of-turn token the chat template puts after each
of them (``<|im_end|>``, ``<|eot_id|>``, ...), so the model learns what to say and when to stop, never the prompt.
The conversation is rendered once with the processor's own chat template (any template: llava-hf's, ChatML,
Llama-3 ...) and each answer is located in that text, so masking never relies on how a template renders prefixes or
generation prompts. Each placeholder becomes ``processor.num_video_tokens(T)`` tokens (one in TrajTok's adaptive
mode). Frames are sampled as ``num_frames`` evenly spaced, or at ``fps`` with at most ``max_frames`` (LLaVA-Video's
``video_fps`` + ``frames_upbound``; its ``force_sample`` is ``num_frames``).

Failed samples (a missing or undecodable video, a sequence longer than ``max_length``) are skipped: the dataset
logs the path and reason, counts it, and returns the next good sample instead (index + 1, wrapping), so batches
keep their size under HF ``Trainer`` and DeepSpeed. Once more than ``max_skip_fraction`` of the samples have
failed, it raises :class:`SkipLimitError` (a ``RuntimeError``) naming how many of the samples actually tried failed and
the first failures: a broken dataset stops the run early. Counts are kept per process (each rank, and each DataLoader
worker, sees its own share of the samples). :func:`check_samples` finds malformed rows and missing files up front
(``trajvlm validate`` and the start of ``trajvlm train``); :meth:`LlavaVideoDataset.measure` gives a sample's token
count from its files' metadata without decoding frames (``trajvlm validate``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from jinja2 import TemplateError
from torch.utils.data import Dataset

from trajtok.io.video import probe_video
from trajvlm.processing import TrajVLMProcessor

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MIXTURE_SUFFIXES = (".yaml", ".yml")
SAMPLING_STRATEGIES = ("all", "first", "end", "random")
# stand-ins for the answers while the conversation is rendered (private-use characters no template touches)
_MARK = "\ue000{}\ue001"
_MARK_RE = re.compile("\ue000(\\d+)\ue001")


class SampleError(ValueError):
    """A sample that cannot be used (missing/corrupt video, malformed conversation, too long)."""


class SkipLimitError(RuntimeError):
    """More samples failed than ``max_skip_fraction`` allows: the data is broken, not a few samples."""


def _read_json_file(path: Path) -> list[Any]:
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


def parse_sampling_strategy(strategy: Any, total: int, where: str = "sampling_strategy") -> tuple[str, int]:
    """LLaVA-NeXT's ``all`` | ``first:N`` | ``end:N`` | ``random:N`` (N a count or ``P%``) -> (kind, samples kept).

    A percentage keeps ``ceil(P * total / 100)`` samples, as LLaVA-NeXT does; a count larger than ``total`` keeps all.
    """
    expected = "all, first:N, end:N or random:N (N a count such as 1000 or a percentage such as 10%)"
    if not isinstance(strategy, str):
        raise ValueError(f"{where} must be a string, one of {expected}; got {strategy!r}")
    kind, sep, number = strategy.strip().partition(":")
    if kind not in SAMPLING_STRATEGIES or (kind == "all") == bool(sep):
        raise ValueError(f"{where} {strategy!r} is not one of {expected}")
    if kind == "all":
        return kind, total
    number = number.strip()
    try:
        if number.endswith("%"):
            percent = float(number[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return kind, min(total, math.ceil(percent * total / 100))
        count = int(number)
        if count <= 0:
            raise ValueError
        return kind, min(total, count)
    except ValueError:
        raise ValueError(f"{where} {strategy!r}: N must be a positive count or a percentage in (0, 100]") from None


def load_mixture(path: str | Path, *, seed: int = 0) -> list[dict[str, Any]]:
    """The samples of a LLaVA-NeXT mixture YAML (``datasets: [{json_path, sampling_strategy}]``), in its order.

    A relative ``json_path`` is taken from the YAML's folder. ``random:N`` shuffles with ``seed`` (one
    ``random.Random`` per entry), so every process of a run keeps the same samples.
    """

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML ({err})") from err
    datasets = spec.get("datasets") if isinstance(spec, dict) else None
    if not isinstance(datasets, list) or not datasets:
        raise ValueError(
            f"{path} must hold 'datasets:' with a list of {{json_path, sampling_strategy}} entries (LLaVA-NeXT's "
            f"mixture format), got {spec!r:.120}"
        )
    samples: list[dict[str, Any]] = []
    for k, entry in enumerate(datasets):
        where = f"{path}: datasets[{k}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("json_path"), str) or not entry["json_path"]:
            raise ValueError(f"{where} needs a json_path (a .json or .jsonl file), got {entry!r}")
        unknown = sorted(set(entry) - {"json_path", "sampling_strategy"})
        if unknown:
            logger.warning("%s: ignoring keys %s (known: json_path, sampling_strategy)", where, unknown)
        file = Path(entry["json_path"])
        file = file if file.is_absolute() else path.parent / file
        if file.suffix not in (".json", ".jsonl"):
            raise ValueError(f"{where}: json_path {file} must be a .json or .jsonl file")
        if not file.is_file():
            raise FileNotFoundError(f"{where}: json_path not found: {file}")
        rows = _read_json_file(file)
        kind, n = parse_sampling_strategy(
            entry.get("sampling_strategy", "all"), len(rows), f"{where} sampling_strategy"
        )
        if kind == "first":
            rows = rows[:n]
        elif kind == "end":
            rows = rows[len(rows) - n :]
        elif kind == "random":
            rows = list(rows)
            random.Random(seed).shuffle(rows)
            rows = rows[:n]
        logger.info("%s: %d samples from %s (%s)", path, len(rows), file, entry.get("sampling_strategy", "all"))
        samples += rows
    return samples


def load_samples(json_path: str | Path, *, seed: int = 0) -> list[dict[str, Any]]:
    """Read a LLaVA-format JSON (a list), a JSON-lines file, or a LLaVA-NeXT mixture YAML of them.

    Raises FileNotFoundError for a missing file and ValueError naming the file (and line) for malformed JSON or a
    bad mixture. ``seed`` drives the mixture's ``random:N`` strategies.
    """
    path = Path(json_path)
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {path}")
    if path.suffix in MIXTURE_SUFFIXES:
        return load_mixture(path, seed=seed)
    return _read_json_file(path)


def media_entries(sample: dict[str, Any]) -> tuple[str, list[Any]]:
    """(kind, paths) of a sample: ``("video", [...])``, ``("image", [...])`` or ``("text", [])``."""
    if sample.get("video") is not None and sample.get("image") is not None:
        raise SampleError(f"sample {sample.get('id')!r} has both 'video' and 'image'; give one of them")
    for kind in ("video", "image"):
        value = sample.get(kind)
        if value is not None:
            return kind, [value] if isinstance(value, str) else list(value) if isinstance(value, list) else [value]
    return "text", []


def check_samples(
    json_path: str | Path,
    video_root: str | Path,
    *,
    max_skip_fraction: float = 0.0,
    max_problems: int = 5,
    image_root: str | Path | None = None,
    seed: int = 0,
) -> int:
    """Check a data file (JSON, JSON lines or mixture YAML) without decoding videos; returns the number of samples.

    Raises ValueError naming the file when it is malformed or empty, or when more than ``max_skip_fraction`` of its
    rows are unusable: not objects, no ``conversations`` list of ``{"from", "value"}`` turns, or videos / images
    that do not exist under ``video_root`` / ``image_root`` (the first ``max_problems`` problems are listed, with the
    total). Fewer unusable rows are logged as warnings (training skips them).
    """
    path = Path(json_path)
    samples = load_samples(path, seed=seed)
    if not samples:
        raise ValueError(f"{path} holds an empty list: no samples to train on")
    roots = {"video": Path(video_root), "image": Path(image_root if image_root is not None else video_root)}
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
            isinstance(t, dict) and ROLES.get(t.get("from", "")) and isinstance(t.get("value"), str) for t in turns
        ):
            problems.append(f"{name} has a turn without from (human|gpt) and a string value")
        try:
            kind, files = media_entries(sample)
        except SampleError as err:
            problems.append(str(err))
            continue
        for v in files:
            if not isinstance(v, str):
                problems.append(f"{name} has a {kind} entry {v!r} that is not a path")
            elif not (roots[kind] / v).exists():
                problems.append(f"{name}: {kind} not found: {roots[kind] / v}")
    if problems:
        shown = "; ".join(problems[:max_problems])
        more = f" (and {len(problems) - max_problems} more)" if len(problems) > max_problems else ""
        message = f"{path}: {len(problems)} of {len(samples)} samples are unusable: {shown}{more}"
        if len(problems) > max_skip_fraction * len(samples):
            raise ValueError(message)
        logger.warning("%s (within max_skip_fraction=%s: they will be skipped)", message, max_skip_fraction)
    return len(samples)


def planned_frames(info: Any, *, num_frames: int | None, fps: float | None, max_frames: int | None) -> int:
    """Frames ``trajtok.io.video.load_video`` samples from a video with metadata ``info`` (a ``VideoInfo``), estimated
    without decoding: ``num_frames`` exactly, or ``fps`` over the duration (distinct frames only), capped by
    ``max_frames``. Exact when the metadata is (frame rate and duration as the decoder finds them)."""
    if info.codec == "image" and info.num_frames == 1:
        count = num_frames or 1
    elif num_frames is not None:
        count = num_frames
    elif fps is not None:
        period = 1.0 / info.fps
        last = max(0.0, info.duration - period)
        count = min(int(math.floor(last * fps + 0.5 * fps * period + 1e-9)) + 1, max(1, info.num_frames))
    else:
        count = info.num_frames
    return min(count, max_frames) if max_frames is not None else count


class LlavaVideoDataset(Dataset):
    """Samples of a LLaVA-format data file as ``{"input_ids", "labels", "pixel_values_videos"}`` tensors.

    Args:
        json_path: the LLaVA-format JSON (list), JSON-lines file or LLaVA-NeXT mixture YAML.
        video_root: directory the samples' ``video`` paths are relative to.
        processor: a :class:`~trajvlm.processing.TrajVLMProcessor` (tokenizer with a chat template, ``load_video``,
            ``preprocess_videos``, ``num_video_tokens``), synced to the model with ``for_model``.
        num_frames: frames per video, evenly spaced; with ``fps`` None and this None, the processor's saved settings.
        fps: sample videos at this rate instead (distinct frames), at most ``max_frames`` of them.
        max_frames: upper bound on the frames per video (thinned uniformly).
        max_length: longest ``input_ids`` allowed; longer samples are skipped (never truncated through a video).
        max_skip_fraction: raise once more than this fraction of the samples has failed.
        system_prompt: optional system message put before every conversation.
        image_root: directory of the samples' ``image`` paths; None = ``video_root``.
        seed: seed of a mixture YAML's ``random:N`` strategies.

    Each item: ``input_ids`` (L,) long, ``labels`` (L,) long, ``pixel_values_videos`` (V, T, C, S, S) float
    (absent for text-only samples; T = 1 for images), ``id``.
    """

    def __init__(
        self,
        json_path: str | Path,
        video_root: str | Path,
        processor: Any,
        *,
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        max_length: int = 4096,
        max_skip_fraction: float = 0.05,
        system_prompt: str | None = None,
        image_root: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}")
        if num_frames is not None and fps is not None:
            raise ValueError(f"give num_frames or fps, not both (got num_frames={num_frames}, fps={fps})")
        self.json_path = Path(json_path)
        self.samples = load_samples(self.json_path, seed=seed)
        if not self.samples:
            raise ValueError(f"{self.json_path} holds no samples")
        self.video_root = Path(video_root)
        self.image_root = Path(image_root) if image_root is not None else self.video_root
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if num_frames is None and fps is None:  # the processor's saved sampling settings
            num_frames, fps = processor.num_frames, processor.fps
            max_frames = processor.max_frames if max_frames is None else max_frames
        self.num_frames, self.fps, self.max_frames = num_frames, fps, max_frames
        self.max_length = int(max_length)
        self.max_skip_fraction = float(max_skip_fraction)
        self.system_prompt = system_prompt
        self.video_token = processor.video_token
        self.image_token = getattr(processor, "image_token", "<image>")
        # index -> reason for every sample that failed so far (a failed index is never decoded again)
        self.failed: dict[int, str] = {}
        self.tried: set[int] = set()  # indices built at least once (successfully or not) by this process
        # a llava-hf checkpoint keeps its template in the processor (chat_template.json); ours in both
        self.chat_template = getattr(processor, "chat_template", None) or self.tokenizer.chat_template
        if not self.chat_template:
            raise ValueError("neither the processor nor its tokenizer has a chat_template to render conversations")
        # llava-hf templates read message content as a list of {"type": ...} parts; ours also takes plain strings
        self.string_content = self._template_takes_strings()
        # end-of-turn candidates: the tokenizer's special tokens but the media placeholders, longest first
        specials = set(self.tokenizer.all_special_tokens)
        specials |= {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special}
        specials -= {self.video_token, self.image_token}
        self.end_tokens = sorted((s for s in specials if s), key=len, reverse=True)
        self._warned_no_end = False

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
    # conversation -> text -> tokens

    def media(self, sample: dict[str, Any]) -> tuple[str, list[Path]]:
        """(kind, files) of a sample: ``"video"`` files under ``video_root``, ``"image"`` files under
        ``image_root``, or ``("text", [])``."""
        if not isinstance(sample, dict):
            raise SampleError(f"a sample must be an object, got {type(sample).__name__}")
        kind, files = media_entries(sample)
        for f in files:
            if not isinstance(f, str):
                raise SampleError(f"sample {sample.get('id')!r} has a {kind} entry {f!r} that is not a path")
        root = self.image_root if kind == "image" else self.video_root
        return kind, [root / f for f in files]

    def video_paths(self, sample: dict[str, Any]) -> list[Path]:
        """The files of a sample's ``video`` or ``image`` entry (empty for text-only samples)."""
        return self.media(sample)[1]

    def messages(self, sample: dict[str, Any], num_videos: int) -> list[dict[str, Any]]:
        """The conversation as chat messages ``[{"role", "content"}]``, with exactly one placeholder per video.

        ``<image>`` placeholders (LLaVA-Video-178K, LLaVA-NeXT) become ``<video>`` in a sample with media. Content is
        a string, or a list of parts when the chat template only reads parts (llava-hf templates).
        """
        name = sample.get("id")
        turns = sample.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise SampleError(f"sample {name!r} has no 'conversations' list")
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for turn in turns:
            role = ROLES.get(turn.get("from", "")) if isinstance(turn, dict) else None
            if role is None or not isinstance(turn.get("value"), str):
                raise SampleError(f"sample {name!r}: bad turn {turn!r}; expected from human|gpt + value")
            messages.append({"role": role, "content": turn["value"]})
        if num_videos:
            for m in messages:
                m["content"] = m["content"].replace(self.image_token, self.video_token)
        placeholders = sum(m["content"].count(self.video_token) for m in messages)
        if not num_videos and (placeholders or any(self.image_token in m["content"] for m in messages)):
            raise SampleError(
                f"sample {name!r} has a {self.video_token} / {self.image_token} placeholder but no 'video' or "
                "'image' file"
            )
        if placeholders == 0 and num_videos:
            first_user = next((m for m in messages if m["role"] == "user"), None)
            if first_user is None:
                raise SampleError(f"sample {name!r} has no human turn to put its video in")
            first_user["content"] = self.video_token * num_videos + "\n" + first_user["content"]
        elif placeholders != num_videos:
            raise SampleError(f"sample {name!r} has {placeholders} placeholders for {num_videos} videos")
        if any(self.video_token in m["content"] for m in messages if m["role"] == "assistant"):
            raise SampleError(f"sample {name!r} has a media placeholder in a gpt answer; put it in a human turn")
        if not any(m["role"] == "assistant" for m in messages):
            raise SampleError(f"sample {name!r} has no gpt answer to learn from")
        if not self.string_content:
            return [{"role": m["role"], "content": self._as_parts(m["content"])} for m in messages]
        return messages

    def _template_takes_strings(self) -> bool:
        probe = [{"role": "user", "content": f"{self.video_token}\nprobe"}]
        try:
            text = self._render(probe)
        except TemplateError:  # a parts-only template may raise on string content
            return False
        return "probe" in text and self.video_token in text

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False, chat_template=self.chat_template
        )

    def _as_parts(self, content: str) -> list[dict[str, str]]:
        """``"<video>\ntext"`` -> ``[{"type": "video"}, {"type": "text", "text": "text"}]`` (media first, as LLaVA)."""
        n = content.count(self.video_token)
        text = content.replace(self.video_token + "\n", "").replace(self.video_token, "")
        return [{"type": "video"}] * n + [{"type": "text", "text": text}]

    def render(self, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
        """The chat template's text of ``messages`` and the character spans to train: each assistant answer and
        the end-of-turn special token after it.

        The answers are found by rendering once more with a marker in place of each: the template's own text
        around them is then known exactly, whatever it does with roles, spaces or generation prompts.
        """
        answers: list[str] = []
        marked = []
        for m in messages:
            if m["role"] == "assistant":
                text = m["content"] if isinstance(m["content"], str) else "".join(p["text"] for p in m["content"])
                mark = _MARK.format(len(answers))
                answers.append(text)
                content: Any = mark if isinstance(m["content"], str) else [{"type": "text", "text": mark}]
                marked.append({"role": "assistant", "content": content})
            else:
                marked.append(m)
        template_text = self._render(marked)
        pieces = _MARK_RE.split(template_text)  # text, index, text, index, ..., text
        order = [int(k) for k in pieces[1::2]]
        if order != list(range(len(answers))):
            raise SampleError(
                f"the chat template rendered {len(order)} of {len(answers)} assistant answers once each, in order "
                f"(found {order}); it must render every assistant message's content"
            )
        full = self._render(messages)
        for transform in (str, str.strip):
            spans: list[tuple[int, int]] = []
            out = [pieces[0]]
            pos = len(pieces[0])
            for k, answer in enumerate(answers):
                answer = transform(answer)
                spans.append((pos, pos + len(answer)))
                out += [answer, pieces[2 * k + 2]]
                pos += len(answer) + len(pieces[2 * k + 2])
            if "".join(out) == full:
                return full, [(a, self._end_of_turn(full, b)) for a, b in spans]
        raise SampleError("the chat template changes the answers' text beyond stripping spaces; cannot mask labels")

    def _end_of_turn(self, text: str, end: int) -> int:
        """Where the end-of-turn token after an answer ending at ``end`` ends (spaces before it allowed); ``end``
        itself (with one warning per dataset) when the template puts no special token there."""
        start = end + len(text[end:]) - len(text[end:].lstrip(" \t"))
        for token in self.end_tokens:
            if text.startswith(token, start):
                return start + len(token)
        if not self._warned_no_end:
            self._warned_no_end = True
            logger.warning(
                "the chat template puts no special token after the answers (%r follows one): the model does not "
                "learn an end-of-turn token from %s",
                text[end : end + 20],
                self.json_path,
            )
        return end

    def tokenize(self, messages: list[dict[str, Any]], num_video_tokens: int) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of ``messages``: each placeholder expanded to ``num_video_tokens`` tokens, labels
        -100 but on the answers and their end-of-turn tokens."""
        text, spans = self.render(messages)
        if self.tokenizer.is_fast:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            # a token is trained when it starts inside an answer span
            supervised = [any(a <= s < b for a, b in spans) for s, _ in enc["offset_mapping"]]
        else:  # slow tokenizers give no offsets: tokenize the prompt and answer pieces apart
            ids, supervised, pos = [], [], 0
            for a, b in [*spans, (len(text), len(text))]:
                for piece, train in ((text[pos:a], False), (text[a:b], True)):
                    if piece:
                        piece_ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"]
                        ids += piece_ids
                        supervised += [train] * len(piece_ids)
                pos = b
        video_id = self.tokenizer.convert_tokens_to_ids(self.video_token)
        input_ids: list[int] = []
        labels: list[int] = []
        for token, train in zip(ids, supervised, strict=True):
            if token == video_id:
                input_ids += [token] * num_video_tokens
                labels += [IGNORE_INDEX] * num_video_tokens
            else:
                input_ids.append(token)
                labels.append(token if train else IGNORE_INDEX)
        return input_ids, labels

    # ----------------------------------------------------------------------------------------------------------
    # media

    def load_frames(self, path: Path, kind: str) -> torch.Tensor:
        """Decode one video (at the dataset's sampling) or image (one frame) -> uint8 (T, C, H, W)."""
        if not path.exists():
            raise SampleError(f"{kind} not found: {path}")
        if kind == "image":
            settings: dict[str, Any] = {"num_frames": 1, "max_frames": None}
        elif self.num_frames is not None:
            settings = {"num_frames": self.num_frames, "max_frames": self.max_frames}
        else:
            settings = {"fps": self.fps, "max_frames": self.max_frames}
        try:
            return self.processor.load_video(path, **settings)
        except (ValueError, OSError, RuntimeError) as err:  # VideoDecodeError is a ValueError
            raise SampleError(f"cannot decode {path}: {err}") from err

    def frames_of(self, path: Path, kind: str) -> int:
        """Frames ``load_frames`` gives for ``path``, from its metadata only (no frame decoded)."""

        if not path.exists():
            raise SampleError(f"{kind} not found: {path}")
        try:
            info = probe_video(path)
        except (ValueError, OSError, RuntimeError) as err:
            raise SampleError(f"cannot decode {path}: {err}") from err
        if kind == "image":
            return 1
        return planned_frames(info, num_frames=self.num_frames, fps=self.fps, max_frames=self.max_frames)

    def _sample(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        if not isinstance(sample, dict):
            raise SampleError(f"row {index} is a {type(sample).__name__}, not an object")
        return sample

    def build(self, index: int, *, check_length: bool = True) -> dict[str, Any]:
        """Sample ``index`` as tensors; raises SampleError when it cannot be used (with ``check_length``, also
        when it is longer than ``max_length``)."""
        sample = self._sample(index)
        kind, paths = self.media(sample)
        messages = self.messages(sample, len(paths))
        frames = [self.load_frames(path, kind) for path in paths]
        item: dict[str, Any] = {"id": str(sample.get("id", index))}
        n_tokens = 0
        if frames:
            try:
                pixel_values = self.processor.preprocess_videos(frames)  # (V, T, C, S, S)
            except ValueError as err:
                raise SampleError(f"videos of sample {item['id']!r} ({[str(p) for p in paths]}): {err}") from err
            item["pixel_values_videos"] = pixel_values
            n_tokens = self.processor.num_video_tokens(pixel_values.shape[1])
        input_ids, labels = self.tokenize(messages, n_tokens)
        if check_length and len(input_ids) > self.max_length:
            raise SampleError(
                f"sample {item['id']!r} has {len(input_ids)} tokens, more than max_length={self.max_length}"
            )
        item["input_ids"] = torch.tensor(input_ids, dtype=torch.long)  # (L,)
        item["labels"] = torch.tensor(labels, dtype=torch.long)  # (L,)
        return item

    def measure(self, index: int) -> dict[str, Any]:
        """What :meth:`build` would give for sample ``index``, from the files' metadata only: ``{"id", "kind",
        "paths", "frames" (per file), "tokens", "supervised"}``. Raises SampleError like :meth:`build`, but a
        sequence over ``max_length`` is reported (``tokens``), not raised."""
        sample = self._sample(index)
        kind, paths = self.media(sample)
        messages = self.messages(sample, len(paths))
        frames = [self.frames_of(path, kind) for path in paths]
        if len(set(frames)) > 1:
            raise SampleError(f"the videos of sample {sample.get('id')!r} give {frames} frames; one count is needed")
        n_tokens = self.processor.num_video_tokens(frames[0]) if frames else 0
        input_ids, labels = self.tokenize(messages, n_tokens)
        return {
            "id": str(sample.get("id", index)),
            "kind": kind,
            "paths": [str(p) for p in paths],
            "frames": frames,
            "tokens": len(input_ids),
            "supervised": sum(label != IGNORE_INDEX for label in labels),
        }


# ---------------------------------------------------------------------------------------------------------------
# trajvlm validate: render samples as training would, without a model


@dataclass
class DataReport:
    """What :func:`survey` found in a data file: token counts of the usable samples, the too long, the failed."""

    # the data file
    path: str
    # samples in the file
    total: int
    # samples checked (evenly spaced over the file)
    checked: int
    # the dataset's max_length and max_skip_fraction
    max_length: int
    max_skip_fraction: float
    # tokens of each sample that renders (including those over max_length)
    tokens: list[int]
    # frames per video of each sample with media
    frames: list[int]
    # samples per kind ("video", "image", "text") among those that render
    kinds: dict[str, int]
    # (id, tokens) of the samples over max_length
    too_long: list[tuple[str, int]]
    # reason (ids, paths and numbers masked) -> (count, example paths or ids)
    failures: dict[str, tuple[int, list[str]]]

    @property
    def num_failed(self) -> int:
        return sum(count for count, _ in self.failures.values())

    @property
    def num_ok(self) -> int:
        """Samples training would use: rendered and within max_length."""
        return len(self.tokens) - len(self.too_long)

    def problem(self) -> str | None:
        """Why training on this file would stop (None when it would not): every sample skipped, or more skipped
        than max_skip_fraction allows."""
        skipped = self.num_failed + len(self.too_long)
        if self.num_ok == 0:
            return f"every one of the {self.checked} samples checked in {self.path} would be skipped ({self.reasons()})"
        if skipped > self.max_skip_fraction * self.checked:
            return (
                f"{skipped} of the {self.checked} samples checked in {self.path} would be skipped, more than "
                f"max_skip_fraction={self.max_skip_fraction}: training would stop ({self.reasons()})"
            )
        return None

    def reasons(self) -> str:
        parts = [f"{count} x {reason}" for reason, (count, _) in self.failures.items()]
        if self.too_long:
            parts.append(f"{len(self.too_long)} x longer than max_length={self.max_length}")
        return "; ".join(parts) or "none"

    def lines(self) -> list[str]:
        """The report as text lines."""
        spread = "all" if self.checked == self.total else "evenly spaced"
        out = [f"data {self.path}: {self.total} samples, {self.checked} checked ({spread})"]
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        out.append(f"  samples ok: {self.num_ok} of {self.checked}" + (f" (renders: {kinds})" if kinds else ""))
        if self.tokens:
            ordered = sorted(self.tokens)
            median = ordered[len(ordered) // 2]
            out.append(
                f"  tokens per sample: min {ordered[0]}, median {median}, max {ordered[-1]} "
                f"(max_length {self.max_length})"
            )
        if self.frames:
            out.append(f"  frames per video: min {min(self.frames)}, max {max(self.frames)}")
        examples = ", ".join(f"{name!r} ({n} tokens)" for name, n in self.too_long[:3])
        line = f"  over max_length (skipped in training): {len(self.too_long)}"
        out.append(line + (f", e.g. {examples}" if examples else ""))
        out.append(f"  failed: {self.num_failed}")
        for reason, (count, where) in sorted(self.failures.items(), key=lambda kv: -kv[1][0]):
            out.append(f"    {count} x {reason}; e.g. {', '.join(where)}")
        return out


def _reason_key(reason: str, names: list[str]) -> str:
    """A failure reason with its sample's paths, quoted ids and numbers masked, so alike failures group."""
    for name in sorted(names, key=len, reverse=True):
        reason = reason.replace(name, "<path>")
    reason = re.sub(r"'[^']*'", "'...'", reason)
    return re.sub(r"\d+(\.\d+)?", "N", reason)


def survey(dataset: LlavaVideoDataset, *, limit: int | None = 200, decode: bool = False) -> DataReport:
    """Render ``limit`` samples of ``dataset`` (evenly spaced; None = all) as training would: the chat template, the
    connector's token count for each video's frames (from the files' metadata, or by decoding them with
    ``decode``). Nothing is raised for bad samples: they are counted in the report, grouped by reason."""
    total = len(dataset)
    n = total if limit is None or limit >= total else max(1, int(limit))
    indices = sorted({round(k * (total - 1) / max(1, n - 1)) for k in range(n)}) if n < total else range(total)
    tokens: list[int] = []
    frames: list[int] = []
    kinds: dict[str, int] = {}
    too_long: list[tuple[str, int]] = []
    failures: dict[str, tuple[int, list[str]]] = {}
    for i in indices:
        sample = dataset.samples[i]
        try:
            if decode:
                item = dataset.build(i, check_length=False)
                kind = dataset.media(sample)[0]
                pixels = item.get("pixel_values_videos")
                info = {"id": item["id"], "tokens": len(item["input_ids"])}
                info["frames"] = [pixels.shape[1]] * pixels.shape[0] if pixels is not None else []
            else:
                info = dataset.measure(i)
                kind = info["kind"]
        except SampleError as err:
            try:
                paths = [str(p) for p in dataset.media(sample)[1]]
            except SampleError:
                paths = []
            name = sample.get("id", i) if isinstance(sample, dict) else i
            key = _reason_key(str(err), paths)
            count, where = failures.get(key, (0, []))
            example = next((p for p in paths if p in str(err)), paths[0] if paths else f"sample {name!r}")
            failures[key] = (count + 1, where if len(where) >= 3 or example in where else [*where, example])
            continue
        tokens.append(info["tokens"])
        frames += info["frames"]
        kinds[kind] = kinds.get(kind, 0) + 1
        if info["tokens"] > dataset.max_length:
            too_long.append((info["id"], info["tokens"]))
    return DataReport(
        path=str(dataset.json_path),
        total=total,
        checked=len(indices),
        max_length=dataset.max_length,
        max_skip_fraction=dataset.max_skip_fraction,
        tokens=tokens,
        frames=frames,
        kinds=kinds,
        too_long=too_long,
        failures=failures,
    )


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
    "DataReport",
    "IGNORE_INDEX",
    "LlavaVideoDataset",
    "SampleError",
    "SkipLimitError",
    "check_samples",
    "load_mixture",
    "load_samples",
    "media_entries",
    "parse_sampling_strategy",
    "planned_frames",
    "survey",
    "validate_data",
]


def config_datasets(cfg: Any, processor: Any) -> dict[str, LlavaVideoDataset]:
    """The datasets a training config (``trajvlm.training.config.TrainConfig``) names: ``train`` and, when set, ``eval``."""
    sources = (
        ("train", cfg.train_json, cfg.video_root),
        ("eval", cfg.eval_json, cfg.eval_video_root or cfg.video_root),
    )
    return {
        name: LlavaVideoDataset(
            json_path,
            root,
            processor,
            num_frames=cfg.num_frames,
            fps=cfg.fps,
            max_frames=cfg.max_frames,
            max_length=cfg.max_length,
            max_skip_fraction=cfg.max_skip_fraction,
            image_root=cfg.image_root,
            seed=cfg.seed,
        )
        for name, json_path, root in sources
        if json_path is not None
    }


def load_processor(cfg: Any, model_config: Any) -> TrajVLMProcessor:
    """The base's processor (``cfg``: a ``TrainConfig``) synced to the model's connector, with the configured frame
    count."""
    processor = TrajVLMProcessor.from_pretrained(cfg.base_model).for_model(model_config)
    if cfg.num_frames is not None:
        processor.num_frames = cfg.num_frames
        processor.fps = None
        processor.max_frames = None
    elif cfg.fps is not None:
        processor.num_frames, processor.fps, processor.max_frames = None, cfg.fps, cfg.max_frames
    return processor


def validate_data(cfg: Any, *, samples: int | None = 200, decode: bool = False) -> list[Any]:
    """Render ``samples`` samples (``cfg``: a ``TrainConfig``) of train_json (and eval_json) as training would: the base's processor and
    tokenizer (no model weights), its chat template, the connector's token count for each video's frames.
    Writes each file's report to stdout and returns them (:class:`~trajvlm.training.data.DataReport`); raises ValueError
    when training would fail on a file (every sample skipped, the skip limit passed, mixed frame counts)."""
    model_config = cfg.model_config()
    processor = load_processor(cfg, model_config)
    reports = []
    for dataset in config_datasets(cfg, processor).values():
        report = survey(dataset, limit=samples, decode=decode)
        sys.stdout.write("".join(line + "\n" for line in report.lines()))
        reports.append(report)
        problem = report.problem()
        if problem is None and cfg.per_device_batch_size > 1 and len(set(report.frames)) > 1:
            problem = (
                f"{report.path}: videos give {sorted(set(report.frames))} frames (images are one frame), but the "
                f"videos of a batch of per_device_batch_size={cfg.per_device_batch_size} need one count; use "
                "per_device_batch_size: 1 or keep images and videos in separate runs"
            )
        if problem is not None:
            raise ValueError(problem)
    return reports
