"""The FastAPI application: OpenAI-compatible chat completions on video, models, health, overlays and the web page.

    from trajvlm.inference import load_model
    from trajvlm.serve import ServeConfig, create_app
    model, processor = load_model("runs/demo/vlm-trajtok")
    app = create_app(model, processor, ServeConfig(model="runs/demo/vlm-trajtok", media_root="videos/"))

Every answer goes through :func:`trajvlm.inference.generate_batch` (see :mod:`trajvlm.serve.engine`). Errors use the
OpenAI shape and status: malformed JSON 400, unknown model 404, a path outside the media root 403, an oversize body
413 (refused from its Content-Length, or as soon as the bytes read pass the limit, before the rest is read), an
undecodable video 422, a full queue 429, a request past ``request_timeout_s`` 504; anything unexpected is a 500 for
that request alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from trajvlm.serve.config import ServeConfig
from trajvlm.serve.engine import Engine, Job
from trajvlm.serve.errors import APIError, error_body
from trajvlm.serve.media import list_media, load_video_url, parse_sampling
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


def create_app(model, processor, cfg: ServeConfig) -> FastAPI:
    """The server for a loaded ``(model, processor)`` (from :func:`trajvlm.inference.load_model`)."""
    from trajvlm.inference import context_limit

    engine = Engine(model, processor, cfg)
    name = cfg.served_model_name or (cfg.model.name if cfg.model is not None else "trajvlm")
    connector = getattr(model.config, "connector", "pool")
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
    app.state.served_model_name = name

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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}: {exc}"), status_code=500)

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
            "trajectory_overlay": connector == "trajtok",
            "max_upload_mb": cfg.max_upload_mb,
            "max_frames": cfg.max_frames,
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
        messages, urls = req.chat_messages()
        gen = req.generation_kwargs(cfg.default_max_tokens)
        stops = gen.get("until", [])
        sampling = parse_sampling(req.media_io_kwargs, cfg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.request_timeout_s
        engine.admit()
        release = True
        try:
            frames = None
            if urls:
                frames = await _until(deadline, run_in_threadpool(load_video_url, urls[0], processor, cfg, sampling))
            job = Job(frames, messages, gen, loop)
            num_frames = None if frames is None else int(frames.shape[0])
            engine.submit(job)
            cid = completion_id()
            if not req.stream:
                while True:
                    kind, value = await _next(job, deadline)
                    if kind == "done":
                        finish = finish_reason(value, job.raw, stops, gen["max_new_tokens"])
                        return JSONResponse(completion_body(cid, name, value, finish, num_frames))
            first = await _next(job, deadline)  # errors before the first token keep their HTTP status
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            release = False
            events = _stream(job, first, deadline, cid, stops, gen["max_new_tokens"], num_frames, include_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        finally:
            if release:
                engine.release()

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
            job.cancelled = True  # finished, or the client went away: nothing more is delivered
            engine.release()

    async def _next(job: Job, deadline: float) -> tuple[str, Any]:
        kind, value = await _until(deadline, job.events.get(), job)
        if kind == "error":
            raise value
        return kind, value

    async def _until(deadline: float, awaitable, job: Job | None = None):
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.0, remaining))
        except TimeoutError:
            if job is not None:
                job.cancelled = True
            raise APIError(
                504, f"no answer within {cfg.request_timeout_s:g} s (the server's request timeout)", code="timeout"
            ) from None

    # ------------------------------------------------------------------------------------------------ overlay

    @app.post("/v1/trajectory_overlay")
    async def trajectory_overlay(request: Request) -> dict[str, Any]:
        """TrajTok's trajectories drawn over the sampled frames, as an animated GIF data URL."""
        data = await read_json(request, cfg.max_body_bytes)
        video = data.get("video_url") if isinstance(data, dict) else None
        url = video.get("url") if isinstance(video, dict) else video
        if not isinstance(url, str):
            raise APIError(400, 'expected {"video_url": {"url": ...}, "media_io_kwargs": {...}}', param="video_url")
        if connector != "trajtok":
            raise APIError(
                400,
                f"trajectory overlay unavailable: this model uses the {connector!r} connector, which "
                "forms no trajectories (serve a TrajVLM with the trajtok connector)",
                code="overlay_unavailable",
            )
        sampling = parse_sampling(data.get("media_io_kwargs"), cfg)
        engine.admit()
        try:
            deadline = asyncio.get_running_loop().time() + cfg.request_timeout_s
            frames = await _until(deadline, run_in_threadpool(load_video_url, url, processor, cfg, sampling))
            return await _until(deadline, run_in_threadpool(_draw_overlay, engine, frames))
        finally:
            engine.release()

    # ------------------------------------------------------------------------------------------------ page

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON: 413 as soon as it is known to pass ``limit`` bytes, 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(None, limit)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None


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
    from trajtok.viz import animate
    from trajvlm.chat import trajectory_assignment

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
