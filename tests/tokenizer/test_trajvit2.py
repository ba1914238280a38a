"""TrajViT2 (video CLIP over TrajTok tokens), its baselines, TrajAdapter probes, and encoder provenance."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trajtok import TrajTok, TrajTokConfig
from trajtok.adapter import (
    ProbeData,
    TrajAdapter,
    balanced_accuracy,
    build_probe,
    chance_levels,
    class_weights,
    fit_probe,
    probe_accuracy,
    select_probe,
    vit3d_dense_features,
)
from trajtok.cli import main as trajtok_main
from trajtok.core.modeling import tiny_model
from trajtok.io.checkpoints import latest_checkpoint
from trajtok.synth import write_dataset
from trajtok.training.train import SegmentationLogits, TrainConfig, load_config, train
from trajtok.trajvit2 import (
    TextTokenizer,
    TrajViT2,
    TrajViT2Config,
    VideoTransformer,
    build_for_training,
    retrieval_metrics,
)

FAST = ["threads=1", "log_every=1", "batch_size=4", "clip_len=4", "val_split=null", "warmup_steps=1"]
CAPTIONS = [
    "Three objects move over a dark grid background: a red circle that bounces and a blue star.",
    "A single object moves over a light plain background: a green square that drifts.",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_trajvit2")
    write_dataset(root, "train=4,val=2,test=4", frames=8, size=64, objects=(1, 3), seed=0)
    return root


def clip_cfg(data: Path, *overrides: str) -> TrainConfig:
    return load_config("trajvit2_quick", [f"data={data}", "steps=2", *FAST, *overrides])


def encoder_init(config: TrajTokConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """The trajectory encoder as train() initialises it (torch seeded, TrajTok built first)."""
    torch.manual_seed(seed)
    return {k: v for k, v in TrajTok(config.replace(encoder_trained_by=None)).state_dict().items()}


def tiny_trajvit2(encoder: str = "trajtok", **fields) -> TrajViT2:
    torch.manual_seed(0)
    cfg = TrajViT2Config(
        video_encoder=encoder,
        trajtok=TrajTokConfig.tiny().to_dict(),
        width=32,
        heads=2,
        embed_dim=16,
        text_width=32,
        text_heads=2,
        **fields,
    )
    return TrajViT2(cfg, TextTokenizer.train(CAPTIONS, 100, 32))


# ------------------------------------------------------------------------------------- no wasted compute


def test_segmentation_pretraining_skips_the_encoder_and_says_so(synth, tmp_path, capsys):
    model = tiny_model(seed=0)
    calls = []
    model.encoder.perceiver.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(1, 4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    logits = SegmentationLogits(model)(x)
    assert logits.shape == (1, 16, 4, 16, 16) and not calls  # the encoder never ran
    model(x)
    assert calls  # while a full forward does run it (the hook works)

    ckpt = train(load_config("smoke", [f"data={synth}", "threads=1", "val_split=null"]), tmp_path / "seg")
    trained = load_file(str(ckpt / "model.safetensors"))
    config = TrajTokConfig.load(ckpt)
    assert config.encoder_trained_by is None
    init = encoder_init(config)
    enc = [k for k in trained if k.startswith("encoder.")]
    assert len(enc) > 10
    for k in enc:
        assert torch.equal(trained[k], init[k]), f"{k} changed during segmentation-only pretraining"
    assert any(not torch.equal(trained[k], init[k]) for k in trained if k.startswith("segmenter."))

    video = next((synth / "test").glob("*.mp4"))
    assert trajtok_main(["tokenize", str(video), "--checkpoint", str(ckpt)]) == 0
    assert "trajectory encoder: untrained" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- TrajViT2


def test_trajvit2_trains_encoder_with_the_recipe_and_records_it(synth, tmp_path, capsys):
    ckpt = train(clip_cfg(synth, "steps=3", "lr=1e-2", "val_split=val", "eval_videos=2"), tmp_path / "tv2")
    rows = [json.loads(x) for x in (tmp_path / "tv2" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_r5_t2v" in r]
    assert len(val) == 1 and val[0]["val_videos"] == 2 and 0 <= val[0]["val_r1_v2t"] <= 100
    rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"loss", "clip", "focal", "dice", "temperature", "tokens"} <= set(r)
        assert r["loss"] == pytest.approx(r["clip"] + 0.5 * r["focal"] + 1.0 * r["dice"], rel=1e-5)
    assert rows[0]["temperature"] == pytest.approx(0.07, rel=1e-3)

    tokenizer = TrajTok.from_pretrained(ckpt)  # the co-trained tokenizer loads on its own
    assert tokenizer.config.encoder_trained_by == "clip"
    init = encoder_init(tokenizer.config)
    state = tokenizer.state_dict()
    changed = [k for k in state if k.startswith("encoder.") and not torch.equal(state[k], init[k])]
    assert len(changed) >= 20, f"only {changed} of the encoder moved"

    model = TrajViT2.from_pretrained(ckpt)
    assert model.config.video_encoder == "trajtok" and model.tok_cfg.encoder_trained_by is None
    video = next((synth / "test").glob("*.mp4"))
    assert trajtok_main(["tokenize", str(video), "--checkpoint", str(tmp_path / "tv2")]) == 0
    assert "trajectory encoder: trained by the TrajViT2" in capsys.readouterr().out


def test_trajvit2_resume_continues_exactly(synth, tmp_path):
    common = ["steps=4", "save_every=2"]
    train(clip_cfg(synth, *common), tmp_path / "full")
    train(clip_cfg(synth, *common, "stop_at=2"), tmp_path / "split")
    train(clip_cfg(synth, *common), tmp_path / "split", resume=True)
    a, b = latest_checkpoint(tmp_path / "full"), latest_checkpoint(tmp_path / "split")
    assert a.name == b.name == "step_0000004"
    for name in ("model.safetensors", "trajvit2.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys()
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, msg=f"{name}:{k} differs after resume")


@pytest.mark.parametrize("encoder", ["vit3d", "trajvit"])
def test_baselines_train_with_the_same_recipe(synth, tmp_path, encoder):
    ckpt = train(clip_cfg(synth, f"trajvit2.video_encoder={encoder}"), tmp_path / encoder)
    assert not (ckpt / "model.safetensors").exists()  # no TrajTok inside
    rows = [json.loads(x) for x in (tmp_path / encoder / "metrics.jsonl").read_text().splitlines()]
    assert "focal" not in rows[0] and rows[0]["loss"] == pytest.approx(rows[0]["clip"])
    model = TrajViT2.from_pretrained(ckpt)
    x = torch.rand(2, 4, 3, 64, 64)
    ids = torch.randint(0, 3, (2, 4, 64, 64))
    with torch.no_grad():
        out = model.encode_video(x, ids)
    assert out.embeds.shape == (2, 64)
    if encoder == "vit3d":
        assert out.num_tokens.tolist() == [2 * 8 * 8] * 2  # 2 tubelets x (64 / 8)^2 patches
    else:
        assert out.num_tokens.tolist() == [3, 3]  # one token per labelled trajectory (background included)


def test_trajvit_baseline_resamples_over_time_and_ignores_absent_frames():
    """TrajViT's 1-query resampler over time (its Table 2), not a mean over frames: playing the clip backwards
    changes a trajectory's token (a mean of per-frame tokens would not change), and frames where a trajectory is
    absent do not reach its token."""
    model = tiny_trajvit2("trajvit").eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4, 3, 64, 64, generator=g)
    ids = torch.zeros(1, 4, 64, 64, dtype=torch.long)  # 0: background, in every frame
    ids[0, :2, 8:24, 8:24] = 1  # frames 0-1 only
    ids[0, :, 36:60, 30:54] = 2  # every frame
    with torch.no_grad():
        tokens, valid = model.trajvit(x, ids)
        backwards, _ = model.trajvit(x.flip(1), ids.flip(1))
        changed = x.clone()
        changed[:, 2:] = torch.rand(1, 2, 3, 64, 64, generator=g)
        later, _ = model.trajvit(changed, ids)
    assert tokens.shape == (1, 3, model.tok_cfg.width) and valid.tolist() == [[True, True, True]]
    assert (tokens[0, 2] - backwards[0, 2]).abs().max() > 1e-3
    torch.testing.assert_close(later[0, 1], tokens[0, 1])  # trajectory 1 is not in frames 2-3
    assert (later[0, 2] - tokens[0, 2]).abs().max() > 1e-3


def test_trajvit_checkpoint_of_the_averaging_baseline_is_refused(tmp_path):
    from safetensors.torch import save_file

    model = tiny_trajvit2("trajvit")
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "trajvit2.safetensors"))
    e = model.tok_cfg.width
    state = {k: v for k, v in state.items() if not k.startswith("trajvit.") or k.startswith("trajvit.features.")}
    state.update({"trajvit.box.weight": torch.zeros(e, e), "trajvit.box.bias": torch.zeros(e)})
    save_file(state, str(tmp_path / "trajvit2.safetensors"))
    with pytest.raises(ValueError, match="averaged its per-frame tokens over time"):
        TrajViT2.from_pretrained(tmp_path)


def test_clip_loss_reaches_segmenter_and_encoder():
    model = tiny_trajvit2()
    x = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ids = torch.zeros(2, 2, 64, 64, dtype=torch.long)
    losses = model(x, CAPTIONS, ids, focal_weight=0.0, dice_weight=0.0)
    losses["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for prefix in ("trajtok.encoder.", "trajtok.segmenter.feature_head.", "trajtok.features.", "text.", "video."):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix
    assert grads["log_inv_temperature"] is not None


def test_key_padding_hides_dropped_tokens_and_images_are_one_frame_videos():
    torch.manual_seed(0)
    vt = VideoTransformer(8, 16, 2, 2, 2.0, 4).eval()
    tokens = torch.randn(1, 3, 8)
    padded = torch.cat([tokens, 100 * torch.randn(1, 2, 8)], dim=1)
    valid = torch.tensor([[True, True, True, False, False]])
    a, _ = vt(tokens, torch.ones(1, 3, dtype=torch.bool))
    b, _ = vt(padded, valid)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for encoder in ("trajtok", "vit3d"):
        model = tiny_trajvit2(encoder).eval()
        with torch.no_grad():
            out = model.encode_video(torch.rand(2, 1, 3, 64, 64))  # images: T = 1
        assert out.embeds.shape == (2, 16) and (out.num_tokens >= 1).all()


def test_temperature_starts_at_007_and_is_clamped():
    model = tiny_trajvit2("vit3d")
    assert float(1 / model.logit_scale().detach()) == pytest.approx(0.07, rel=1e-5)
    with torch.no_grad():
        model.log_inv_temperature.fill_(50.0)
    assert float(1 / model.logit_scale().detach()) == pytest.approx(0.001, rel=1e-5)
    with torch.no_grad():
        model.log_inv_temperature.fill_(-50.0)
    assert float(1 / model.logit_scale().detach()) == pytest.approx(0.5, rel=1e-5)


def test_text_tokenizer_trains_on_captions_and_round_trips(tmp_path):
    tok = TextTokenizer.train(CAPTIONS, 100, 12)
    ids, mask = tok.encode(["A red circle bounces.", "a purple blob"])
    assert ids.shape == mask.shape and ids.shape[1] <= 12
    assert ids[0, 0] == 2 and ids[0, 6] == 3  # [CLS] a red circle bounces . [SEP]
    assert mask[1].tolist() == [1] * 5 + [0] * 2  # [CLS] a purple blob [SEP], padded
    assert 1 in ids[1].tolist()  # "purple", "blob" are unknown words
    tok.save(tmp_path / "t.json")
    again = TextTokenizer.load(tmp_path / "t.json", 12)
    assert torch.equal(again.encode(["A red circle bounces."])[0], tok.encode(["A red circle bounces."])[0])


def test_retrieval_metrics_count_ranks():
    v = torch.eye(4)
    assert retrieval_metrics(v, v)["r1_t2v"] == 100.0
    t = v[[1, 0, 2, 3]]  # texts 0 and 1 swapped: videos 2, 3 right at rank 1; 0, 1 at rank 2
    m = retrieval_metrics(v, t)
    assert m["r1_t2v"] == 50.0 and m["r1_v2t"] == 50.0 and m["r5_v2t"] == 100.0


def test_bad_configs_name_the_problem(synth):
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainConfig(objective="mae")
    with pytest.raises(ValueError, match="objective is 'segmentation'"):
        TrainConfig(trajvit2={"video_encoder": "vit3d"})
    with pytest.raises(ValueError, match="video_encoder must be one of"):
        clip_cfg(synth, "trajvit2.video_encoder=resnet")
    with pytest.raises(ValueError, match="needs captions"):
        build_for_training({}, TrajTokConfig.tiny(), [])
    with pytest.raises(ValueError, match="encoder_trained_by"):
        TrajTokConfig.tiny(encoder_trained_by="magic")


# ------------------------------------------------------------------------------------------ TrajAdapter


def test_trajadapter_freezes_the_segmenter_and_trains_the_encoder():
    source = tiny_model(seed=0)
    adapter = TrajAdapter.from_pretrained_tokenizer(source, feature_dim=24, num_classes=3, tokens_per_trajectory=2)
    assert adapter.trajtok.config.encoder_trained_by == "probe"
    frozen = {k: v.clone() for k, v in adapter.trajtok.state_dict().items() if k.startswith("segmenter.")}
    for k, v in frozen.items():
        assert torch.equal(v, source.state_dict()[k])
    enc0 = {k: v.clone() for k, v in adapter.trajtok.state_dict().items() if k.startswith("encoder.")}
    g = torch.Generator().manual_seed(0)
    data = ProbeData(torch.randn(8, 2, 4, 4, 24, generator=g), torch.rand(8, 2, 3, 64, 64), torch.arange(8) % 3)
    logits, tokens = adapter(data.features[:2], data.pixels[:2])
    assert logits.shape == (2, 3) and (tokens % 2 == 0).all()  # two tokens per trajectory
    fit_probe(adapter, data, steps=2, batch_size=4)
    state = adapter.trajtok.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert any(not torch.equal(state[k], v) for k, v in enc0.items())


def test_probes_learn_a_separable_task():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    feats = torch.randn(64, 1, 3, 3, 8, generator=g) * 0.3
    feats[..., 0] += (labels * 2 - 1).float()[:, None, None, None]
    data = ProbeData(feats, torch.zeros(64, 1, 3, 32, 32, dtype=torch.uint8), labels)
    for kind in ("linear", "attentive"):
        torch.manual_seed(0)
        probe = build_probe(kind, 8, 2, heads=2)
        fit_probe(probe, data, steps=60, batch_size=16, lr=1e-2)
        assert probe_accuracy(probe, data)["accuracy"] >= 95.0, kind
    with pytest.raises(ValueError, match="unknown probe"):
        build_probe("mlp", 8, 2)


def test_vit3d_dense_features_cover_every_frame():
    model = tiny_trajvit2("vit3d").eval()
    feats = vit3d_dense_features(model, torch.rand(1, 3, 3, 64, 64))
    assert feats.shape == (1, 3, 8, 8, 32)
    torch.testing.assert_close(feats[:, 0], feats[:, 1])  # frames 0 and 1 share a tubelet
    with pytest.raises(ValueError, match="video_encoder='vit3d'"):
        vit3d_dense_features(tiny_trajvit2("trajtok"), torch.rand(1, 2, 3, 64, 64))


def test_tokenize_prints_provenance_line(synth, tmp_path, capsys):
    ckpt = tmp_path / "probe_ckpt"
    tiny_model(seed=0, encoder_trained_by="probe").save_pretrained(ckpt)
    video = next((synth / "test").glob("*.mp4"))
    assert trajtok_main(["tokenize", str(video), "--checkpoint", str(ckpt)]) == 0
    assert re.search(r"trajectory encoder: trained by a TrajAdapter", capsys.readouterr().out)


def test_tokenizer_can_start_from_a_pretrained_segmenter(tmp_path):
    pretrained = tiny_model(seed=3)
    pretrained.save_pretrained(tmp_path / "seg")
    fields = {"width": 32, "heads": 2, "embed_dim": 16, "text_width": 32, "text_heads": 2}
    torch.manual_seed(0)
    model = build_for_training({**fields, "init_tokenizer": str(tmp_path / "seg")}, TrajTokConfig.tiny(), CAPTIONS)
    for k, v in pretrained.state_dict().items():
        assert torch.equal(model.trajtok.state_dict()[k], v), k
    tiny_model(seed=0, num_queries=8).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="shape mismatches"):
        build_for_training({**fields, "init_tokenizer": str(tmp_path / "other")}, TrajTokConfig.tiny(), CAPTIONS)
    with pytest.raises(ValueError, match="init_tokenizer is for video_encoder='trajtok'"):
        TrajViT2Config(video_encoder="vit3d", init_tokenizer=str(tmp_path / "seg"))


# ------------------------------------------------------------------------ probe protocol (choose on val, chance)


def test_chance_levels_come_from_the_test_split_and_the_training_prior():
    """The majority class of the training split need not be the test split's: then a probe that learned only the
    training prior scores below the test majority (what a fresh seed showed), and the stratified guess says so."""
    train = torch.tensor([1] * 10 + [2] * 30 + [3] * 10)  # training majority: 2 (60 %)
    test = torch.tensor([1] * 6 + [2] * 1 + [3] * 3)  # test majority: 1 (60 %); class 2 is 10 %
    c = chance_levels(train, test)
    assert c["majority"] == pytest.approx(60.0)
    assert c["train_majority"] == pytest.approx(10.0)
    assert c["stratified"] == pytest.approx(100 * (0.2 * 0.6 + 0.6 * 0.1 + 0.2 * 0.3))
    assert c["balanced"] == pytest.approx(100 / 3)


def test_balanced_accuracy_gives_a_constant_guess_one_over_the_classes():
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
    assert balanced_accuracy(torch.zeros(8, dtype=torch.long), labels) == pytest.approx(100 / 3)
    assert balanced_accuracy(labels.clone(), labels) == pytest.approx(100.0)
    weights = class_weights(labels, 4)
    counts = torch.bincount(labels, minlength=4).float()
    assert weights[3] == 0 and torch.allclose(weights[:3] * counts[:3], (weights[:3] * counts[:3]).mean().expand(3))


def test_select_probe_keeps_the_state_that_is_best_on_val():
    """Val labels are flipped against train (the more the probe learns train, the worse it does on val): the kept
    state is the first of the recorded curve with the best val score, and re-scoring it on val gives that score."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    feats = torch.randn(64, 1, 2, 2, 8, generator=g) * 0.3
    feats[..., 0] += (labels * 2 - 1).float()[:, None, None, None]
    pixels = torch.zeros(64, 1, 3, 8, 8, dtype=torch.uint8)
    train = ProbeData(feats, pixels, labels)
    val = ProbeData(feats, pixels, 1 - labels)

    def build():
        return build_probe("linear", 8, 2)

    probe, chosen = select_probe(build, train, val, lrs=(1e-2, 3e-2), steps=40, every=10, batch_size=16)
    assert len(chosen["curve"]) == 2 * 4 and {lr for lr, _, _ in chosen["curve"]} == {1e-2, 3e-2}
    best = max(acc for _, _, acc in chosen["curve"])
    assert chosen["val_balanced_accuracy"] == best
    assert probe_accuracy(probe, val)["balanced_accuracy"] == pytest.approx(best)
    first_best = next((lr, step) for lr, step, acc in chosen["curve"] if acc == best)
    assert (chosen["lr"], chosen["step"]) == first_best
    # the same call on the true labels keeps a state that separates them
    probe, chosen = select_probe(build, train, train, lrs=(3e-2,), steps=40, every=10, batch_size=16)
    assert chosen["val_balanced_accuracy"] >= 95.0
    with pytest.raises(ValueError, match="non-empty validation split"):
        select_probe(build, train, ProbeData(feats[:0], pixels[:0], labels[:0]), steps=2, every=1)


def test_bench_probes_choose_on_val_and_report_chance_and_the_paired_difference(synth, tmp_path, load_script):
    """run_probes on a tiny world: its own validation world holds the world's val videos, each row says what val
    chose, the rows carry the chance levels, and TrajAdapter minus attentive comes with an interval over videos."""
    bench = load_script("eval/bench/bench_trajvit2.py")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(synth)
    tiny_trajvit2("vit3d").save_pretrained(tmp_path / "vit3d")
    tiny_model(seed=0).save_pretrained(tmp_path / "seg")
    size = {"probe_val": 3}
    rows, info = bench.run_probes(work, tmp_path / "vit3d", tmp_path / "seg", size, 4, 0)
    # the probes' val world: the world's own val videos first (same seed, split and index give the same video)
    assert (work / "probe_val" / "val" / "val_00001.mp4").read_bytes() == (synth / "val" / "val_00001.mp4").read_bytes()
    assert info["videos"] == {"train": 4, "val": 3, "test": 4}
    assert info["clips"] == {k: v * bench.PROBE_WINDOWS[k] for k, v in info["videos"].items()}
    assert [bench.probe_name(r) for r in rows] == [
        "linear",
        "attentive",
        "trajadapter_n1",
        "trajadapter_n2",
        "trajadapter_n4",
    ]
    for r in rows:
        assert r["lr"] in bench.PROBE_LRS and 1 <= r["step"] <= 4 and 0 <= r["balanced_accuracy"] <= 100
    assert set(info["chance"]) == {"majority", "train_majority", "stratified", "balanced"}
    assert info["trajadapter_chosen"] in (1, 2, 4)
    d = info["trajadapter_minus_attentive"]
    assert d["lo"] <= d["diff"] <= d["hi"] and d["videos"] == 4

    # several seeds: mean and spread, and --report pools saved files
    runs = [{"seed": s, "retrieval": [], "probe": rows, "probe_info": info} for s in (0, 1)]
    runs[1] = json.loads(json.dumps(runs[1]))
    runs[1]["probe"][0]["balanced_accuracy"] += 10.0
    summary = bench.summarize(runs)
    lin = summary["probe"]["linear"]["balanced_accuracy"]
    assert lin["mean"] == pytest.approx(rows[0]["balanced_accuracy"] + 5.0) and lin["sd"] == pytest.approx(50**0.5)
    (tmp_path / "a.json").write_text(json.dumps(runs[0]))
    (tmp_path / "b.json").write_text(json.dumps({"runs": [runs[1]]}))
    assert bench.main(["--report", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a bench_trajvit2 results file"):
        bench.main(["--report", str(tmp_path / "bad.json")])


def test_bench_arguments_name_the_problem(load_script, capsys):
    bench = load_script("eval/bench/bench_trajvit2.py")
    assert bench.parse_args(["--seeds", "2,3", "--json", "x.json"]).seeds == [2, 3]
    assert bench.parse_args(["--seed", "5", "--json", "x.json"]).seeds == [5]
    for argv, message in (
        (["--seeds", "2,x", "--json", "x.json"], "--seeds must be a comma list of integers"),
        (["--quick"], "--json is required"),
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err
