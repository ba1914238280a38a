"""The synthetic long-video world: procedural scenes with exact trajectory labels, events, captions and QA.

``generate_video`` renders one short clip in memory, ``generate_long_video`` one video of the long world (objects
come and go over hundreds of frames; questions need the whole video); ``write_dataset`` writes train/val/test splits
(mp4 + label npz + JSON record, LLaVA caption/QA lists, a manifest); ``trajtok synth`` is the command line.
"""

from __future__ import annotations

from trajtok.synth.dataset import write_dataset
from trajtok.synth.generate import SynthVideo, generate_long_video, generate_video
from trajtok.synth.longworld import LongWorldConfig
from trajtok.synth.text import answer_from_record
from trajtok.synth.world import WorldConfig

__all__ = [
    "LongWorldConfig",
    "SynthVideo",
    "WorldConfig",
    "answer_from_record",
    "generate_long_video",
    "generate_video",
    "write_dataset",
]
