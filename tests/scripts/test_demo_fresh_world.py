"""The demo scores its descriptions on a fresh world: the run's world settings (``--like`` its manifest) with
another seed, so no stage has trained or chosen on those videos."""

from __future__ import annotations

import dataclasses
import json

import pytest


@pytest.fixture(scope="module")
def demo(load_script):
    return load_script("scripts/demo.py")


def test_descriptions_read_a_fresh_world_with_the_runs_settings(demo, tmp_path):
    from demo_config import load_preset

    preset = dataclasses.replace(load_preset("smoke"), splits={"train": 1, "val": 1, "test": 1}, describe_videos=2)
    runner = demo.DemoRunner(tmp_path, preset, preset_name="smoke", seed=3)
    runner.world()
    fresh = runner.fresh_world()
    run_gen = json.loads((tmp_path / "data" / "manifest.json").read_text())["generator"]
    fresh_manifest = json.loads((fresh / "manifest.json").read_text())
    gen = fresh_manifest["generator"]
    assert gen["seed"] == 3 + demo.FRESH_SEED_OFFSET
    assert gen["num_videos"] == {"train": 0, "val": 0, "test": 2}
    assert {k for k in run_gen if run_gen[k] != gen[k]} == {"seed", "num_videos"}  # every other setting the run's
    # new videos: drawn from other seeds than any video of the run
    run_seeds = {v["seed"] for v in json.loads((tmp_path / "data" / "manifest.json").read_text())["videos"].values()}
    fresh_seeds = {v["seed"] for v in fresh_manifest["videos"].values()}
    assert len(fresh_seeds) == 2 and not run_seeds & fresh_seeds
    assert "fresh world (descriptions)" in json.loads((tmp_path / "stage_times.json").read_text())
