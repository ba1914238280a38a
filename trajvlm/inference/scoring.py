"""Scoring: log-likelihoods of continuations given a video and a context (multiple-choice evaluation).

:func:`loglikelihood` scores one request at a time (exact, no padding effects); :func:`score_choices_batch` runs
each prompt once and scores all its choices on the repeated KV cache, at about one prompt's cost.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import torch
from transformers import LlavaOnevisionForConditionalGeneration

from trajvlm.inference.prompts import (
    ContextLengthError,
    VideoInput,
    build_prompt,
    check_context,
    context_limit,
    load_frames,
    load_request,
    prepare_inputs,
    select_rows,
    video_list,
)

logger = logging.getLogger(__name__)

# the keyword a forward takes its KV cache by: `cache` from transformers 5.24, `past_key_values` before
_FORWARD_PARAMETERS = inspect.signature(LlavaOnevisionForConditionalGeneration.forward).parameters
CACHE_ARG = "cache" if "cache" in _FORWARD_PARAMETERS else "past_key_values"


@torch.no_grad()
def loglikelihood(
    model,
    processor,
    requests: Sequence[tuple[VideoInput | Sequence[VideoInput] | None, str, str]],
    *,
    max_context: int | None = None,
) -> list[tuple[float, bool]]:
    """Score ``(video(s) or None, context, continuation)``: (sum of log-probs of the continuation, is greedy).

    The context is the user's text (chat-templated with the videos, as in :func:`generate_batch`); the
    continuation follows the assistant prefix directly. Requests run one at a time (exact, no padding effects).
    Unreadable videos raise ``VideoDecodeError``; an over-long request raises :class:`ContextLengthError`.
    """
    results = []
    limit = context_limit(model, max_context)
    for video, context, continuation in requests:
        frames = [load_frames(processor, v) for v in video_list(video)]
        prompt = build_prompt(processor, context, len(frames))
        results.append(_loglikelihood_prompt(model, processor, frames, prompt, continuation, limit))
    return results


def _loglikelihood_prompt(
    model, processor, frames: list[torch.Tensor], prompt: str, continuation: str, limit: int
) -> tuple[float, bool]:
    """One request of :func:`loglikelihood` whose videos are decoded and whose prompt is built."""
    tokenizer = processor.tokenizer
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_cont = len(tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]) - n_prompt
    if n_cont < 1:
        raise ValueError(f"the continuation {continuation!r} adds no tokens to the context; nothing to score")
    prep = prepare_inputs(model, processor, [prompt + continuation], [frames])
    problem = check_context(prep, 0, limit)[0]
    if problem is not None:
        raise ContextLengthError(problem)
    logits = model(
        inputs_embeds=prep.inputs_embeds, attention_mask=prep.attention_mask, logits_to_keep=n_cont + 1
    ).logits  # (1, n_cont + 1, V)
    targets = _continuation_ids(model, processor, prompt + continuation, n_cont)  # (n_cont,)
    scores = torch.log_softmax(logits[0, -n_cont - 1 : -1].float(), dim=-1)  # (n_cont, V)
    logprob = float(scores.gather(-1, targets[:, None]).sum())
    greedy = bool((scores.argmax(-1) == targets).all())
    return logprob, greedy


def score_choices(
    model,
    processor,
    video: VideoInput | Sequence[VideoInput] | None,
    context: str | list[dict],
    choices: Sequence[str],
    *,
    max_context: int | None = None,
) -> list[tuple[float, bool]]:
    """(sum of log-probs, is greedy) of each of ``choices`` continuing the same ``context`` after the same videos.

    The prompt (videos spliced in) runs through the LLM once; its KV cache is repeated for the choices, which run as
    one right-padded batch. The scores equal :func:`loglikelihood`'s one request at a time (up to float rounding)
    at about one prompt's cost instead of ``len(choices)``. One question of :func:`score_choices_batch`.
    """
    return score_choices_batch(model, processor, [(video, context, choices)], max_context=max_context)[0]


@torch.no_grad()
def score_choices_batch(
    model,
    processor,
    questions: Sequence[tuple[VideoInput | Sequence[VideoInput] | None, str | list[dict], Sequence[str]]],
    *,
    batch_size: int | None = None,
    max_context: int | None = None,
    failures: dict[int, str] | None = None,
) -> list[list[tuple[float, bool]]]:
    """:func:`score_choices` for many questions ``(video(s) or None, context, choices)``, batched.

    Questions with equal frame counts run together, at most ``batch_size`` (default: all) prompts per forward:
    the prompts as one left-padded batch, then every question's choices on its own row of the repeated KV cache.
    Without ``failures`` an unreadable video or an over-long question raises; with a dict, that question gets
    ``[]`` and ``failures[index] = reason`` instead.
    """
    results: list[list[tuple[float, bool]]] = [[] for _ in questions]
    groups: dict[tuple, list[tuple[int, list[torch.Tensor], str, list[str]]]] = {}
    for i, (video, context, choices) in enumerate(questions):
        loaded = load_request(processor, video, context, i, failures) if choices else None
        if loaded is None:
            continue
        frames, prompt = loaded
        key = (len(frames), tuple(int(f.shape[0]) for f in frames))
        groups.setdefault(key, []).append((i, frames, prompt, list(choices)))
    limit = context_limit(model, max_context)
    for items in groups.values():
        size = batch_size or len(items)
        for start in range(0, len(items), size):
            for i, scores in _score_chunk(model, processor, items[start : start + size], limit, max_context, failures):
                results[i] = scores
    return results


def _score_chunk(model, processor, chunk, limit: int, max_context: int | None, failures: dict[int, str] | None):
    """(question index, its choices' scores) for one batch of questions with equal frame counts."""
    tokenizer = processor.tokenizer
    out: list[tuple[int, list[tuple[float, bool] | None]]] = []
    conts: list[list[list[int] | None]] = []
    for _, _, prompt, choices in chunk:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        row = []
        for choice in choices:
            ids = tokenizer(prompt + choice, add_special_tokens=False)["input_ids"]
            # a choice that merges with the prompt's last token (or adds nothing) is scored on its own
            merged = ids[: len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids)
            row.append(None if merged else ids[len(prompt_ids) :])
        conts.append(row)
    prep = prepare_inputs(model, processor, [c[2] for c in chunk], [c[1] for c in chunk])
    longest = [max((len(c) for c in row if c is not None), default=0) for row in conts]
    problems = check_context(prep, 0, limit)
    problems = [p or check_context(select_rows(prep, [r]), longest[r], limit)[0] for r, p in enumerate(problems)]
    keep = []
    for r, problem in enumerate(problems):
        if problem is None:
            keep.append(r)
            continue
        if failures is None:
            raise ContextLengthError(problem)
        failures[chunk[r][0]] = problem
        logger.warning("question %d failed: %s", chunk[r][0], problem)
    for r in list(keep):
        i, frames, prompt, choices = chunk[r]
        scores: list[tuple[float, bool] | None] = [None] * len(choices)
        try:
            for j, cont in enumerate(conts[r]):
                if cont is None:
                    scores[j] = _loglikelihood_prompt(model, processor, frames, prompt, choices[j], limit)
        except ValueError as e:  # a choice that adds no token, or ContextLengthError
            if failures is None:
                raise
            failures[i] = str(e)
            logger.warning("question %d failed: %s", i, e)
            keep.remove(r)
            continue
        out.append((i, scores))
    # (row of the kept prompts, question row, choice, the choice's token ids) of each choice on the shared cache
    shared = [(row, r, j, c) for row, r in enumerate(keep) for j, c in enumerate(conts[r]) if c is not None]
    if shared:
        prep = select_rows(prep, keep) if len(keep) < len(chunk) else prep
        mask = prep.attention_mask
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        first = model(
            inputs_embeds=prep.inputs_embeds,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = first.cache if getattr(first, "cache", None) is not None else first.past_key_values
        rows = torch.tensor([row for row, _, _, _ in shared], device=model.device)
        cache.batch_select_indices(rows)
        width = max(len(c) for _, _, _, c in shared)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(shared), width), pad, dtype=torch.long, device=model.device)
        cont_mask = torch.zeros((len(shared), width), dtype=mask.dtype, device=model.device)
        for k, (_, _, _, c) in enumerate(shared):
            ids[k, : len(c)] = torch.tensor(c, device=model.device)
            cont_mask[k, : len(c)] = 1
        full_mask = torch.cat([mask[rows], cont_mask], dim=1)
        pos = mask[rows].sum(-1, keepdim=True) + torch.arange(width, device=model.device)  # (S, width)
        rest = model(
            input_ids=ids, attention_mask=full_mask, position_ids=pos, use_cache=True, **{CACHE_ARG: cache}
        ).logits  # (S, width, V): row k, column c predicts continuation token c + 1
        logits = torch.cat([first.logits[rows, -1:], rest[:, :-1]], dim=1).float()
        logprobs = torch.log_softmax(logits, dim=-1)  # (S, width, V): column c predicts continuation token c
        where = {r: n for n, r in enumerate(keep)}
        for k, (_, r, j, c) in enumerate(shared):
            n = len(c)
            token_scores = logprobs[k, :n]
            targets = ids[k, :n]
            logprob = float(token_scores.gather(-1, targets[:, None]).sum())
            greedy = bool((token_scores.argmax(-1) == targets).all())
            out[where[r]][1][j] = (logprob, greedy)
    return out


def _continuation_ids(model, processor, text: str, n_cont: int) -> torch.Tensor:
    ids = processor.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return ids[-n_cont:].to(model.device)


__all__ = ["CACHE_ARG", "loglikelihood", "score_choices", "score_choices_batch"]
