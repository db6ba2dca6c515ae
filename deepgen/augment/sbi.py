"""Blended pseudo-fakes: self-blended images (Shiohara & Yamasaki, CVPR 2022) and Face X-ray's
blended images (Li et al., CVPR 2020).

:func:`self_blend` blends a real face with a transformed copy of itself (colour and frequency
changes, a small scale/shift) inside a soft, deformed face mask: the generic traces of face
swapping (blending boundary, colour and sharpness mismatch) without any one method's fingerprint.
:func:`other_blend` blends in *another* real face instead, colour-matched part of the way as swap
pipelines do, which adds the inner-face/outer-face identity mismatch that swaps leave.
The returned mask is the blending mask m; ``boundary_map(m) = 4 m (1 - m)`` is the Face X-ray target.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepgen.augment.perturb import color_jitter, downscale, gaussian_blur


def _ellipse_polygon(h: int, w: int, box: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    else:  # a face crop: the face fills the middle of the image
        cx, cy, ax, ay = w / 2, h / 2, 0.34 * w, 0.42 * h
    return _deformed_ellipse(h, w, cx, cy, ax, ay, 0.0, rng, (0.75, 1.0))


def _deformed_ellipse(h: int, w: int, cx: float, cy: float, ax: float, ay: float, angle: float,
                      rng: np.random.Generator, scale: tuple[float, float]) -> np.ndarray:
    """A randomly shifted, scaled, tilted and wobbled ellipse polygon (48 points)."""
    cx += rng.uniform(-0.04, 0.04) * w
    cy += rng.uniform(-0.04, 0.04) * h
    ax *= rng.uniform(*scale)
    ay *= rng.uniform(*scale)
    angle += rng.uniform(-0.2, 0.2)
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    # deform the radius with a smooth random curve (low-order Fourier terms)
    wobble = 1.0 + sum(rng.uniform(-0.06, 0.06) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    px, py = ax * wobble * np.cos(t), ay * wobble * np.sin(t)
    xs = cx + px * np.cos(angle) - py * np.sin(angle)
    ys = cy + px * np.sin(angle) + py * np.cos(angle)
    return np.stack([xs, ys], 1)


# face oval around 5 landmarks, in eye-to-mouth distances d along the face's vertical axis: the
# forehead above the eye line, the chin below the mouth line; half-width in inter-ocular distances
OVAL_FOREHEAD, OVAL_CHIN, OVAL_HALF_WIDTH = 0.7, 0.85, 1.1


def landmark_oval(five: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """(cx, cy, ax, ay, angle) of the face oval fitted to 5 points (eyes, nose, mouth corners), or None.

    The oval spans ``OVAL_FOREHEAD`` eye-to-mouth distances above the eyes to ``OVAL_CHIN`` below the
    mouth, is ``OVAL_HALF_WIDTH`` inter-ocular distances wide per side, turns with the face's roll
    and shifts sideways with the nose (yaw).
    """
    le, re_, nose, ml, mr = np.asarray(five, np.float64).reshape(5, 2)
    eyes, mouth = (le + re_) / 2, (ml + mr) / 2
    v = mouth - eyes
    d = float(np.hypot(*v))
    if d < 1.0:
        return None
    down = v / d
    right = np.array([down[1], -down[0]])
    iod = float(np.hypot(*(re_ - le)))
    ay = d * (1.0 + OVAL_FOREHEAD + OVAL_CHIN) / 2
    ax = max(OVAL_HALF_WIDTH * iod, 0.85 * d)
    c = eyes + down * (ay - OVAL_FOREHEAD * d)
    c = c + right * 0.3 * float(np.dot(nose - (eyes + mouth) / 2, right))
    return float(c[0]), float(c[1]), ax, ay, float(np.arctan2(right[1], right[0]))


def _elastic(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation: a smoothed random displacement field applied with remap."""
    h, w = mask.shape
    alpha = rng.uniform(0.02, 0.06) * max(h, w)
    sigma = max(h, w) / 8
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dx *= alpha / (np.abs(dx).max() + 1e-8)
    dy *= alpha / (np.abs(dy).max() + 1e-8)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def face_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    box: np.ndarray | None = None,
    hull: bool = False,
) -> np.ndarray:
    """Soft blending mask (H, W) float32 in [0, 1], elastically deformed, eroded/dilated and blurred.

    Its shape: with 5 landmarks (YuNet) or 68 (dlib, reduced to the same 5) a face oval fitted to the
    eyes, nose and mouth (:func:`landmark_oval`); with ``hull=True`` (68 points) or another landmark
    set of 6+ points, their convex hull; else an ellipse in ``box`` (or the crop's middle).
    ``landmarks`` are (x, y) points in image pixels (flattened or (K, 2)); ``box`` is x0, y0, x1, y1.
    """
    from deepgen.faces.align import five_points

    h, w = shape
    hard = np.zeros((h, w), np.float32)
    pts = None if landmarks is None else np.asarray(landmarks, np.float32).reshape(-1, 2)
    five = None if pts is None or (hull and len(pts) >= 6) else five_points(pts)
    oval = landmark_oval(five) if five is not None else None
    if oval is not None:
        cv2.fillPoly(hard, [np.rint(_deformed_ellipse(h, w, *oval, rng, (0.9, 1.05))).astype(np.int32)], 1.0)
    elif pts is not None and len(pts) >= 6:
        hull_pts = cv2.convexHull(pts.astype(np.int32))
        cv2.fillConvexPoly(hard, hull_pts, 1.0)
    else:
        cv2.fillPoly(hard, [np.rint(_ellipse_polygon(h, w, box, rng)).astype(np.int32)], 1.0)
    hard = _elastic(hard, rng)
    # random erosion/dilation, then a blur whose width sets how soft the boundary is
    k = max(1, int(round(rng.uniform(0.01, 0.05) * max(h, w))))
    kernel = np.ones((k, k), np.uint8)
    hard = cv2.erode(hard, kernel) if rng.random() < 0.5 else cv2.dilate(hard, kernel)
    sigma = rng.uniform(0.02, 0.06) * max(h, w)
    soft = cv2.GaussianBlur(hard, (0, 0), sigma)
    soft[soft < 1e-3] = 0.0  # a Gaussian never reaches zero: keep the region compact
    peak = soft.max()
    return soft / peak if peak > 0 else soft


def _jitter_geometry(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random scale (+-5%) and shift (+-3%): the residual misalignment of a pasted face."""
    h, w = image.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    tx, ty = rng.uniform(-0.03, 0.03, 2) * (w, h)
    m = np.array([[scale, 0, (1 - scale) * w / 2 + tx], [0, scale, (1 - scale) * h / 2 + ty]], np.float32)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _source_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour, frequency and small geometric changes that turn the image into a blending source."""
    out = image
    # colour: per-channel shift plus brightness/contrast/saturation, never the identity
    shift = rng.uniform(8, 30, 3) * rng.choice([-1, 1], 3)
    out = np.clip(out.astype(np.float32) + shift, 0, 255).astype(np.uint8)
    out = color_jitter(out, *(1.0 + rng.uniform(-0.15, 0.15, 3)))
    # frequency: blur, sharpen or downscale-upscale
    choice = rng.integers(0, 3)
    if choice == 0:
        out = gaussian_blur(out, rng.uniform(0.6, 1.6))
    elif choice == 1:
        blurred = gaussian_blur(out, 1.0).astype(np.float32)
        amount = rng.uniform(0.5, 1.5)
        out = np.clip(out.astype(np.float32) * (1 + amount) - blurred * amount, 0, 255).astype(np.uint8)
    else:
        out = downscale(out, rng.uniform(0.35, 0.7))
    return _jitter_geometry(out, rng)


def color_transfer(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match ``src``'s per-channel Lab mean/std to ``ref`` inside ``mask`` (Reinhard transfer); float 0..255 RGB."""
    sel = mask > 0.5
    if sel.sum() < 16:
        return np.asarray(src, np.float32)
    s = cv2.cvtColor(np.clip(src / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    r = cv2.cvtColor(np.clip(ref / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)
    ms, ss = s[sel].mean(0), s[sel].std(0) + 1e-3
    mr, sr = r[sel].mean(0), r[sel].std(0) + 1e-3
    s = (s - ms) / ss * sr + mr
    return cv2.cvtColor(s.astype(np.float32), cv2.COLOR_LAB2RGB) * 255


def _other_source(image: np.ndarray, other: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Another face made into a blending source: colour moved part of the way to ``image``, maybe softened."""
    h, w = image.shape[:2]
    if other.shape[:2] != (h, w):
        other = cv2.resize(other, (w, h), interpolation=cv2.INTER_AREA)
    src = other.astype(np.float32)
    matched = color_transfer(src, image.astype(np.float32), mask)
    a = rng.uniform(0.4, 1.0)  # swap pipelines correct colour, rarely completely
    out = np.clip(np.rint(a * matched + (1 - a) * src), 0, 255).astype(np.uint8)
    choice = rng.integers(0, 4)  # a generator's output is often softer than the camera image
    if choice == 0:
        out = gaussian_blur(out, rng.uniform(0.4, 1.2))
    elif choice == 1:
        out = downscale(out, rng.uniform(0.4, 0.8))
    return _jitter_geometry(out, rng)


def _composite(image: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    out = source.astype(np.float32) * m + image.astype(np.float32) * (1.0 - m)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def self_blend(
    image: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    box: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(pseudo_fake, mask)``: ``image`` blended with a transformed copy of itself inside ``mask``.

    Pixels where ``mask == 0`` are exactly the input's; the mask already includes the blend ratio.
    """
    mask = face_mask(image.shape[:2], rng, landmarks, box)
    mask *= float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
    source = _source_transform(image, rng)
    return _composite(image, source, mask), mask


def other_blend(
    image: np.ndarray,
    other: np.ndarray,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    box: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(pseudo_fake, mask)``: another real face ``other`` blended into ``image`` inside ``mask``.

    Face X-ray's blended image: ``other`` (a crop of a different identity, resized to ``image``'s size)
    is colour-matched part of the way to ``image`` and maybe softened; pixels where ``mask == 0`` are
    exactly the input's. Same geometry arguments as :func:`self_blend`.
    """
    mask = face_mask(image.shape[:2], rng, landmarks, box)
    mask *= float(rng.choice([0.5, 0.75, 1.0, 1.0, 1.0]))
    source = _other_source(image, other, rng, mask)
    return _composite(image, source, mask), mask


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Face X-ray blending boundary of a soft mask: 4 m (1 - m), 1 on the boundary, 0 inside and out."""
    return 4.0 * mask * (1.0 - mask)
