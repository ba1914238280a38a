"""The trajvit connector: one token per external trajectory (given masks or the CPU pseudo-label pipeline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.trajvlm.connector_checks import batch, build, check_generate_with_cache
from trajvlm.connectors.trajvit import boxes_of, load_trajectory_masks


@pytest.fixture(scope="module")
def given(tiny_base_path):
    return build(tiny_base_path, "trajvit", {"mask_source": "input"})


def _masks(num_frames: int = 6, size: int = 64) -> torch.Tensor:
    """Three trajectories: 1 in every frame, 2 from frame 2 on, 3 only in frame 0 (ids 1, 2, 3; 0 = background)."""
    ids = torch.zeros(num_frames, size, size, dtype=torch.long)
    for t in range(num_frames):
        ids[t, 4:20, 4 + t : 20 + t] = 1
        if t >= 2:
            ids[t, 40:60, 30:50] = 2
    ids[0, 30:34, 0:4] = 3
    return ids


def test_boxes_are_normalised_extents():
    onehot = torch.zeros(1, 2, 10, 20, dtype=torch.bool)
    onehot[0, 0, 2:5, 4:10] = True
    box = boxes_of(onehot)
    torch.testing.assert_close(box[0, 0], torch.tensor([0.2, 0.2, 0.5, 0.5]))
    assert box[0, 1].abs().sum() == 0  # absent frame


def test_one_token_per_given_trajectory(given):
    model, proc = given
    inputs = batch(proc, seeds=(0,))
    masks = _masks()
    conn = model.model.connector
    with torch.no_grad():
        with conn.use_masks([masks]):
            out = model(**inputs)
            new = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.visual_token_counts == [3] and new.shape == (1, 2)
    # a trajectory's token depends on its own pixels only: moving trajectory 2 leaves the others' tokens unchanged
    feats = torch.randn(6, 64, conn.hidden)
    with torch.no_grad():
        a = conn.encode(feats, masks)
        moved = masks.clone()
        moved[moved == 2] = 0
        moved[4:, 50:60, 0:10] = 2
        b = conn.encode(feats, moved)
    # tokens in order of first appearance: trajectories 1 and 3 (frame 0), then 2 (frame 2)
    torch.testing.assert_close(a[:2], b[:2])
    assert (a[2] - b[2]).abs().max() > 1e-4


# The connector's state-dict keys before its layers moved to trajtok.nn.trajvit_tokens (every saved checkpoint has
# these), and the tokens that code gave for the seeded weights and inputs below (tokens @ a seeded (D, 4) projection).
OLD_KEYS = [
    "attn.in_proj_bias",
    "attn.in_proj_weight",
    "attn.out_proj.bias",
    "attn.out_proj.weight",
    "box_proj.bias",
    "box_proj.weight",
    "mlp.0.bias",
    "mlp.0.weight",
    "mlp.2.bias",
    "mlp.2.weight",
    "norm_kv.bias",
    "norm_kv.weight",
    "norm_out.bias",
    "norm_out.weight",
    "query",
    "time_proj.bias",
    "time_proj.weight",
]
OLD_TOKENS = [
    [-4.274471759796143, 17.034610748291016, -3.1758928298950195, 8.180639266967773],
    [-6.314609527587891, 19.49960708618164, -7.97036075592041, 13.875269889831543],
    [-1.965490460395813, 11.135951042175293, 0.21587753295898438, 14.648153305053711],
]


def test_old_checkpoints_load_and_give_the_same_tokens(given):
    """The shared trajtok implementation keeps the connector's key names and its numbers."""
    conn = type(given[0].model.connector)(given[0].config)
    assert sorted(conn.state_dict()) == OLD_KEYS
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(conn.state_dict()[k].shape, generator=g) * 0.2 for k in OLD_KEYS}
    conn.load_state_dict(state, strict=True)
    feats = torch.randn(6, conn.grid * conn.grid, conn.hidden, generator=g)
    with torch.no_grad():
        tokens = conn.encode(feats, _masks())
    proj = torch.randn(conn.hidden, 4, generator=g)
    torch.testing.assert_close(tokens @ proj, torch.tensor(OLD_TOKENS), atol=1e-4, rtol=1e-5)


def test_trajvit2_baseline_is_the_same_resampler(given):
    """TrajViT2's trajvit baseline and this connector share one implementation: the baseline's resampler weights
    load into the connector by name (strict) and give the same token per trajectory on the same features."""
    from trajtok import TrajTokConfig
    from trajtok.trajvit2 import GTTrajectoryTokens

    conn = type(given[0].model.connector)(given[0].config)
    torch.manual_seed(1)
    baseline = GTTrajectoryTokens(TrajTokConfig.tiny(width=conn.hidden))
    state = {k: v for k, v in baseline.state_dict().items() if not k.startswith("features.")}
    conn.load_state_dict(state, strict=True)
    feats = torch.randn(6, conn.grid * conn.grid, conn.hidden, generator=torch.Generator().manual_seed(2))
    masks = _masks()
    onehot = masks[None] == torch.arange(1, 4)[:, None, None, None]  # trajectories 1, 2, 3 in id order
    with torch.no_grad():
        ours = conn.encode(feats, masks)  # in order of first appearance: 1, 3, 2
        theirs = baseline.trajectory_tokens(feats.view(6, conn.grid, conn.grid, -1), onehot)
    torch.testing.assert_close(ours, theirs[[0, 2, 1]])


def test_budget_keeps_the_largest_trajectories(tiny_base_path):
    model, _ = build(tiny_base_path, "trajvit", {"mask_source": "input"}, video_token_budget=2)
    conn = model.model.connector
    with torch.no_grad():
        tokens = conn.encode(torch.randn(6, 64, conn.hidden), _masks())
    assert tokens.shape == (2, conn.hidden)  # trajectory 3 (16 pixels) dropped


def test_missing_and_bad_masks_raise(given):
    model, proc = given
    inputs = batch(proc, seeds=(0,))
    with pytest.raises(ValueError, match="mask_source='input' got no trajectory masks"):
        model(**inputs)
    conn = model.model.connector
    feats = torch.zeros(6, 64, conn.hidden)
    pixels = torch.zeros(1, 6, 3, 64, 64)
    with pytest.raises(ValueError, match="must be integer ids \\(T=6, H, W\\)"):
        conn(feats, pixels, 6, trajectory_masks=[torch.zeros(5, 8, 8, dtype=torch.long)])
    with pytest.raises(ValueError, match="2 trajectory masks for 1 videos"):
        conn(feats, pixels, 6, trajectory_masks=[_masks(), _masks()])
    bad = type(model.config).from_llava_config(model.config, connector="trajvit", connector_kwargs={"mask_source": "x"})
    with pytest.raises(ValueError, match="mask_source must be one of"):
        type(conn)(bad)


def test_label_file_of_the_synthetic_world(tmp_path):
    from trajtok.io.labels import save_labels
    from trajtok.synth import generate_video

    video = generate_video(3, 12, 48, 48, 3)
    save_labels(tmp_path / "v.npz", video.masks, video.graph)
    ids = load_trajectory_masks(tmp_path / "v.npz", num_frames=4)
    assert ids.shape == (4, 48, 48) and ids.dtype == torch.long
    index = np.linspace(0, 11, 4).round().astype(int)
    assert set(ids.unique().tolist()) <= set(range(video.graph.shape[0] + 1))
    assert torch.equal(ids > 0, torch.from_numpy(video.masks[index] > 0))
    with pytest.raises(FileNotFoundError, match="trajectory labels not found"):
        load_trajectory_masks(tmp_path / "missing.npz")


def test_generate_when_the_videos_take_different_token_counts(tiny_base_path):
    """Labels with the motion stage give the two test videos different trajectory counts: cached generation on the
    left-padded batch still equals each row generated alone."""
    from trajtok.pseudolabel.motion import MotionConfig
    from trajtok.pseudolabel.pipeline import PseudoLabelConfig, PseudoLabeler

    model, proc = build(tiny_base_path, "trajvit")
    connector = model.model.connector
    connector._labeler = PseudoLabeler(PseudoLabelConfig(size=connector.label_size, motion=MotionConfig()))
    counts = check_generate_with_cache(model, proc)
    assert counts[0] != counts[1], counts  # the case this test is for
