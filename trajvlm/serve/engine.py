"""The request queue: one worker thread batches waiting requests through ``trajvlm.inference.generate_batch``.

Requests arrive from the event loop already decoded (frames + chat messages + generation settings). The worker takes
the first waiting request, lets more join for ``batch_wait_ms``, and answers up to ``max_concurrency`` of them in one
``generate_batch`` call, the same path as ``trajvlm chat`` and evaluation. Each request gets its events back on its own
asyncio queue: ``("text", piece)`` while the answer is generated, then ``("done", Answer)`` or ``("error", APIError)``.

Admission is counted from the moment a request is accepted (decoding included) until no work for it remains: more
than ``max_concurrency + max_queue`` at once is a 429. A submitted job owns its place: the place is freed when the
worker has finished with it, or at once when it is cancelled before the worker took it. Generation is cancellable:
a stopping criterion asks, after every token, whether the job was cancelled (client gone, request timed out) or the
server is shutting down; that row stops there and the batch goes on for the others. A request that fails on its own
(over-long context) fails alone; if a batch raises for another reason it is retried one request at a time, so only the
culprit gets a 500.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trajvlm.inference import Answer, generate_batch
from trajvlm.serve.config import ServeConfig
from trajvlm.serve.errors import APIError

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One chat completion waiting for (or under) generation."""

    video: torch.Tensor | None  # (T, C, H, W) uint8, or None for a text-only conversation
    messages: list[dict[str, Any]]  # chat messages in the processor's format (video parts as {"type": "video"})
    gen: dict[str, Any]  # generation kwargs for generate_batch (max_new_tokens, temperature, top_p, until)
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False  # set by cancel() on timeout or disconnect: generation stops, results are dropped
    streamed: bool = False  # some answer text was handed out
    finished: bool = False  # "done" or "error" was handed out
    raw: str = ""  # the answer's text as generated, before stop strings cut it
    queued_at: float = field(default_factory=time.perf_counter)
    on_done: Callable[[], None] | None = None  # called once when no work for the job remains (frees its place)
    state: str = "queued"  # queued -> running -> done
    stopped_by_shutdown: bool = False
    stopped_early: bool = False  # its row was stopped because it was cancelled
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emit(self, kind: str, value: Any) -> None:
        """Hand an event to the request's handler (called from the worker thread)."""
        if kind == "text":
            self.streamed = True
            self.raw += value
        self.finished |= kind in ("done", "error")
        if not self.cancelled:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

    def cancel(self) -> None:
        """The client went away or its time is up: generation stops at the next token, nothing more is delivered.

        A job the worker has not taken yet is done at once (its place is freed now); a running one is done when its
        row of the batch has stopped.
        """
        self.cancelled = True
        with self._lock:
            queued = self.state == "queued"
        if queued:
            self.mark_done()

    def take(self) -> bool:
        """The worker starts the job; False when it was cancelled (and done) meanwhile."""
        with self._lock:
            if self.state != "queued":
                return False
            self.state = "running"
            return True

    def mark_done(self) -> None:
        """No work for this job remains; calls ``on_done`` the first time only."""
        with self._lock:
            if self.state == "done":
                return
            self.state = "done"
            callback = self.on_done
        if callback is not None:
            callback()


class Engine:
    """Owns the model on one worker thread; handlers :meth:`submit` jobs and read their events."""

    def __init__(self, model, processor, cfg: ServeConfig) -> None:
        self.model = model
        self.processor = processor
        self.cfg = cfg
        self.lock = threading.Lock()  # held while the model runs (generation, trajectory overlays)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._admitted = 0
        self._running = 0
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.closing = False  # set once shutdown begins: running rows stop, waiting jobs are answered 503
        self.served = 0
        self.failed = 0
        self.cancelled = 0
        self.batches = 0
        self.largest_batch = 0

    # ---------------------------------------------------------------------------------------------- admission

    @property
    def capacity(self) -> int:
        return self.cfg.max_concurrency + self.cfg.max_queue

    def admit(self) -> None:
        """Count one more request in the server, or raise 429 when the queue is full (503 while shutting down)."""
        if self.closing:
            raise APIError(503, "the server is shutting down; retry on another server or later", code="shutting_down")
        with self._count_lock:
            if self._admitted >= self.capacity:
                raise APIError(
                    429,
                    f"the server is busy: {self._admitted} requests are queued or running (limit "
                    f"{self.capacity} = --max-concurrency {self.cfg.max_concurrency} + queue {self.cfg.max_queue}); "
                    "retry later",
                    code="queue_full",
                )
            self._admitted += 1

    def release(self) -> None:
        with self._count_lock:
            self._admitted -= 1

    def stats(self) -> dict[str, int]:
        return {
            "admitted": self._admitted,
            "queued": self._queue.qsize(),
            "running": self._running,
            "capacity": self.capacity,
            "served": self.served,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
        }

    # ---------------------------------------------------------------------------------------------- worker

    def start(self) -> None:
        if self._thread is None:
            self.closing = False
            self._thread = threading.Thread(target=self._work, name="trajvlm-serve-engine", daemon=True)
            self._thread.start()

    def begin_shutdown(self) -> None:
        """Stop running generations at their next token and answer every waiting job 503 (safe in a signal handler)."""
        self.closing = True

    def stop(self, timeout: float = 10.0) -> None:
        self.begin_shutdown()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                logger.warning("the engine worker did not stop within %g s", timeout)
            self._thread = None

    def submit(self, job: Job) -> None:
        """Queue a job; its admission place now belongs to it (freed by :meth:`Job.mark_done`)."""
        job.on_done = self.release
        if self.closing:
            self._refuse(job)
            return
        self._queue.put(job)

    def _refuse(self, job: Job) -> None:
        if job.take():
            job.emit(
                "error",
                APIError(503, "the server is shutting down; the request was not answered", code="shutting_down"),
            )
            job.mark_done()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._drain()
                return
            jobs = [first]
            deadline = time.perf_counter() + self.cfg.batch_wait_ms / 1000
            while len(jobs) < self.cfg.max_concurrency:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(job)
            if self.closing:
                for job in jobs:
                    self._refuse(job)
                continue
            jobs = [j for j in jobs if j.take()]  # cancelled while waiting: done already
            if jobs:
                self._running = len(jobs)
                self.batches += 1
                self.largest_batch = max(self.largest_batch, len(jobs))
                try:
                    self._answer(jobs)
                finally:
                    self._running = 0
                    for job in jobs:
                        job.mark_done()

    def _drain(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._refuse(job)

    def _answer(self, jobs: list[Job]) -> None:
        try:
            with self.lock:
                self._generate(jobs)
            return
        except Exception as e:  # noqa: BLE001 - a batch-level failure must not take the other requests with it
            if len(jobs) == 1:
                logger.exception("generation failed")
                self._fail(jobs[0], f"generation failed: {type(e).__name__}: {e}")
                return
            logger.warning("a batch of %d failed (%s: %s); answering one by one", len(jobs), type(e).__name__, e)
        for job in jobs:
            if job.finished or job.cancelled:
                continue
            if job.streamed:  # part of its answer is out already: a retry would repeat it
                self._fail(job, "generation failed in a batch after the answer had started; retry the request")
            else:
                self._answer([job])

    def _fail(self, job: Job, message: str) -> None:
        self.failed += 1
        job.emit("error", APIError(500, message))

    def _should_stop(self, job: Job) -> bool:
        """Asked after every generated token of ``job``'s row."""
        if self.closing:
            job.stopped_by_shutdown = True
            return True
        if job.cancelled:
            if not job.stopped_early:
                job.stopped_early = True
                self.cancelled += 1
            job.mark_done()  # its row generates nothing more: its place is free
            return True
        return False

    def _generate(self, jobs: list[Job]) -> None:
        requests = [(job.video, job.messages, job.gen) for job in jobs]
        failures: dict[int, str] = {}
        answers: dict[int, Answer] = {}
        generate_batch(
            self.model,
            self.processor,
            requests,
            max_context=self.cfg.max_context,
            failures=failures,
            answers=answers,
            on_text=lambda i, piece: jobs[i].emit("text", piece),
            stop=lambda i: self._should_stop(jobs[i]),
        )
        for i, job in enumerate(jobs):
            if job.cancelled:
                self.cancelled += 0 if job.stopped_early else 1  # (cancelled after its last token)
            elif i in failures:  # an over-long conversation or a prompt the chat template rejects: the client's fault
                self.failed += 1
                job.emit("error", APIError(400, failures[i], code="context_length_exceeded", param="messages"))
            elif job.stopped_by_shutdown:
                self.failed += 1
                job.emit(
                    "error",
                    APIError(503, "the server shut down while answering; retry the request", code="shutting_down"),
                )
            else:
                self.served += 1
                job.emit("done", answers[i])
