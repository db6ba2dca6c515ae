"""Augmentations: seeded perturbations and blended pseudo-fakes confined to their mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepgen.augment import (
    PerturbConfig,
    boundary_map,
    color_transfer,
    face_mask,
    jpeg_compress,
    other_blend,
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


@pytest.mark.parametrize("seed", range(4))
def test_other_blend_brings_the_other_face_inside_the_mask_only(seed):
    img, other = _face(seed=seed), _face(seed=seed + 50)
    other[..., 0] = np.clip(other[..., 0].astype(int) + 60, 0, 255)  # another identity: redder skin
    fake, mask = other_blend(img, other, np.random.default_rng(seed), box=np.array([10, 8, 54, 58]))
    assert fake.shape == img.shape and mask.shape == img.shape[:2] and 0 <= mask.min() and mask.max() <= 1
    changed = np.any(fake != img, axis=2)
    assert changed.any() and not np.any(changed & (mask == 0)), "pixels outside the mask changed"
    inside = mask >= 0.9 * mask.max()
    # inside the mask the pseudo-fake has moved towards the other face (red partly kept: partial colour match)
    assert np.abs(fake[inside].astype(int) - other[inside]).mean() < np.abs(img[inside].astype(int) - other[inside]).mean()
    again, mask2 = other_blend(img, other, np.random.default_rng(seed), box=np.array([10, 8, 54, 58]))
    assert np.array_equal(again, fake) and np.array_equal(mask, mask2)
    small = cv2.resize(other, (32, 32))  # a face of another size is resized to the target's
    assert other_blend(img, small, np.random.default_rng(seed))[0].shape == img.shape


def test_color_transfer_matches_lab_statistics_inside_the_mask():
    src, ref = _face(seed=1).astype(np.float32), _face(seed=2).astype(np.float32) * 0.6
    mask = np.zeros(src.shape[:2], np.float32)
    mask[16:48, 16:48] = 1
    out = color_transfer(src, ref, mask)
    lab = [cv2.cvtColor(np.clip(x / 255, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)[mask > 0] for x in (out, ref)]
    assert np.allclose(lab[0].mean(0), lab[1].mean(0), atol=1.5)
    assert np.array_equal(color_transfer(src, ref, np.zeros_like(mask)), src)  # too small a region: unchanged


def _five(cx=32.0, cy=30.0, roll=0.0, s=1.0):
    """5 face points (eyes, nose, mouth corners) for a 64-px face crop, rolled by ``roll`` radians."""
    base = np.array([[-9, -6], [9, -6], [0, 3], [-7, 12], [7, 12]], np.float64) * s
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    return (base @ rot.T + (cx, cy)).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_landmark_oval_mask_covers_the_face_points_and_turns_with_roll(seed):
    rng = np.random.default_rng(seed)
    pts = _five()
    mask = face_mask((64, 64), rng, landmarks=pts.ravel())
    for x, y in pts:
        assert mask[int(round(y)), int(round(x))] > 0.5
    assert mask[2, 2] == 0 and mask[2, 61] == 0  # corners stay outside
    # forehead and chin are inside: the oval reaches beyond the eye and mouth lines
    assert mask[int(pts[0, 1]) - 6, 32] > 0.3 and mask[int(pts[3, 1]) + 6, 32] > 0.3
    # rolled landmarks give a rolled oval: it extends from the eyes along the face's own down axis
    for roll in (0.0, 0.6):
        pts2 = _five(cx=64, cy=56, roll=roll, s=2)
        rolled = face_mask((128, 128), np.random.default_rng(seed), landmarks=pts2)
        ys, xs = np.nonzero(rolled > 0.5)
        off = np.array([xs.mean(), ys.mean()]) - pts2[:2].mean(0)
        assert abs(np.arctan2(-off[0], off[1]) - roll) < 0.35, (roll, off)
    # 68 points: the same oval by default, the convex hull on request
    lm68 = np.zeros((68, 2), np.float32) + (32, 30)
    lm68[36:42], lm68[42:48], lm68[30], lm68[48], lm68[54] = pts[0], pts[1], pts[2], pts[3], pts[4]
    lm68[:17] = np.stack([32 + 20 * np.cos(np.linspace(0, np.pi, 17)), 30 + 22 * np.sin(np.linspace(0, np.pi, 17))], 1)
    oval = face_mask((64, 64), np.random.default_rng(seed), landmarks=lm68)
    hull = face_mask((64, 64), np.random.default_rng(seed), landmarks=lm68, hull=True)
    assert oval[int(pts[0, 1]) - 6, 32] > 0.3 and not np.allclose(oval, hull)


def test_self_blend_with_five_landmarks_changes_only_inside_the_mask():
    img = _face(seed=3)
    fake, mask = self_blend(img, np.random.default_rng(3), landmarks=_five().ravel())
    changed = np.any(fake != img, axis=2)
    assert changed.any() and not np.any(changed & (mask == 0))


def test_crop_geometry_accepts_five_points_and_aligned_crops():
    from deepgen.faces.align import align_face, template
    from deepgen.train.data import _crop_geometry

    box = (100.0, 60.0, 180.0, 160.0)
    tpl = template(64, 0.3)
    # a face whose 5 points are the template scaled 1.5x and shifted (frame pixels)
    frame_pts = (tpl - 32) * 1.5 + (140, 110)
    crop_box, pts = _crop_geometry(box, frame_pts.ravel().tolist(), 64, 0.3)
    assert crop_box is not None and pts is not None and pts.shape == (5, 2)
    side = 100 * 1.3
    assert np.allclose(pts, (frame_pts - (140, 110)) * 64 / side + 32, atol=1e-4)
    # aligned: the crop's own similarity puts the points on the template
    _, apts = _crop_geometry(box, frame_pts.ravel().tolist(), 64, 0.3, aligned=True)
    assert np.allclose(apts, tpl, atol=1e-3)
    frame = np.zeros((240, 320, 3), np.uint8)
    crop, m = align_face(frame, frame_pts, 64, 0.3)
    assert crop.shape == (64, 64, 3) and np.allclose(m[:, :2], np.eye(2) / 1.5, atol=1e-4)
    assert _crop_geometry(box, None, 64, 0.3, aligned=True)[1] is None
    assert _crop_geometry(None, frame_pts.ravel(), 64, 0.3) == (None, None)
