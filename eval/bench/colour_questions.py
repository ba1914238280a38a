"""python eval/bench/colour_questions.py --data runs/demo/data --out runs/colourq [--train-videos 1200] [--seed 0]

Can the VLM read anything from its visual tokens at the compute of this machine? The long world's questions need
which object is in view when; a probe on the tokens says their colours are there (``bench_token_probe.py``: AUC
0.85-0.99), and the models' answers do not follow their video (``bench_vision_reliance.py``). This writes the
simplest question those tokens answer, asked of the first frame (which every frame sampling includes):

    "Is there a red object in view at the start of the video?"  ->  "yes" / "no"

For every video, ``per_video`` questions (default 4), half "yes" (a colour of an object visible in frame 0, as it
looks then) and half "no" (a colour no object of the video ever has, so no sampled frame can show it), shuffled.

Writes, under ``--out``:

- ``stage2.json``: one LLaVA-style conversation per training video of the world (``<video>`` on the first turn),
  for ``trajvlm train ... train_json=`` with ``video_root=`` the world's train folder;
- ``val/qa.json`` (and the same for ``test`` with ``--test``) with hard links to the split's videos: questions in the
  long world's format (options ``["yes", "no"]``, the answer's letter, ``qtype`` ``colour_yes`` / ``colour_no``),
  which ``bench_vision_reliance.py --data OUT`` scores with the video, another one and none (chance 50 %).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from trajtok.synth.text import colour_at, is_visible  # noqa: E402
from trajtok.synth.world import COLOURS  # noqa: E402

QUESTION = "Is there {article} {colour} object in view at the start of the video?"


def question(colour: str) -> str:
    return QUESTION.format(article="an" if colour[0] in "aeiou" else "a", colour=colour)


def colours_at_start(record: dict) -> list[str]:
    """The colours of the objects visible in frame 0, as they look then (sorted, no repeats)."""
    return sorted({colour_at(record, i, 0) for i in range(len(record["objects"])) if is_visible(record, i, 0)})


def colours_never(record: dict) -> list[str]:
    """The world's colours that no object of the video has at any time (first colours and every change)."""
    seen = {o["colour"] for o in record["objects"]}
    seen |= {ev["to"] for ev in record["events"] if ev["type"] == "colour_change"}
    return [c for c in COLOURS if c not in seen]


def questions_for(record: dict, per_video: int, rng: random.Random) -> list[tuple[str, str]]:
    """(question, "yes" / "no") pairs: up to per_video // 2 of each, as many "no" as "yes", shuffled."""
    yes, no = colours_at_start(record), colours_never(record)
    k = min(per_video // 2, len(yes), len(no))
    pairs = [(question(c), "yes") for c in rng.sample(yes, k)]
    pairs += [(question(c), "no") for c in rng.sample(no, k)]
    rng.shuffle(pairs)
    return pairs


def records(split_dir: Path, limit: int | None = None) -> list[tuple[Path, dict]]:
    """(video, record) of a split's videos, sorted, the first ``limit`` (:func:`_common.synth_videos`)."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"no split folder {split_dir}: expected a world written by `trajtok synth`")
    return _common.synth_videos(split_dir, limit or 0)


def write(data: Path, out: Path, train_videos: int | None, per_video: int, seed: int, splits: list[str]) -> dict:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    conversations = []
    for video, record in records(data / "train", train_videos):
        pairs = questions_for(record, per_video, rng)
        turns = []
        for k, (asked, answer) in enumerate(pairs):
            turns += [
                {"from": "human", "value": ("<video>\n" if k == 0 else "") + asked},
                {"from": "gpt", "value": answer},
            ]
        if turns:
            conversations.append({"id": f"{video.stem}_colours", "video": video.name, "conversations": turns})
    (out / "stage2.json").write_text(json.dumps(conversations))
    counts = {"train_conversations": len(conversations)}
    for split in splits:
        folder = out / split
        folder.mkdir(exist_ok=True)
        qa = []
        for video, record in records(data / split):
            link = folder / video.name
            if not link.exists():
                os.link(video, link)
            for j, (asked, answer) in enumerate(questions_for(record, per_video, rng)):
                qa.append(
                    {
                        "id": f"{video.stem}_c{j}",
                        "video": video.name,
                        "question": asked,
                        "options": ["yes", "no"],
                        "answer": "A" if answer == "yes" else "B",
                        "qtype": f"colour_{answer}",
                    }
                )
        (folder / "qa.json").write_text(json.dumps(qa))
        counts[f"{split}_questions"] = len(qa)
    return counts


def run(args: argparse.Namespace) -> dict:
    splits = ["val"] + (["test"] if args.test else [])
    counts = write(args.data, args.out, args.train_videos, args.per_video, args.seed, splits)
    print(json.dumps(counts))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--data", type=Path, required=True, help="a long world (trajtok synth --world long --out)")
    parser.add_argument("--out", type=Path, required=True, help="where stage2.json and val/ go")
    parser.add_argument("--train-videos", type=int, default=None, help="the first N training videos (default all)")
    parser.add_argument("--per-video", type=int, default=4, help="questions per video, half yes (default 4)")
    parser.add_argument("--test", action="store_true", help="also write test/ (default: val only)")
    parser.add_argument("--seed", type=int, default=0)
    return _common.run_cli(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
