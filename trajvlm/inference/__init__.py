"""The one generation path of TrajVLM: ``trajvlm chat``, the server and the lmms-eval model all call these.

    from trajvlm.inference import load_model, VideoChat
    model, processor = load_model("runs/stage2/merged", num_frames=32)
    chat = VideoChat(model, processor, video="clip.mp4")
    print(chat.ask("What happens in the video?", max_new_tokens=64).text)

- :mod:`~trajvlm.inference.loading`: :func:`load_model` loads a saved TrajVLM, a llava-hf LLaVA-OneVision base (a
  connector is attached) or a LoRA checkpoint (merged on load with peft), and the processor synced to the model's
  connector.
- :mod:`~trajvlm.inference.prompts`: chat-templated prompts, decoded videos, generation settings, context limits.
- :mod:`~trajvlm.inference.generation`: :func:`generate_batch` answers many independent requests, batched with left
  padding, streamed and stoppable per request.
- :mod:`~trajvlm.inference.scoring`: :func:`loglikelihood` / :func:`score_choices_batch` score continuations
  (multiple-choice evaluation).
- :mod:`~trajvlm.inference.chat`: :class:`VideoChat` keeps a multi-turn conversation about one video (or none).

Layering: this package imports the model (``trajvlm.modeling``, ``trajvlm.processing``) and never
``trajvlm.training``; training imports from here (one way).
"""

from __future__ import annotations

from trajvlm.inference.chat import VideoChat
from trajvlm.inference.generation import Answer, generate_batch
from trajvlm.inference.loading import (
    DTYPES,
    check_tokenizer_checkpoint,
    load_model,
    resolve_device,
    resolve_dtype,
)
from trajvlm.inference.prompts import (
    DEFAULT_MAX_NEW_TOKENS,
    GENERATE_KEYS,
    ContextLengthError,
    Request,
    VideoInput,
    assistant_message,
    build_prompt,
    check_context,
    context_limit,
    cut_at_stops,
    load_frames,
    prepare_inputs,
    split_generation_kwargs,
    user_message,
)
from trajvlm.inference.scoring import CACHE_ARG, loglikelihood, score_choices, score_choices_batch

__all__ = [
    "CACHE_ARG",
    "DEFAULT_MAX_NEW_TOKENS",
    "DTYPES",
    "GENERATE_KEYS",
    "Answer",
    "ContextLengthError",
    "Request",
    "VideoChat",
    "VideoInput",
    "assistant_message",
    "build_prompt",
    "check_context",
    "check_tokenizer_checkpoint",
    "context_limit",
    "cut_at_stops",
    "generate_batch",
    "load_frames",
    "load_model",
    "loglikelihood",
    "prepare_inputs",
    "resolve_device",
    "resolve_dtype",
    "score_choices",
    "score_choices_batch",
    "split_generation_kwargs",
    "user_message",
]
