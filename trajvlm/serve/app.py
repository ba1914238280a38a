"""The FastAPI application: OpenAI-compatible chat completions on video, models, health, overlays and the web page.

    from trajvlm.inference import load_model
    from trajvlm.serve import ServeConfig, create_app
    model, processor = load_model("runs/demo/vlm-trajtok")
    app = create_app(model, processor, ServeConfig(model="runs/demo/vlm-trajtok", media_root="videos/"))

Every answer goes through :func:`trajvlm.inference.generate_batch` (see :mod:`trajvlm.serve.engine`). Errors use the
OpenAI shape and status: malformed JSON (nested deeper than 64, lone surrogates) 400, ``max_tokens`` over
``--max-tokens-limit`` 400, unknown model 404, a path outside the media root or a hidden file 403, an oversize body
413 (refused from its Content-Length, or as soon as the bytes read pass the limit, before the rest is read), a POST
that is not ``application/json`` 415, an undecodable video or an image over the pixel limit 422, a full queue 429, a
request past ``request_timeout_s`` 504; anything unexpected is a 500 for that request alone, and the connection stays.

A page on another site must not drive this server through a visitor's browser: the Host header must name this server
(localhost, 127.0.0.1, [::1], ``--host`` or ``--allowed-hosts``; else 421: DNS rebinding), and a request with an
Origin other than the server's own is refused (403) unless ``--allowed-origins`` lists it (then CORS headers allow it).

A request that times out (504) or whose client goes away is cancelled: its generation stops at the next token, and its
admission place is freed only when no work for it remains (decoding included).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from trajtok.viz import animate
from trajvlm.connectors.registry import connectors_with
from trajvlm.inference import context_limit
from trajvlm.inference.chat import trajectory_assignment
from trajvlm.serve.config import ServeConfig
from trajvlm.serve.engine import Engine, Job
from trajvlm.serve.errors import APIError, error_body
from trajvlm.serve.media import list_media, load_video_url, media_file, parse_sampling
from trajvlm.serve.schemas import (
    ChatCompletionRequest,
    StopCutter,
    chunk_body,
    completion_body,
    completion_id,
    finish_reason,
    usage,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
OVERLAY_MAX_SIDE = 256  # overlay animations are drawn at most this many pixels on the longer side
MAX_JSON_DEPTH = 64  # request bodies nested deeper are refused (400)
DISCONNECT_POLL_S = 0.25  # how often a waiting handler checks that its client is still there
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def create_app(model, processor, cfg: ServeConfig) -> FastAPI:
    """The server for a loaded ``(model, processor)`` (from :func:`trajvlm.inference.load_model`)."""

    engine = Engine(model, processor, cfg)
    name = cfg.served_model_name or (cfg.model.name if cfg.model is not None else "trajvlm")
    connector = getattr(model.config, "connector", "pool")
    overlay = model.connector.draws_trajectories  # the connector assigns pixels to trajectories
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="TrajVLM", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.cfg = cfg
    app.state.served_model_name = name
    app.add_middleware(Guard, cfg=cfg)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        if exc.status >= 500:
            logger.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc.errors()[:1])), status_code=400)

    # ------------------------------------------------------------------------------------------------ info

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": name, **engine.stats()}

    def model_card() -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "trajvlm",
            "max_model_len": context_limit(model, cfg.max_context),
            "connector": connector,
            "trajectory_overlay": overlay,
            "max_upload_mb": cfg.max_upload_mb,
            "max_frames": cfg.max_frames,
            "max_tokens_limit": cfg.max_tokens_limit,
            "media_root": cfg.media_root is not None,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model_info(model_id: str) -> dict[str, Any]:
        if model_id != name:
            raise APIError(
                404,
                f"the model {model_id!r} does not exist; this server serves {name!r}",
                code="model_not_found",
                param="model",
            )
        return model_card()

    @app.get("/v1/media")
    async def media() -> dict[str, Any]:
        """Videos under the media root that a client may name with file:// URLs (empty without a root)."""
        return {"object": "list", "data": await run_in_threadpool(list_media, cfg.media_root)}

    @app.get("/v1/media/{name:path}")
    async def media_content(name: str) -> FileResponse:
        """One listed video's bytes (the page's preview), by its name relative to the media root."""
        return FileResponse(await run_in_threadpool(media_file, name, cfg.media_root))

    # ------------------------------------------------------------------------------------------------ chat

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = ChatCompletionRequest.parse(await read_json(request, cfg.max_body_bytes))
        if req.model != name:
            raise APIError(
                404,
                f"the model {req.model!r} does not exist; this server serves {name!r} (GET /v1/models)",
                code="model_not_found",
                param="model",
            )
        asked = req.max_completion_tokens or req.max_tokens
        if asked is not None and asked > cfg.max_tokens_limit:
            field = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            raise APIError(
                400,
                f"{field} {asked} is over this server's limit of {cfg.max_tokens_limit} new tokens per answer "
                "(--max-tokens-limit)",
                param=field,
            )
        messages, urls = req.chat_messages()
        gen = req.generation_kwargs(cfg.default_max_tokens)
        stops = gen.get("until", [])
        sampling = parse_sampling(req.media_io_kwargs, cfg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.request_timeout_s
        engine.admit()
        # work in a thread that the admission place waits for, or "job" once the job owns it
        pending: asyncio.Future[Any] | Literal["job"] | None = None
        try:
            frames = None
            if urls:
                pending = loop.run_in_executor(None, load_video_url, urls[0], processor, cfg, sampling)
                frames = await _wait(request, deadline, pending)
            job = Job(frames, messages, gen, loop)
            num_frames = None if frames is None else int(frames.shape[0])
            engine.submit(job)
            pending = "job"
            cid = completion_id()
            if not req.stream:
                while True:
                    kind, value = await _next(job, deadline, request)
                    if kind == "done":
                        finish = finish_reason(value, job.raw, stops, gen["max_new_tokens"])
                        return JSONResponse(completion_body(cid, name, value, finish, num_frames))
            first = await _next(job, deadline, request)  # errors before the first token keep their HTTP status
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            events = _stream(job, first, deadline, cid, stops, gen["max_new_tokens"], num_frames, include_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        finally:
            if pending != "job":
                _release_after(pending)

    def _release_after(work: asyncio.Future | None) -> None:
        """Free the admission place now, or when ``work`` (a thread the request started) has really ended."""
        if work is None or work.done():
            if work is not None and not work.cancelled():
                work.exception()  # retrieved: no "never retrieved" warning
            engine.release()
            return

        def done(future: asyncio.Future) -> None:
            if not future.cancelled():
                future.exception()
            engine.release()

        work.add_done_callback(done)

    async def _stream(job, first, deadline, cid, stops, max_new_tokens, num_frames, include_usage):
        cutter = StopCutter(stops)
        try:
            yield _sse(chunk_body(cid, name, {"role": "assistant", "content": ""}))
            kind, value = first
            while True:
                if kind == "text":
                    delta = cutter.feed(value)
                    if delta:
                        yield _sse(chunk_body(cid, name, {"content": delta}))
                elif kind == "done":
                    rest = cutter.finish(value.text)
                    if rest:
                        yield _sse(chunk_body(cid, name, {"content": rest}))
                    finish = finish_reason(value, job.raw, stops, max_new_tokens)
                    yield _sse(chunk_body(cid, name, {}, finish))
                    if include_usage:
                        yield _sse({**chunk_body(cid, name, {}), "choices": [], "usage": usage(value, num_frames)})
                    yield "data: [DONE]\n\n"
                    return
                try:
                    kind, value = await _next(job, deadline)
                except APIError as e:  # the status line is sent already: the error travels as an event
                    yield _sse(e.body())
                    yield "data: [DONE]\n\n"
                    return
        finally:
            job.cancel()  # finished (a no-op), or the client went away: generation stops, its place is freed

    async def _next(job: Job, deadline: float, request: Request | None = None) -> tuple[str, Any]:
        getter = asyncio.ensure_future(job.events.get())
        try:
            kind, value = await _wait(request, deadline, getter)
        except BaseException:
            getter.cancel()
            job.cancel()
            raise
        if kind == "error":
            raise value
        return kind, value

    async def _wait(request: Request | None, deadline: float, work: asyncio.Future):
        """``work``'s result; 504 past the deadline, 499 when the client has gone (``work`` itself is not cancelled:
        a thread cannot be, and a job is cancelled by the caller)."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise APIError(
                    504, f"no answer within {cfg.request_timeout_s:g} s (the server's request timeout)", code="timeout"
                )
            done, _ = await asyncio.wait({work}, timeout=min(remaining, DISCONNECT_POLL_S))
            if request is not None and await _gone(request):
                raise APIError(499, "the client closed the connection", code="client_closed")
            if done:
                return work.result()

    async def _gone(request: Request) -> bool:
        """Whether the client has disconnected, asked at most every DISCONNECT_POLL_S (events may come faster)."""
        now = asyncio.get_running_loop().time()
        if now - getattr(request.state, "polled", -math.inf) < DISCONNECT_POLL_S:
            return False
        request.state.polled = now
        return await request.is_disconnected()

    # ------------------------------------------------------------------------------------------------ overlay

    @app.post("/v1/trajectory_overlay")
    async def trajectory_overlay(request: Request) -> dict[str, Any]:
        """TrajTok's trajectories drawn over the sampled frames, as an animated GIF data URL."""
        data = await read_json(request, cfg.max_body_bytes)
        video = data.get("video_url") if isinstance(data, dict) else None
        url = video.get("url") if isinstance(video, dict) else video
        if not isinstance(url, str):
            raise APIError(400, 'expected {"video_url": {"url": ...}, "media_io_kwargs": {...}}', param="video_url")
        if not overlay:
            raise APIError(
                400,
                f"trajectory overlay unavailable: this model uses the {connector!r} connector, which "
                f"forms no trajectories (serve a TrajVLM with the {' or '.join(connectors_with('draws_trajectories'))} "
                "connector)",
                code="overlay_unavailable",
            )
        sampling = parse_sampling(data.get("media_io_kwargs"), cfg)
        engine.admit()
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[Any] | None = None
        try:
            deadline = loop.time() + cfg.request_timeout_s
            pending = loop.run_in_executor(None, load_video_url, url, processor, cfg, sampling)
            frames = await _wait(request, deadline, pending)
            pending = loop.run_in_executor(None, _draw_overlay, engine, frames)
            return await _wait(request, deadline, pending)
        finally:
            _release_after(pending)

    # ------------------------------------------------------------------------------------------------ page

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON: 413 as soon as it is known to pass ``limit`` bytes, 400 when it is not JSON (or
    nested deeper than :data:`MAX_JSON_DEPTH`, or holds a lone surrogate, which no text can encode)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(None, limit)
    except ClientDisconnect:  # the client left, or its body did not arrive within --read-timeout
        raise APIError(499, "the client closed the connection before its body arrived", code="client_closed") from None
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:
        raise APIError(
            400, f"the request body is nested too deeply (limit {MAX_JSON_DEPTH} levels)", code="invalid_json"
        ) from None
    check_json(data)
    return data


def check_json(data: Any) -> None:
    """400 for JSON nested deeper than :data:`MAX_JSON_DEPTH` or a string holding a lone UTF-16 surrogate."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise APIError(
                    400,
                    f"the request body is nested too deeply at {where} (limit {MAX_JSON_DEPTH} levels)",
                    code="invalid_json",
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, f"{where}.{key[:40]!r} (a key)")
                stack.append((item, depth + 1, f"{where}.{key}" if isinstance(key, int) else f"{where}.{key[:40]}"))
        elif isinstance(value, str):
            _check_text(value, where)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(
            400,
            f"{where.removeprefix('body.')}: the text holds a lone UTF-16 surrogate "
            f"{text[e.start]!r} at character {e.start}, which is not valid Unicode text",
            code="invalid_json",
            param=where.removeprefix("body."),
        ) from None


def _too_large(size: int | None, limit: int) -> APIError:
    got = f"{size / 2**20:.1f} MiB" if size is not None else "more"
    return APIError(
        413,
        f"request body is {got}, over this server's limit of {limit / 2**20:.1f} MiB (a base64 "
        "upload of --max-upload-mb plus 1 MiB); send a shorter video or fewer frames",
        code="request_too_large",
    )


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _draw_overlay(engine: Engine, frames: torch.Tensor) -> dict[str, Any]:
    with engine.lock:
        ids = trajectory_assignment(engine.model, engine.processor, frames)  # (T, h, w), 0 = none
    T, _, H, W = frames.shape
    scale = min(1.0, OVERLAY_MAX_SIDE / max(H, W))
    if scale < 1.0:
        size = (max(1, round(H * scale)), max(1, round(W * scale)))
        frames = torch.nn.functional.interpolate(frames.float(), size=size, mode="area").round().to(torch.uint8)
    with tempfile.TemporaryDirectory(prefix="trajvlm-overlay-") as tmp:
        path = animate(frames, ids, Path(tmp) / "overlay.gif", fps=4.0)
        gif = base64.b64encode(path.read_bytes()).decode()
    present = torch.unique(ids)
    return {
        "object": "trajectory_overlay",
        "image": f"data:image/gif;base64,{gif}",
        "frames": int(T),
        "trajectories": int((present > 0).sum()),
        "grid": [int(ids.shape[1]), int(ids.shape[2])],
    }


class Guard:
    """ASGI middleware in front of every route: Host and Origin checks, CORS for allowed origins, JSON-only POSTs,
    and unexpected errors answered 500 here (the connection stays usable) instead of in the server's error page."""

    def __init__(self, app, cfg: ServeConfig) -> None:
        self.app = app
        self.cfg = cfg
        names = {*LOOPBACK_NAMES, _host_name(cfg.host), *(_host_name(h) for h in cfg.allowed_hosts)}
        self.any_host = "*" in cfg.allowed_hosts
        self.hosts = frozenset(names)
        self.origins = frozenset(cfg.allowed_origins)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        host = headers.get("host")
        if not host:
            await _send_error(send, 400, "the request has no Host header", "host_required")
            return
        if not self.any_host and _host_name(host) not in self.hosts:
            await _send_error(
                send,
                421,
                f"Host {host[:100]!r} is not this server's name; it answers to {', '.join(sorted(self.hosts))} "
                "(start it with --allowed-hosts NAME to add one)",
                "host_not_allowed",
            )
            return
        cors: list[tuple[bytes, bytes]] = []
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() != f"{scope.get('scheme', 'http')}://{host}".lower():
            if origin.rstrip("/").lower() not in self.origins and "*" not in self.origins:
                await _send_error(
                    send,
                    403,
                    f"cross-origin requests from {origin[:100]!r} are refused (start the server with "
                    "--allowed-origins ORIGIN to allow one)",
                    "origin_not_allowed",
                )
                return
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
            if method == "OPTIONS" and headers.get("access-control-request-method"):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": cors
                        + [
                            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                            (b"access-control-allow-headers", b"authorization, content-type"),
                            (b"access-control-max-age", b"600"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        if method == "POST" and path.startswith("/v1/"):
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                await _send_error(
                    send,
                    415,
                    f"POST {path} takes a JSON body with Content-Type: application/json, got "
                    f"{kind[:60] or 'no Content-Type'!r}",
                    "unsupported_media_type",
                )
                return
        started = False

        async def send_with_cors(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if cors:
                    message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_cors)
        except Exception as exc:
            if started:  # part of the answer is out: only closing the connection can tell the client
                raise
            logger.exception("unexpected error on %s %s", method, path)
            await _send_error(send, 500, f"internal error: {type(exc).__name__}: {exc}", None, cors)


def _host_name(host: str) -> str:
    """A Host header (or bind address) without its port, lower case; IPv6 addresses in brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    if host.count(":") > 1:  # a bare IPv6 address (a bind address, never a Host header)
        return f"[{host}]"
    return host.split(":", 1)[0]


async def _send_error(send, status: int, message: str, code: str | None, extra=()) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
