"""The OpenAI chat completion request (as vLLM extends it for video) and the response / stream chunk bodies."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trajvlm.inference import Answer, cut_at_stops
from trajvlm.serve.errors import APIError


class VideoURL(BaseModel):
    url: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    video_url: VideoURL | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    """The fields this server reads; other OpenAI fields (``seed``, ``user``, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    media_io_kwargs: dict[str, Any] | None = None

    @classmethod
    def parse(cls, data: Any) -> ChatCompletionRequest:
        """Validate a decoded JSON body; the first problem becomes a 400 naming the field."""
        if not isinstance(data, dict):
            raise APIError(400, f"the request body must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
            raise APIError(400, f"{where}: {err['msg']}{more}", param=where) from e

    def generation_kwargs(self, default_max_tokens: int) -> dict[str, Any]:
        """Settings for ``generate_batch``: max_new_tokens, temperature (0 = greedy), top_p and the stop strings."""
        gen: dict[str, Any] = {"max_new_tokens": self.max_completion_tokens or self.max_tokens or default_max_tokens}
        if self.temperature is not None:
            gen["temperature"] = self.temperature
        if self.top_p is not None:
            gen["top_p"] = self.top_p
        stops = self.stops()
        if stops:
            gen["until"] = stops
        return gen

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop: up to 4 non-empty strings", param="stop")
        return stops

    def chat_messages(self) -> tuple[list[dict[str, Any]], list[str]]:
        """OpenAI messages -> (messages for the processor's chat template, the video URLs in order)."""
        out: list[dict[str, Any]] = []
        videos: list[str] = []
        for m, message in enumerate(self.messages):
            role = "system" if message.role == "developer" else message.role
            parts: list[dict[str, Any]] = []
            content = message.content
            if content is None:
                content = ""
            if isinstance(content, str):
                parts.append({"type": "text", "text": content})
            else:
                for p, part in enumerate(content):
                    where = f"messages.{m}.content.{p}"
                    if part.type == "text":
                        parts.append({"type": "text", "text": part.text or ""})
                    elif part.type == "video_url":
                        if part.video_url is None:
                            raise APIError(
                                400, f'{where}: a video_url part needs {{"video_url": {{"url": ...}}}}', param=where
                            )
                        if role != "user":
                            raise APIError(400, f"{where}: videos go in user messages, not {role}", param=where)
                        videos.append(part.video_url.url)
                        parts.append({"type": "video"})
                    else:
                        raise APIError(
                            400,
                            f"{where}: content parts of type {part.type!r} are not supported; this "
                            "model reads 'text' and 'video_url'",
                            param=where,
                        )
            out.append({"role": role, "content": parts})
        if len(videos) > 1:
            raise APIError(
                400,
                f"{len(videos)} videos in one request; this server answers about one video per "
                "conversation (send it once, in the first user message)",
                param="messages",
            )
        if out[-1]["role"] != "user":
            raise APIError(400, "the last message must come from the user", param="messages")
        return out, videos


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(answer: Answer, num_frames: int | None) -> dict[str, Any]:
    """OpenAI usage; ``prompt_tokens`` counts the visual tokens, ``visual_tokens`` says how many the video became."""
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.new_tokens,
        "total_tokens": answer.prompt_tokens + answer.new_tokens,
        "visual_tokens": answer.visual_tokens,
        "video_frames": num_frames or 0,
    }


def finish_reason(answer: Answer, raw_text: str | None, stops: list[str], max_new_tokens: int) -> str:
    """``stop`` when the answer ended by itself or at a stop string, ``length`` when it used all max_tokens."""
    if raw_text is not None and stops and cut_at_stops(raw_text, stops) != raw_text:
        return "stop"
    return "length" if answer.new_tokens >= max_new_tokens else "stop"


def completion_body(cid: str, model: str, answer: Answer, finish: str, num_frames: int | None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": finish}],
        "usage": usage(answer, num_frames),
    }


def chunk_body(cid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class StopCutter:
    """Turns the raw streamed text into the deltas of the final answer (``cut_at_stops(text, stops).strip()``).

    Text that could still become a stop string, and trailing whitespace, are held back until the next piece decides.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.raw = ""
        self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        cut = cut_at_stops(self.raw, self.stops)
        if len(cut) == len(self.raw):
            hold = max((k for s in self.stops for k in range(len(s) - 1, 0, -1) if cut.endswith(s[:k])), default=0)
            cut = cut[: len(cut) - hold]
        return self._delta(cut.strip())

    def finish(self, final: str) -> str:
        return self._delta(final)

    def _delta(self, safe: str) -> str:
        if not safe.startswith(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta
