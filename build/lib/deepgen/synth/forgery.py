"""Forgery families over a rendered clip, each leaving the artifact class its real counterparts leave.

Every family takes a real :class:`~deepgen.synth.face.Clip` (and, for swaps, a donor
:class:`~deepgen.synth.face.Identity`) and returns a :class:`Forgery`: the forged frames and the
per-frame forged-region mask (uint8 0..255, T x H x W; pixels outside the mask are left as they
were, except for the global perturbations of :func:`deeperforensics`).

- :func:`swap_blend` (a) Deepfakes/FaceSwap-like: low-resolution or sharp donor face, hard mask
  (visible blending boundary), no colour correction (colour mismatch).
- :func:`reenact` (b) Face2Face-like: mouth and eye regions warped to a driver's expression.
- :func:`neural_textures` (c) NeuralTextures-like: mouth region re-rendered with over-smoothed texture.
- :func:`swap_soft` (d) FaceShifter/Celeb-DF-like: soft mask, colour transfer, matched noise.
- :func:`gan_upsample` (e) GAN-like: face rendered at low resolution and upsampled with a
  transposed-convolution (checkerboard) or nearest kernel: periodic spectral peaks.
- :func:`deeperforensics` (f) a high-quality swap plus real-world perturbations (:func:`perturb`)
  at levels 1..5 (compression, blur, noise, colour shift).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import cv2
import numpy as np

from deepgen.augment.sbi import color_transfer
from deepgen.synth.face import HULL_LANDMARKS, Clip, Identity, render_clip

# landmarks used to align a donor face onto the target (brows, eyes, nose, mouth, chin)
ALIGN_LANDMARKS = tuple(range(12))


@dataclass
class Forgery:
    """Forged frames (T,H,W,3 uint8), forged-region masks (T,H,W uint8 0..255) and the parameters."""

    frames: np.ndarray
    masks: np.ndarray
    family: str
    meta: dict = field(default_factory=dict)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping points ``src`` onto ``dst``, as a 2x3 matrix."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    sc, dc = src - ms, dst - md
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / max(sc.var(0).sum(), 1e-9)
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def hull_mask(landmarks: np.ndarray, shape: tuple[int, int], grow: float = 1.0) -> np.ndarray:
    """Filled inner-face polygon (float32 0/1) from the landmark hull, scaled ``grow`` about its centre."""
    pts = landmarks[list(HULL_LANDMARKS)].astype(np.float64)
    c = pts.mean(0)
    pts = c + (pts - c) * grow
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    m = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(m, hull, 1.0, cv2.LINE_AA, 4)
    return m


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Blur a 0/1 mask inwards: erode by ~2 sigma then blur, so the soft edge stays inside it."""
    if sigma <= 0:
        return mask
    k = int(2 * round(2 * sigma) + 1)
    m = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return cv2.GaussianBlur(m, (0, 0), sigma) * (mask > 0)


def _face_r(clip: Clip, t: int) -> float:
    x0, y0, x1, y1 = clip.boxes[t]
    return float(max(y1 - y0, x1 - x0)) / 2


def aligned_donor(clip: Clip, donor: Identity, seed: int = 0, jitter: float = 0.0) -> np.ndarray:
    """Render ``donor`` with the clip's motion, expression and scene, aligned onto the target's landmarks.

    This is what a face-swap generator produces: the donor's face in the target's pose.
    Returns float32 frames (T,H,W,3). ``jitter`` adds per-frame alignment noise (pixels).
    """
    d = render_clip(donor, clip.motion, clip.scene, len(clip.frames), seed=seed, noise=False)
    rng = np.random.default_rng(seed)
    h, w = clip.frames.shape[1:3]
    out = np.empty(clip.frames.shape, np.float32)
    idx = list(ALIGN_LANDMARKS)
    for t in range(len(clip.frames)):
        m = similarity_transform(d.landmarks[t, idx], clip.landmarks[t, idx])
        if jitter:
            m[:, 2] += rng.normal(0, jitter, 2)
        out[t] = cv2.warpAffine(
            d.frames[t].astype(np.float32),
            m,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
    return out


def _composite(target: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = target.astype(np.float32) * (1 - alpha[..., None]) + face * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _mask_u8(alpha: np.ndarray) -> np.ndarray:
    """Mask as uint8 with every pixel the forgery touched (alpha > 0) at least 1."""
    m = np.round(alpha * 255)
    m[(alpha > 0) & (m < 1)] = 1
    return m.astype(np.uint8)


def swap_blend(clip: Clip, donor: Identity, seed: int = 0, style: str = "deepfakes") -> Forgery:
    """(a) Identity swap with a hard blending boundary and colour mismatch.

    ``style="deepfakes"``: the donor face passes through a 64 px bottleneck (autoencoder blur);
    ``style="faceswap"``: sharp graphics-style paste with a stronger colour offset.
    """
    rng = np.random.default_rng(seed)
    face = aligned_donor(clip, donor, seed)
    gain = rng.uniform(0.88, 1.12, 3) if style == "faceswap" else rng.uniform(0.93, 1.07, 3)
    h, w = clip.frames.shape[1:3]
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(clip.frames)):
        hard = hull_mask(clip.landmarks[t], (h, w), 0.96)
        # a crude, partial colour correction: the mean moves 60% towards the target, the rest stays off
        ct = color_transfer(face[t], clip.frames[t].astype(np.float32), hard)
        f = (0.6 * ct + 0.4 * face[t]) * gain
        if style == "deepfakes":
            x0, y0, x1, y1 = (int(v) for v in clip.boxes[t])
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if x1 - x0 > 8 and y1 - y0 > 8:
                crop = cv2.resize(f[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_AREA)
                f[y0:y1, x0:x1] = cv2.resize(
                    crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR
                )
        alpha = _feather(hard, 1.0)
        frames[t] = _composite(clip.frames[t], f, alpha)
        masks[t] = _mask_u8(alpha)
    return Forgery(
        frames,
        masks,
        "swap_blend",
        {"style": style, "donor": donor.id, "gain": gain.round(3).tolist()},
    )


def swap_soft(
    clip: Clip,
    donor: Identity,
    seed: int = 0,
    feather: float = 0.08,
    blur: float = 0.6,
    jitter: float = 0.4,
) -> Forgery:
    """(d) High-quality swap: soft mask (``feather`` x face size), colour transfer, matched camera noise.

    What remains: a slightly smoother face (``blur``), small frame-to-frame alignment flicker
    (``jitter`` px) and the donor's identity inside the target's head.
    """
    rng = np.random.default_rng(seed + 1)
    face = aligned_donor(clip, donor, seed, jitter=jitter)
    h, w = clip.frames.shape[1:3]
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(clip.frames)):
        hard = hull_mask(clip.landmarks[t], (h, w), 1.04)
        f = color_transfer(face[t], clip.frames[t].astype(np.float32), hard)
        if blur > 0:
            f = cv2.GaussianBlur(f, (0, 0), blur)
        f = f + rng.standard_normal(f.shape, dtype=np.float32) * clip.scene.noise
        alpha = _feather(hard, max(0.5, feather * _face_r(clip, t)))
        frames[t] = _composite(clip.frames[t], f, alpha)
        masks[t] = _mask_u8(alpha)
    return Forgery(
        frames, masks, "swap_soft", {"donor": donor.id, "feather": feather, "blur": blur}
    )


def _window(shape, center, axes) -> np.ndarray:
    """Smooth bump (1 - r^2)^2 inside an ellipse, exactly 0 outside."""
    h, w = shape
    ys, xs = np.ogrid[0:h, 0:w]
    r2 = ((xs - center[0]) / axes[0]) ** 2 + ((ys - center[1]) / axes[1]) ** 2
    return (np.clip(1 - r2, 0, 1) ** 2).astype(np.float32)


def reenact(
    clip: Clip, donor: Identity | None = None, seed: int = 0, strength: float = 1.0
) -> Forgery:
    """(b) Expression reenactment: warp mouth (open/close) and eyes (squint) to a driver's expression.

    The driver's expression is a random smooth signal per ``seed`` (``donor`` only names the actor).
    The warp stretches texture and camera noise inside the regions; the mask is their support.
    """
    rng = np.random.default_rng(seed)
    fm, pm = rng.uniform(0.8, 2.5), rng.uniform(0, 6.3)
    fe, pe = rng.uniform(0.3, 1.0), rng.uniform(0, 6.3)
    h, w = clip.frames.shape[1:3]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(clip.frames)):
        lm = clip.landmarks[t]
        tt = t / clip.motion.fps
        r = _face_r(clip, t)
        mc = (lm[7] + lm[8]) / 2
        mw = float(np.linalg.norm(lm[8] - lm[7])) / 2
        km = strength * (0.18 + 0.17 * np.sin(2 * np.pi * fm * tt + pm))
        wm = _window((h, w), mc, (1.35 * mw + 2, 0.36 * r + 2))
        dy = -km * (ys - mc[1]) * wm
        dx = np.zeros_like(dy)
        support = wm > 0
        ke = strength * 0.22 * np.sin(2 * np.pi * fe * tt + pe)
        for e in (lm[4], lm[5]):
            we = _window((h, w), e, (0.3 * r + 2, 0.16 * r + 2))
            dy += ke * (ys - e[1]) * we
            dx += 0.04 * strength * r * np.sin(2 * np.pi * fe * tt) * we
            support |= we > 0
        mx, my = (xs - dx).astype(np.float32), (ys - dy).astype(np.float32)
        warped = cv2.remap(clip.frames[t], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # re-rendered texture is smoother than the camera image
        smooth = cv2.GaussianBlur(warped, (0, 0), 0.8).astype(np.float32)
        wsum = wm[..., None] * 0.6
        out = warped.astype(np.float32) * (1 - wsum) + smooth * wsum
        frames[t] = np.where(
            support[..., None], np.clip(out + 0.5, 0, 255).astype(np.uint8), clip.frames[t]
        )
        masks[t] = support.astype(np.uint8) * 255
    return Forgery(
        frames,
        masks,
        "reenact",
        {"driver": donor.id if donor else None, "mouth_freq": round(float(fm), 3)},
    )


def neural_textures(
    clip: Clip, donor: Identity | None = None, seed: int = 0, smooth: float = 1.6
) -> Forgery:
    """(c) Mouth region re-rendered for a driver's speech with over-smoothed texture.

    The target is re-rendered with a different talking signal and no camera noise, smoothed with
    a bilateral and a Gaussian filter (a neural renderer's texture), and blended over the mouth.
    """
    rng = np.random.default_rng(seed)
    talk = (float(rng.uniform(0.5, 1.0)), float(rng.uniform(1.5, 4.0)), float(rng.uniform(0, 6.3)))
    motion = dataclasses.replace(clip.motion, talk=talk)
    rr = render_clip(clip.identity, motion, clip.scene, len(clip.frames), seed=seed, noise=False)
    h, w = clip.frames.shape[1:3]
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(clip.frames)):
        lm = clip.landmarks[t]
        r = _face_r(clip, t)
        mc = (lm[7] + lm[8]) / 2 + np.array([0, 0.05 * r], np.float32)
        mw = float(np.linalg.norm(lm[8] - lm[7])) / 2
        f = cv2.bilateralFilter(rr.frames[t], 5, 30, 5)
        f = cv2.GaussianBlur(f.astype(np.float32), (0, 0), smooth)
        hard = np.zeros((h, w), np.float32)
        cv2.ellipse(
            hard,
            (int(mc[0]), int(mc[1])),
            (int(1.5 * mw + 3), int(0.42 * r + 3)),
            0,
            0,
            360,
            1.0,
            -1,
        )
        alpha = _feather(hard, max(0.5, 0.04 * r))
        frames[t] = _composite(clip.frames[t], f, alpha)
        masks[t] = _mask_u8(alpha)
    return Forgery(
        frames, masks, "neural_textures", {"talk": [round(x, 3) for x in talk], "smooth": smooth}
    )


def upsample_checkerboard(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Upsample by ``factor`` (power of 2) with a stride-2, 3-tap transposed convolution per step.

    The kernel [0.55, 1, 0.55] covers odd and even output positions unequally: the
    checkerboard pattern of learned upsampling layers, a peak at the Nyquist frequency.
    """
    k = np.array([0.55, 1.0, 0.55], np.float32)
    out = img.astype(np.float32)
    while factor > 1:
        h, w = out.shape[:2]
        z = np.zeros((2 * h, 2 * w) + out.shape[2:], np.float32)
        z[::2, ::2] = out
        z = cv2.sepFilter2D(z, -1, k, k, borderType=cv2.BORDER_REFLECT)
        out = z * (4.0 / (k.sum() ** 2))  # keep the mean brightness
        factor //= 2
    return out


def gan_upsample(
    clip: Clip, donor: Identity, seed: int = 0, factor: int = 4, mode: str = "transpose"
) -> Forgery:
    """(e) GAN-like synthesis: the swapped face is made at 1/``factor`` resolution and upsampled.

    ``mode="transpose"`` uses :func:`upsample_checkerboard`, ``mode="nearest"`` pixel repetition;
    both leave periodic peaks in the spectrum of the face region.
    """
    face = aligned_donor(clip, donor, seed)
    h, w = clip.frames.shape[1:3]
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(clip.frames)):
        hard = hull_mask(clip.landmarks[t], (h, w), 1.05)
        f = color_transfer(face[t], clip.frames[t].astype(np.float32), hard)
        x0, y0, x1, y1 = clip.boxes[t]
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.6
        side = int(np.ceil(2 * half / factor)) * factor
        bx0, by0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        pad = side
        big = cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        crop = big[by0 + pad : by0 + pad + side, bx0 + pad : bx0 + pad + side]
        small = cv2.resize(crop, (side // factor, side // factor), interpolation=cv2.INTER_AREA)
        if mode == "nearest":
            up = cv2.resize(small, (side, side), interpolation=cv2.INTER_NEAREST)
        else:
            up = upsample_checkerboard(small, factor)
        big[by0 + pad : by0 + pad + side, bx0 + pad : bx0 + pad + side] = up
        f = big[pad : pad + h, pad : pad + w]
        alpha = _feather(hard, max(0.5, 0.03 * _face_r(clip, t)))
        frames[t] = _composite(clip.frames[t], f, alpha)
        masks[t] = _mask_u8(alpha)
    return Forgery(
        frames, masks, "gan_upsample", {"donor": donor.id, "factor": factor, "mode": mode}
    )


# DeeperForensics-style distortion strength per level 1..5
PERTURB_LEVELS = {
    "jpeg_quality": (85, 65, 45, 32, 22),
    "blur_sigma": (0.4, 0.7, 1.0, 1.4, 1.8),
    "noise_sigma": (2.0, 4.0, 6.0, 8.5, 11.0),
    "saturation": (0.9, 0.75, 0.6, 0.45, 0.3),
}


def perturb(frames: np.ndarray, level: int, seed: int = 0) -> np.ndarray:
    """Apply colour-saturation shift, blur, Gaussian noise and JPEG compression at ``level`` 1..5."""
    if not 1 <= level <= 5:
        raise ValueError(f"perturbation level must be 1..5, got {level}")
    i = level - 1
    rng = np.random.default_rng(seed)
    out = np.empty_like(frames)
    q = [int(cv2.IMWRITE_JPEG_QUALITY), PERTURB_LEVELS["jpeg_quality"][i]]
    for t, f in enumerate(frames):
        hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= PERTURB_LEVELS["saturation"][i]
        g = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(
            np.float32
        )
        g = cv2.GaussianBlur(g, (0, 0), PERTURB_LEVELS["blur_sigma"][i])
        g += rng.standard_normal(g.shape, dtype=np.float32) * PERTURB_LEVELS["noise_sigma"][i]
        g = np.clip(g + 0.5, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", g, q)
        out[t] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else g
    return out


def deeperforensics(clip: Clip, donor: Identity, seed: int = 0, level: int = 0) -> Forgery:
    """(f) DF-VAE-like high-quality swap; ``level`` 1..5 adds :func:`perturb` (0 = end_to_end)."""
    fg = swap_soft(clip, donor, seed, feather=0.1, blur=0.4, jitter=0.25)
    frames = perturb(fg.frames, level, seed) if level else fg.frames
    return Forgery(frames, fg.masks, "deeperforensics", {**fg.meta, "level": level})


def perturb_levels(forgery: Forgery, seed: int = 0) -> dict[int, np.ndarray]:
    """Frames of ``forgery`` at every perturbation level 1..5 (the swap is computed once)."""
    return {lv: perturb(forgery.frames, lv, seed + lv) for lv in range(1, 6)}


FAMILIES = {
    "swap_blend": swap_blend,
    "reenact": reenact,
    "neural_textures": neural_textures,
    "swap_soft": swap_soft,
    "gan_upsample": gan_upsample,
    "deeperforensics": deeperforensics,
}
