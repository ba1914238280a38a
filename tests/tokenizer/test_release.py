"""trajtok convert-release: the authors' released segmenter state dict (names and shapes as released) -> TrajTok."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from trajtok import TrajTok, TrajTokConfig
from trajtok.cli import main as trajtok_main
from trajtok.release import convert, map_key

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
