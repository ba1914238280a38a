"""``trajvlm chat``: ask a TrajVLM model about a video, interactively or one-shot.

    trajvlm chat --model runs/stage2/merged --video clip.mp4                        # multi-turn, from stdin
    trajvlm chat --model runs/stage2/merged --video clip.mp4 --prompt "What happens?" --max-new-tokens 64
    trajvlm chat --model runs/stage2/merged --video clip.mp4 --viz clip_trajectories.gif --prompt "Describe it."

Interactive commands: ``/reset`` (forget the conversation, keep the video), ``/quit``; end of input also ends.
Answers stream as they are generated; after each one a line tells the visual token count and the time to the
first token. Bad input (missing model directory, missing or corrupt video, over-long context) prints the reason
and exits with status 2. ``--viz`` writes TrajTok's trajectory assignment of the video as an overlay (``.gif`` /
``.mp4`` animation or ``.png`` contact sheet); it needs the ``trajtok`` connector.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from trajtok.checks import check_frame_count, missing_reason, reading_weights
from trajtok.io.video import is_image_file, probe_video
from trajvlm.connectors.registry import connectors_with
from trajvlm.inference.chat import VideoChat, answer_turn, interactive, write_trajectory_overlay
from trajvlm.inference.loading import load_model
from trajvlm.inference.prompts import ContextLengthError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="model directory (TrajVLM, llava-hf base, LoRA)")
    parser.add_argument("--video", type=Path, default=None, help="video file or folder of frames (omit: text only)")
    parser.add_argument("--prompt", default=None, help="ask this once and exit (default: interactive from stdin)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens per answer")
    parser.add_argument("--num-frames", type=int, default=None, help="frames sampled from the video (default: saved)")
    parser.add_argument("--fps", type=float, default=None, help="sample frames at this rate instead of --num-frames")
    parser.add_argument("--max-frames", type=int, default=None, help="upper bound on sampled frames")
    parser.add_argument("--viz", type=Path, default=None, help="write the trajectory overlay (.gif, .mp4 or .png)")
    parser.add_argument("--connector", default=None, help="connector for a llava-hf base (default: pool / saved)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="fp32, bf16, fp16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--max-context", type=int, default=None, help="cap on prompt + answer tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    parser.add_argument("--system", default=None, help="system prompt")


def check_arguments(args: argparse.Namespace) -> None:
    """The flags that need no model: checked before it loads, each error naming its flag and value."""
    check_frame_count("--num-frames (num_frames)", args.num_frames)
    check_frame_count("--max-frames (max_frames)", args.max_frames)
    if not (math.isfinite(args.temperature) and args.temperature >= 0):  # torch refuses it only mid-generation
        raise ValueError(f"--temperature must be 0 (greedy) or a positive finite number, got {args.temperature}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    if args.max_context is not None and args.max_context < 1:
        raise ValueError(f"--max-context must be a positive integer, got {args.max_context}")
    if args.viz is not None and args.viz.suffix.lower() not in (".png", ".gif", ".mp4"):
        raise ValueError(f"--viz {args.viz}: unknown overlay format; use .png, .gif or .mp4")


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        check_arguments(args)
        if args.video is not None and not args.video.exists():
            reason = missing_reason(args.video)  # "not found", or a symlink loop / broken symlink said as such
            if reason == "not found":
                raise FileNotFoundError(f"video not found: {args.video}")
            raise FileNotFoundError(f"cannot read video {str(args.video)!r}: {reason}")
        with reading_weights(args.model, "model"):
            model, processor = load_model(
                args.model,
                device=args.device,
                dtype=args.dtype,
                connector=args.connector,
                num_frames=args.num_frames,
                fps=args.fps,
                max_frames=args.max_frames,
            )
        if args.viz is not None and not model.connector.draws_trajectories:
            capable = " or ".join(connectors_with("draws_trajectories"))
            raise ValueError(
                f"--viz needs the {capable} connector: it draws the trajectory assignment, and this model uses "
                f"the {model.config.connector!r} connector, which forms no trajectories (load a TrajVLM with "
                f"connector {capable})"
            )
        chat = VideoChat(model, processor, video=args.video, system_prompt=args.system, max_context=args.max_context)
        if chat.frames is not None:
            frames = chat.frames
            info = probe_video(args.video)
            size = f"{info.width}x{info.height}"
            if (frames.shape[-1], frames.shape[-2]) != (info.width, info.height):
                size += f", decoded at {frames.shape[-1]}x{frames.shape[-2]}"
            print(f"video: {args.video} ({frames.shape[0]} frames, {size})", file=out)
            if is_image_file(args.video) and frames.shape[0] > 1:
                print(f"note: {args.video} is a still image: the model sees {frames.shape[0]} copies of it", file=out)
        if args.viz is not None:
            path = write_trajectory_overlay(model, processor, chat.frames, args.viz)
            print(f"trajectory overlay: {path}", file=out)
    except (FileNotFoundError, ValueError) as e:  # bad model dir, unreadable video (VideoDecodeError), bad settings
        print(f"error: {e}", file=sys.stderr)
        return 2
    gen = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    if args.prompt is not None:
        try:
            answer_turn(chat, args.prompt, gen, out)
        except ContextLengthError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    return interactive(chat, gen, sys.stdin, out)


__all__ = ["add_arguments", "check_arguments", "run"]
