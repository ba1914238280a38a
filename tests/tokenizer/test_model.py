"""TrajTok model contracts on a tiny random config: shapes, masks, padding, gradients, persistence, streaming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import trajtok
from trajtok import TrajTok, TrajTokConfig
from trajtok.core.modeling import StreamState, tiny_model
from trajtok.nn.encoder import hard_mask_attention_mask
from trajtok.nn.positions import grid_shape, query_fourier_bank, ring_fourier_bank


def video(b: int = 2, t: int = 3, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g)


@pytest.fixture(scope="module")
def model() -> TrajTok:
    return tiny_model(seed=0).eval()


def check_contract(out, model: TrajTok, b: int, t: int, h: int, w: int, n: int) -> None:
    k = model.config.num_queries
    assert out.assignment.shape == (b, t, h, w) and out.assignment.dtype == torch.long
    assert out.soft_masks.shape == (b, k, t, h, w)
    g = model.config.grid_size
    assert out.logits.shape == (b, k, t, g, g)
    torch.testing.assert_close(out.soft_masks.sum(dim=1), torch.ones(b, t, h, w))
    counts = torch.stack([(out.assignment == q).flatten(1).sum(1) for q in range(k)], dim=1)  # (B, K)
    assert torch.equal(out.present, counts >= model.config.min_pixels)
    assert torch.equal(out.num_tokens, out.present.sum(1) * n)
    assert torch.equal(out.valid.sum(1), out.num_tokens)
    assert out.tokens.shape[:2] == out.valid.shape == out.token_trajectory.shape
    assert torch.all(out.tokens[~out.valid] == 0)
    assert torch.all(out.token_trajectory[~out.valid] == -1)
    for i in range(b):
        trajs = out.token_trajectory[i][out.valid[i]]
        assert torch.equal(trajs, torch.nonzero(out.present[i]).flatten().repeat_interleave(n))
    assert torch.all((out.boxes >= 0) & (out.boxes <= 1))
    assert torch.all(out.boxes[..., 2] > out.boxes[..., 0]) == bool(out.present.all())
    fl = out.first_last
    assert torch.all(fl[out.present] >= 0) and torch.all(fl[out.present] < t)
    assert torch.all(fl[~out.present] == -1)


def test_video_batch_shapes_and_masks(model):
    with torch.no_grad():
        out = model(video(b=2, t=3))
    check_contract(out, model, 2, 3, 16, 16, n=1)
    assert out.tokens.shape == (2, int(out.num_tokens.max()), 64)
    assert torch.equal(out.assignment, out.soft_masks.argmax(dim=1))
    assert out.state.queries.shape == (2, 16, 64) and out.state.frames_seen == 3


def test_image_input_and_odd_sizes(model):
    with torch.no_grad():
        out = model(video(b=1, t=1, h=37, w=90), tokens_per_trajectory=2)
    check_contract(out, model, 1, 1, 16, 16, n=2)
    # a trajectory present in a single frame spans exactly that frame
    assert torch.all(out.first_last[out.present] == 0)


def test_uint8_matches_float(model):
    x8 = (video(b=1, t=2) * 255).to(torch.uint8)
    with torch.no_grad():
        a = model(x8)
        b = model(x8.float() / 255)
    torch.testing.assert_close(a.tokens, b.tokens)


def test_adaptive_vs_fixed_padding(model):
    x = video(b=2, t=2, seed=1)
    with torch.no_grad():
        ad = model(x, tokens_per_trajectory=2)
        big = model(x, tokens_per_trajectory=2, token_mode="fixed", max_tokens=40)
        small = model(x, tokens_per_trajectory=2, token_mode="fixed", max_tokens=9)
    assert ad.tokens.shape[1] == int(ad.num_tokens.max())
    assert big.tokens.shape == (2, 40, 64) and torch.equal(big.num_tokens, ad.num_tokens)
    n_ad = ad.tokens.shape[1]
    torch.testing.assert_close(big.tokens[:, :n_ad], ad.tokens)
    # budget 9 with 2 tokens each: 4 trajectories, the 4 with the most pixels, padded to 9
    assert small.tokens.shape == (2, 9, 64) and torch.all(small.num_tokens == 8)
    for i in range(2):
        counts = torch.bincount(ad.assignment[i].flatten(), minlength=16)
        kept = small.token_trajectory[i][small.valid[i]].unique()
        dropped = [q for q in torch.nonzero(ad.present[i]).flatten().tolist() if q not in kept.tolist()]
        assert len(kept) == 4 and counts[kept].min() >= counts[dropped].max()
    with pytest.raises(ValueError, match="max_tokens=1"):
        model(x, tokens_per_trajectory=2, token_mode="fixed", max_tokens=1)


def test_min_pixels_drops_small_trajectories():
    m = tiny_model(seed=0, min_pixels=200).eval()
    with torch.no_grad():
        out = m(video(b=1, t=1))
    counts = torch.bincount(out.assignment.flatten(), minlength=16)
    assert torch.equal(out.present[0], counts >= 200)
    assert out.num_tokens.item() == int((counts >= 200).sum())


def test_external_features_grid():
    torch.manual_seed(0)
    m = TrajTok(TrajTokConfig.tiny(external_dim=24)).eval()
    feats = torch.randn(2, 3, 5, 7, 24)
    with torch.no_grad():
        out = m(video(b=2, t=3), features=feats)
    check_contract(out, m, 2, 3, 5, 7, n=1)
    assert out.tokens.shape[-1] == 24  # output_dim defaults to external_dim
    assert out.logits.shape == (2, 16, 3, 16, 16)
    # tokens depend on the external features
    with torch.no_grad():
        out2 = m(video(b=2, t=3), features=feats + 1)
    assert not torch.allclose(out.tokens, out2.tokens)
    with pytest.raises(ValueError, match=r"\(2, 3, h_e, w_e, 24\)"):
        m(video(b=2, t=3), features=torch.randn(2, 3, 5, 7, 10))
    with pytest.raises(ValueError, match="external_dim is None"):
        tiny_model()(video(b=1, t=1), features=torch.randn(1, 1, 4, 4, 8))


def test_external_grid_segmenter_keeps_every_trajectory():
    """Coarse external features (4x4) under the segmenter's 16x16 masks: "features" cuts the masks down to 4x4,
    "segmenter" repeats the features up and keeps the segmenter's own assignment, so no trajectory loses its token."""
    torch.manual_seed(0)
    cfg = TrajTokConfig.tiny(external_dim=24, presence_fraction=0.0)
    coarse = TrajTok(cfg).eval()
    fine = TrajTok(cfg.replace(external_grid="segmenter")).eval()
    fine.load_state_dict(coarse.state_dict())
    x, feats = video(b=1, t=3), torch.randn(1, 3, 4, 4, 24)
    with torch.no_grad():
        a, b = coarse(x, features=feats), fine(x, features=feats)
    assert a.assignment.shape == (1, 3, 4, 4) and b.assignment.shape == (1, 3, 16, 16)
    assert torch.equal(b.assignment, b.logits.argmax(1))  # the segmenter's masks, uncut
    found = set(b.logits.argmax(1).unique().tolist())
    assert set(b.trajectory_query[b.present].tolist()) == found
    assert int(b.num_tokens) == len(found) >= int(a.num_tokens)
    with pytest.raises(ValueError, match="external_grid"):
        TrajTokConfig.tiny(external_grid="patch")


def test_external_grid_segmenter_projects_before_repeating():
    """The encoder reads the projected coarse features repeated over the segmenter cells: projecting first (the
    cheap order) gives what projecting the repeated features gives."""
    torch.manual_seed(0)
    m = TrajTok(TrajTokConfig.tiny(external_dim=24, external_grid="segmenter")).eval()
    x, feats = video(b=2, t=3), torch.randn(2, 3, 4, 4, 24)
    init = m.segmenter.initial_queries(2, None, None, carry=False)
    with torch.no_grad():
        got = m._clip(x, feats, init)["enc_feats"]  # (B, T*16*16, E)
        repeated = feats.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # each cell over its 4x4 block
        want = m.external_proj(repeated).reshape(2, 3 * 16 * 16, -1)
    torch.testing.assert_close(got, want)


def test_downstream_grad_reaches_queries_and_assignment_mlps():
    m = tiny_model(seed=0).train()
    out = m(video(b=1, t=2), tokens_per_trajectory=1)
    out.tokens.pow(2).sum().backward()
    for name in ("segmenter.queries", "segmenter.query_head.mlp.fc1.weight", "segmenter.feature_head.mlp.fc1.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.features.backbone.parameters())


def _backbone_has_grad(m) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.features.parameters())


@pytest.mark.parametrize("detach", [True, False])
def test_stop_gradient_into_query_perceiver(detach):
    # A loss on the query states alone can only reach the backbone through the query Perceiver's inputs.
    m = tiny_model(seed=0, detach_features=detach).train()
    out = m(video(b=1, t=2))
    out.state.queries.pow(2).sum().backward()
    assert _backbone_has_grad(m) is (not detach)
    assert m.segmenter.queries.grad is not None and m.segmenter.queries.grad.abs().sum() > 0


def test_segmentation_logits_still_train_the_backbone():
    # The stop-gradient covers the Perceiver only: the feature-side assignment head reads live features, so the
    # segmentation loss alone (segmenter pretraining) trains the backbone.
    m = tiny_model(seed=0, detach_features=True).train()
    out = m(video(b=1, t=2))
    out.logits.log_softmax(dim=1)[:, 0].sum().backward()
    assert _backbone_has_grad(m)


def test_hard_mask_restricts_encoder_attention():
    m = tiny_model(seed=0).eval()
    g = torch.Generator().manual_seed(3)
    b, k, p, e, n = 1, 16, 40, 64, 2
    init = torch.randn(b, k, e, generator=g)
    feats = torch.randn(b, p, e, generator=g)
    hard = torch.randint(0, 4, (b, p), generator=g)  # trajectories 0..3 own pixels, 4..15 are empty
    target = 1
    outside = (hard != target)[..., None]
    perturbed = feats + outside * torch.randn(b, p, e, generator=g) * 5
    inside = feats + (~outside) * torch.randn(b, p, e, generator=g) * 5
    pos = torch.rand(p, 3, generator=g) * 10
    with torch.no_grad():
        ref = m.encoder.refine(init, feats, hard, n, pos)
        out = m.encoder.refine(init, perturbed, hard, n, pos)
        out_in = m.encoder.refine(init, inside, hard, n, pos)
    torch.testing.assert_close(out[:, target], ref[:, target])
    assert not torch.allclose(out[:, 0], ref[:, 0])  # others did see the change
    assert not torch.allclose(out_in[:, target], ref[:, target])  # own pixels matter
    assert torch.isfinite(out).all()  # empty trajectories: no NaN
    mask = hard_mask_attention_mask(hard, k, n)
    assert mask.shape == (b, 1, k * n, k * n + p) and mask.any(dim=-1).all()


def test_training_samples_tokens_per_trajectory_with_torch_rng():
    m = tiny_model(seed=0).train()
    draws = []
    for seed in range(12):
        torch.manual_seed(seed)
        draws.append(m._tokens_per_trajectory(None))
    assert set(draws) <= {1, 2, 4} and len(set(draws)) > 1
    torch.manual_seed(5)
    again = m._tokens_per_trajectory(None)
    assert again == draws[5]
    m.eval()
    assert m._tokens_per_trajectory(None) == 1
    with pytest.raises(ValueError, match=r"one of \[1, 2, 4\]"):
        m._tokens_per_trajectory(3)


def test_save_load_round_trip(tmp_path, model):
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = TrajTok.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    x = video(b=1, t=2)
    with torch.no_grad():
        a, b = model(x, tokens_per_trajectory=4), loaded(x, tokens_per_trajectory=4)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.assignment, b.assignment)
    fixed = TrajTok.from_pretrained(tmp_path / "ckpt", token_mode="fixed", max_tokens=20)
    with torch.no_grad():
        assert fixed(x).tokens.shape == (1, 20, 64)


def test_strict_loading_lists_keys(tmp_path, model):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("segmenter.queries")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \['segmenter.queries'\].*unexpected keys \['extra.weight'\]"):
        TrajTok.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path / "good")
    with pytest.raises(ValueError, match=r"segmenter.queries: checkpoint \(16, 64\) vs model \(9, 64\)"):
        TrajTok.from_pretrained(tmp_path / "good", num_queries=9)
    with pytest.raises(FileNotFoundError, match="nope"):
        TrajTok.from_pretrained(tmp_path / "nope")


def test_pretrained_backbone_from_local_folder(tmp_path):
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(0)
    src = ConvNextModel(ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]))
    src.save_pretrained(tmp_path / "bb")
    m = TrajTok.from_config(TrajTokConfig.tiny(backbone_config={}, backbone_pretrained=str(tmp_path / "bb")))
    assert m.features.backbone.channels == [8, 16, 24, 32]
    assert m.config.backbone_config["hidden_sizes"] == [8, 16, 24, 32]
    loaded_stage = m.features.backbone.encoder.stages[2].layers[0].pwconv1.weight
    assert torch.equal(loaded_stage, src.encoder.stages[2].layers[0].pwconv1.weight)
    m.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "bb" / "model.safetensors").unlink()  # the checkpoint alone is enough
    loaded = TrajTok.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(video(1, 1)).tokens, loaded(video(1, 1)).tokens)
    with pytest.raises(ValueError, match="backbone='resnet'"):
        TrajTok(TrajTokConfig.tiny(backbone="resnet", backbone_pretrained=str(tmp_path / "bb")))


def test_resnet_backbone():
    m = tiny_model(
        seed=0,
        backbone="resnet",
        backbone_config={
            "depths": [1, 1, 1, 1],
            "embedding_size": 16,
            "hidden_sizes": [16, 32, 64, 128],
            "layer_type": "basic",
        },
    ).eval()
    with torch.no_grad():
        out = m(video(b=1, t=2))
    check_contract(out, m, 1, 2, 16, 16, n=1)


def test_streaming_carries_queries_across_clips(model):
    g = torch.Generator().manual_seed(7)
    frames = torch.randint(0, 256, (64, 3, 48, 40), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        out = model.tokenize_video(frames, clip_len=16, tokens_per_trajectory=2)
        # same as running clip by clip with the state handed on
        state, assigns = None, []
        for s in range(0, 64, 16):
            o = model(frames[None, s : s + 16], state=state)
            state, assigns = o.state, assigns + [o.assignment]
    k, n = 16, 2
    assert out.assignment.shape == (1, 64, 16, 16)
    assert torch.equal(out.assignment, torch.cat(assigns, dim=1))
    assert out.tokens.shape[1] <= k * n and out.num_tokens.item() == 2 * int(out.present.sum())
    trajs = out.token_trajectory[0][out.valid[0]]
    assert torch.equal(trajs, torch.nonzero(out.present[0]).flatten().repeat_interleave(n))
    # ids are global: a trajectory seen in several clips spans them (first / last in video frames)
    counts = torch.bincount(out.assignment.flatten(), minlength=k)
    assert torch.equal(out.present[0], counts >= 1)
    assert int(out.first_last[..., 1].max()) > 16 and int(out.first_last[out.present][:, 0].min()) == 0
    assert out.soft_masks.shape[2] == 0 and out.state.frames_seen == 64
    with torch.no_grad():
        full = model.tokenize_video(frames[:20], clip_len=8, return_masks=True)
    assert full.soft_masks.shape == (1, k, 20, 16, 16) and full.logits.shape == (1, k, 20, 16, 16)


def test_single_clip_streaming_equals_forward(model):
    x = video(b=1, t=5, seed=4)
    with torch.no_grad():
        a = model.tokenize_video(x[0], clip_len=16)
        b = model(x)
    torch.testing.assert_close(a.tokens, b.tokens)
    assert torch.equal(a.assignment, b.assignment)


def test_streaming_with_external_features():
    torch.manual_seed(0)
    m = TrajTok(TrajTokConfig.tiny(external_dim=12, output_dim=20)).eval()
    with torch.no_grad():
        out = m.tokenize_video(video(b=1, t=10)[0], features=torch.randn(10, 4, 6, 12), clip_len=4)
    assert out.assignment.shape == (1, 10, 4, 6) and out.tokens.shape[-1] == 20


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(3, 3, 64, 64), r"\(B, T, C, H, W\) \(rank 5\), got shape \(3, 3, 64, 64\)"),
        (torch.rand(1, 0, 3, 64, 64), r"T >= 1, got shape .* = \(1, 0, 3, 64, 64\)"),
        (torch.rand(1, 2, 4, 64, 64), r"C = 3 .* got shape \(1, 2, 4, 64, 64\)"),
        (torch.rand(1, 2, 3, 16, 64), r">= 32, got shape .* = \(1, 2, 3, 16, 64\)"),
        (torch.zeros(1, 2, 3, 64, 64, dtype=torch.int32), r"float in \[0, 1\] or uint8, got dtype torch.int32"),
    ],
)
def test_bad_inputs(model, x, match):
    with pytest.raises(ValueError, match=match):
        model(x)


def test_bad_state(model):
    with pytest.raises(ValueError, match=r"\(B, K, E\) = \(1, 16, 64\), got \(1, 8, 64\)"):
        model(video(1, 1), state=StreamState(queries=torch.zeros(1, 8, 64)))


def test_config_round_trip_and_validation(tmp_path):
    cfg = TrajTokConfig.tiny(tokens_per_trajectory=[1, 2])
    assert cfg.tokens_per_trajectory == (1, 2)
    cfg.save(tmp_path / "c.json")
    assert TrajTokConfig.load(tmp_path / "c.json") == cfg
    assert TrajTokConfig.from_dict(cfg.to_dict()) == cfg
    for bad, match in [
        ({"backbone": "vit"}, "backbone must be one of"),
        ({"token_mode": "fixed"}, "needs max_tokens"),
        ({"seg_head_dim": 7}, "even"),
        ({"image_size": 50}, "multiple of 32"),
        ({"tokens_per_trajectory": ()}, "non-empty"),
        ({"widht": 3}, r"unknown TrajTokConfig fields \['widht'\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            TrajTokConfig.tiny(**bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        TrajTokConfig.load(tmp_path / "missing.json")


def test_tiny_preset_matches_tiny_config():
    preset = Path(trajtok.__file__).parent / "presets" / "model_tiny.yaml"
    assert TrajTokConfig.from_yaml(preset) == TrajTokConfig.tiny()
    assert TrajTokConfig.from_yaml(preset, width=32).width == 32


def test_presets_are_named_by_their_backbone():
    """paper() is the paper's ConvNeXt-Tiny; the release's ConvNeXt-Small geometry is release() (its own layout) and
    paper_convnext_small() (this package's layout); built on the meta device, so the real block counts are read."""
    from trajtok.nn.backbone import build_backbone

    def stage_blocks(cfg: TrajTokConfig) -> list[int]:
        with torch.device("meta"):
            backbone = build_backbone(cfg.backbone, cfg.backbone_config, None)
        return [len(stage.layers) for stage in backbone.encoder.stages]

    tiny, small, release = TrajTokConfig.paper(), TrajTokConfig.paper_convnext_small(), TrajTokConfig.release()
    assert stage_blocks(tiny) == [3, 3, 9, 3]  # ConvNeXt-Tiny
    assert stage_blocks(small) == [3, 3, 27, 3]  # ConvNeXt-Small
    # the release's backbone geometry (read by convert-release from its tensor shapes) is ConvNeXt-Small
    assert release.backbone_config == small.backbone_config and release.segmenter_variant == "release"
    assert small.replace(backbone_config=tiny.backbone_config) == tiny  # the two paper presets differ only there
    assert TrajTokConfig.paper(num_queries=64).num_queries == 64  # overrides still apply to the old name


def test_fourier_banks_are_distinct():
    assert grid_shape(16) == (4, 4) and grid_shape(128) == (8, 16) and grid_shape(7) == (1, 7)
    q = query_fourier_bank(16, 64)
    assert q.shape == (16, 64) and torch.cdist(q, q).add(torch.eye(16) * 1e3).min() > 0.1
    r = ring_fourier_bank(4, 64)
    assert r.shape == (4, 64) and torch.cdist(r, r).add(torch.eye(4) * 1e3).min() > 0.1


def test_extent_features_of_hand_made_trajectories():
    from trajtok.nn.encoder import extent_features

    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.5, 0.75], [0.0, 0.0, 0.0, 0.0]]])
    counts = torch.tensor([[768, 4, 0]])  # on a 16 x 16 grid: 3/4 of every frame, 1/64 per frame, nothing
    first_last = torch.tensor([[[0, 3], [2, 2], [-1, -1]]])  # 4 frames, 1 frame, absent
    centres = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.5, 0.5, 0.75], [0.0, 0.0, 0.0, 0.0]]])
    got = extent_features(boxes, counts, first_last, centres, 16 * 16)
    root = 2 * 0.75**0.5 - 1
    want = torch.tensor(
        [[[-1.0, -1.0, 1.0, 1.0, root, 0.0, 0.0, 0.0, 0.0], [-0.5, 0.0, 0.0, 0.5, -0.75, -0.5, 0.0, 0.0, 0.5]]]
    )
    torch.testing.assert_close(got[:, :2], want)
    assert torch.all(got[0, 2] == -1.0)  # an absent row: no box, no area, no centre


def test_trajectories_know_where_they_start_and_end_across_clips():
    """The centre of a trajectory's pixels in its first and in its last frame, carried over clips."""
    from trajtok.core.modeling import _extent_stats, _merge_stats

    hard = torch.zeros(1, 6, 8, 8, dtype=torch.long)  # query 0 is the background
    for frame, col in enumerate([0, 1, 2, 4, 5, 6]):  # query 1: a 2 x 2 square moving right on rows 2-3
        hard[0, frame, 2:4, col : col + 2] = 1
    hard[0, 4, 6:8, 0:2] = 2  # query 2: one frame only, in the second clip
    first, second = _extent_stats(hard[:, :3], 3, centres=True), _extent_stats(hard[:, 3:], 3, 3, centres=True)
    merged = _merge_stats(first, second)
    centre = {n: merged[n][0].tolist() for n in ("cy0", "cx0", "cy1", "cx1")}
    assert centre["cy0"][1] == centre["cy1"][1] == 3.0 / 8  # rows 2-3: centre 2.5 -> (2.5 + 0.5) / 8
    assert centre["cx0"][1] == 1.0 / 8 and centre["cx1"][1] == 7.0 / 8  # columns 0-1, then 6-7
    assert centre["cy0"][2] == centre["cy1"][2] == 7.0 / 8 and centre["cx0"][2] == centre["cx1"][2] == 1.0 / 8
    whole = _extent_stats(hard, 3, centres=True)  # one clip of all six frames gives the same
    assert all(torch.equal(whole[n], merged[n]) for n in merged)


def test_extent_encoding_starts_as_a_no_op_and_says_where_trajectories_are(tmp_path):
    plain, extent = tiny_model(seed=0).eval(), tiny_model(seed=0, extent_encoding=True).eval()
    state = extent.state_dict()
    added = sorted(set(state) - set(plain.state_dict()))
    assert added == ["encoder.extent_proj.bias", "encoder.extent_proj.weight"]
    assert all(torch.equal(v, state[k]) for k, v in plain.state_dict().items())  # no random draw moved
    x = video(b=1, t=4)
    with torch.no_grad():
        a, b = plain(x, tokens_per_trajectory=2), extent(x, tokens_per_trajectory=2)
        assert torch.equal(a.tokens, b.tokens)
        extent.encoder.extent_proj.weight[:, 4] = 1.0  # the area feature only
        c = extent(x, tokens_per_trajectory=2)
    moved = (c.tokens[0][c.valid[0]] - b.tokens[0][b.valid[0]]).abs().sum(-1)
    assert torch.all(moved > 0) and torch.equal(c.assignment, b.assignment)  # every token, not the segmentation
    # an older checkpoint switches it on: the projection starts at zero, its tokens are unchanged
    plain.save_pretrained(tmp_path / "old")
    upgraded = TrajTok.from_pretrained(tmp_path / "old", extent_encoding=True)
    assert torch.count_nonzero(upgraded.encoder.extent_proj.weight) == 0
    with torch.no_grad():
        assert torch.equal(upgraded(x, tokens_per_trajectory=2).tokens, a.tokens)
    extent.save_pretrained(tmp_path / "new")
    reloaded = TrajTok.from_pretrained(tmp_path / "new")
    assert reloaded.config.extent_encoding and torch.equal(reloaded.encoder.extent_proj.weight[:, 4], torch.ones(64))


def test_extent_encoding_streams_through_released_trajectories():
    """Closed (released) trajectories keep their own box, area and centres; every token stays finite."""
    m = tiny_model(0, extent_encoding=True, release_after=1, presence_fraction=0.02).eval()
    with torch.no_grad():
        m.encoder.extent_proj.weight.normal_()
        out = m.tokenize_video(torch.rand(1, 24, 3, 64, 64, generator=torch.Generator().manual_seed(1)), clip_len=4)
    assert out.present.shape[1] > m.config.num_queries  # some trajectories were closed and kept as rows
    assert torch.isfinite(out.tokens).all() and out.num_tokens.item() > 0
