"""Generation: batched answers to independent requests (:func:`generate_batch`) with streaming, per-request
stopping and cost accounting (:class:`Answer`); the streamers and the ``generate`` call the chat session shares.

The LLM sequence (text + visual tokens + new tokens) is checked against the context size before generating; an
over-long request raises :class:`~trajvlm.inference.prompts.ContextLengthError` naming the sizes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import TextStreamer

from trajvlm.inference.prompts import (
    ContextLengthError,
    Prepared,
    Request,
    check_context,
    context_limit,
    cut_at_stops,
    load_request,
    prepare_inputs,
    select_rows,
    split_generation_kwargs,
)

logger = logging.getLogger(__name__)


@dataclass
class Answer:
    """One generated answer and what it cost."""

    text: str  # the decoded answer (special tokens removed, cut at the first stop string)
    visual_tokens: int  # visual tokens the LLM read for the video(s) of this prompt (0 without video)
    prompt_tokens: int  # LLM sequence length of the prompt: text + visual tokens
    new_tokens: int  # tokens generated (the end-of-sequence token included when it was reached)
    time_to_first_token_s: float  # seconds from the call until the first new token existed
    total_s: float  # seconds for the whole call (video decoding excluded: it happens once per video)


class BatchStreamer:
    """Streams every row of a batched ``generate``: ``callback(row, text)`` with each row's newly decoded text.

    ``generate`` puts the (empty) prompt first, then one token per row (B,) per step; a row stops streaming after its
    end-of-sequence token (the padding that follows is not text). Text ending in an incomplete character is held
    back until the next token completes it. Also records when the first new token existed.
    """

    def __init__(
        self, tokenizer, eos: int | list[int] | None, callback: Callable[[int, str], None] | None, start: float
    ):
        self.tokenizer = tokenizer
        self.ends = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.callback = callback
        self.start = start
        self.first_token_s: float | None = None
        self.prompt_seen = False
        self.tokens: list[list[int]] = []
        self.sent: list[int] = []  # characters of each row's decoded text already given to the callback
        self.done: list[bool] = []

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the prompt (empty with inputs_embeds)
            self.prompt_seen = True
            return
        column = value.reshape(-1).tolist()  # (B,)
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.start
            self.tokens = [[] for _ in column]
            self.sent = [0] * len(column)
            self.done = [False] * len(column)
        for row, token in enumerate(column):
            if self.done[row]:
                continue
            self.tokens[row].append(int(token))
            self.done[row] = token in self.ends
            self._flush(row, final=self.done[row])

    def end(self) -> None:
        for row in range(len(self.tokens)):
            self._flush(row, final=True)

    def _flush(self, row: int, final: bool) -> None:
        if self.callback is None:
            return
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # a multi-byte character is not complete yet
            return
        if len(text) > self.sent[row]:
            piece, self.sent[row] = text[self.sent[row] :], len(text)
            self.callback(row, piece)


class TimedStreamer(TextStreamer):
    """Records when the first new token appears and forwards finished text pieces to ``callback``.

    The prompt is passed as ``inputs_embeds``, so ``generate`` first "puts" an empty prompt; it is skipped.
    """

    def __init__(self, tokenizer, callback: Callable[[str], None] | None, start: float) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.callback = callback
        self.start = start
        self.first_token_s: float | None = None

    def put(self, value: torch.Tensor) -> None:
        if not self.next_tokens_are_prompt and self.first_token_s is None and value.numel():
            self.first_token_s = time.perf_counter() - self.start
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if self.callback is not None and text:
            self.callback(text)


class StopRequests(StoppingCriteria):
    """A ``generate`` stopping criterion: row ``r`` (request ``indices[r]``) is done once ``stop(indices[r])``."""

    def __init__(self, indices: list[int], stop: Callable[[int], bool]) -> None:
        self.indices = indices
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = [bool(self.stop(i)) for i in self.indices]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_tokens(
    model, processor, prep: Prepared, gen: dict[str, Any], streamer=None, stopping_criteria=None
) -> torch.Tensor:
    """(B, new) generated token ids (only the new tokens)."""
    tokenizer = processor.tokenizer
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    out = model.generate(
        inputs_embeds=prep.inputs_embeds,
        attention_mask=prep.attention_mask,
        pad_token_id=pad,
        eos_token_id=eos,
        streamer=streamer,
        **({} if stopping_criteria is None else {"stopping_criteria": StoppingCriteriaList(stopping_criteria)}),
        **gen,
    )
    if out.shape[1] > gen["max_new_tokens"]:  # a model that echoes the prompt: keep the new part only
        out = out[:, prep.inputs_embeds.shape[1] :]
    return out


def count_new_tokens(row: torch.Tensor, eos: int | list[int] | None) -> int:
    """Generated tokens in one output row, up to and including the first end-of-sequence token."""
    ends = set(eos if isinstance(eos, list) else [eos]) - {None}
    for i, token in enumerate(row.tolist()):
        if token in ends:
            return i + 1
    return int(row.numel())


def generate_batch(
    model,
    processor,
    requests: Sequence[Request],
    *,
    batch_size: int | None = None,
    max_context: int | None = None,
    failures: dict[int, str] | None = None,
    answers: dict[int, Answer] | None = None,
    on_text: Callable[[int, str], None] | None = None,
    stop: Callable[[int], bool] | None = None,
) -> list[str]:
    """Answer independent requests ``(video(s) or None, prompt, gen_kwargs)``; returns one string per request.

    Requests are batched (left padding) in groups with equal generation settings and equal frame counts, at most
    ``batch_size`` (default: all) per forward. ``prompt`` is the user's text (or a chat message list); the
    ``until`` stop strings of ``gen_kwargs`` cut the answers. Without ``failures`` any unreadable video or
    over-long request raises; with a dict, those requests get ``""`` and ``failures[index] = reason`` instead.
    With ``answers``, ``answers[index]`` receives each answered request's :class:`Answer` (token counts, timing;
    ``total_s`` is its batch's). ``on_text(index, piece)`` streams each request's raw decoded text as it is
    generated, before stop strings cut it (servers stream through this). ``stop(index)`` is asked after every
    generated token; a request it answers True for stops there (its answer is what it had; the others go on).
    """
    results: list[str] = [""] * len(requests)
    groups: dict[tuple, list[tuple[int, str, list[torch.Tensor], dict, list[str]]]] = {}
    for i, (video, prompt, gen_kwargs) in enumerate(requests):
        gen, stops = split_generation_kwargs(gen_kwargs)
        loaded = load_request(processor, video, prompt, i, failures)
        if loaded is None:
            continue
        frames, text = loaded
        key = (json.dumps(gen, sort_keys=True, default=str), int(frames[0].shape[0]) if frames else None)
        groups.setdefault(key, []).append((i, text, frames, gen, stops))
    for gen_key, frames_key in [k for k in groups if k[1] is None]:  # text-only requests join a video group
        host = next((k for k in groups if k[0] == gen_key and k[1] is not None), None)
        if host is not None:
            groups[host] = sorted(groups[host] + groups.pop((gen_key, frames_key)), key=lambda item: item[0])
    limit = context_limit(model, max_context)
    for items in groups.values():
        size = batch_size or len(items)
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            for i, answer in _generate_chunk(model, processor, chunk, limit, failures, answers, on_text, stop):
                results[i] = answer
    return results


def _generate_chunk(
    model,
    processor,
    chunk,
    limit: int,
    failures: dict[int, str] | None,
    answers: dict[int, Answer] | None = None,
    on_text: Callable[[int, str], None] | None = None,
    stop: Callable[[int], bool] | None = None,
) -> list[tuple[int, str]]:
    start = time.perf_counter()
    gen, stops = chunk[0][3], chunk[0][4]
    prep = prepare_inputs(model, processor, [c[1] for c in chunk], [c[2] for c in chunk])
    problems = check_context(prep, gen["max_new_tokens"], limit)
    keep = [r for r, p in enumerate(problems) if p is None]
    for r, problem in enumerate(problems):
        if problem is not None:
            if failures is None:
                raise ContextLengthError(problem)
            failures[chunk[r][0]] = problem
            logger.warning("request %d failed: %s", chunk[r][0], problem)
    if not keep:
        return []
    if len(keep) < len(chunk):
        prep = select_rows(prep, keep)
    eos = model.generation_config.eos_token_id or processor.tokenizer.eos_token_id
    streamer = None
    if on_text is not None or (answers is not None and int(gen.get("num_beams", 1)) == 1):  # no streamer with beams
        callback = None if on_text is None else lambda row, piece: on_text(chunk[keep[row]][0], piece)
        streamer = BatchStreamer(processor.tokenizer, eos, callback, start)
    criteria = None if stop is None else [StopRequests([chunk[r][0] for r in keep], stop)]
    out = generate_tokens(model, processor, prep, gen, streamer=streamer, stopping_criteria=criteria)
    texts = processor.tokenizer.batch_decode(out, skip_special_tokens=True)
    results = [(chunk[r][0], cut_at_stops(t, stops).strip()) for r, t in zip(keep, texts, strict=True)]
    if answers is not None:
        total = time.perf_counter() - start
        first = streamer.first_token_s if streamer is not None and streamer.first_token_s is not None else total
        for row, (i, text) in enumerate(results):
            answers[i] = Answer(
                text=text,
                visual_tokens=prep.visual_tokens[row],
                prompt_tokens=prep.lengths[row],
                new_tokens=count_new_tokens(out[row], eos),
                time_to_first_token_s=first,
                total_s=total,
            )
    return results


__all__ = [
    "Answer",
    "BatchStreamer",
    "StopRequests",
    "TimedStreamer",
    "count_new_tokens",
    "generate_batch",
    "generate_tokens",
]
