"""The lmms-eval model ``trajvlm``: TrajVLM through the same inference path as ``trajvlm chat``.

    python -m lmms_eval --model trajvlm \
        --model_args pretrained=runs/stage2/merged,num_frames=32,batch_size=4 \
        --tasks trajworld --include_path eval/tasks --output_path runs/eval --log_samples

Registered through the ``lmms_eval.models`` entry point (``trajvlm.integrations.lmms_eval_manifest:MANIFEST``), so a
plain ``pip install`` of trajvlm makes ``--model trajvlm`` available.

model_args: ``pretrained`` (model directory: TrajVLM, llava-hf base, LoRA checkpoint), ``connector`` (for a llava-hf
base: ``pool`` (default) or ``trajtok``...), ``num_frames`` / ``fps`` / ``max_frames`` (video sampling; default: the
processor's saved settings), ``batch_size``, ``device``, ``dtype`` (``bf16``, ``fp16``, ``fp32``), ``max_context``
(cap on prompt + answer tokens), ``system_prompt``, ``failures_path`` (where ``failed_samples.jsonl`` goes; default:
the run's ``--output_path``), ``blind`` (``true``: the questions without their videos, a text-only control).

Bad ``model_args`` (an unknown key, ``num_frames=-1`` or ``abc``, ``batch_size=0``, a missing or corrupt
``pretrained``, an unknown device) end the run with one line ``error: trajvlm model_args ...: <reason>`` on stderr
and exit status 2 (``--verbosity DEBUG`` adds the traceback). lmms-eval's own ``cli_evaluate`` catches every
exception a run raises, prints it and exits 0, so scripts could not tell a failed run from a finished one: the
model therefore leaves through ``SystemExit(2)`` from :meth:`TrajVLMLmms.create_from_arg_string`, which lmms-eval
does not catch. Built directly, ``TrajVLMLmms(...)`` raises the ValueError / FileNotFoundError itself.

A sample whose video is missing or unreadable, or whose prompt does not fit the context, does not stop the run: it
is answered with :data:`~trajvlm.integrations.lmms_eval_tasks.FAILED_ANSWER` (log-likelihood ``-inf``), logged
with the reason, and written to ``failed_samples.jsonl`` (one file per run: an earlier run's file in the same place
is replaced); the project's tasks score it as wrong and count it. Settings that would fail every sample
(``num_frames=0``, a missing model directory, a CUDA device on a machine without one) raise when the model loads.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lmms_eval import utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from trajtok.checks import check_frame_count, check_rate, reading_weights
from trajtok.cli import USER_ERRORS, error_message, is_environment_error
from trajvlm.inference import (
    generate_batch,
    load_frames,
    load_model,
    score_choices_batch,
    user_message,
)
from trajvlm.integrations.lmms_eval_tasks import FAILED_ANSWER

logger = logging.getLogger(__name__)

FAILURES_FILE = "failed_samples.jsonl"


def output_path_from_argv(argv: Sequence[str] | None = None) -> Path | None:
    """The ``--output_path`` of the lmms-eval command line, if any (lmms-eval does not pass it to models)."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == "--output_path" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--output_path="):
            return Path(arg.split("=", 1)[1])
    return None


def failures_file(failures_path: str | None, argv: Sequence[str] | None = None) -> Path | None:
    """Where failed samples are recorded: ``failures_path`` (a .jsonl file or a folder), else next to the output."""
    if failures_path:
        path = Path(failures_path)
        return path if path.suffix == ".jsonl" else path / FAILURES_FILE
    out = output_path_from_argv(argv)
    if out is None:
        return None
    return (out.parent if out.suffix in (".json", ".jsonl") else out) / FAILURES_FILE


def _as_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"model_args {name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_args {name} must be an integer, got {value!r}") from None


def _as_positive_int(name: str, value: Any) -> int | None:
    number = _as_int(name, value)
    if number is not None and number < 1:
        raise ValueError(f"model_args {name} must be a positive integer, got {value!r}")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("", "0", "false", "no"):
        return False
    raise ValueError(f"model_args {name} must be true or false, got {value!r}")


def _as_float(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_args {name} must be a number, got {value!r}") from None


class TrajVLMLmms(lmms):
    """lmms-eval model: ``generate_until`` (batched), ``generate_until_multi_round`` and ``loglikelihood``."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        connector: str | None = None,
        num_frames: int | str | None = None,
        fps: float | str | None = None,
        max_frames: int | str | None = None,
        batch_size: int | str | None = 1,
        device: str | None = None,
        dtype: str | None = None,
        max_context: int | str | None = None,
        system_prompt: str | None = None,
        failures_path: str | None = None,
        max_batch_size: int | str | None = None,
        blind: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(
                f"unknown model_args for trajvlm: {sorted(kwargs)}; valid: pretrained, connector, num_frames, fps, "
                "max_frames, batch_size, device, dtype, max_context, system_prompt, failures_path, blind"
            )
        if not pretrained:
            raise ValueError(
                "model_args pretrained=PATH is required: a TrajVLM, llava-hf base or LoRA checkpoint folder"
            )
        if batch_size == "auto" or (isinstance(batch_size, str) and batch_size.startswith("auto")):
            logger.info("batch_size=auto is not supported by trajvlm; using 1")
            batch_size = 1
        self._batch_size = _as_positive_int("batch_size", batch_size) or 1  # unset (None / "") -> 1; 0 is refused
        self.max_context = _as_positive_int("max_context", max_context)
        num_frames_, max_frames_ = _as_int("num_frames", num_frames), _as_int("max_frames", max_frames)
        check_frame_count("model_args num_frames", num_frames_)
        check_frame_count("model_args max_frames", max_frames_)
        fps_ = _as_float("fps", fps)
        check_rate("model_args fps", fps_)
        # blind=true: every question without its video (the text-only control: what the questions alone give away)
        self.blind = _as_bool("blind", blind)
        self.system_prompt = self._resolve_system_prompt(system_prompt) if system_prompt else None
        with reading_weights(pretrained, "model_args pretrained"):
            self.model, self.processor = load_model(
                pretrained,
                device=_distributed_device(device),
                dtype=dtype,
                connector=connector,
                num_frames=num_frames_,
                fps=fps_,
                max_frames=max_frames_,
            )
        self.failures_path = failures_file(failures_path)
        if self.failures_path is not None and self.failures_path.is_file() and self.rank == 0:
            # one file per run: rows of an earlier run in the same output folder would be counted as this run's
            logger.info("replacing the failed samples of an earlier run: %s", self.failures_path)
            self.failures_path.unlink()
        self.num_failed = 0
        self._frame_cache: tuple[str, Any] | None = None

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """model_args win over the CLI's ``--batch_size`` / ``--device`` (lmms-eval passes both, which would clash).

        Bad settings leave through ``SystemExit(2)`` after one ``error:`` line on stderr: lmms-eval catches any
        exception of a run and exits 0 (see the module docstring)."""
        try:
            try:
                args = utils.simple_parse_args_string(arg_string)
            except ValueError as e:
                raise ValueError(f"not a list of key=value pairs ({e})") from e
            extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in args}
            return cls(**args, **extra)
        except Exception as e:
            if not (isinstance(e, USER_ERRORS) or is_environment_error(e)):
                raise
            if os.environ.get("VERBOSITY", "").upper() == "DEBUG":  # lmms-eval's --verbosity DEBUG
                traceback.print_exception(e)
            message = error_message(e).removeprefix("model_args ")
            print(f"error: trajvlm model_args {arg_string!r}: {message}", file=sys.stderr)
            raise SystemExit(2) from e

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def device(self):
        return self.model.device

    # -----------------------------------------------------------------------------------------------------------
    # failures

    def record_failure(self, request_type: str, task: str, split: str, doc_id: int, visuals: Any, reason: str) -> None:
        """Log a failed sample and append it to ``failed_samples.jsonl`` (when a path is known)."""
        self.num_failed += 1
        logger.warning("%s doc %s failed: %s", task, doc_id, reason)
        if self.failures_path is None:
            return
        row = {
            "task": task,
            "split": split,
            "doc_id": doc_id,
            "request_type": request_type,
            "visuals": [str(v) for v in visuals] if isinstance(visuals, (list, tuple)) else str(visuals),
            "reason": reason,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.failures_path.parent.mkdir(parents=True, exist_ok=True)
        with self.failures_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def _visuals(self, doc_to_visual: Callable, task: str, split: str, doc_id: int) -> list[Any]:
        """The videos of a document: paths (or frame tensors); ValueError for anything else (images, ...)."""
        if doc_to_visual is None:
            return []
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        flat: list[Any] = []
        for v in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
            if v is None:
                continue
            if isinstance(v, (list, tuple)):
                flat.extend(v)
            elif isinstance(v, dict) and ("path" in v or "url" in v):
                flat.append(v.get("path") or v.get("url"))
            else:
                flat.append(v)
        for v in flat:
            if not isinstance(v, (str, Path)) and not hasattr(v, "shape"):
                raise ValueError(f"trajvlm reads videos (file paths); this task gives a {type(v).__name__}")
        return flat

    def _doc_visuals(self, doc_to_visual, task, split, doc_id) -> tuple[list[Any] | None, str | None]:
        """(videos, None) or (None, reason) when the task's doc_to_visual itself fails; no videos when blind."""
        if self.blind:
            return [], None
        try:
            return self._visuals(doc_to_visual, task, split, doc_id), None
        except (OSError, ValueError, KeyError, TypeError) as e:
            return None, f"doc_to_visual failed: {type(e).__name__}: {e}"

    def _messages(self, context: str, num_videos: int) -> str | list[dict]:
        """The user turn: plain text (build_prompt adds the videos), or a message list with a system prompt."""
        if not self.system_prompt:
            return context
        return [{"role": "system", "content": self.system_prompt}, user_message(context, num_videos)]

    # -----------------------------------------------------------------------------------------------------------
    # lmms-eval API

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Batched generation; each request's args: (context, gen_kwargs, doc_to_visual, doc_id, task, split)."""
        results: list[str] = [FAILED_ANSWER] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: json.dumps(requests[i].args[1], sort_keys=True, default=str))
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="trajvlm generate")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch, where = [], []
            for i in chunk:
                context, gen_kwargs, doc_to_visual, doc_id, task, split = requests[i].args
                videos, problem = self._doc_visuals(doc_to_visual, task, split, doc_id)
                if problem is not None:
                    self.record_failure("generate_until", task, split, doc_id, [], problem)
                    continue
                assert videos is not None  # (videos, None) or (None, problem)
                batch.append((videos or None, self._messages(context, len(videos)), dict(gen_kwargs or {})))
                where.append(i)
            failures: dict[int, str] = {}
            answers = generate_batch(
                self.model,
                self.processor,
                batch,
                batch_size=self.batch_size,
                max_context=self.max_context,
                failures=failures,
            )
            for k, i in enumerate(where):
                _, _, _, doc_id, task, split = requests[i].args
                if k in failures:
                    self.record_failure("generate_until", task, split, doc_id, batch[k][0] or [], failures[k])
                else:
                    results[i] = answers[k]
                    self.cache_hook.add_partial(
                        "generate_until", (requests[i].args[0], requests[i].args[1]), answers[k]
                    )
            bar.update(len(chunk))
        bar.close()
        self._log_failures()
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """Multi-round tasks: args (context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split).

        After round r the task's ``doc_to_text(doc, previous_output=..., round_idx=r+1, previous_round_info=...)``
        returns (visuals, context, terminal, round results, round info); each round is generated like
        ``generate_until``. A failure ends that sample's rounds with :data:`FAILED_ANSWER`.
        """
        results: list[list[str]] = []
        for request in tqdm(requests, disable=self.rank != 0, desc="trajvlm multi-round"):
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            videos, problem = self._doc_visuals(doc_to_visual, task, split, doc_id)
            rounds: list[str] = []
            info = None
            round_idx = 0
            while True:
                if round_idx > 0:
                    visuals, context, terminal, _, info = doc_to_text(
                        doc, previous_output=list(rounds), round_idx=round_idx, previous_round_info=info
                    )
                    if terminal:
                        break
                    if visuals is not None:
                        videos = [v for v in (visuals if isinstance(visuals, (list, tuple)) else [visuals]) if v]
                if problem is None:
                    failures: dict[int, str] = {}
                    req = (videos or None, self._messages(context, len(videos or [])), dict(gen_kwargs or {}))
                    answer = generate_batch(
                        self.model, self.processor, [req], max_context=self.max_context, failures=failures
                    )[0]
                    problem = failures.get(0)
                if problem is not None:
                    self.record_failure("generate_until_multi_round", task, split, doc_id, videos or [], problem)
                    rounds.append(FAILED_ANSWER)
                    break
                rounds.append(answer)
                round_idx += 1
            results.append(rounds)
        self._log_failures()
        return results

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(log-likelihood of the continuation, is greedy); args (context, continuation, doc_to_visual, doc_id,
        task, split). The requests of one question (its choices: same document and context) are scored together,
        ``batch_size`` questions per forward: each prompt with its video runs once and its KV cache serves every
        choice (:func:`score_choices_batch`)."""
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            context, _, _, doc_id, task, split = request.args
            groups.setdefault((task, split, doc_id, str(context)), []).append(i)
        questions = list(groups.values())
        bar = tqdm(total=len(questions), disable=self.rank != 0, desc="trajvlm loglikelihood")
        for start in range(0, len(questions), self.batch_size):
            batch, where = [], []
            for indices in questions[start : start + self.batch_size]:
                context, _, doc_to_visual, doc_id, task, split = requests[indices[0]].args
                continuations = []
                for i in indices:
                    continuation = requests[i].args[1]
                    if callable(continuation):
                        continuation = continuation(self.task_dict[task][split][doc_id])
                    continuations.append(str(continuation))
                videos, problem = self._doc_visuals(doc_to_visual, task, split, doc_id)
                if problem is None:
                    assert videos is not None  # (videos, None) or (None, problem)
                    try:
                        frames = [self._frames(v) for v in videos]
                    except ValueError as e:  # VideoDecodeError names the file and the reason
                        problem = str(e)
                if problem is not None:
                    self._fail_question(requests, indices, videos, problem, results)
                    continue
                batch.append((frames or None, self._messages(context, len(frames)), continuations))
                where.append((indices, videos))
            failures: dict[int, str] = {}
            scores = score_choices_batch(
                self.model, self.processor, batch, max_context=self.max_context, failures=failures
            )
            for k, (indices, videos) in enumerate(where):
                if k in failures:
                    self._fail_question(requests, indices, videos, failures[k], results)
                    continue
                for i, score in zip(indices, scores[k], strict=True):
                    results[i] = score
            bar.update(min(self.batch_size, len(questions) - start))
        bar.close()
        self._log_failures()
        return results  # type: ignore[return-value]  # every request was scored or failed above

    def _fail_question(self, requests, indices: list[int], videos, problem: str, results: list) -> None:
        """Record a question that could not be scored; its choices all get -inf."""
        _, _, _, doc_id, task, split = requests[indices[0]].args
        self.record_failure("loglikelihood", task, split, doc_id, videos or [], problem)
        for i in indices:
            results[i] = (float("-inf"), False)

    def _frames(self, video: Any):
        """Decoded frames of ``video``; the last decoded path is kept for the next request."""
        if not isinstance(video, (str, Path)):
            return load_frames(self.processor, video)
        key = str(video)
        if self._frame_cache is None or self._frame_cache[0] != key:
            self._frame_cache = (key, load_frames(self.processor, video))
        return self._frame_cache[1]

    def _log_failures(self) -> None:
        if self.num_failed:
            where = f"; see {self.failures_path}" if self.failures_path else ""
            logger.warning("%d samples failed so far%s", self.num_failed, where)


def _distributed_device(device: str | None) -> str | None:
    """Under ``accelerate launch`` / ``torchrun`` each process takes the GPU of its LOCAL_RANK."""

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available() and device in (None, "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


__all__ = ["FAILURES_FILE", "TrajVLMLmms", "failures_file", "output_path_from_argv"]
