"""trajtok.io.video: sampling semantics, seek/sequential parity, containers, rotation, real clips, and error paths."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from trajtok.io.video import VideoDecodeError, VideoNotFoundError, load_video, probe_video, sample_indices
from trajtok.io.writer import write_video

FPS = 10.0
NUM = 40  # frames in the synthetic clip
H, W = 48, 64
GOP = 8  # key-frame interval of the synthetic clip, so that seeking has key frames to land on


def _coded_frames(num: int = NUM, height: int = H, width: int = W) -> np.ndarray:
    """Frame i is flat grey 20 + 5 i with a white square in the top-left corner (orientation mark)."""
    frames = np.empty((num, height, width, 3), np.uint8)
    for i in range(num):
        frames[i] = 20 + 5 * i
    frames[:, :8, :8] = 255
    return frames  # (T, H, W, 3)


def _codes(frames: torch.Tensor) -> list[int]:
    """Recover the frame index written by _coded_frames from decoded (T, C, H, W) frames."""
    h, w = frames.shape[-2:]
    centre = frames[:, :, h // 2 :, w // 2 :].float().mean(dim=(1, 2, 3))
    return [int(round((float(v) - 20) / 5)) for v in centre]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "coded.mp4"
    return write_video(path, _coded_frames(), fps=FPS, options={"g": str(GOP), "bf": "2"})


# ------------------------------------------------------------------------------------------ synthetic clip


def test_all_frames_in_order(clip):
    video = load_video(clip)
    assert video.frames.shape == (NUM, 3, H, W) and video.frames.dtype == torch.uint8
    assert video.frames.is_contiguous()
    assert _codes(video.frames) == list(range(NUM))
    assert video.indices.tolist() == list(range(NUM))
    torch.testing.assert_close(video.timestamps, torch.arange(NUM, dtype=torch.float64) / FPS)
    assert video.fps == FPS and video.num_source_frames == NUM and video.path == str(clip)
    # The orientation mark stays top-left (no flip, no rotation).
    assert video.frames[0, :, :8, :8].float().mean() > 240 and video.frames[0, :, -8:, -8:].float().mean() < 60


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"num_frames": 5}, [0, 10, 19, 29, 39]),  # 19.5 is a tie: the earlier frame wins
        ({"num_frames": NUM}, list(range(NUM))),
        ({"num_frames": 1}, [0]),
        ({"fps": 5.0}, list(range(0, NUM, 2))),
        ({"fps": FPS}, list(range(NUM))),
        ({"fps": 20.0}, list(range(NUM))),  # faster than the source: distinct frames only
        ({"fps": 3.0}, [round(k * FPS / 3) for k in range(12)]),
        ({"max_frames": 8}, [round(x) for x in np.linspace(0, NUM - 1, 8)]),
        ({"fps": 5.0, "max_frames": 4}, [0, 12, 26, 38]),
        ({"start": 1.0, "end": 2.0}, list(range(10, 20))),
        ({"start": 1.0, "end": 2.0, "num_frames": 3}, [10, 14, 19]),
        ({"start": 3.05}, list(range(31, NUM))),
        ({"start": 0.5, "fps": 2.0}, [5, 10, 15, 20, 25, 30, 35]),
    ],
)
@pytest.mark.parametrize("strategy", ["sequential", "seek", "auto"])
def test_sampling(clip, kwargs, expected, strategy):
    video = load_video(clip, strategy=strategy, size=16, **kwargs)
    assert video.indices.tolist() == expected
    assert _codes(video.frames) == expected  # the returned pixels are those of the returned index
    torch.testing.assert_close(video.timestamps, torch.tensor(expected, dtype=torch.float64) / FPS)


def test_num_frames_beyond_length_repeats(clip):
    video = load_video(clip, num_frames=60, size=16)
    assert video.frames.shape[0] == 60
    idx = video.indices.tolist()
    assert idx == sorted(idx) and set(idx) == set(range(NUM))
    assert _codes(video.frames) == idx


@pytest.mark.parametrize("kwargs", [{"num_frames": 7}, {"fps": 2.5}, {"num_frames": 4, "start": 1.3, "end": 3.3}])
def test_seek_matches_sequential(clip, kwargs):
    seq = load_video(clip, strategy="sequential", **kwargs)
    seek = load_video(clip, strategy="seek", **kwargs)
    assert torch.equal(seq.frames, seek.frames)
    assert torch.equal(seq.timestamps, seek.timestamps)
    assert torch.equal(seq.indices, seek.indices)


def test_size(clip):
    assert load_video(clip, num_frames=2, size=16).frames.shape == (2, 3, 16, 21)  # shorter side 48 -> 16
    assert load_video(clip, num_frames=2, size=(20, 30)).frames.shape == (2, 3, 20, 30)
    big = load_video(clip, num_frames=2, size=96).frames
    assert big.shape == (2, 3, 96, 128) and _codes(big) == [0, NUM - 1]


def test_probe(clip):
    info = probe_video(clip)
    assert (info.num_frames, info.fps, info.height, info.width, info.rotation) == (NUM, FPS, H, W, 0)
    assert info.codec == "h264" and info.num_keyframes == NUM // GOP
    assert info.duration == pytest.approx(NUM / FPS)


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".mp4", "libx264"), (".mkv", "libx264"), (".mov", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx-vp9")],
)
def test_containers_round_trip(tmp_path, suffix, codec):
    num = 12
    options = {"b": "2M"} if codec == "mpeg4" else None  # mpeg4's default bit rate blurs the grey codes
    path = write_video(tmp_path / f"clip{suffix}", _coded_frames(num, 32, 32), fps=FPS, codec=codec, options=options)
    video = load_video(path)
    assert video.frames.shape == (num, 3, 32, 32)
    assert video.num_source_frames == num
    assert _codes(video.frames) == list(range(num))
    torch.testing.assert_close(video.timestamps, torch.arange(num, dtype=torch.float64) / FPS, atol=2e-3, rtol=0)
    probed = probe_video(path, count_frames=True)
    assert probed.num_frames == num and probed.num_frames_exact


def test_image_folder(tmp_path):
    from PIL import Image

    for i, frame in enumerate(_coded_frames(6)):
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    video = load_video(tmp_path, folder_fps=12.0)
    assert video.frames.shape == (6, 3, H, W) and _codes(video.frames) == list(range(6))
    assert video.fps == 12.0 and video.num_source_frames == 6
    torch.testing.assert_close(video.timestamps, torch.arange(6, dtype=torch.float64) / 12.0)
    sub = load_video(tmp_path, num_frames=3, size=24)
    assert sub.indices.tolist() == [0, 2, 5] and sub.frames.shape == (3, 3, 24, 32)  # 2.5 is a tie
    info = probe_video(tmp_path)
    assert (info.num_frames, info.height, info.width, info.codec) == (6, H, W, "image")


# ------------------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoDecodeError, match="not found") as err:
        load_video(missing)
    assert str(missing) in str(err.value)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, VideoNotFoundError)


def _write_audio(path: Path, codec: str) -> Path:
    import av

    samples = (np.sin(np.arange(8000) / 10.0) * 8000).astype(np.int16)[None]  # (channels, samples)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.time_base, frame.pts = 8000, Fraction(1, 8000), 0
        if codec == "aac":
            import av.audio.resampler

            frames = av.audio.resampler.AudioResampler(format="fltp", layout="mono", rate=8000).resample(frame)
        else:
            frames = [frame]
        for f in frames:
            for packet in stream.encode(f):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["random", "truncated", "empty_dir", "wav", "m4a", "empty_file"])
def test_bad_inputs_raise(tmp_path, clip, kind):
    if kind == "random":
        path = tmp_path / "noise.mp4"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        reason = "not a readable video"
    elif kind == "truncated":
        data = clip.read_bytes()
        path = tmp_path / "cut.mp4"
        path.write_bytes(data[: int(0.3 * len(data))])  # moov atom at the end: cut off
        reason = "not a readable video"
    elif kind == "empty_dir":
        path = tmp_path / "frames"
        path.mkdir()
        reason = "no images"
    elif kind == "empty_file":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
        reason = "not a readable video"
    else:
        path = _write_audio(tmp_path / f"tone.{kind}", "pcm_s16le" if kind == "wav" else "aac")
        reason = "no video stream"
    with pytest.raises(VideoDecodeError, match=reason) as err:
        load_video(path)
    assert str(path) in str(err.value)
    with pytest.raises(VideoDecodeError):
        probe_video(path)


def test_truncated_streamable_files_raise(tmp_path):
    """Containers whose index survives truncation (Matroska, mp4 with moov first) still fail loudly."""
    import av

    frames = np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    mkv = write_video(tmp_path / "noise.mkv", frames, fps=FPS)
    mp4 = tmp_path / "faststart.mp4"
    with av.open(str(mp4), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for source in (mkv, mp4):
        cut = tmp_path / f"cut{source.suffix}"
        cut.write_bytes(source.read_bytes()[: int(0.3 * source.stat().st_size)])
        for strategy in ("sequential", "seek"):
            with pytest.raises(VideoDecodeError, match="truncated") as err:
                load_video(cut, num_frames=8, strategy=strategy)
            assert str(cut) in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_frames": 0},
        {"num_frames": 4, "fps": 2.0},
        {"fps": -1.0},
        {"max_frames": 2.5},
        {"size": (16,)},
        {"size": 0},
        {"start": 2.0, "end": 1.0},
        {"strategy": "fastest"},
    ],
)
def test_bad_arguments(clip, kwargs):
    with pytest.raises(ValueError):
        load_video(clip, **kwargs)


def test_window_after_end_raises(clip):
    with pytest.raises(VideoDecodeError, match="after the end"):
        load_video(clip, start=100.0)


# ----------------------------------------------------------------------------------------------- real clips


def test_shared_clips_decode(shared_data):
    """Every clip: frame count as in the manifest, displayed size after rotation, identical timestamps by seek."""
    manifest = json.loads((shared_data / "manifest.json").read_text())
    for name, entry in manifest.items():
        path = shared_data / name
        turned = entry["rotation"] in (90, -90, 270, -270)
        size = (entry["width"], entry["height"]) if turned else (entry["height"], entry["width"])
        info = probe_video(path)
        assert (info.height, info.width) == size, name
        assert abs(info.num_frames - entry["decoded_frames"]) <= 1, name
        assert info.fps == pytest.approx(entry["avg_fps"], rel=1e-3), name
        one = load_video(path, num_frames=1)
        assert tuple(one.frames.shape) == (1, 3, *size), name
        if entry["decoded_frames"] > 160:  # longer clip: count packets (demux only), decode a few frames
            assert probe_video(path, count_frames=True).num_frames == entry["decoded_frames"], name
            assert load_video(path, num_frames=8, size=32).num_source_frames == entry["decoded_frames"], name
        else:
            full = load_video(path, size=32)
            assert full.frames.shape[0] == entry["decoded_frames"] == full.num_source_frames, name
            assert full.indices.tolist() == list(range(entry["decoded_frames"])), name
            assert bool((full.timestamps.diff() > 0).all()), name


def test_rotation_clips(shared_data):
    for degrees, shape in ((0, (320, 568)), (90, (568, 320)), (180, (320, 568)), (270, (568, 320))):
        video = load_video(shared_data / "decode" / f"video_{degrees}.mov")
        assert tuple(video.frames.shape[-2:]) == shape and video.frames.shape[0] == 3


def test_vfr_timestamps(shared_data):
    video = load_video(shared_data / "cuts" / "goldeneye-vfr-drop3.mp4", size=32)
    assert video.frames.shape[0] == 160
    gaps = video.timestamps.diff()
    assert bool((gaps > 0).all())
    assert float(gaps.max()) > 1.5 * float(gaps.min())  # dropped frames show as longer gaps
    assert abs(float(video.timestamps[60]) - 3.754) < 1.0 / video.fps
    seq = load_video(shared_data / "cuts" / "goldeneye-vfr-drop3.mp4", num_frames=16, size=32, strategy="sequential")
    seek = load_video(shared_data / "cuts" / "goldeneye-vfr-drop3.mp4", num_frames=16, size=32, strategy="seek")
    assert torch.equal(seq.frames, seek.frames) and torch.equal(seq.indices, seek.indices)
    assert torch.equal(seq.timestamps, video.timestamps[seq.indices])


def _boundary_contrast(gray: np.ndarray, mask: np.ndarray) -> float:
    """|mean inside - mean outside| in 2-pixel bands on either side of the mask boundary."""
    from scipy import ndimage

    inner = mask & ~ndimage.binary_erosion(mask, iterations=2)
    outer = ndimage.binary_dilation(mask, iterations=2) & ~mask
    return abs(float(gray[inner].mean()) - float(gray[outer].mean()))


@pytest.mark.parametrize("name", ["blackswan", "car-shadow", "motocross-jump"])
def test_davis_frames_align_with_masks(shared_data, name):
    """Frame i matches mask i: the mask's edge contrast peaks at offset 0 among offsets -2..2."""
    from PIL import Image

    folder = shared_data / "masks" / name
    mask_files = sorted((folder / "masks").glob("*.png"))
    video = load_video(folder / "video.mp4", size=(240, 427))
    assert video.frames.shape[0] == len(mask_files)
    gray = video.frames.float().mean(dim=1).numpy()  # (T, H, W)
    masks = np.stack(
        [np.asarray(Image.open(p).convert("L").resize((427, 240), Image.NEAREST)) > 127 for p in mask_files]
    )
    t = len(masks)
    scores = {
        d: np.mean([_boundary_contrast(gray[i], masks[i + d]) for i in range(max(0, -d), min(t, t - d))])
        for d in range(-2, 3)
    }
    best_other = max(v for d, v in scores.items() if d != 0)
    assert scores[0] > 1.05 * best_other, scores


@pytest.mark.parametrize(("name", "count"), [("judo", 16), ("bike", 4)])
def test_davis_frame_folders(shared_data, name, count):
    folder = shared_data / "masks" / name / "frames"
    video = load_video(folder, size=64)
    assert video.frames.shape == (count, 3, 64, 114)
    assert video.num_source_frames == count and video.fps == 24.0
    full = load_video(folder, num_frames=1)
    assert tuple(full.frames.shape[-2:]) == (480, 854)


# ---------------------------------------------------------------------------------------------- selection


def _fake_image(payload: int) -> np.ndarray:
    return np.full((2, 3, 3), payload, np.uint8)  # (H, W, 3)


def test_picker_converts_only_chosen_frames():
    """Memory stays bounded by the sample: frames not chosen are never converted or stored."""
    from trajtok.io.video import _Picker

    converted = []

    def convert(payload):
        converted.append(payload)
        return _fake_image(payload)

    picker = _Picker(np.array([0.0, 2.0, 4.0, 4.02]), 0.1, dedupe=False, convert=convert)
    for i in range(100):
        picker.feed(i, i / 10, i)
        if picker.done:
            break
    picker.finish()
    frames, timestamps, indices = picker.result(Path("fake"))
    assert converted == [0, 20, 40] and indices.tolist() == [0, 20, 40, 40]
    assert frames.shape == (4, 3, 2, 3) and frames[:, 0, 0, 0].tolist() == [0, 20, 40, 40]


def test_picker_every_frame_grows_past_a_short_estimate():
    from trajtok.io.video import _Picker

    picker = _Picker(None, 0.1, dedupe=False, convert=_fake_image, expected=2)
    for i in range(7):
        picker.feed(i, i / 10, i)
    picker.finish()
    frames, timestamps, indices = picker.result(Path("fake"))
    assert indices.tolist() == list(range(7)) and frames[:, 0, 0, 0].tolist() == list(range(7))
    torch.testing.assert_close(timestamps, torch.arange(7, dtype=torch.float64) / 10)


def test_skipping_non_reference_frames_changes_nothing(tmp_path, monkeypatch):
    """Frames decoded only to reach a later target skip B-frames; the sampled frames and indices stay the same."""
    import trajtok.io.video as video_module

    g = np.random.default_rng(0)
    frames = np.repeat(g.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 300, axis=0)
    for t in range(300):  # a moving square, so neighbouring frames differ
        frames[t, (t % 48) : (t % 48) + 16, (2 * t) % 48 : (2 * t) % 48 + 16] = 255
    path = write_video(tmp_path / "bframes.mp4", frames, fps=30.0, options={"bf": "3", "g": "250", "sc_threshold": "0"})
    calls = []
    set_skip = video_module._Source.set_skip
    monkeypatch.setattr(video_module._Source, "set_skip", lambda self, skip: (calls.append(skip), set_skip(self, skip)))
    skipped = {s: load_video(path, num_frames=7, strategy=s) for s in ("seek", "sequential")}
    assert True in calls  # skipping engaged
    monkeypatch.setattr(video_module, "SKIP_MARGIN_FRAMES", 10**9)  # never skip
    plain = load_video(path, num_frames=7, strategy="sequential")
    for video in skipped.values():
        assert torch.equal(video.frames, plain.frames) and torch.equal(video.indices, plain.indices)
        assert torch.equal(video.timestamps, plain.timestamps)


def test_sample_indices_are_the_frames_load_video_returns(tmp_path):
    """Labels stored per frame are subsampled with `sample_indices`; it must name the frames the decoder returns,
    including the targets that fall half-way between two frames (13 frames at 9: targets 1.5, 4.5, ...), where the
    decoder takes the earlier frame and `np.round` would not (1.5 -> 2)."""
    num = 13
    clip = write_video(tmp_path / "c13.mp4", _coded_frames(num), fps=FPS, options={"g": "4"})
    for n in (1, 2, 4, 5, 9, 12, 13, 20):
        video = load_video(clip, num_frames=n)
        expected = video.indices.tolist()
        assert sample_indices(num, n).tolist() == expected, n
        assert _codes(video.frames) == expected, n
    assert sample_indices(num, 9).tolist()[:3] == [0, 1, 3]
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        sample_indices(num, 0)
