"""The chat session: a multi-turn conversation about one video (:class:`VideoChat`), the line-by-line loop of
``trajvlm chat``, and TrajTok's trajectory assignment drawn over the frames (the command and the server share it).

    from trajvlm.inference import load_model, VideoChat
    model, processor = load_model("runs/stage2/merged", num_frames=32)
    chat = VideoChat(model, processor, video="clip.mp4")
    print(chat.ask("What happens in the video?", max_new_tokens=64).text)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch

from trajtok.viz import animate, contact_sheet
from trajvlm.inference.generation import Answer, TimedStreamer, count_new_tokens, generate_tokens
from trajvlm.inference.prompts import (
    DEFAULT_MAX_NEW_TOKENS,
    ContextLengthError,
    VideoInput,
    assistant_message,
    check_context,
    context_limit,
    cut_at_stops,
    load_frames,
    prepare_inputs,
    split_generation_kwargs,
    user_message,
)

COMMANDS_HELP = "commands: /reset (new conversation about the same video), /quit (or end of input)"


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
        streamer = TimedStreamer(self.processor.tokenizer, stream_callback, start)
        out = generate_tokens(self.model, self.processor, prep, gen, streamer=streamer)
        answer = cut_at_stops(self.processor.tokenizer.decode(out[0], skip_special_tokens=True), stops).strip()
        total = time.perf_counter() - start
        self.messages = [*messages, assistant_message(answer)]
        eos = self.model.generation_config.eos_token_id or self.processor.tokenizer.eos_token_id
        return Answer(
            text=answer,
            visual_tokens=prep.visual_tokens[0],
            prompt_tokens=prep.lengths[0],
            new_tokens=count_new_tokens(out[0], eos),
            time_to_first_token_s=streamer.first_token_s if streamer.first_token_s is not None else total,
            total_s=total,
        )


def answer_turn(chat: VideoChat, text: str, gen: dict, out: TextIO) -> None:
    """Ask ``text``, streaming the answer to ``out``, then a line with its visual tokens and timings."""

    def stream(piece: str) -> None:
        out.write(piece)
        out.flush()

    answer = chat.ask(text, stream_callback=stream, **gen)
    out.write("\n")
    print(
        f"[{answer.visual_tokens} visual tokens, {answer.prompt_tokens} prompt tokens; first token after "
        f"{answer.time_to_first_token_s:.2f} s; {answer.new_tokens} new tokens in {answer.total_s:.2f} s]",
        file=out,
    )


def interactive(chat: VideoChat, gen: dict, stdin: TextIO, out: TextIO) -> int:
    """Read questions line by line until ``/quit`` or end of input; over-long turns are reported, not fatal."""
    tty = stdin.isatty()
    print(COMMANDS_HELP, file=out)
    while True:
        if tty:
            out.write("you> ")
            out.flush()
        line = stdin.readline()
        if not line:  # end of input
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            chat.reset()
            print("(conversation reset)", file=out)
            continue
        if text.startswith("/"):
            print(f"unknown command {text!r}; {COMMANDS_HELP}", file=out)
            continue
        try:
            answer_turn(chat, text, gen, out)
        except ContextLengthError as e:
            print(f"error: {e} (/reset starts a new conversation)", file=out)
    return 0


@torch.no_grad()
def trajectory_assignment(model, processor, frames: torch.Tensor) -> torch.Tensor:
    """TrajTok's hard assignment of a video on the tower's patch grid: (T, h, w) long, trajectory k -> id k + 1."""
    pixels = processor.preprocess_videos([frames]).to(device=model.device, dtype=model.dtype)  # (1, T, C, H, W)
    out = model.model.encode_videos(pixels)
    assignment = out.extra.get("assignment")
    if assignment is None:
        raise ValueError(f"the {model.config.connector!r} connector gives no trajectory assignment to draw")
    return assignment[0].long().cpu() + 1  # (T, h, w); 0 stays "no trajectory"


def write_trajectory_overlay(model, processor, frames: torch.Tensor | None, path: Path) -> Path:
    """Draw the trajectories over the sampled frames: ``.png`` -> contact sheet, ``.gif`` / ``.mp4`` -> animation."""
    if frames is None:
        raise ValueError("--viz needs a --video")
    ids = trajectory_assignment(model, processor, frames)
    if path.suffix.lower() == ".png":
        return contact_sheet(frames, ids, path)
    return animate(frames, ids, path, fps=max(1.0, processor.fps or 2.0))


__all__ = [
    "COMMANDS_HELP",
    "VideoChat",
    "answer_turn",
    "interactive",
    "trajectory_assignment",
    "write_trajectory_overlay",
]
