"""Moving-object segmentation without weights, after Papazoglou & Ferrari, "Fast object segmentation in
unconstrained video" (ICCV 2013): optical flow -> motion boundaries -> inside-outside maps -> appearance model,
propagated over time.

    seg = MotionSegmenter()
    fg = seg(frames)               # frames (T, H, W, 3) uint8 RGB -> (T, H, W) bool foreground (moving objects)

Stages, per frame t (flow to the next frame; the last frame uses the flow to the previous one):

1. Camera motion: a homography is fitted (RANSAC) to the flow on a grid of points; the residual flow (flow minus
   the camera's) is what the objects add. The paper uses the raw flow's gradient; removing the camera first keeps
   a panning camera from drawing boundaries everywhere (a depth edge still can).
2. Moving pixels: residual speed above the frame's Otsu threshold (no tuned constant; at least ``min_residual``).
3. Motion boundaries: ``b = 1 - exp(-boundary_lambda * |grad residual flow|)`` (the paper's form); pixels with
   ``b > 0.5`` that also move are boundary pixels.
4. Inside-outside map: a ray from a pixel inside a closed boundary crosses it an odd number of times; 8 rays
   (axes and diagonals) are cast from every pixel and the pixel is inside when more than half cross an odd number
   of times (the paper's majority rule). Counts come from cumulative sums, so this is O(H W) per direction. A
   pixel is a foreground seed when it moves and is inside (either cue alone lets water ripples and reflections in).
5. Propagation: the seed maps are averaged with their neighbours warped along the flow (``window`` frames each
   side), so a frame where the object paused or the flow failed borrows from the frames around it.
6. Appearance: OpenCV GrabCut per frame (colour GMMs + graph cut) initialised from the propagated map: probably
   foreground where it is above 0.5, sure background far (``margin``) from any likely foreground. A frame whose
   propagated map has no foreground gets none (a static scene gives an empty result).

7. Carrying objects through unreliable motion: where no single homography explains ``min_camera_share`` of the
   flow (a fast zoom or pan with motion blur, the camera following an object that fills the frame: the flow is
   wrong almost everywhere, so "what moves against the camera" picks the background), the frame's motion evidence
   is dropped and its objects come from the nearest reliable frame instead: that frame's foreground, grown by at
   most ``carry_grow`` of the shorter side per frame, initialises GrabCut (its eroded core sure foreground, the
   grown ring probable background, the rest sure background), frame by frame into the run of unreliable frames
   from both ends (each end carries up to the middle). A shot with no reliable frame keeps no foreground.

Components smaller than ``min_area`` (fraction of the frame) are dropped at the end.

8. Splitting an object of two colours (``split_by_colour``, called by the pipeline on each space-time component of
   the foreground): a rider on a bicycle moves as one blob. The component's Lab colours are split in two by
   2-means; the split is kept when the two clusters are clearly apart (Ashman's D of a two-Gaussian mixture fitted
   along the line joining their centres >= ``split_separation``; D > 2 is the usual reading of "cleanly
   bimodal"), the smaller holds at least
   ``split_min_share`` of the pixels, and, after a majority filter of 1 % of the shorter side, each part's largest
   connected piece in each frame holds at least ``split_coherence`` of it (summed over frames): two spatially
   coherent parts, not a speckled texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from trajtok.pseudolabel.keyframes import require
from trajtok.pseudolabel.track import OpticalFlow


@dataclass
class MotionConfig:
    flow_method: str = "dis"  # optical flow for this stage: "dis" (fast) or "farneback"
    boundary_lambda: float = 4.0  # b = 1 - exp(-lambda |grad residual flow|) (flow in pixels per frame, grad per pixel)
    min_residual: float = 0.5  # pixels/frame: residual flow below this is treated as no motion (flow noise)
    window: int = 2  # propagation: frames each side averaged into a frame's inside map
    grabcut_iterations: int = 3  # GrabCut iterations per frame (0 = no appearance refinement)
    margin: float = 0.05  # sure background beyond this fraction of the shorter side from likely foreground
    min_area: float = 0.002  # foreground components smaller than this fraction of the frame are dropped
    # a frame whose flow no single homography fits for at least this share of its grid points has unreliable motion:
    # its objects are carried from the nearest reliable frame by appearance (0 = never)
    min_camera_share: float = 0.25
    carry_grow: float = 0.05  # carried objects grow by at most this fraction of the shorter side per frame
    # an object whose colours form two clearly separate clusters (Ashman's D >= this; 0 = never split) becomes two
    split_separation: float = 2.0
    split_min_share: float = 0.2  # ... when the smaller cluster holds at least this share of its pixels
    split_coherence: float = 0.7  # ... and each part is this coherent (share in its largest piece per frame)

    def __post_init__(self) -> None:
        if self.boundary_lambda <= 0:
            raise ValueError(f"boundary_lambda must be > 0, got {self.boundary_lambda}")
        if self.window < 0 or self.grabcut_iterations < 0:
            raise ValueError(
                f"window and grabcut_iterations must be >= 0, got {self.window}, {self.grabcut_iterations}"
            )
        if not 0.0 <= self.min_camera_share < 1.0 or not 0.0 < self.carry_grow < 1.0:
            raise ValueError(
                f"need min_camera_share in [0, 1) and carry_grow in (0, 1), got {self.min_camera_share}, "
                f"{self.carry_grow}"
            )
        if self.split_separation < 0 or not 0.0 < self.split_min_share <= 0.5 or not 0.0 <= self.split_coherence <= 1:
            raise ValueError(
                f"need split_separation >= 0, split_min_share in (0, 0.5], split_coherence in [0, 1], got "
                f"{self.split_separation}, {self.split_min_share}, {self.split_coherence}"
            )
        if self.min_residual < 0 or not 0.0 <= self.margin < 1.0 or not 0.0 <= self.min_area < 1.0:
            raise ValueError(
                f"need min_residual >= 0, margin and min_area in [0, 1), got {self.min_residual}, {self.margin}, "
                f"{self.min_area}"
            )


def camera_flow(flow: np.ndarray, step: int = 8) -> np.ndarray:
    """The flow (H, W, 2) a homography fitted (RANSAC) to ``flow`` on a ``step``-pixel grid would give."""
    return fit_camera(flow, step)[0]


def fit_camera(flow: np.ndarray, step: int = 8) -> tuple[np.ndarray, float]:
    """(camera flow (H, W, 2), share of the grid points within 1 px of it) of a homography fitted (RANSAC) to
    ``flow`` on a ``step``-pixel grid. The share is 1 when fewer than 8 points make a grid (nothing to judge)."""
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    H, W, _ = flow.shape
    ys, xs = np.mgrid[step // 2 : H : step, step // 2 : W : step]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)  # (N, 2) x, y
    dst = src + flow[ys.ravel(), xs.ravel()]
    if len(src) < 8:
        return np.zeros_like(flow), 1.0
    hom, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 1.0)
    if hom is None:
        return np.zeros_like(flow), 0.0
    share = float(inliers.mean())
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
    pts = np.stack([gx, gy], -1).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(pts, hom).reshape(H, W, 2)
    return (moved - np.stack([gx, gy], -1)).astype(np.float32), share


def moving_pixels(speed: np.ndarray, min_speed: float) -> np.ndarray:
    """(H, W) bool: ``speed`` (H, W) above its Otsu threshold and at least ``min_speed``."""
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    top = float(speed.max())
    if top < min_speed:
        return np.zeros(speed.shape, bool)
    s8 = np.clip(speed / top * 255.0, 0, 255).astype(np.uint8)
    level, _ = cv2.threshold(s8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (s8 > level) & (speed >= min_speed)


def motion_boundaries(residual: np.ndarray, lam: float) -> np.ndarray:
    """``1 - exp(-lam * |grad residual|)``: (H, W) in [0, 1) from a residual flow (H, W, 2)."""
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    mag2: np.ndarray = np.zeros(residual.shape[:2], np.float32)
    for c in range(2):
        gx = cv2.Sobel(residual[..., c], cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(residual[..., c], cv2.CV_32F, 0, 1, ksize=3) / 8.0
        mag2 += gx * gx + gy * gy
    return 1.0 - np.exp(-lam * np.sqrt(mag2))


def _odd_crossings_axis(boundary: np.ndarray) -> list[np.ndarray]:
    """Per pixel, whether the rays along +-axis 0 cross ``boundary`` (H, W) bool an odd number of times."""
    b = boundary.astype(np.int32)
    start = b.copy()
    start[1:] &= 1 - b[:-1]  # a run of boundary pixels counts once: its first pixel going down
    end = b.copy()
    end[:-1] &= 1 - b[1:]  # ... and its last pixel going up
    below = np.cumsum(start[::-1], 0)[::-1] - start  # run starts strictly after each pixel (downward ray)
    above = np.cumsum(end, 0) - end  # run ends strictly before each pixel (upward ray)
    return [(below % 2) == 1, (above % 2) == 1]


def _skew(a: np.ndarray, anti: bool) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Shear (H, W) so that diagonals (anti: anti-diagonals) become the columns of an (H, W + H - 1) array."""
    H, W = a.shape
    ys, xs = np.mgrid[0:H, 0:W]
    cols = xs + ys if anti else xs - ys + H - 1
    out = np.zeros((H, W + H - 1), a.dtype)
    out[ys, cols] = a
    return out, (ys, cols)


def inside_outside(boundary: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that more than half of 8 rays (axes, diagonals) see inside a closed ``boundary``."""
    votes = np.zeros(boundary.shape, np.int32)
    for odd in (*_odd_crossings_axis(boundary), *_odd_crossings_axis(boundary.T.copy())):
        votes += odd if odd.shape == boundary.shape else odd.T
    for anti in (False, True):
        skewed, (ys, cols) = _skew(boundary, anti)
        for odd in _odd_crossings_axis(skewed):
            votes += odd[ys, cols]
    return (votes > 4) & ~boundary


class MotionSegmenter:
    """Foreground (moving objects) of a whole shot from motion and appearance; no weights, CPU."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        require("cv2")
        self.config = config or MotionConfig()
        self.reliable = np.ones(0, bool)  # (T,) of the last shot: frames whose flow a camera homography fits
        self.flow = OpticalFlow(self.config.flow_method)

    def inside_maps(self, frames: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None], list[np.ndarray | None]]:
        """(T, H, W) float inside maps + forward / backward flows between neighbours (None at the ends).

        ``self.reliable`` is set to the (T,) bool frames whose flow a camera homography fits (``min_camera_share``);
        the others' inside maps are zero (their motion evidence is not used)."""
        cfg = self.config
        T, H, W, _ = frames.shape
        fwd: list[np.ndarray | None] = [self.flow(frames[t], frames[t + 1]) for t in range(T - 1)] + [None]
        bwd: list[np.ndarray | None] = [None] + [self.flow(frames[t], frames[t - 1]) for t in range(1, T)]
        inside = np.zeros((T, H, W), np.float32)
        self.reliable = np.ones(T, bool)
        for t in range(T):
            flow = fwd[t] if fwd[t] is not None else bwd[t]
            if flow is None:  # a single frame: no motion
                continue
            camera, share = fit_camera(flow)
            if share < cfg.min_camera_share:
                self.reliable[t] = False
                continue
            residual = flow - camera
            moving = moving_pixels(np.linalg.norm(residual, axis=-1), cfg.min_residual)
            boundary = (motion_boundaries(residual, cfg.boundary_lambda) > 0.5) & moving
            inside[t] = (inside_outside(boundary) | boundary) & moving
        return inside, fwd, bwd

    def propagate(self, inside: np.ndarray, fwd: list, bwd: list) -> np.ndarray:
        """Average each frame's map with its neighbours' warped along the flow, ``window`` frames each side."""
        out = inside.copy()
        T = inside.shape[0]
        for _ in range(self.config.window):  # each pass widens the window by one frame each side
            prev = out.copy()
            for t in range(T):
                acc, n = prev[t].copy(), 1
                if t > 0:  # frame t-1 seen from t: sample it along the flow t -> t-1
                    acc += _warp_float(prev[t - 1], bwd[t])
                    n += 1
                if t < T - 1:
                    acc += _warp_float(prev[t + 1], fwd[t])
                    n += 1
                out[t] = acc / n
        return out

    def refine(self, frame: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """GrabCut of ``frame`` (H, W, 3) initialised from ``prior`` (H, W) in [0, 1] -> (H, W) bool."""
        import cv2  # optional dependency (the pseudolabel extra): imported where used

        cfg = self.config
        likely = prior > 0.5
        if not likely.any():
            return likely
        if cfg.grabcut_iterations == 0:
            return likely
        H, W = prior.shape
        far = ndimage.distance_transform_edt(~(prior > 0.25)) > cfg.margin * min(H, W)
        mask = np.where(likely, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        mask[far] = cv2.GC_BGD
        if (mask == cv2.GC_BGD).all() or not (mask == cv2.GC_BGD).any():
            return likely
        # GrabCut only on the box around what is not sure background (plus a margin of it for the colour model)
        ys, xs = np.nonzero(~far)
        pad = max(2, round(3 * cfg.margin * min(H, W)))
        y0, y1 = max(0, ys.min() - pad), min(H, ys.max() + pad + 1)
        x0, x1 = max(0, xs.min() - pad), min(W, xs.max() + pad + 1)
        crop = np.ascontiguousarray(mask[y0:y1, x0:x1])
        if (crop == cv2.GC_BGD).all() or not (crop == cv2.GC_BGD).any():
            return likely
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(frame[y0:y1, x0:x1, ::-1])
        # GrabCut seeds its colour models with k-means on OpenCV's global RNG: reseed it so that the same frames
        # always give the same labels (a VLM connector labelling a video twice must see the same trajectories)
        cv2.setRNGSeed(0)
        # rect is unused with GC_INIT_WITH_MASK: None, which OpenCV takes and its stubs do not
        cv2.grabCut(bgr, crop, None, bgd, fgd, cfg.grabcut_iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]  # rect None
        out = np.zeros((H, W), bool)
        out[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
        return out

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames (T, H, W, 3) uint8 RGB of one shot -> (T, H, W) bool foreground."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
            raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB with T >= 1, got {frames.dtype} {frames.shape}")
        inside, fwd, bwd = self.inside_maps(frames)
        prior = self.propagate(inside, fwd, bwd)
        fg = np.stack([self.refine(f, p) for f, p in zip(frames, prior, strict=True)])
        fg = self.carry(frames, fg, self.reliable)
        return drop_small(fg, self.config.min_area)

    def carry(self, frames: np.ndarray, fg: np.ndarray, reliable: np.ndarray) -> np.ndarray:
        """Replace the foreground of each run of unreliable frames (``reliable`` (T,) False) by the objects of the
        reliable frames at its ends, carried frame by frame by appearance (``carry_frame``) up to the run's middle."""
        out = fg.copy()
        T = len(reliable)
        t = 0
        while t < T:
            if reliable[t]:
                t += 1
                continue
            start = t
            while t < T and not reliable[t]:
                t += 1
            end = t  # frames [start, end) are unreliable
            if start == 0 and end == T:  # no reliable frame to carry from
                out[start:end] = False
                continue
            mid = (start + end) // 2 if start > 0 and end < T else (end if start > 0 else start)
            for u in range(start, mid):  # forward from the reliable frame before the run
                out[u] = self.carry_frame(frames[u], out[u - 1])
            for u in range(end - 1, mid - 1, -1):  # backward from the reliable frame after it
                out[u] = self.carry_frame(frames[u], out[u + 1])
        return out

    def carry_frame(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """(H, W) bool objects of ``frame`` (H, W, 3) from the neighbouring frame's ``previous`` (H, W) bool: GrabCut
        with ``previous`` eroded as sure foreground, ``previous`` probable foreground, a ring ``carry_grow`` of the
        shorter side wide around it probable background, the rest sure background."""
        import cv2  # optional dependency (the pseudolabel extra): imported where used

        if not previous.any():
            return previous.copy()
        H, W = previous.shape
        r = max(1, round(self.config.carry_grow * min(H, W)))
        near = ndimage.binary_dilation(previous, iterations=r)
        mask = np.full((H, W), cv2.GC_BGD, np.uint8)
        mask[near] = cv2.GC_PR_BGD
        mask[previous] = cv2.GC_PR_FGD
        mask[ndimage.binary_erosion(previous, iterations=r)] = cv2.GC_FGD
        if not (mask == cv2.GC_BGD).any() or self.config.grabcut_iterations == 0:
            return previous.copy()
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # as in refine: the same frames always give the same labels
        bgr = np.ascontiguousarray(frame[..., ::-1])
        # rect is unused with GC_INIT_WITH_MASK (None, as above)
        cv2.grabCut(bgr, mask, None, bgd, fgd, self.config.grabcut_iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]  # rect None
        return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _warp_float(a: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    H, W = a.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return cv2.remap(a, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def drop_small(fg: np.ndarray, min_area: float) -> np.ndarray:
    """Remove 8-connected components smaller than ``min_area`` of a frame from each (H, W) of ``fg`` (T, H, W)."""
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    out = fg.copy()
    T, H, W = fg.shape
    for t in range(T):
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg[t].astype(np.uint8), connectivity=8)
        small = np.nonzero(stats[:, cv2.CC_STAT_AREA] < min_area * H * W)[0]
        small = small[small != 0]
        if len(small):
            out[t] &= ~np.isin(lab, small)
    return out


def ashman_d(values: np.ndarray, start: np.ndarray, iterations: int = 50) -> float:
    """Ashman's D of a two-Gaussian mixture fitted (EM, from the split ``start`` (n,) bool) to ``values`` (n,):
    sqrt(2) |m1 - m2| / sqrt(v1 + v2). The split's own halves would not do: cutting one Gaussian at its mean
    already gives D = 2.66, while the fitted mixture of one Gaussian has D near 0."""
    v = values[:: max(1, len(values) // 20000)].astype(np.float64)
    s = start[:: max(1, len(values) // 20000)]
    w = np.array([s.mean(), 1.0 - s.mean()])
    m = np.array([v[s].mean(), v[~s].mean()])
    var = np.array([v[s].var(), v[~s].var()]) + 1e-3
    for _ in range(iterations):
        like = w / np.sqrt(2 * np.pi * var) * np.exp(-((v[:, None] - m) ** 2) / (2 * var))  # (n, 2)
        r = like / np.maximum(like.sum(1, keepdims=True), 1e-300)
        w = r.mean(0)
        if w.min() < 1e-3:
            return 0.0  # one component took everything: unimodal
        m = (r * v[:, None]).sum(0) / r.sum(0)
        var = (r * (v[:, None] - m) ** 2).sum(0) / r.sum(0) + 1e-3
    return float(np.sqrt(2.0) * abs(m[0] - m[1]) / np.sqrt(var.sum()))


def split_by_colour(frames: np.ndarray, component: np.ndarray, config: MotionConfig) -> np.ndarray | None:
    """Split one object ``component`` (T, H, W) bool of ``frames`` (T, H, W, 3) uint8 RGB into two parts by colour
    (step 8 of the module docstring): (T, H, W) int8 with 1 / 2 on the parts and 0 outside, or None when its
    colours are not clearly two spatially coherent clusters (or ``config.split_separation`` is 0)."""
    import cv2  # optional dependency (the pseudolabel extra): imported where used

    n = int(component.sum())
    if config.split_separation <= 0 or n < 64:
        return None
    frame_ids = np.nonzero(component.any(axis=(1, 2)))[0]
    lab = np.zeros((*component.shape, 3), np.float32)
    for t in frame_ids:
        lab[t] = cv2.cvtColor(frames[t], cv2.COLOR_RGB2LAB)
    x = lab[component]  # (n, 3) Lab colours of the object
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, n // 20000)], full_matrices=False)
    part = centred @ vt[0] > 0  # 2-means from the principal axis's sign (deterministic)
    for _ in range(20):
        if part.all() or not part.any():
            return None
        c1, c0 = x[part].mean(0), x[~part].mean(0)
        nearer = ((x - c1) ** 2).sum(1) < ((x - c0) ** 2).sum(1)
        if (nearer == part).all():
            break
        part = nearer
    if min(part.mean(), 1.0 - part.mean()) < config.split_min_share:
        return None
    axis = (c1 - c0) / max(float(np.linalg.norm(c1 - c0)), 1e-6)
    if ashman_d(x @ axis, part) < config.split_separation:
        return None
    share = np.zeros(component.shape, np.float32)
    share[component] = part
    r = max(1, round(0.01 * min(component.shape[1:])))
    box = (1, 2 * r + 1, 2 * r + 1)
    near = ndimage.uniform_filter(component.astype(np.float32), box)
    share = ndimage.uniform_filter(share, box) / np.maximum(near, 1e-6)  # majority filter inside the object
    labels = np.where(component, np.where(share > 0.5, 1, 2), 0).astype(np.int8)
    for k in (1, 2):
        held = 0
        for t in frame_ids:
            pieces, m = ndimage.label(labels[t] == k)
            held += int(np.bincount(pieces.ravel())[1:].max()) if m else 0
        if held < config.split_coherence * max(int((labels == k).sum()), 1):
            return None
    return labels


__all__ = [
    "MotionConfig",
    "MotionSegmenter",
    "camera_flow",
    "drop_small",
    "fit_camera",
    "inside_outside",
    "motion_boundaries",
    "ashman_d",
    "moving_pixels",
    "split_by_colour",
]
