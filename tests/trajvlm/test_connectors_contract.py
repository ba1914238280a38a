"""The checks every video tokenizer connector passes, one parametrised test each (connector_checks.py): bad feature
shapes raise, cached generation equals the greedy loop row by row, save / load keeps weights and logits, and a
2-step LoRA training run writes loadable checkpoints. Each connector's own behaviour is in its test_connectors_*.py.
"""

from __future__ import annotations

import pytest

from tests.trajvlm.connector_checks import (
    build,
    check_generate_with_cache,
    check_round_trip,
    check_shape_errors,
    check_two_step_training,
)
from tests.trajvlm.train_fixtures import train_data  # noqa: F401

S = 16  # vtok on the tiny base: 8x8 patch grid pooled 2x2 -> 4x4 spatial tokens per shot
COORDTOK_TOKENS = 4 * 4 + 2 * 4 * 4  # the tiny base's default CoordTok (64 px): 4x4 xy + 2 x 4x4 time planes

# connector -> (connector_kwargs, visual tokens of each of the two 6-frame test videos; None: the content decides)
CASES: dict[str, tuple[dict, list[int] | None]] = {
    "vtok": ({}, [6 + S] * 2),  # T + S for a single-shot video
    "tome": ({"budget": 10}, [10, 10]),
    "coordtok": ({}, [COORDTOK_TOKENS] * 2),
    "trajvit": ({}, None),  # trajectories from the CPU pseudo-label pipeline inside the connector
}
TRAINING_KWARGS = {"vtok": {}, "tome": {"budget": 12}, "coordtok": {}, "trajvit": {}}


@pytest.mark.parametrize("connector", list(CASES))
def test_shapes_generate_and_round_trip(tiny_base_path, tmp_path, connector):
    kwargs, counts = CASES[connector]
    model, proc = build(tiny_base_path, connector, kwargs)
    check_shape_errors(model)
    got = check_generate_with_cache(model, proc)
    if counts is None:
        assert all(c >= 1 for c in got), got
    else:
        assert got == counts
    check_round_trip(model, proc, tmp_path)


@pytest.mark.parametrize("connector", list(TRAINING_KWARGS))
def test_two_step_training(tiny_base_path, train_data, tmp_path, connector):  # noqa: F811
    check_two_step_training(tiny_base_path, train_data, tmp_path, connector, TRAINING_KWARGS[connector])
