"""``trajvlm serve``: load a model once and answer OpenAI chat completions about videos over HTTP.

    trajvlm serve --model runs/demo/vlm-trajtok --media-root runs/demo/data/test
    trajvlm serve --model runs/stage2/merged --host 0.0.0.0 --port 8000 --max-upload-mb 200 --max-concurrency 4

The web page is at ``/``; the API at ``/v1/chat/completions``, ``/v1/models``, ``/health``. Bad settings (missing model
directory or media root, a port in use) print ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from trajvlm.inference import load_model
from trajvlm.serve.config import ServeConfig

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ServeConfig()
    parser.add_argument("--model", required=True, type=Path, help="model directory (TrajVLM, llava-hf base, LoRA)")
    parser.add_argument("--served-model-name", default=None, help="name clients pass as `model` (default: dir name)")
    parser.add_argument("--host", default=d.host, help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=d.port, help="TCP port")
    parser.add_argument(
        "--media-root",
        type=Path,
        default=None,
        help="folder whose videos file:// URLs may name (default: file URLs refused)",
    )
    parser.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="largest uploaded video")
    parser.add_argument("--max-frames", type=int, default=d.max_frames, help="most frames sampled from a video")
    parser.add_argument(
        "--max-concurrency", type=int, default=d.max_concurrency, help="most requests answered together in one batch"
    )
    parser.add_argument("--max-queue", type=int, default=d.max_queue, help="most requests waiting (then 429)")
    parser.add_argument(
        "--request-timeout", type=float, default=d.request_timeout_s, help="seconds before a request is answered 504"
    )
    parser.add_argument(
        "--default-max-tokens",
        type=int,
        default=d.default_max_tokens,
        help="new tokens per answer when the request gives no max_tokens",
    )
    parser.add_argument("--num-frames", type=int, default=None, help="frames per video (default: the model's saved)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="fp32, bf16, fp16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--max-context", type=int, default=None, help="cap on prompt + answer tokens")
    parser.add_argument(
        "--max-tokens-limit",
        type=int,
        default=d.max_tokens_limit,
        help="most new tokens a request may ask for (max_tokens above it: 400)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=d.read_timeout_s,
        help="seconds a request has to arrive whole (headers and body) before its connection is closed",
    )
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated Host names accepted besides localhost, 127.0.0.1, [::1] and --host ('*': any)",
    )
    parser.add_argument(
        "--allowed-origins",
        default="",
        help="comma-separated browser origins (https://app.example) allowed to call the API cross-origin",
    )


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        model=args.model,
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        media_root=args.media_root,
        max_upload_mb=args.max_upload_mb,
        max_frames=args.max_frames,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        default_max_tokens=args.default_max_tokens,
        device=args.device,
        dtype=args.dtype,
        max_context=args.max_context,
        max_tokens_limit=args.max_tokens_limit,
        read_timeout_s=args.read_timeout,
        allowed_hosts=tuple(h for h in args.allowed_hosts.split(",") if h.strip()),
        allowed_origins=tuple(o for o in args.allowed_origins.split(",") if o.strip()),
    )


def run(args: argparse.Namespace) -> int:
    try:  # fastapi and uvicorn: the optional `serve` extra
        from trajvlm.serve.app import create_app
        from trajvlm.serve.server import bind_socket, make_server
    except ImportError as e:
        print(f"error: {e}; install the server with: pip install 'trajvlm[serve]'", file=sys.stderr)
        return 2
    try:
        cfg = config_from_args(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model_dir = cfg.model
    if model_dir is None or not model_dir.is_dir():
        print(f"error: model directory not found: {model_dir} (--model)", file=sys.stderr)
        return 2
    try:
        sock = bind_socket(cfg.host, cfg.port)  # before the model loads: a taken port fails at once
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        model, processor = load_model(model_dir, device=cfg.device, dtype=cfg.dtype, num_frames=args.num_frames)
    except (FileNotFoundError, ValueError) as e:
        sock.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not _is_loopback(cfg.host):
        logger.warning(
            "listening on %s: anyone who can reach this address can use the model (there is no "
            "authentication); put it behind an authenticating proxy",
            cfg.host,
        )
        if cfg.host in ("0.0.0.0", "::") and not cfg.allowed_hosts:
            logger.warning(
                "requests must name this server in their Host header: add the names clients use with "
                "--allowed-hosts (e.g. --allowed-hosts myhost.lan,192.168.1.20), or '*' for any"
            )
    logger.info(
        "media root: %s; uploads up to %g MiB; at most %d frames per video",
        cfg.media_root or "none (file:// URLs refused)",
        cfg.max_upload_mb,
        cfg.max_frames,
    )
    app = create_app(model, processor, cfg)
    logger.info("web page and API at http://%s:%d/", cfg.host if ":" not in cfg.host else f"[{cfg.host}]", cfg.port)
    server = make_server(app, cfg, log_level="debug" if args.verbose else "info")
    with sock:
        server.run(sockets=[sock])
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
