"""``trajtok tokenize``: tokenize one video with a checkpoint; print its trajectories and tokens, draw them.

    trajtok tokenize clip.mp4 --checkpoint runs/quickstart --viz clip_tokens.gif --num-frames 64 --clip-len 16

The video is streamed clip by clip with carried queries (``TrajTok.tokenize_video``), so a trajectory that goes
on across clips is one trajectory (and one set of tokens) for the whole video. ``--viz`` writes the predicted
trajectories over the frames: a PNG contact sheet for ``.png``, an animation for ``.gif`` / ``.mp4``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from trajtok import viz
from trajtok.checks import check_device, check_frame_count, check_input_exists, check_rate, reading_weights
from trajtok.core.modeling import TrajTok
from trajtok.io.checkpoints import resolve_checkpoint
from trajtok.io.video import load_video, probe_video

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file or folder of frames")
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint folder (save_pretrained) or training run folder"
    )
    parser.add_argument("--viz", default=None, help="write an overlay: out.png (contact sheet), out.gif or out.mp4")
    parser.add_argument("--num-frames", type=int, default=None, help="sample N frames evenly (default: every frame)")
    parser.add_argument("--max-frames", type=int, default=None, help="at most N frames (thinned evenly)")
    parser.add_argument("--clip-len", type=int, default=None, help="frames per streamed clip (default: the model's)")
    parser.add_argument("--tokens-per-trajectory", type=int, default=None, help="1, 2 or 4 (default: the model's)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of an animated --viz (default: source)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")


ENCODER_PROVENANCE = {
    None: "untrained (random init: the checkpoint was pretrained for segmentation only, so its tokens come from "
    "a random trajectory encoder; co-train it, e.g. trajtok train --config trajvit2_quick)",
    "clip": "trained by the TrajViT2 video-text contrastive objective",
    "probe": "trained by a TrajAdapter probe's loss",
    "vlm": "trained by a video language model's loss (trajvlm train)",
}


def encoder_provenance(trained_by: str | None) -> str:
    """One line saying what trained a checkpoint's trajectory encoder (``TrajTokConfig.encoder_trained_by``)."""
    return ENCODER_PROVENANCE.get(trained_by, f"trained by {trained_by}")


def check_arguments(args: argparse.Namespace) -> None:
    """Every flag checked before the model loads or a frame is decoded (a bad --fps used to fail only after the
    whole video was tokenized)."""
    check_frame_count("--num-frames (num_frames)", args.num_frames)
    check_frame_count("--max-frames (max_frames)", args.max_frames)
    check_rate("--fps", args.fps)
    for flag, value in (("--clip-len", args.clip_len),):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be a positive number of frames, got {value}")
    if args.tokens_per_trajectory not in (None, 1, 2, 4):
        raise ValueError(f"--tokens-per-trajectory must be 1, 2 or 4, got {args.tokens_per_trajectory}")
    if args.viz is not None and Path(args.viz).suffix.lower() not in (".png", ".gif", ".mp4"):
        raise ValueError(f"--viz {args.viz}: unknown overlay format; use .png, .gif or .mp4")
    check_device(args.device)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    check_input_exists(args.video)  # "not found", or a symlink loop / broken symlink said as such
    ckpt = resolve_checkpoint(args.checkpoint)
    with reading_weights(ckpt, "TrajTok checkpoint"):
        model = TrajTok.from_pretrained(ckpt).to(args.device)
    size = model.config.image_size
    # Decoded straight to the model's size (shorter side; never upscaled), so memory follows the sampled frames
    # at model size whatever the source resolution; the overlay is drawn at that size too.
    info = probe_video(args.video)
    decode_size = size if min(info.height, info.width) > size else None
    num_frames = args.num_frames
    if num_frames is not None and info.num_frames > 1 and num_frames > info.num_frames:
        if not info.num_frames_exact:  # container metadata can be off: count the packets before deciding
            info = probe_video(args.video, count_frames=True)
        if num_frames > info.num_frames:  # more would only repeat frames (memory for nothing)
            print(f"note: {args.video} has {info.num_frames} frames: sampling all {info.num_frames}, not {num_frames}")
            num_frames = info.num_frames
    video = load_video(args.video, num_frames=num_frames, max_frames=args.max_frames, size=decode_size)
    frames = video.frames  # (T, C, H, W) uint8, shorter side <= the model's size, for drawing
    pixels = frames
    if min(frames.shape[-2:]) != size or frames.shape[-2] != frames.shape[-1]:
        pixels = torch.nn.functional.interpolate(
            frames.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )  # (T, C, S, S); the model resizes anyway, this bounds the memory of long videos
        pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    with torch.no_grad():
        out = model.tokenize_video(
            pixels.to(args.device), clip_len=args.clip_len, tokens_per_trajectory=args.tokens_per_trajectory
        )
    t = frames.shape[0]
    trajectories = int(out.present[0].sum())
    tokens = int(out.num_tokens[0])
    decoded = f", decoded at {frames.shape[-1]}x{frames.shape[-2]}" if decode_size else ""
    print(f"video: {video.path} ({t} frames at {video.fps:.2f} fps, {info.width}x{info.height}{decoded})")
    if video.num_source_frames <= 1 and t > 1:
        print(f"note: {video.path} is a still image (1 frame): tokenized as {t} copies of it")
    print(f"trajectory encoder: {encoder_provenance(model.config.encoder_trained_by)}")
    print(f"trajectories: {trajectories}")
    print(f"tokens: {tokens} ({tokens / t:.3f} per frame)")
    if args.viz:
        query = out.assignment[0].cpu() + 1  # (T, h, w): query k -> id k + 1 (0 is "none" for the drawing)
        query = torch.nn.functional.interpolate(
            query[None].float(), size=tuple(frames.shape[-2:]), mode="nearest-exact"
        )[0]
        ids = query.long().numpy()  # (T, H, W) at the frame size
        path = Path(args.viz)
        if path.suffix.lower() == ".png":
            viz.contact_sheet(frames, ids, path)
        else:
            viz.animate(frames, ids, path, fps=args.fps or video.fps)
        print(f"overlay: {path}")
    return 0
