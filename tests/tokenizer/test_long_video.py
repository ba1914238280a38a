"""Long video: one streaming code path, a bounded carried state, per-clip presence and release, time in every
token, sparse hard-mask attention, the external-feature backbone, the nested sub-latent table, fp32 logits, DDP."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch

from trajtok import TrajTok, TrajTokConfig
from trajtok.core.modeling import StreamState, tiny_model
from trajtok.nn.encoder import hard_mask_attention_mask
from trajtok.nn.positions import nested_fourier_bank, ring_fourier_bank

ROOT = Path(__file__).resolve().parents[2]


def frames(t: int, seed: int = 0, h: int = 64, w: int = 64) -> torch.Tensor:
    """(T, 3, H, W) float: a noisy background with two moving bright squares (so queries win stable regions)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(t, 3, h, w, generator=g) * 0.2
    for i in range(t):
        y0, x0 = (3 * i) % (h - 16), (5 * i) % (w - 16)
        x[i, 0, y0 : y0 + 16, x0 : x0 + 16] = 1.0
        x[i, 2, h - 20 : h - 4, (2 * i) % (w - 16) : (2 * i) % (w - 16) + 16] = 0.9
    return x


def test_sparse_attention_equals_dense_mask():
    torch.manual_seed(0)
    dense = TrajTok(TrajTokConfig.tiny(sparse_attention=False)).eval()
    sparse = TrajTok(TrajTokConfig.tiny(sparse_attention=True)).eval()
    sparse.load_state_dict(dense.state_dict())
    g = torch.Generator().manual_seed(1)
    b, k, p, e = 2, 16, 70, 64
    init, feats = torch.randn(b, k, e, generator=g), torch.randn(b, p, e, generator=g)
    hard = torch.randint(0, 5, (b, p), generator=g)  # queries 5..15 own no pixels
    pos = torch.rand(p, 3, generator=g) * 8
    for n in (1, 2, 4):
        with torch.no_grad():
            ref = dense.encoder.refine(init, feats, hard, n, pos)
            out = sparse.encoder.refine(init, feats, hard, n, pos)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert hard_mask_attention_mask(hard, k, 4).shape == (b, 1, k * 4, k * 4 + p)
    # gradients flow through the sparse path to features and inits
    init.requires_grad_(True)
    feats.requires_grad_(True)
    sparse.encoder.refine(init, feats, hard, 2, pos).sum().backward()
    assert init.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0


def test_nested_sub_latent_table_is_shared_by_every_choice():
    m = tiny_model(seed=0)
    table = m.encoder.offsets
    assert isinstance(table, torch.nn.Parameter) and table.shape == (4, 64)
    names = [name for name, _ in m.named_parameters() if "offsets" in name]
    assert names == ["encoder.offsets"]
    # first m rows of the nested bank are the evenly spaced ring of m (any row order)
    bank = nested_fourier_bank(4, 64)
    for size in (1, 2, 4):
        ring = ring_fourier_bank(size, 64)
        assert torch.cdist(bank[:size], ring).min(dim=1).values.max() < 1e-5
    # a step with n = 1 trains the same table that n = 4 reads
    m.train()
    out = m(frames(4)[None], tokens_per_trajectory=1)
    out.tokens.sum().backward()
    assert table.grad is not None and table.grad[0].abs().sum() > 0 and table.grad[1:].abs().sum() == 0


def test_old_checkpoint_with_per_choice_tables_loads(tmp_path):
    from safetensors.torch import load_file, save_file

    m = tiny_model(seed=0, time_encoding=False, carry="restart")
    m.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    table = state.pop("encoder.offsets")
    state.pop("segmenter.carry_gate")
    for n in (1, 2, 4):  # the first release stored one ring table per choice
        state[f"encoder.offsets.{n}"] = ring_fourier_bank(n, 64) * 0.1
    save_file(state, str(tmp_path / "model.safetensors"))
    config = (tmp_path / "config.json").read_text()
    import json

    d = json.loads(config)
    for key in ("time_encoding", "carry", "presence_fraction", "release_after", "carry_backprop_clips"):
        d.pop(key)
    d.pop("sparse_attention")
    (tmp_path / "config.json").write_text(json.dumps(d))
    loaded = TrajTok.from_pretrained(tmp_path)
    assert loaded.config.time_encoding is False and loaded.config.carry == "restart"
    assert torch.cdist(loaded.encoder.offsets.data, table).min(dim=1).values.max() < 1e-5
    with torch.no_grad():
        out = loaded.tokenize_video(frames(6), clip_len=4)
    assert out.num_tokens.item() > 0


def test_carried_state_is_bounded_and_bf16_agrees_with_fp32():
    m = tiny_model(seed=0).eval()
    learned_norm = m.segmenter.queries.norm(dim=-1).max()
    video = frames(96, seed=3)
    with torch.no_grad():
        state = None
        for s in range(0, 96, 4):
            init = m.segmenter.initial_queries(1, state.queries if state else None)
            assert init.norm(dim=-1).max() <= learned_norm * 1.0001  # convex mix of two learned-norm vectors
            state = m(video[None, s : s + 4], state=state).state
        ref = m.tokenize_video(video, clip_len=4)
        low = tiny_model(seed=0).eval().to(torch.bfloat16)
        out = low.tokenize_video(video, clip_len=4)
    agree = (out.assignment == ref.assignment).float().mean().item()
    assert agree > 0.8, agree
    first, last = ref.assignment[:, :16], ref.assignment[:, -16:]
    assert (out.assignment[:, -16:] == last).float().mean() > 0.8  # no drift over 24 clips
    assert (out.assignment[:, :16] == first).float().mean() > 0.8


def test_assignment_logits_are_fp32_under_autocast():
    m = tiny_model(seed=0).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(frames(2)[None])
    assert out.logits.dtype == torch.float32 and out.soft_masks.dtype == torch.float32


def test_tokens_carry_time():
    m = tiny_model(seed=0).eval()
    clip = frames(4, seed=5)
    with torch.no_grad():
        early = m(clip[None])
        late = m(clip[None], state=StreamState(m.segmenter.queries[None].clone(), frames_seen=400))
    assert torch.equal(early.assignment, late.assignment)  # same content, same segmentation
    assert torch.equal(late.first_last[late.present], early.first_last[early.present] + 400)
    assert not torch.allclose(early.tokens, late.tokens, atol=1e-3)  # ... but the tokens say when
    off = tiny_model(seed=0, time_encoding=False).eval()
    with torch.no_grad():
        a = off(clip[None])
        b = off(clip[None], state=StreamState(off.segmenter.queries[None].clone(), frames_seen=400))
    torch.testing.assert_close(a.tokens, b.tokens)


def test_streaming_is_one_code_path_and_presence_is_per_clip():
    m = tiny_model(seed=0).eval()
    video = frames(12, seed=2)
    with torch.no_grad():
        whole = m.tokenize_video(video, clip_len=4, return_masks=True)
        first = m.tokenize_video(video[:8], clip_len=4)
        resumed = m.tokenize_video(video[8:], clip_len=4, state=first.state)
    assert torch.equal(torch.cat([first.assignment, resumed.assignment], 1), whole.assignment)
    assert whole.soft_masks.shape[2] == 12 and resumed.first_last[resumed.present].min() >= 8
    # per-clip threshold: a query with a few stray pixels in every clip has no token
    strict = tiny_model(seed=0, presence_fraction=0.05).eval()
    with torch.no_grad():
        out = strict.tokenize_video(video, clip_len=4)
    per_clip = torch.stack(
        [torch.bincount(out.assignment[0, s : s + 4].flatten(), minlength=16) for s in (0, 4, 8)]
    )  # (clips, K)
    expected = (per_clip >= 0.05 * 4 * 16 * 16).any(0)
    assert torch.equal(out.present[0, :16], expected)
    assert int(out.num_tokens) < int((per_clip.sum(0) > 0).sum())


def test_release_closes_trajectory_and_frees_query():
    m = tiny_model(seed=0, release_after=1).eval()
    video = frames(8, seed=4)
    video[4:] = 0.0  # the objects are gone in the second clip: every query present in clip 1 is absent in clip 2
    with torch.no_grad():
        out = m.tokenize_video(video, clip_len=4)
        out2 = m.tokenize_video(torch.cat([video, frames(4, seed=4)]), clip_len=4)
    q = out.trajectory_query[0]
    assert out.present.shape[1] >= 16 and bool((q >= 0).any())
    # a query seen again after its release gives a second, separate trajectory with later time stamps
    rows = out2.trajectory_query[0]
    again = [k for k in rows[16:].tolist() if k >= 0 and k in rows[:16].tolist()]
    assert again, rows
    k = again[0]
    idx = (rows == k).nonzero().flatten()
    fl = out2.first_last[0, idx]
    assert fl[:, 0].max() >= 8 and fl[:, 1].min() < 4
    torch.testing.assert_close(out2.valid.sum(), out2.present.sum())


def test_external_backbone_has_no_image_model():
    cfg = TrajTokConfig.tiny(backbone="external", external_dim=24, output_dim=32)
    m = TrajTok(cfg).eval()
    assert m.features is None and not any(n.startswith("features.") for n, _ in m.named_parameters())
    feats = torch.randn(1, 10, 6, 6, 24)
    calls = []

    def per_clip(start, stop):
        calls.append((start, stop))
        return feats[:, start:stop]

    with torch.no_grad():
        a = m.tokenize_video(torch.zeros(1, 10, 3, 32, 32), features=per_clip, clip_len=4)
        b = m.tokenize_video(torch.zeros(1, 10, 3, 32, 32), features=feats, clip_len=4)
    assert calls == [(0, 4), (4, 8), (8, 10)]
    assert a.assignment.shape == (1, 10, 6, 6) and a.tokens.shape[-1] == 32
    torch.testing.assert_close(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="backbone='external'"):
        m(torch.zeros(1, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="external_dim"):
        TrajTokConfig.tiny(backbone="external")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)

    class Tokens(torch.nn.Module):  # DDP needs a tensor output
        def __init__(self):
            super().__init__()
            self.model = tiny_model(seed=0)

        def forward(self, x):
            return self.model.tokenize_video(x, clip_len=2).tokens

    net = torch.nn.parallel.DistributedDataParallel(Tokens(), find_unused_parameters=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.manual_seed(rank)  # ranks sample different tokens-per-trajectory choices
    for step in range(3):
        loss = net(frames(4, seed=10 * rank + step)[None]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({k: v.detach() for k, v in net.module.state_dict().items()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_plain_ddp_two_processes_gloo(tmp_path):
    import torch.multiprocessing as mp

    sys.path.insert(0, str(ROOT / "tests" / "tokenizer"))
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    start = tiny_model(seed=0).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # replicas stayed in sync
    assert not torch.equal(a["model.encoder.offsets"], start["encoder.offsets"])  # and trained


def test_multi_clip_training_trains_the_carry_gate_with_truncation():
    from trajtok.training.train import SegmentationLogits, load_config

    cfg = load_config("stream")
    assert cfg.stream_clips >= 2 and cfg.model_config().carry == "gated"
    x = frames(6, seed=1)[None]

    def second_clip_grads(backprop_clips: int) -> tuple[torch.Tensor, torch.Tensor]:
        m = tiny_model(seed=0, carry="gated", carry_backprop_clips=backprop_clips).train()
        logits = SegmentationLogits(m, clip_len=2)(x)  # (1, K, 6, h, w)
        assert logits.shape[2] == 6
        logits[:, :, 2:4].logsumexp(1).sum().backward()  # a loss on the second clip only
        return m.segmenter.carry_gate.grad, m.segmenter.perceiver.layers[0].to_q.weight.grad

    # reference: the first clip without gradient, its state handed on detached
    ref = tiny_model(seed=0, carry="gated").train()
    with torch.no_grad():
        state = ref(x[:, :2]).state
    ref(x[:, 2:4], state=state).logits.logsumexp(1).sum().backward()
    ref_grad = ref.segmenter.perceiver.layers[0].to_q.weight.grad

    gate, truncated = second_clip_grads(1)
    assert gate.abs() > 0  # the carry gate is trained by the multi-clip loss
    torch.testing.assert_close(truncated, ref_grad)  # truncation: no gradient into the first clip
    _, full = second_clip_grads(3)
    assert not torch.allclose(full, ref_grad)  # without it, the loss reaches the first clip through the state


def test_segmenter_can_read_pooled_features():
    full = tiny_model(seed=0).eval()
    pooled = tiny_model(seed=0, seg_read_stride=2).eval()
    x = frames(3, seed=6)[None]
    with torch.no_grad():
        a, b = full(x), pooled(x)
    assert b.logits.shape == a.logits.shape == (1, 16, 3, 16, 16)  # logits stay on the full grid
    assert b.state.queries.shape == a.state.queries.shape
    assert not torch.allclose(a.state.queries, b.state.queries)  # the queries read other (pooled) inputs
    with pytest.raises(ValueError, match="seg_read_stride"):
        TrajTokConfig.tiny(seg_read_stride=0)


def _expected_extent(assignment: torch.Tensor, k: int, clip_len: int, threshold: float) -> dict[str, torch.Tensor]:
    """Per query, from the hard assignment (T, h, w) alone: pixel count, first / last frame and union box over the
    clips where the query is present (>= threshold pixels); pixels in clips where it is absent are ignored."""
    t, h, w = assignment.shape
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    counts = torch.zeros(k, dtype=torch.long)
    first_last = torch.full((k, 2), -1, dtype=torch.long)
    boxes = torch.zeros(k, 4)
    for q in range(k):
        mine = torch.zeros_like(assignment, dtype=torch.bool)
        for s in range(0, t, clip_len):
            clip = assignment[s : s + clip_len] == q
            if clip.sum() >= threshold:
                mine[s : s + clip_len] = clip
        if not mine.any():
            continue
        counts[q] = mine.sum()
        first_last[q] = torch.stack([tt[mine].min(), tt[mine].max()])
        boxes[q] = torch.stack(
            [yy[mine].min() / h, xx[mine].min() / w, (yy[mine].max() + 1) / h, (xx[mine].max() + 1) / w]
        )
    return {"counts": counts, "first_last": first_last, "boxes": boxes}


def test_absent_clips_reach_neither_the_time_nor_the_extent_encoding():
    """A query below the presence threshold in a clip is absent there: its stray pixels in that clip must not move
    its first / last frame (time encoding) nor its box, area or start / end centres (extent encoding)."""
    pf = 0.05
    m = tiny_model(seed=0, presence_fraction=pf, extent_encoding=True).eval()
    with torch.no_grad():
        out = m.tokenize_video(frames(12, seed=1), clip_len=4)
    a = out.assignment[0]
    k, (h, w) = 16, a.shape[-2:]
    threshold = max(1.0, pf * 4 * h * w)
    per_clip = torch.stack([torch.bincount(a[s : s + 4].flatten(), minlength=k) for s in (0, 4, 8)])  # (clips, K)
    stray = ((per_clip > 0) & (per_clip < threshold)).any(0) & (per_clip >= threshold).any(0)  # (K,)
    assert stray.any(), "the video must hold a query that is present in one clip and has stray pixels in another"
    want = _expected_extent(a, k, 4, threshold)
    assert torch.equal(out.present[0, :k], want["counts"] > 0)
    assert torch.equal(out.first_last[0, :k], want["first_last"])
    torch.testing.assert_close(out.boxes[0, :k], want["boxes"])

    # the accumulator itself: clip 2's stray pixel (late, far away, big count of 1) leaves clip 1's stats as they were
    from trajtok.core.modeling import _extent_stats, _VideoAccumulator

    acc = _VideoAccumulator(None, return_masks=False)
    clip1 = torch.zeros(1, 4, 8, 8, dtype=torch.long)
    clip1[0, :, 1:3, 1:3] = 1  # query 1 holds a 2x2 block in all 4 frames: present
    clip2 = torch.zeros(1, 4, 8, 8, dtype=torch.long)
    clip2[0, 3, 7, 7] = 1  # one stray pixel of query 1 in the last frame of clip 2: absent
    lat = torch.zeros(1, 2, 1, 4)
    for s, clip in ((0, clip1), (4, clip2)):
        stats = _extent_stats(clip, 2, t_offset=s, centres=True)
        acc.add(stats, stats["counts"] >= 4, torch.zeros(1, 2, 4), torch.zeros(1, 2), lat)
    alone = _extent_stats(clip1, 2, centres=True)
    for name in ("counts", "t0", "t1", "y0", "y1", "x0", "x1", "cy0", "cx0", "cy1", "cx1"):
        assert torch.equal(acc.stats[name][0, 1], alone[name][0, 1]), name


def test_merge_returning_joins_a_trajectory_seen_again_after_its_absence():
    m = tiny_model(seed=0, release_after=1).eval()
    video = frames(8, seed=4)
    video[4:] = 0.0  # gone in clip 2, back in clip 3 with the frames of clip 1
    video = torch.cat([video, frames(4, seed=4)])
    with torch.no_grad():
        split = m.tokenize_video(video, clip_len=4)
        m.config.merge_returning = 0.99
        joined = m.tokenize_video(video, clip_len=4)
    rows = split.trajectory_query[0]
    again = [k for k in rows[16:].tolist() if k >= 0 and k in rows[:16].tolist()]
    assert again, rows  # without merging, a returning object is a second trajectory of its query
    q = joined.trajectory_query[0]
    for k in again:  # with it, one trajectory that spans both appearances
        (idx,) = (q == k).nonzero(as_tuple=True)
        assert idx.numel() == 1, q
        fl = joined.first_last[0, idx[0]]
        assert int(fl[0]) < 4 and int(fl[1]) >= 8
    assert int(joined.present.sum()) == int(split.present.sum()) - len(again)
    # pixels follow their trajectory row: the first appearance was closed into a row after the K queries' rows,
    # the second is the query's own row again; once joined, both are the first one's row
    for k in again:
        first_row, second_row = int(16 + (rows[16:] == k).nonzero()[0]), k
        mask = split.assignment[0] == k
        assert bool(mask[:4].any()) and bool(mask[8:].any())
        assert set(split.row_assignment()[0][:4][mask[:4]].tolist()) == {first_row}
        assert set(split.row_assignment()[0][8:][mask[8:]].tolist()) == {second_row}
        assert set(joined.row_assignment()[0][mask].tolist()) == {first_row}
    assert split.frame_rows.shape == (1, 12, 16) and bool((split.frame_rows[0, 8:] == torch.arange(16)).all())
    assert int(joined.num_tokens) < int(split.num_tokens)
    torch.testing.assert_close(joined.valid.sum(), joined.present.sum())


def test_merge_returning_rows_time_order_similarity_and_gradients():
    from trajtok.core.modeling import _EMPTY_STATS, _merge_returning

    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    # rows: 0 = frames 0-7 (a), 1 = frames 0-15 (b, overlaps 0), 2 = frames 16-23 (close to a), 3 = padding
    latent = torch.stack([a * 2, b * 3, a + 0.1 * b, torch.zeros(3)])[None, :, None, :].requires_grad_(True)
    clips = torch.tensor([[2.0, 4.0, 2.0, 0.0]])
    stats = {
        "counts": torch.tensor([[10, 40, 6, 0]]),
        "t0": torch.tensor([[0, 0, 16, _EMPTY_STATS["t0"]]]),
        "t1": torch.tensor([[7, 15, 23, -1]]),
        "y0": torch.tensor([[2, 0, 1, _EMPTY_STATS["y0"]]]),
        "y1": torch.tensor([[5, 9, 8, -1]]),
        "x0": torch.tensor([[2, 0, 3, _EMPTY_STATS["x0"]]]),
        "x1": torch.tensor([[5, 9, 4, -1]]),
        "cy0": torch.tensor([[0.1, 0.5, 0.7, 0.0]]),
        "cx0": torch.tensor([[0.2, 0.5, 0.8, 0.0]]),
        "cy1": torch.tensor([[0.3, 0.5, 0.9, 0.0]]),
        "cx1": torch.tensor([[0.4, 0.5, 0.6, 0.0]]),
    }
    row_query = torch.tensor([[0, 1, 0, -1]])
    lat, cl, st, joined = _merge_returning(latent, clips, stats, row_query, threshold=0.9)
    assert joined.tolist() == [[0, 1, 0, 3]]
    assert cl.tolist() == [[4.0, 4.0, 0.0, 0.0]]  # row 2 joined row 0 (row 1 ends at 15 too, but is not like it)
    torch.testing.assert_close(lat[0, 0, 0], a * 3 + 0.1 * b)
    assert st["counts"].tolist() == [[16, 40, 0, 0]]
    assert (st["t0"][0, 0], st["t1"][0, 0], st["y0"][0, 0], st["y1"][0, 0]) == (0, 23, 1, 8)
    # where the joined trajectory starts is row 0's start centre, where it ends is row 2's end centre
    assert st["cy0"][0, 0] == pytest.approx(0.1) and st["cy1"][0, 0] == pytest.approx(0.9)
    assert st["t0"][0, 2] == _EMPTY_STATS["t0"] and st["t1"][0, 2] == -1
    lat.sum().backward()
    assert latent.grad is not None and float(latent.grad[0, 2].abs().sum()) > 0
    # a stricter threshold keeps them apart; time overlap always does (row 1 never joins row 0)
    _, cl2, _, _ = _merge_returning(latent, clips, stats, row_query, threshold=0.999)
    assert torch.equal(cl2, clips)
    with pytest.raises(ValueError, match="merge_returning"):
        TrajTokConfig.tiny(merge_returning=1.5)
