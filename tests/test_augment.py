"""Augmentations: seeded perturbations and self-blended pseudo-fakes confined to their mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepgen.augment import (
    PerturbConfig,
    boundary_map,
    face_mask,
    jpeg_compress,
    perturb,
    self_blend,
)

ALL_ON = PerturbConfig(jpeg_p=1.0, blur_p=1.0, noise_p=1.0, color_p=1.0, downscale_p=1.0)


def _face(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 60, np.uint8)
    img[:] = rng.integers(40, 90, 3)
    cv2.ellipse(img, (size // 2, size // 2), (size // 3, int(size / 2.4)), 0, 0, 360, (200, 160, 130), -1)
    cv2.circle(img, (size // 3, size // 2 - 6), 3, (40, 30, 30), -1)
    cv2.circle(img, (2 * size // 3, size // 2 - 6), 3, (40, 30, 30), -1)
    cv2.line(img, (size // 2 - 8, size // 2 + 14), (size // 2 + 8, size // 2 + 14), (150, 60, 60), 2)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_perturbations_deterministic_per_seed(seed):
    img = _face()
    a = perturb(img, ALL_ON, np.random.default_rng(seed))
    b = perturb(img, ALL_ON, np.random.default_rng(seed))
    c = perturb(img, ALL_ON, np.random.default_rng(seed + 100))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == img.shape and a.dtype == np.uint8 and not np.array_equal(a, img)


def test_perturb_probabilities_zero_is_identity_and_jpeg_changes():
    img = _face()
    assert np.array_equal(perturb(img, PerturbConfig(), np.random.default_rng(0)), img)
    assert np.abs(jpeg_compress(img, 20).astype(int) - img).mean() > 0.5


@pytest.mark.parametrize("seed", range(6))
def test_pseudo_fake_differs_only_inside_mask(seed):
    img = _face(seed=seed)
    fake, mask = self_blend(img, np.random.default_rng(seed))
    assert fake.shape == img.shape and mask.shape == img.shape[:2] and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    changed = np.any(fake != img, axis=2)
    assert changed.any()
    assert not np.any(changed & (mask == 0)), "pixels outside the mask changed"
    assert 0.05 < (mask > 0).mean() < 0.9  # a face-sized region, not the whole crop
    again, mask2 = self_blend(img, np.random.default_rng(seed))
    assert np.array_equal(again, fake) and np.array_equal(mask, mask2)


def test_landmark_hull_mask_and_box_ellipse():
    rng = np.random.default_rng(3)
    pts = np.array([[20, 20], [44, 20], [50, 36], [44, 52], [20, 52], [14, 36]], np.float32)
    m = face_mask((64, 64), rng, landmarks=pts.ravel())
    assert m[36, 32] > 0.5 and m[2, 2] == 0 and m[62, 62] == 0
    m2 = face_mask((64, 64), np.random.default_rng(3), box=np.array([0, 0, 30, 30]))
    ys, xs = np.nonzero(m2 > 0.5)
    assert xs.mean() < 25 and ys.mean() < 25  # ellipse follows the box, top-left


def test_boundary_map_from_mask():
    _, mask = self_blend(_face(), np.random.default_rng(4))
    b = boundary_map(mask)
    assert np.allclose(b, 4 * mask * (1 - mask))
    assert b[mask == 0].max() == 0 and b.max() <= 1.0
