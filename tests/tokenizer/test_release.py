"""trajtok convert-release: the authors' released segmenter state dict (names and shapes as released) -> TrajTok."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from trajtok import TrajTok, TrajTokConfig
from trajtok.cli import main as trajtok_main
from trajtok.io.release import convert, map_key
from trajtok.nn.release_segmenter import ReleasePerceiver

SEG = "vision_encoder."


def release_state(e: int = 64, k: int = 8, dims=(8, 16, 24, 32), depths=(1, 1, 2, 1), seg_depth: int = 2) -> dict:
    """A state dict with the release's key names and shapes (SegmentWrapper around SimpleSegmenter with a DINOv3
    ConvNeXt backbone, PerceiverResampler with rotary, low / high resolution heads), at small widths."""
    g = torch.Generator().manual_seed(0)
    s: dict[str, torch.Tensor] = {}

    def put(name: str, *shape: int) -> None:
        s[name] = torch.randn(*shape, generator=g)

    bb = SEG + "patch_encoder.backbone."
    put(bb + "downsample_layers.0.0.weight", dims[0], 3, 4, 4)
    put(bb + "downsample_layers.0.0.bias", dims[0])
    put(bb + "downsample_layers.0.1.weight", dims[0])
    put(bb + "downsample_layers.0.1.bias", dims[0])
    for i in range(1, 4):
        put(bb + f"downsample_layers.{i}.0.weight", dims[i - 1])
        put(bb + f"downsample_layers.{i}.0.bias", dims[i - 1])
        put(bb + f"downsample_layers.{i}.1.weight", dims[i], dims[i - 1], 2, 2)
        put(bb + f"downsample_layers.{i}.1.bias", dims[i])
    for i, (d, n) in enumerate(zip(dims, depths, strict=True)):
        for j in range(n):
            p = bb + f"stages.{i}.{j}."
            put(p + "gamma", d)
            put(p + "dwconv.weight", d, 1, 7, 7)
            put(p + "dwconv.bias", d)
            put(p + "norm.weight", d)
            put(p + "norm.bias", d)
            put(p + "pwconv1.weight", 4 * d, d)
            put(p + "pwconv1.bias", 4 * d)
            put(p + "pwconv2.weight", d, 4 * d)
            put(p + "pwconv2.bias", d)
    put(bb + "norm.weight", dims[-1])
    put(bb + "norm.bias", dims[-1])
    s[bb + "norms.3.weight"] = s[bb + "norm.weight"].clone()  # the same module under its second name
    s[bb + "norms.3.bias"] = s[bb + "norm.bias"].clone()
    for i, d in enumerate(dims):
        put(SEG + f"patch_encoder.proj.{i}.weight", e, d, 1, 1)
        put(SEG + f"patch_encoder.proj.{i}.bias", e)
    put(SEG + "patch_encoder.ln.weight", e)
    put(SEG + "patch_encoder.ln.bias", e)
    for head in ("traj_seg_head_low_res", "patch_decoder_low_res", "traj_seg_head_high_res"):
        put(SEG + f"{head}.0.weight", e // 4, e)
        put(SEG + f"{head}.0.bias", e // 4)
        put(SEG + f"{head}.2.weight", e // 8, e // 4)
        put(SEG + f"{head}.2.bias", e // 8)
    tp = SEG + "trajectory_perceiver."
    put(tp + "latents", k, e)
    dh = e // 8
    for i in range(seg_depth):
        a, m = tp + f"layers.{i}.0.", tp + f"layers.{i}.1."
        for n in ("norm_media", "norm_latents"):
            put(a + n + ".weight", e)
            put(a + n + ".bias", e)
        put(a + "to_q.weight", 8 * dh, e)
        put(a + "to_kv.weight", 16 * dh, e)
        put(a + "to_out.weight", e, 8 * dh)
        s[a + "rotary_emb.freqs"] = torch.rand(dh // 4, generator=g)  # RotaryEmbedding(dim = dh / 2)
        put(m + "norm.weight", e)
        put(m + "norm.bias", e)
        for n, (o, i_) in {"gate": (4 * e, e), "up": (4 * e, e), "down": (e, 4 * e)}.items():
            put(m + n + ".weight", o, i_)
            put(m + n + ".bias", o)
    for n in ("norm_lat", "norm_ctx"):
        put(tp + n + ".weight", e)
        put(tp + n + ".bias", e)
    hr = SEG + "patch_decoder_high_res.conv_up."
    put(hr + "0.weight", e, e // 2, 2, 2)
    put(hr + "0.bias", e // 2)
    put(hr + "1.weight", e // 2)
    put(hr + "1.bias", e // 2)
    put(hr + "3.weight", e // 2, e // 4, 2, 2)
    put(hr + "3.bias", e // 4)
    put(hr + "5.weight", e // 8, e // 4, 1, 1)
    put(hr + "5.bias", e // 8)
    s[SEG + "log_scale"] = torch.tensor([2.5])
    # the text side of the segmenter pretraining (dropped by the converter)
    put("text_encoder.embeddings.word_embeddings.weight", 30, 16)
    put("text_encoder.encoder.layer.0.attention.self.query.weight", 16, 16)
    put("vision_proj.weight", 8, e)
    put("vision_proj.bias", 8)
    put("text_proj.weight", 8, 16)
    put("text_proj.bias", 8)
    put("itm_head.weight", 2, 16)
    put("itm_head.bias", 2)
    s["temp"] = torch.tensor(0.07)
    return s


@pytest.fixture(scope="module")
def release_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("release") / "model.pth"
    state = {f"module.{k}": v for k, v in release_state().items()}  # DDP-prefixed, as a training run saves
    torch.save({"model": state, "meta": {"epoch": 19, "global_step": 1000, "source_path": "/x"}}, path)
    return path


def test_convert_release_maps_every_tensor(release_file, tmp_path, capsys):
    out = tmp_path / "converted"
    assert trajtok_main(["convert-release", str(release_file), str(out)]) == 0
    assert "converted" in capsys.readouterr().out
    src = release_state()
    model = TrajTok.from_pretrained(out)
    cfg = model.config
    assert (cfg.segmenter_variant, cfg.backbone, cfg.width, cfg.num_queries) == ("release", "dinov3_convnext", 64, 8)
    assert cfg.backbone_config["depths"] == [1, 1, 2, 1] and cfg.encoder_trained_by is None
    saved = load_file(str(out / "model.safetensors"))
    used = 0
    for key, value in src.items():
        target = map_key(key)
        if target is None:
            continue
        used += 1
        torch.testing.assert_close(saved[target], value, rtol=0, atol=0, msg=key)
    assert used == len(src) - 9  # everything but the 9 tensors of the text side
    with torch.no_grad():
        tokens = model(torch.rand(1, 2, 3, 64, 64))
    assert tokens.logits.shape == (1, 8, 2, 56, 56) and tokens.num_tokens.item() >= 1
    hi = model.segmenter.high_res_logits(model.encode_pixels(torch.rand(1, 2, 3, 64, 64)), tokens.state.queries)
    assert hi.shape == (1, 8, 2, 224, 224)  # the release preset reads 224 px frames


def test_unmapped_and_missing_keys_are_listed(tmp_path):
    state = release_state()
    state[SEG + "mystery.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"no place in TrajTok: \['vision_encoder.mystery.weight'\]"):
        convert(tmp_path / "extra.pth", tmp_path / "o1")
    state = release_state()
    del state[SEG + "patch_decoder_high_res.conv_up.5.bias"]
    torch.save({"model": state}, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing \['segmenter.hires_decoder.5.bias'\]"):
        convert(tmp_path / "missing.pth", tmp_path / "o2")
    with pytest.raises(FileNotFoundError, match="release checkpoint not found"):
        convert(tmp_path / "nope.pth", tmp_path / "o3")


class Payload:
    """An arbitrary class: unpickling it would import and run code from the file."""


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": {"x": torch.zeros(1)}, "obj": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="not a weights-only PyTorch checkpoint"):
        convert(tmp_path / "evil.pth", tmp_path / "o")


def test_release_preset_holds_the_released_shapes():
    """At the released size (E = 512, K = 128, ConvNeXt-Small) every release key maps onto a tensor of its shape."""
    src = release_state(e=512, k=128, dims=(96, 192, 384, 768), depths=(3, 3, 27, 3))
    with torch.device("meta"):
        model = TrajTok(TrajTokConfig.release())
    own = model.state_dict()
    targets = {}
    for key, value in src.items():
        target = map_key(key)
        if target is not None:
            assert own[target].shape == value.shape, key
            targets[target] = key
    assert {k for k in own if k.startswith(("features.", "segmenter."))} == set(targets)


FIXTURE = Path(__file__).parent / "data" / "release_parity_tiny.safetensors"


def test_release_matches_the_authors_segmenter(load_script, tmp_path):
    """The converted model reproduces the authors' own segmenter (hellomuffin/trajtok, their code run once by
    ``eval/bench/bench_release_parity.py --write-fixture``): same release weights at the tiny size, same 2 frames,
    their queries, 8 x 8 assignment logits and 32 x 32 high-resolution logits. Covers what the key mapping cannot:
    the Perceiver's normalisation order, its rotary layout and stored frequencies, the layer order, the stage fusion
    and both heads."""
    bench = load_script("eval/bench/bench_release_parity.py")
    ref = load_file(str(FIXTURE))
    with safe_open(str(FIXTURE), "pt") as f:
        meta = f.metadata()
    tiny = json.loads(meta["tiny"])
    shapes = {
        k: tuple(v.shape)
        for k, v in release_state(
            e=tiny["width"], k=tiny["queries"], dims=tiny["dims"], depths=tiny["depths"], seg_depth=tiny["seg_depth"]
        ).items()
    }
    torch.save({"model": bench.random_release_state(shapes, seed=int(meta["seed"]))}, tmp_path / "model.pth")
    model = TrajTok.from_pretrained(convert(tmp_path / "model.pth", tmp_path / "converted")).eval()
    frames = ref["frames"]  # (T, 3, 32, 32) already normalised, as their segmenter reads them
    with torch.no_grad():
        feats = model.features(frames).unsqueeze(0)  # (1, T, 8, 8, E)
        queries, logits = model.segmenter(feats)  # (1, K, E), (1, K, T, 8, 8)
        hi = model.segmenter.high_res_logits(feats, queries)  # (1, K, T, 32, 32)
    k = logits.shape[1]
    ours_low = logits.reshape(1, k, -1).transpose(1, 2)  # (1, T*h*w, K): their layout
    ours_high = hi.reshape(1, k, -1).transpose(1, 2)
    torch.testing.assert_close(queries, ref["queries"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_low, ref["logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_high, ref["high_res_logits"], rtol=1e-4, atol=1e-4)
    assert torch.equal(ours_low.argmax(-1), ref["logits"].argmax(-1))
    assert ref["logits"].argmax(-1).unique().numel() > 1  # the reference is not a degenerate single-query mask


def test_release_perceiver_normalisation_order():
    """As released: the features are normalised once (norm_ctx), the latents again before every layer (norm_lat),
    each attention normalises both (norm_media, norm_latents), the gated MLP normalises its input, and the residual
    adds the layer's output to the normalised latents. So every attention reads norm_lat of the running latents,
    and the output is unchanged by any positive scale and shift of the initial latents or of the features."""
    torch.manual_seed(0)
    p = ReleasePerceiver(width=32, depth=3, heads=4, head_dim=8).eval()
    with torch.no_grad():
        for name, t in p.named_parameters():
            if "norm" in name:
                t.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(t))
    seen: list[tuple[Tensor, Tensor]] = []
    hooks = [layer.attn.register_forward_pre_hook(lambda m, a: seen.append(a)) for layer in p.layers]
    latents, feats = torch.randn(2, 5, 32) * 3 + 1, torch.randn(2, 40, 32) * 2 - 1
    with torch.no_grad():
        out = p(latents, feats)
        for h in hooks:
            h.remove()
        assert len(seen) == 3
        for i, (x, lat) in enumerate(seen):
            torch.testing.assert_close(x, p.norm_ctx(feats), msg=f"layer {i} attends to norm_ctx(features)")
            rows = (lat - p.norm_lat.bias) / p.norm_lat.weight  # norm_lat without its affine
            torch.testing.assert_close(rows.mean(-1), torch.zeros(2, 5), atol=1e-4, rtol=0, msg=f"layer {i} mean")
            torch.testing.assert_close(rows.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)
        torch.testing.assert_close(p(latents * 4.0 + 2.0, feats), out, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(p(latents, feats * 0.25 - 3.0), out, rtol=1e-4, atol=1e-4)
        # the returned latents are the raw residual stream (no final norm_lat): undoing its affine leaves rows that
        # are not normalised
        rows = (out - p.norm_lat.bias) / p.norm_lat.weight
        assert (rows.var(-1, unbiased=False) - 1).abs().max() > 0.1


def test_parity_bench_skips_without_the_authors_code(load_script, tmp_path, capsys):
    """bench_release_parity.py needs a checkout of the authors' repository: without one it says so and exits 0."""
    bench = load_script("eval/bench/bench_release_parity.py")
    assert bench.main([]) == 0
    assert "skipped: no --upstream given" in capsys.readouterr().out
    assert bench.main(["--upstream", str(tmp_path / "nope")]) == 0
    assert f"skipped: --upstream {tmp_path / 'nope'} does not exist" in capsys.readouterr().out
    assert bench.main(["--upstream", str(tmp_path), "--data", str(tmp_path)]) == 0
    assert f"skipped: real-video data not found at {tmp_path}" in capsys.readouterr().out
    assert bench.main(["--upstream", str(tmp_path), "--write-fixture", str(tmp_path / "f.safetensors")]) == 0
    assert "no trajtok_segmenter/model/segmenter.py there" in capsys.readouterr().out
