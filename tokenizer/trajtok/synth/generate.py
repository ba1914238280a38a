"""One synthetic video: simulate, render, extract events, write the record with captions and questions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trajtok.synth.events import extract_events, keep_visible, ranges
from trajtok.synth.longworld import LongWorldConfig, simulate_long
from trajtok.synth.text import LONG_QTYPES, make_captions, make_long_questions, make_questions
from trajtok.synth.world import COLOURS, PALETTE, Simulation, WorldConfig, render, simulate

MIN_SIZE, MAX_SIZE = 16, 1024


@dataclass
class SynthVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    masks: np.ndarray  # (T, H, W) int32 instance id per pixel: object id + 1, 0 = background
    graph: np.ndarray  # (M, T) int32: object m has instance id m + 1 in the frames where it is visible
    record: dict  # objects, events, shots, captions, questions (JSON-ready)


def generate_video(
    seed: int,
    num_frames: int,
    height: int,
    width: int,
    num_objects: int,
    *,
    config: WorldConfig | None = None,
    fps: float = 10.0,
    video_id: str | None = None,
) -> SynthVideo:
    """Simulate and render one video; the same arguments always give the same frames, labels and record.

    Objects that are never visible (they stayed outside the view or hidden) are dropped, so the record's
    ``objects`` are exactly the trajectories of the labels: object ``m`` is graph row ``m`` and mask id ``m + 1``.
    """
    _check(num_frames, height, width, num_objects, fps)
    cfg = config or WorldConfig()
    video_id = video_id or f"synth_{seed}"
    # Independent streams so that, e.g., a new question template never changes the pixels.
    sim = simulate(np.random.default_rng([seed, 0]), num_frames, height, width, num_objects, cfg)
    video, record = _render_and_record(sim, seed, fps, video_id)
    text_rng = np.random.default_rng([seed, 2])
    record["captions"] = make_captions(text_rng, record)
    record["questions"] = make_questions(text_rng, record, video_id)
    return video


def generate_long_video(
    seed: int,
    num_frames: int,
    height: int,
    width: int,
    num_objects: int,
    *,
    config: LongWorldConfig | None = None,
    fps: float = 10.0,
    video_id: str | None = None,
    questions_per_type: int = 2,
    min_separation: int = 16,
    qtypes: tuple[str, ...] = LONG_QTYPES,
    count_range: tuple[int, int] | None = None,
) -> SynthVideo:
    """One video of the long world (objects come and go over hundreds of frames) with its whole-video questions.

    ``questions_per_type``: distinct questions of each type in ``qtypes`` (fewer when the video offers fewer);
    ``min_separation``: frames at least between the moments a question compares (first appearances, events).
    ``count_range``: the range the video's object count was drawn from (``config.balance``: the count question's
    options are a window of it).
    The same arguments always give the same frames, labels and record.
    """
    _check(num_frames, height, width, num_objects, fps)
    if questions_per_type < 1:
        raise ValueError(f"questions_per_type must be >= 1, got {questions_per_type}")
    if min_separation < 1:
        raise ValueError(f"min_separation must be >= 1 frame, got {min_separation}")
    cfg = config or LongWorldConfig()
    video_id = video_id or f"synth_long_{seed}"
    sim = simulate_long(np.random.default_rng([seed, 0]), num_frames, height, width, num_objects, cfg)
    video, record = _render_and_record(sim, seed, fps, video_id)
    record["world"] = "long"
    text_rng = np.random.default_rng([seed, 2])
    record["captions"] = make_captions(text_rng, record)
    record["questions"] = make_long_questions(
        text_rng,
        record,
        video_id,
        per_type=questions_per_type,
        sep=min_separation,
        qtypes=tuple(qtypes),
        balance=cfg.balance,
        count_range=count_range,
    )
    return video


def _check(num_frames: int, height: int, width: int, num_objects: int, fps: float) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise ValueError(f"height and width must be in [{MIN_SIZE}, {MAX_SIZE}], got {height}x{width}")
    if num_objects < 0:
        raise ValueError(f"num_objects must be >= 0, got {num_objects}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")


def _render_and_record(sim: Simulation, seed: int, fps: float, video_id: str) -> tuple[SynthVideo, dict]:
    """Render a simulation, read its events from the masks and build the record (without captions / questions)."""
    num_frames, height, width = sim.num_frames, sim.height, sim.width
    frames, masks, stats = render(sim, np.random.default_rng([seed, 1]))
    events, vis = extract_events(sim, stats)
    events, old_ids = keep_visible(events, vis)

    lut = np.zeros(len(sim.objects) + 1, dtype=np.int32)  # old instance id -> new instance id
    lut[old_ids + 1] = np.arange(1, len(old_ids) + 1, dtype=np.int32)
    if len(old_ids) != len(sim.objects):
        masks = lut[masks]
    T = num_frames
    vis = vis[:, old_ids]  # (T, M)
    graph = np.where(vis.T, np.arange(1, len(old_ids) + 1, dtype=np.int32)[:, None], 0).astype(np.int32)  # (M, T)

    objects = []
    depth_rank = np.argsort(np.argsort([sim.objects[o].depth for o in old_ids]))
    for m, o in enumerate(old_ids):
        spec = sim.objects[int(o)]
        seen = ranges(vis[:, m])
        colours = [spec.colour] + [ev["to"] for ev in events if ev["type"] == "colour_change" and ev["objects"][0] == m]
        objects.append(
            {
                "id": m,
                "name": f"{spec.colour} {spec.shape}",
                "shape": spec.shape,
                "colour": spec.colour,
                "colours": colours,
                "texture": spec.texture,
                "size": spec.size_name,
                "size_px": round(spec.size, 2),
                "motion": spec.motion,
                "collides": spec.collides,
                "depth": int(depth_rank[m]),
                "visible": seen,
                "first_frame": seen[0][0],
                "last_frame": seen[-1][1],
            }
        )
    shots = [
        {
            "frames": [s.start, s.end - 1],
            "background": {"kind": s.background.kind, "tone": s.background.tone},
            "camera": s.camera,
        }
        for s in sim.shots
    ]
    record = {
        "id": video_id,
        "seed": int(seed),
        "num_frames": T,
        "fps": float(fps),
        "height": height,
        "width": width,
        "objects": objects,
        "events": events,
        "shots": shots,
        "palette": {c: list(PALETTE[c]) for c in COLOURS},
    }
    return SynthVideo(frames=frames, masks=masks, graph=graph, record=record), record
