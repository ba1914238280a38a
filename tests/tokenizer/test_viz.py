import av
import numpy as np
import pytest
import torch
from PIL import Image

from trajtok.cli import main as trajtok_main
from trajtok.io.labels import save_labels
from trajtok.io.writer import write_video
from trajtok.viz import animate, boundaries, colorize, contact_sheet, id_colours, overlay, pick_frames


def _clip(T=10, H=20, W=24, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)
    ids = np.zeros((T, H, W), dtype=np.int32)
    for t in range(T):
        ids[t, 2:8, t : t + 6] = 1  # moves right
        ids[t, 10:18, 4:12] = 3
    return frames, ids


def test_colours_are_stable_per_id():
    # pinned: a change of palette would silently recolour every figure made so far
    assert id_colours(np.arange(4)).tolist() == [[0, 0, 0], [237, 161, 46], [243, 19, 214], [96, 214, 43]]
    a = colorize(np.array([[[1, 7]]]))
    b = colorize(np.array([[[7, 50], [0, 0]]]))
    np.testing.assert_array_equal(a[0, 0, 1], b[0, 0, 0])  # id 7 looks the same whatever else is present
    assert (b[0, 1] == 0).all()  # id 0 is black
    distinct = {tuple(c) for c in id_colours(np.arange(1, 101)).tolist()}
    assert len(distinct) == 100


def test_overlay_blends_and_draws_boundaries():
    frames, ids = _clip()
    np.testing.assert_array_equal(overlay(frames, ids, alpha=0.0, draw_boundaries=False), frames)
    full = overlay(frames, ids, alpha=1.0, draw_boundaries=False)
    np.testing.assert_array_equal(full[ids > 0], colorize(ids)[ids > 0])
    np.testing.assert_array_equal(full[ids == 0], frames[ids == 0])
    edge = boundaries(ids)
    assert edge.any() and not edge[ids == 0].any() and not edge[:, 13, 7].any()  # interior of object 3 is no edge
    drawn = overlay(frames, ids, alpha=0.2)
    np.testing.assert_array_equal(drawn[edge], colorize(ids)[edge])


def test_torch_tensors_and_small_ids_are_accepted():
    frames, ids = _clip()
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, C, H, W)
    np.testing.assert_array_equal(overlay(tensor, torch.from_numpy(ids)), overlay(frames, ids))
    small = ids[:, ::2, ::2]  # ids at half resolution are resized to the frames
    assert overlay(frames, small).shape == frames.shape


def test_contact_sheet_png_size(tmp_path):
    frames, ids = _clip(T=10)
    path = contact_sheet(frames, ids, tmp_path / "sheet.png", max_frames=6, cols=4, pad=2)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.size == (4 * 24 + 5 * 2, 2 * 20 + 3 * 2)  # (width, height): 6 tiles in 2 rows of 4
    assert pick_frames(10, 6).tolist() == [0, 2, 4, 5, 7, 9]


def test_animation_gif_and_mp4(tmp_path):
    frames, ids = _clip(T=7)
    gif = animate(frames, ids, tmp_path / "anim.gif", fps=5)
    with Image.open(gif) as img:
        assert img.format == "GIF" and img.size == (24, 20) and img.n_frames == 7
    mp4 = animate(frames, ids, tmp_path / "anim.mp4", fps=5)
    with av.open(str(mp4)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 7 and decoded[0].shape == (20, 24, 3)


def test_bad_inputs_are_explained(tmp_path):
    frames, ids = _clip()
    with pytest.raises(ValueError, match="same T"):
        overlay(frames, ids[:3])
    with pytest.raises(ValueError, match="frames must be"):
        overlay(frames[..., 0], ids)
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        animate(frames, ids, tmp_path / "anim.webp")


def test_cli_draws_labels_over_video(tmp_path):
    frames, ids = _clip(T=6, H=32, W=32)
    write_video(tmp_path / "v.mp4", frames)
    graph = np.array([[1] * 6, [3] * 6], dtype=np.int32)
    save_labels(tmp_path / "v.npz", ids, graph)
    out = tmp_path / "sheet.png"
    rc = trajtok_main(
        ["viz", "--video", str(tmp_path / "v.mp4"), "--labels", str(tmp_path / "v.npz"), "--out", str(out)]
    )
    with Image.open(out) as img:
        assert rc == 0 and img.size == (6 * 32 + 7 * 2, 32 + 2 * 2)
