"""The one generation path of TrajVLM: ``trajvlm chat`` and the lmms-eval model both call these functions.

    from trajvlm.inference import load_model, VideoChat
    model, processor = load_model("runs/stage2/merged", num_frames=32)
    chat = VideoChat(model, processor, video="clip.mp4")
    print(chat.ask("What happens in the video?", max_new_tokens=64).text)

- :func:`load_model` loads a saved TrajVLM, a llava-hf LLaVA-OneVision base (a connector is attached) or a LoRA
  checkpoint (merged on load), and the processor synced to the model's connector.
- :class:`VideoChat` keeps a multi-turn conversation about one video (or none) and streams answers.
- :func:`generate_batch` answers many independent requests, batched with left padding (evaluation).
- :func:`loglikelihood` scores continuations given a video and a context (multiple-choice evaluation).

Every prompt is built the same way: the chat template of the processor, one ``<video>`` part in the first user
message, then the model's own video splicing (:meth:`trajvlm.modeling.TrajVLMModel.merge_video_tokens`). The LLM
sequence (text + visual tokens + new tokens) is checked against the context size before generating; an over-long
request raises :class:`ContextLengthError` naming the sizes.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import LlavaOnevisionForConditionalGeneration
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import TextStreamer

logger = logging.getLogger(__name__)

# Video inputs: a path (decoded with the processor's sampling settings) or uint8 frames (T, C, H, W) / (T, H, W, C).
VideoInput = str | Path | torch.Tensor
# One request of generate_batch: (video(s) or None, prompt text or chat messages, generation kwargs).
Request = tuple[VideoInput | Sequence[VideoInput] | None, str | list[dict], dict[str, Any]]

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
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


# the keyword a forward takes its KV cache by: `cache` from transformers 5.24, `past_key_values` before
_FORWARD_PARAMETERS = inspect.signature(LlavaOnevisionForConditionalGeneration.forward).parameters
CACHE_ARG = "cache" if "cache" in _FORWARD_PARAMETERS else "past_key_values"


class ContextLengthError(ValueError):
    """The prompt (text + visual tokens) plus the tokens to generate do not fit the model's context."""


@dataclass
class Answer:
    """One generated answer and what it cost."""

    text: str  # the decoded answer (special tokens removed, cut at the first stop string)
    visual_tokens: int  # visual tokens the LLM read for the video(s) of this prompt (0 without video)
    prompt_tokens: int  # LLM sequence length of the prompt: text + visual tokens
    new_tokens: int  # tokens generated (the end-of-sequence token included when it was reached)
    time_to_first_token_s: float  # seconds from the call until the first new token existed
    total_s: float  # seconds for the whole call (video decoding excluded: it happens once per video)


# ---------------------------------------------------------------------------------------------------------------
# loading


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> the first CUDA GPU if there is one, else the CPU. A CUDA device that does not exist raises
    ValueError (torch itself fails later with an AssertionError or a CUDA error)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r} ({e}); expected cpu, cuda, cuda:N, mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {device!r} requested but {why}; use --device cpu (or leave it unset)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` / ``"auto"`` -> bfloat16 on GPU, float32 on CPU; names like ``bf16``, ``float16`` are accepted."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def load_model(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    connector: str | None = None,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    **kw: Any,
):
    """Load ``(model, processor)`` for inference from a model directory.

    ``path`` is a saved TrajVLM (``model_type: trajvlm``), a llava-hf LLaVA-OneVision / LLaVA-Video checkpoint
    (``connector`` is attached: default ``pool``, i.e. the unmodified model) or a LoRA checkpoint of ``trajvlm
    train`` (merged into the base on load). ``connector`` given for a saved TrajVLM replaces its connector.
    ``num_frames`` / ``fps`` / ``max_frames`` override the processor's saved video sampling. Other ``kw`` go to
    ``TrajVLMForConditionalGeneration.from_llava`` (``trajtok=``, ``token_mode=``, ``video_token_budget=``, ...).

    Raises:
        FileNotFoundError: ``path`` is not a directory with a ``config.json`` (or an adapter checkpoint).
    """
    from trajvlm.modeling import TrajVLMForConditionalGeneration
    from trajvlm.processing import TrajVLMProcessor, check_sampling

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model directory not found: {path} (expected a TrajVLM or llava-hf LLaVA-OneVision checkpoint directory)"
        )
    check_tokenizer_checkpoint(path)
    check_sampling(num_frames, fps, max_frames)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    processor_dir = path
    if (path / "adapter_config.json").is_file():  # a LoRA checkpoint of `trajvlm train`
        from trajvlm.training.config import TrainConfig
        from trajvlm.training.export import load_trained

        model = load_trained(path, merge=True)
        if not (path / "processor_config.json").is_file():
            processor_dir = Path(TrainConfig.from_json(path).base_model)
    elif not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no config.json in {path}: expected a TrajVLM or llava-hf LLaVA-OneVision checkpoint directory"
        )
    else:
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except json.JSONDecodeError as e:
            raise ValueError(f"{path / 'config.json'} is not valid JSON ({e})") from e
        if model_type == "trajvlm" and (connector is None or _saved_connector(path) == connector) and not kw:
            model = TrajVLMForConditionalGeneration.from_pretrained(path, dtype=torch_dtype)
        else:
            chosen = connector or (_saved_connector(path) if model_type == "trajvlm" else "pool")
            model = TrajVLMForConditionalGeneration.from_llava(path, connector=chosen, dtype=torch_dtype, **kw)
            if chosen != "pool" and model_type != "trajvlm":
                logger.warning("the %r connector on %s is newly initialised (untrained)", chosen, path)
    model = model.to(device=device, dtype=torch_dtype).eval()
    processor = TrajVLMProcessor.from_pretrained(processor_dir).for_model(model.config)
    if num_frames is not None or fps is not None:
        processor.num_frames, processor.fps = num_frames, fps
    if max_frames is not None:
        processor.max_frames = max_frames
    processor.tokenizer.padding_side = "left"
    logger.info(
        "loaded %s (connector %r, %s, %s)", path, model.config.connector, device, str(torch_dtype).split(".")[-1]
    )
    return model, processor


def check_tokenizer_checkpoint(path: str | Path) -> None:
    """Raise ValueError when ``path`` is a TrajTok tokenizer checkpoint (or training run) given where a VLM is expected."""
    path = Path(path)
    config = path / "config.json"
    run_dir = (path / "train_config.json").is_file() and (path / "checkpoints").is_dir()
    tokenizer = False
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config} is not valid JSON ({e})") from e
        tokenizer = isinstance(data, dict) and "model_type" not in data and "num_queries" in data
    if tokenizer or run_dir:
        raise ValueError(
            f"{path} is a TrajTok tokenizer checkpoint{' (training run)' if run_dir else ''}, not a vision-language "
            "model: use it with `trajtok tokenize VIDEO --checkpoint PATH`, or as the trajtok connector's weights "
            "(`trajtok: PATH` in a trajvlm training preset); --model / pretrained= expect a TrajVLM or llava-hf "
            "LLaVA-OneVision directory"
        )


def _saved_connector(path: Path) -> str:
    return json.loads((path / "config.json").read_text()).get("connector", "pool")


# ---------------------------------------------------------------------------------------------------------------
# prompts, videos, generation settings


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


# ---------------------------------------------------------------------------------------------------------------
# the generation core


class _BatchStreamer:
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


class _TimedStreamer(TextStreamer):
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


@dataclass
class _Prepared:
    """LLM inputs of a batch after the videos were spliced in."""

    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, L)
    visual_tokens: list[int]  # per row
    num_frames: int | None  # frames per video of the batch (None without video)
    lengths: list[int] = field(default_factory=list)  # attended prompt tokens per row


@torch.no_grad()
def prepare_inputs(model, processor, texts: list[str], videos: list[list[torch.Tensor]]) -> _Prepared:
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
    return _Prepared(embeds, mask, visual, num_frames, [int(n) for n in mask.sum(-1).tolist()])


def _select_rows(prep: _Prepared, rows: list[int]) -> _Prepared:
    """Keep ``rows`` of a left-padded batch and drop the padding columns no remaining row needs."""
    mask = prep.attention_mask[rows]
    used = mask.any(0).nonzero()
    start = int(used[0]) if used.numel() else 0
    return _Prepared(
        prep.inputs_embeds[rows, start:],
        mask[:, start:],
        [prep.visual_tokens[r] for r in rows],
        prep.num_frames,
        [prep.lengths[r] for r in rows],
    )


class _StopRequests(StoppingCriteria):
    """A ``generate`` stopping criterion: row ``r`` (request ``indices[r]``) is done once ``stop(indices[r])``."""

    def __init__(self, indices: list[int], stop: Callable[[int], bool]) -> None:
        self.indices = indices
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = [bool(self.stop(i)) for i in self.indices]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def _generate(
    model, processor, prep: _Prepared, gen: dict[str, Any], streamer=None, stopping_criteria=None
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


def _count_new(row: torch.Tensor, eos: int | list[int] | None) -> int:
    """Generated tokens in one output row, up to and including the first end-of-sequence token."""
    ends = set(eos if isinstance(eos, list) else [eos]) - {None}
    for i, token in enumerate(row.tolist()):
        if token in ends:
            return i + 1
    return int(row.numel())


def check_context(prep: _Prepared, max_new_tokens: int, limit: int) -> list[str | None]:
    """Per row: None when prompt + ``max_new_tokens`` fits ``limit``, else the error message."""
    return [
        _too_long_message(n, v, max_new_tokens, limit, prep.num_frames) if n + max_new_tokens > limit else None
        for n, v in zip(prep.lengths, prep.visual_tokens, strict=True)
    ]


def _load_request(
    processor, video: VideoInput | Sequence[VideoInput] | None, prompt, index: int, failures: dict[int, str] | None
) -> tuple[list[torch.Tensor], str] | None:
    """(decoded frames of each video, chat-templated prompt) of one request. An unreadable video raises, or with a
    ``failures`` dict records ``failures[index] = reason`` and gives None."""
    videos = [] if video is None else list(video) if isinstance(video, (list, tuple)) else [video]
    try:
        frames = [load_frames(processor, v) for v in videos]
        return frames, build_prompt(processor, prompt, len(frames))
    except ValueError as e:  # VideoDecodeError is a ValueError naming the path and the reason
        if failures is None:
            raise
        failures[index] = str(e)
        logger.warning("request %d failed: %s", index, e)
        return None


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
        loaded = _load_request(processor, video, prompt, i, failures)
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
        prep = _select_rows(prep, keep)
    eos = model.generation_config.eos_token_id or processor.tokenizer.eos_token_id
    streamer = None
    if on_text is not None or (answers is not None and int(gen.get("num_beams", 1)) == 1):  # no streamer with beams
        callback = None if on_text is None else lambda row, piece: on_text(chunk[keep[row]][0], piece)
        streamer = _BatchStreamer(processor.tokenizer, eos, callback, start)
    criteria = None if stop is None else [_StopRequests([chunk[r][0] for r in keep], stop)]
    out = _generate(model, processor, prep, gen, streamer=streamer, stopping_criteria=criteria)
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
                new_tokens=_count_new(out[row], eos),
                time_to_first_token_s=first,
                total_s=total,
            )
    return results


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
        videos = [] if video is None else list(video) if isinstance(video, (list, tuple)) else [video]
        frames = [load_frames(processor, v) for v in videos]
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
        loaded = _load_request(processor, video, context, i, failures) if choices else None
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
    problems = [p or check_context(_select_rows(prep, [r]), longest[r], limit)[0] for r, p in enumerate(problems)]
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
    shared = [(row, r, j) for row, r in enumerate(keep) for j, c in enumerate(conts[r]) if c is not None]
    if shared:
        prep = _select_rows(prep, keep) if len(keep) < len(chunk) else prep
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
        rows = torch.tensor([row for row, _, _ in shared], device=model.device)
        cache.batch_select_indices(rows)
        width = max(len(conts[r][j]) for _, r, j in shared)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(shared), width), pad, dtype=torch.long, device=model.device)
        cont_mask = torch.zeros((len(shared), width), dtype=mask.dtype, device=model.device)
        for k, (_, r, j) in enumerate(shared):
            ids[k, : len(conts[r][j])] = torch.tensor(conts[r][j], device=model.device)
            cont_mask[k, : len(conts[r][j])] = 1
        full_mask = torch.cat([mask[rows], cont_mask], dim=1)
        pos = mask[rows].sum(-1, keepdim=True) + torch.arange(width, device=model.device)  # (S, width)
        rest = model(
            input_ids=ids, attention_mask=full_mask, position_ids=pos, use_cache=True, **{CACHE_ARG: cache}
        ).logits  # (S, width, V): row k, column c predicts continuation token c + 1
        logits = torch.cat([first.logits[rows, -1:], rest[:, :-1]], dim=1).float()
        logprobs = torch.log_softmax(logits, dim=-1)  # (S, width, V): column c predicts continuation token c
        where = {r: n for n, r in enumerate(keep)}
        for k, (_, r, j) in enumerate(shared):
            n = len(conts[r][j])
            token_scores = logprobs[k, :n]
            targets = ids[k, :n]
            logprob = float(token_scores.gather(-1, targets[:, None]).sum())
            greedy = bool((token_scores.argmax(-1) == targets).all())
            out[where[r]][1][j] = (logprob, greedy)
    return out  # type: ignore[return-value]


def _continuation_ids(model, processor, text: str, n_cont: int) -> torch.Tensor:
    ids = processor.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return ids[-n_cont:].to(model.device)


# ---------------------------------------------------------------------------------------------------------------
# conversations


class VideoChat:
    """A multi-turn conversation about one video (or none).

    The video is decoded once (with the processor's sampling settings); every turn re-encodes the whole
    conversation, with the video in the first user message, through the same path as :func:`generate_batch`.
    """

    def __init__(
        self,
        model,
        processor,
        *,
        video: VideoInput | None = None,
        system_prompt: str | None = None,
        max_context: int | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.system_prompt = system_prompt
        self.max_context = max_context
        self.frames: torch.Tensor | None = None  # (T, C, H, W) uint8
        self.video_path: str | None = None
        self.messages: list[dict[str, Any]] = []
        if video is not None:
            self.set_video(video)

    def set_video(self, video: VideoInput | None) -> None:
        """Decode ``video`` (raises VideoDecodeError for a bad file) and start a new conversation about it."""
        self.frames = None if video is None else load_frames(self.processor, video)
        self.video_path = str(video) if isinstance(video, (str, Path)) else None
        self.reset()

    def reset(self) -> None:
        """Forget the conversation; the video stays."""
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    @property
    def num_turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    def ask(
        self,
        text: str,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stream_callback: Callable[[str], None] | None = None,
        **gen_kwargs: Any,
    ) -> Answer:
        """Answer ``text`` in the context of the conversation so far; the answer is appended to it.

        ``stream_callback`` receives the answer in pieces as they are generated. ``gen_kwargs``: ``do_sample``,
        ``temperature``, ``top_p``, ... Raises :class:`ContextLengthError` (the conversation is left unchanged).
        """
        start = time.perf_counter()
        first = not any(m["role"] == "user" for m in self.messages)
        videos = [self.frames] if (first and self.frames is not None) else []
        message = user_message(text, len(videos))
        messages = [*self.messages, message]
        gen, stops = split_generation_kwargs({**gen_kwargs, "max_new_tokens": max_new_tokens})
        all_videos = [self.frames] if self.frames is not None else []
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        prep = prepare_inputs(self.model, self.processor, [prompt], [all_videos])
        problem = check_context(prep, gen["max_new_tokens"], context_limit(self.model, self.max_context))[0]
        if problem is not None:
            raise ContextLengthError(problem)
        streamer = _TimedStreamer(self.processor.tokenizer, stream_callback, start)
        out = _generate(self.model, self.processor, prep, gen, streamer=streamer)
        answer = cut_at_stops(self.processor.tokenizer.decode(out[0], skip_special_tokens=True), stops).strip()
        total = time.perf_counter() - start
        self.messages = [*messages, assistant_message(answer)]
        eos = self.model.generation_config.eos_token_id or self.processor.tokenizer.eos_token_id
        return Answer(
            text=answer,
            visual_tokens=prep.visual_tokens[0],
            prompt_tokens=prep.lengths[0],
            new_tokens=_count_new(out[0], eos),
            time_to_first_token_s=streamer.first_token_s if streamer.first_token_s is not None else total,
            total_s=total,
        )


__all__ = [
    "Answer",
    "ContextLengthError",
    "VideoChat",
    "build_prompt",
    "context_limit",
    "cut_at_stops",
    "generate_batch",
    "load_frames",
    "load_model",
    "loglikelihood",
    "prepare_inputs",
    "score_choices",
    "score_choices_batch",
    "split_generation_kwargs",
]
