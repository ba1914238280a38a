"""Settings of ``trajvlm serve``: one dataclass, validated, filled from the command line or in code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeConfig:
    """What the server loads, where it listens and what it accepts."""

    model: Path | None = None
    """Model directory (a saved TrajVLM, a llava-hf LLaVA-OneVision base or a LoRA checkpoint)."""
    served_model_name: str | None = None
    """Name clients pass as ``model``; default: the model directory's name."""
    host: str = "127.0.0.1"
    """Bind address; the default answers this machine only (``0.0.0.0`` exposes the server to the network)."""
    port: int = 8000
    """TCP port."""
    media_root: Path | None = None
    """Only videos under this folder may be named by ``file://`` URLs; ``None`` refuses every file URL."""
    max_upload_mb: float = 64.0
    """Largest uploaded video (decoded bytes of a ``data:`` URL); bigger request bodies are refused with 413."""
    max_frames: int = 64
    """Most frames sampled from one video, whatever the request asks."""
    max_concurrency: int = 8
    """Most requests answered together (one batched ``generate`` call)."""
    max_queue: int = 64
    """Most requests waiting beyond those being answered; one more is refused with 429."""
    request_timeout_s: float = 600.0
    """A request not answered after this many seconds is answered 504 (its result is dropped)."""
    default_max_tokens: int = 256
    """New tokens per answer when a request gives no ``max_tokens``."""
    max_tokens_limit: int = 1024
    """Most new tokens one request may ask for (``max_tokens`` above it is a 400)."""
    read_timeout_s: float = 30.0
    """A request whose headers and body have not all arrived this many seconds after its first byte is closed."""
    keep_alive_s: float = 5.0
    """An idle keep-alive connection is closed after this many seconds."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header names accepted besides localhost, 127.0.0.1, [::1] and ``host`` (``*``: any; DNS rebinding)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins (``https://app.example``) other than the server's own that may call the API (CORS)."""
    batch_wait_ms: float = 5.0
    """How long a batch waits for more requests to join once the first arrived."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1`` ... (default: CUDA when available)."""
    dtype: str | None = None
    """``fp32``, ``bf16``, ``fp16`` (default: bf16 on GPU, fp32 on CPU)."""
    max_context: int | None = None
    """Cap on prompt + answer tokens (default: the LLM's context)."""

    def __post_init__(self) -> None:
        if self.model is not None:
            self.model = Path(self.model)
        if self.media_root is not None:
            root = Path(self.media_root).expanduser()
            if not root.is_dir():
                raise FileNotFoundError(f"media root is not a directory: {root} (--media-root)")
            self.media_root = root.resolve()
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        checks = {
            "max_upload_mb": self.max_upload_mb > 0 and math.isfinite(self.max_upload_mb),
            "max_frames": self.max_frames >= 1,
            "max_concurrency": self.max_concurrency >= 1,
            "max_queue": self.max_queue >= 0,
            "request_timeout_s": self.request_timeout_s > 0,
            "default_max_tokens": self.default_max_tokens >= 1,
            "max_tokens_limit": self.max_tokens_limit >= 1,
            "read_timeout_s": self.read_timeout_s > 0,
            "keep_alive_s": self.keep_alive_s > 0,
            "batch_wait_ms": self.batch_wait_ms >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"{name} must be positive (max_queue and batch_wait_ms: >= 0), got {getattr(self, name)}"
                )
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"default_max_tokens {self.default_max_tokens} is over max_tokens_limit {self.max_tokens_limit} "
                "(--default-max-tokens, --max-tokens-limit)"
            )
        self.allowed_hosts = tuple(h.strip().lower() for h in self.allowed_hosts if h.strip())
        self.allowed_origins = tuple(o.strip().rstrip("/").lower() for o in self.allowed_origins if o.strip())
        for origin in self.allowed_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(
                    f"allowed origin {origin!r} must look like http(s)://host[:port], or be * (--allowed-origins)"
                )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: a base64 upload of ``max_upload_mb`` (4/3 of it) plus 1 MiB of JSON around it."""
        return self.max_upload_bytes * 4 // 3 + 1024 * 1024
