"""The HTTP server around the app: uvicorn with this server's limits on slow clients and a prompt shutdown.

    from trajvlm.serve.server import bind_socket, make_server
    sock = bind_socket(cfg.host, cfg.port)          # ``PortInUseError`` when the port is taken
    make_server(app, cfg).run(sockets=[sock])

- Every request must arrive whole (headers and body) within ``--read-timeout`` seconds of its first byte, else the
  connection is answered 408 (when nothing was answered yet) and closed: a client dribbling its headers a byte at a
  time (slowloris) cannot hold a connection for ever. Idle keep-alive connections close after ``keep_alive_s``;
  headers are limited to 64 KiB.
- A request answered before its body was read (a 413) that asked to close the connection (``Connection: close``, as
  urllib sends) is closed lingering: the server ends its side, then reads and drops the rest of the body (at most
  :data:`LINGER_S` seconds or :data:`LINGER_BYTES`), so the client reads its answer instead of a reset. On a
  keep-alive connection uvicorn drops the rest of the body itself.
- SIGINT / SIGTERM first tell the engine to stop (running generations end at their next token, waiting requests are
  answered 503), so open requests finish within a second and the server exits; uvicorn's graceful shutdown waits at
  most :data:`GRACEFUL_SHUTDOWN_S` for the rest.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from trajvlm.serve.config import ServeConfig
from trajvlm.serve.errors import error_body

GRACEFUL_SHUTDOWN_S = 5.0
MAX_HEADER_BYTES = 64 * 1024
LINGER_BYTES = 256 * 1024 * 1024  # most body bytes read and dropped after an early answer (a 413)
LINGER_S = 10.0  # and for at most this long (or --read-timeout, if shorter)


class PortInUseError(OSError):
    """The address is taken by another process."""


class ReadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a per-request read deadline (``read_timeout``, set by :func:`make_server`) and a
    lingering close after an early answer."""

    read_timeout: float = 30.0
    _raw: asyncio.Transport  # the connection's own transport, from connection_made

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._dropped = 0

    # ------------------------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        self._raw = transport
        # duck-typed: the wrapper forwards every other attribute to the transport
        super().connection_made(cast(asyncio.Transport, _LingeringTransport(transport, self)))
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # the rest of a body answered early: dropped, up to a cap
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self._raw.close()
            return
        starts = self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]
        if starts and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of a request: it must be in whole within read_timeout from now
        super().data_received(data)
        if self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete:
            self._disarm()  # the whole request is in (and being answered)

    def eof_received(self) -> None:
        if self._lingering:
            self._raw.close()
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    # ------------------------------------------------------------------------------------ deadlines

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self._raw.is_closing() or self._lingering:
            return
        if self.cycle is None or not self.cycle.response_started:
            message = (
                f"the request did not arrive whole within {self.read_timeout:g} s (the server's --read-timeout); "
                "the connection is closed"
            )
            body = json.dumps(error_body(408, message, code="read_timeout")).encode()
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self._raw.write(head.encode() + body)
        self._raw.close()

    # ------------------------------------------------------------------------------------ lingering close

    def _should_linger(self) -> bool:
        """The answer is complete but the request's body is still arriving (a 413 refused from its length)."""
        return (
            not self._lingering
            and not self._raw.is_closing()
            and self.cycle is not None
            and self.cycle.response_complete
            and self.conn.their_state is h11.SEND_BODY
        )

    def _linger(self) -> None:
        """Send our end-of-stream, then read and drop what the client still sends, and close when it is done."""
        self._lingering = True
        self._disarm()
        try:
            self._raw.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            self._raw.close()
            return
        self._raw.resume_reading()
        self._linger_timer = self.loop.call_later(min(self.read_timeout, LINGER_S), self._raw.close)


class _LingeringTransport:
    """The transport as uvicorn's request cycle sees it: ``close()`` lingers while the request body is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: ReadTimeoutProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._protocol._lingering or self._transport.is_closing()

    def close(self) -> None:
        if self._protocol._should_linger():
            self._protocol._linger()
        elif not self._protocol._lingering:
            self._transport.close()


def make_server(app, cfg: ServeConfig, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app`` (from :func:`trajvlm.serve.app.create_app`) with ``cfg``'s client limits."""
    protocol = type("TrajVLMProtocol", (ReadTimeoutProtocol,), {"read_timeout": cfg.read_timeout_s})
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        http=protocol,
        lifespan="on",
        log_level=log_level,
        timeout_keep_alive=max(1, round(cfg.keep_alive_s)),
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    return Server(config, app.state.engine)


class Server(uvicorn.Server):
    """uvicorn's server that stops the engine's generations as soon as a shutdown is asked for."""

    def __init__(self, config: uvicorn.Config, engine) -> None:
        super().__init__(config)
        self.engine = engine

    def handle_exit(self, sig: int, frame) -> None:
        self.engine.begin_shutdown()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets=None) -> None:
        self.engine.begin_shutdown()  # also when the server is stopped by should_exit, not by a signal
        await super().shutdown(sockets)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound to ``host:port``; :class:`PortInUseError` when another process holds it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise OSError(f"cannot resolve the host {host!r} to listen on ({e.strerror})") from e
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} on {host} is in use") from e
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror})") from e
    sock.set_inheritable(True)
    return sock
