"""Temporal pseudo-fakes (issue 22): a real clip blended frame by frame, with the blend drifting.

Per-frame face swaps are made one frame at a time, so their blend mask, colour correction and
placement wobble from frame to frame, and no single frame shows it. :func:`temporal_blend` makes
that from a real clip with the self-blend machinery of :mod:`deepgen.augment.sbi` (the same mask,
source transform and compositing): one blend drawn for the clip (seeded, so every frame gets the
same mask shape and source transform), then per-frame drift of the mask's position and scale, the
blend ratio and the source's colour and placement. ``drift = 0`` gives a temporally stable blend.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepgen.augment.sbi import _composite, _other_source, _source_transform, face_mask


def _shift(image: np.ndarray, dx: float, dy: float, scale: float = 1.0) -> np.ndarray:
    h, w = image.shape[:2]
    m = np.array([[scale, 0, (1 - scale) * w / 2 + dx], [0, scale, (1 - scale) * h / 2 + dy]], np.float32)
    border = cv2.BORDER_CONSTANT if image.ndim == 2 else cv2.BORDER_REFLECT
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


def temporal_blend(
    frames: list[np.ndarray],
    rng: np.random.Generator,
    drift: float = 1.0,
    landmarks: list[np.ndarray | None] | None = None,
    boxes: list[np.ndarray | None] | None = None,
    others: list[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return ``(pseudo_fake_frames, masks)`` for the consecutive RGB uint8 ``frames`` of one track.

    Every frame is blended inside a face mask drawn from the same seed (it follows the frame's own
    ``landmarks``/``boxes`` when given) with a source made by the same seeded transform of that frame
    (a self-blend) or, with ``others`` (another face's frames, one per frame), by colour-matching
    that face (a Face X-ray blend). ``drift`` scales the frame-to-frame wobble: mask offset and scale
    (a random walk, up to ~3 % of the crop per frame), blend ratio (+-30 %) and a per-frame colour
    offset of the source (~6 levels per channel) and its placement (~1 px).
    """
    n = len(frames)
    h, w = frames[0].shape[:2]
    mask_seed, src_seed = (int(s) for s in rng.integers(0, 2**31, 2))
    ratio = float(rng.choice([0.5, 0.75, 1.0, 1.0, 1.0]))
    steps = rng.uniform(-0.03, 0.03, (n, 2)) * drift * (w, h)
    walk = np.cumsum(steps, axis=0) - steps[0]
    scales = 1.0 + drift * rng.uniform(-0.04, 0.04, n)
    ratios = np.clip(ratio * (1.0 + drift * rng.uniform(-0.3, 0.3, n)), 0.1, 1.0)
    colour = drift * rng.normal(0.0, 6.0, (n, 3))
    place = drift * rng.normal(0.0, 1.0, (n, 2))
    out, masks = [], []
    for t, img in enumerate(frames):
        lms = None if landmarks is None else landmarks[t]
        box = None if boxes is None else boxes[t]
        mask = face_mask((h, w), np.random.default_rng(mask_seed), lms, box)
        mask = np.clip(_shift(mask, *walk[t], scales[t]), 0.0, 1.0) * float(ratios[t])
        src_rng = np.random.default_rng(src_seed)
        source = (_other_source(img, others[t], src_rng, mask) if others is not None
                  else _source_transform(img, src_rng))
        source = np.clip(_shift(source, *place[t]).astype(np.float32) + colour[t], 0, 255).astype(np.uint8)
        out.append(_composite(img, source, mask))
        masks.append(mask)
    return out, masks
