"""Artifact evidence: spectral peaks of upsampling, Face X-ray boundary targets, compression mismatch."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from deepgen.artifacts import (
    BoundaryHead,
    FrequencyBranch,
    blockiness,
    boundary_loss,
    boundary_score,
    boundary_target,
    boundary_targets,
    compression_evidence,
    compression_mismatch,
    evidence_scores,
    feature_names,
    frequency_features,
    high_frequency_ratio,
    quantization_step,
    spectral_peak_score,
)
from deepgen.errors import DeepgenError


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny torch work runs fastest on one thread on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def texture(rng: np.random.Generator, h: int = 128, w: int = 128) -> np.ndarray:
    """A smooth natural-ish RGB texture: coloured noise with a 1/f amplitude spectrum, plus grain."""
    f = np.fft.fft2(rng.normal(size=(h, w, 3)), axes=(0, 1))
    r = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    r[0, 0] = 1.0
    y = np.real(np.fft.ifft2(f / r[..., None], axes=(0, 1)))
    y = (y - y.min()) / (y.max() - y.min()) * 235 + 10 + rng.normal(0, 1.0, size=y.shape)
    return np.clip(y, 0, 255).astype(np.uint8)


def upsampled(crop: np.ndarray, mode: str) -> np.ndarray:
    """Downscale 2x, then back up by nearest, zero insertion (transposed conv) or bilinear."""
    h, w = crop.shape[:2]
    small = cv2.resize(crop, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if mode == "nearest":
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    if mode == "bilinear":
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    z = np.zeros_like(crop)
    z[::2, ::2] = small
    return z


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB image as JPEG at ``quality`` and decode it back to RGB."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def real_photos(real_faces_dir, n: int) -> list[np.ndarray]:
    files = sorted(real_faces_dir.glob("*.jpg"))[:n]
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]


def peak_aucs(clean: list[np.ndarray]) -> dict[str, float]:
    clean_scores = [spectral_peak_score(c) for c in clean]
    out = {}
    for mode in ("nearest", "zero", "bilinear"):
        up = [spectral_peak_score(upsampled(c, mode)) for c in clean]
        y = [0] * len(clean_scores) + [1] * len(up)
        out[mode] = roc_auc_score(y, clean_scores + up)
    return out


# ---------------------------------------------------------------- frequency


def test_spectral_peak_score_separates_upsampled_textures():
    rng = np.random.default_rng(0)
    clean = [texture(rng) for _ in range(16)]
    aucs = peak_aucs(clean)
    assert min(aucs.values()) > 0.9, aucs


def test_spectral_peak_score_separates_upsampled_real_face_crops(real_faces_dir):
    rng = np.random.default_rng(1)
    clean = []
    for img in real_photos(real_faces_dir, 24):
        h, w = img.shape[:2]
        y, x = rng.integers(0, h - 128), rng.integers(0, w - 128)
        clean.append(img[y : y + 128, x : x + 128])
    aucs = peak_aucs(clean)
    assert min(aucs.values()) > 0.9, aucs


def test_spectral_peak_score_ignores_jpeg_grid():
    # An 8x8 JPEG grid has harmonics at N/4 and N/2 too; it must not look like upsampling.
    rng = np.random.default_rng(2)
    clean = [texture(rng) for _ in range(8)]
    compressed = [spectral_peak_score(jpeg(c, 30)) for c in clean]
    up = [spectral_peak_score(upsampled(c, "nearest")) for c in clean]
    assert max(compressed) < min(up)


def test_frequency_features_shape_names_and_hf_ratio():
    rng = np.random.default_rng(3)
    crops = [texture(rng, 64, 64), texture(rng, 96, 80)]
    feats = frequency_features(crops)
    assert feats.shape == (2, len(feature_names()))
    assert np.all(np.isfinite(feats))
    # a natural-ish spectrum falls with frequency
    assert feats[0, 0] > feats[0, 31] + 1.0
    batch = np.stack([crops[0], crops[0]])
    np.testing.assert_array_equal(frequency_features(batch)[0], feats[0])
    # over-smoothing (NeuralTextures-like) removes high-frequency energy
    sharp = crops[0]
    smooth = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    assert high_frequency_ratio(smooth) < 0.5 * high_frequency_ratio(sharp)
    with pytest.raises(DeepgenError, match="too small"):
        spectral_peak_score(np.zeros((8, 8, 3), np.uint8))


def test_frequency_branch_shapes_and_gradient():
    torch.manual_seed(0)
    branch = FrequencyBranch(out_dim=12)
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    out = branch(x)
    assert out.shape == (3, 12)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- boundary


def soft_ellipse(h: int = 64, w: int = 64, width: float = 0.25) -> np.ndarray:
    """A soft elliptical blending mask: 1 inside, 0 outside, a linear ramp across the rim."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.28 * w)) ** 2)
    return np.clip((1.0 + width / 2 - r) / width, 0.0, 1.0)


def test_boundary_target_equals_4m_1_minus_m():
    m = soft_ellipse()
    b = boundary_target(m)
    np.testing.assert_allclose(b, 4 * m * (1 - m), atol=1e-6)
    assert np.all(b[(m == 0) | (m == 1)] == 0)
    assert (m == 0).any() and (m == 1).any() and b.max() > 0.99
    # uint8 masks mean the same thing
    m8 = (m * 255).round().astype(np.uint8)
    np.testing.assert_allclose(boundary_target(m8), 4 * (m8 / 255) * (1 - m8 / 255), atol=1e-6)
    assert boundary_target(m, size=16).shape == (16, 16)
    assert boundary_target(m, size=(20, 24)).shape == (20, 24)


def test_boundary_target_of_hard_mask_is_a_thin_band_after_blur():
    hard = (soft_ellipse() > 0.5).astype(np.float64)
    b = boundary_target(hard)
    assert b.max() > 0.5
    yy, xx = np.mgrid[0:64, 0:64]
    assert b[32, 32] == pytest.approx(0.0, abs=1e-6)  # deep inside the face
    assert b[0, 0] == pytest.approx(0.0, abs=1e-6)  # far outside
    assert np.all(boundary_target(hard, blur_sigma=0) == 0)  # unblurred: no boundary width
    batch = boundary_targets([hard, None], size=8)
    assert batch.shape == (2, 1, 8, 8) and batch[1].max() == 0 and batch[0].max() > 0


def test_boundary_score_is_max_response():
    maps = np.zeros((3, 1, 8, 8))
    maps[0, 0, 2, 3] = 0.7
    maps[2] = 0.2
    np.testing.assert_allclose(boundary_score(maps), [0.7, 0.0, 0.2])
    logits = torch.zeros(2, 4, 4)
    np.testing.assert_allclose(boundary_score(logits, from_logits=True), [0.5, 0.5])


def test_boundary_head_learns_a_target():
    torch.manual_seed(0)
    head = BoundaryHead(in_channels=8, mid_channels=16, out_size=32)
    feats = torch.randn(2, 8, 8, 8)
    target = torch.from_numpy(boundary_targets([soft_ellipse(), None], size=16))
    logits = head(feats)
    assert logits.shape == (2, 1, 32, 32)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = boundary_loss(head(feats), target).item()
    for _ in range(30):
        opt.zero_grad()
        loss = boundary_loss(head(feats), target)
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    with pytest.raises(DeepgenError):
        boundary_loss(logits, torch.zeros(3, 32, 32))


# ---------------------------------------------------------------- compression


def pasted(base_img: np.ndarray, face_src: np.ndarray, box, shift: int) -> np.ndarray:
    """``base_img`` at quality 95 with the box region replaced by ``face_src`` at quality 30
    (its 8x8 grid shifted by ``shift`` pixels), then the composite saved again at quality 95."""
    x0, y0, x1, y1 = box
    low = jpeg(np.roll(face_src, shift, axis=(0, 1)), 30)
    out = jpeg(base_img, 95).copy()
    out[y0:y1, x0:x1] = low[y0:y1, x0:x1]
    return jpeg(out, 95)


def check_mismatch(images: list[np.ndarray]) -> None:
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        box = (int(w * 0.3), int(h * 0.25), int(w * 0.7), int(h * 0.7))
        untouched = jpeg(img, 95)
        clean = compression_mismatch(untouched, box)
        other = images[(i + 1) % len(images)]
        other = cv2.resize(other, (w, h), interpolation=cv2.INTER_AREA)
        for shift in (0, 3):
            fake = compression_mismatch(pasted(img, other, box, shift), box)
            assert fake > clean + 1.0, (i, shift, clean, fake)


def test_compression_mismatch_detects_pasted_low_quality_face_textures():
    rng = np.random.default_rng(4)
    check_mismatch([texture(rng, 160, 192) for _ in range(4)])


def test_compression_mismatch_detects_pasted_low_quality_face_photos(real_faces_dir):
    check_mismatch(real_photos(real_faces_dir, 8))


def test_blockiness_and_quantization_step_follow_quality():
    rng = np.random.default_rng(5)
    img = texture(rng, 128, 128)
    q30, q95 = jpeg(img, 30), jpeg(img, 95)
    assert blockiness(q30) > blockiness(q95) + 0.2
    assert quantization_step(q30) >= 8 * quantization_step(q95)
    assert quantization_step(img) == 1.0  # never compressed: no quantization grid
    ev = compression_evidence(q30, (30, 30, 90, 90))
    assert set(ev) == {"grid_inside", "grid_outside", "qstep_inside", "qstep_outside", "mismatch"}
    with pytest.raises(DeepgenError, match="empty"):
        compression_mismatch(q30, (50, 50, 40, 60))


# ---------------------------------------------------------------- evidence


def test_evidence_scores_per_item_columns():
    rng = np.random.default_rng(6)
    frames = [texture(rng, 128, 160) for _ in range(3)]
    boxes = [(40, 30, 110, 100)] * 3
    crops = [cv2.resize(f[30:100, 40:110], (64, 64)) for f in frames]
    crops[1] = upsampled(crops[1], "nearest")
    ev = evidence_scores(crops)
    assert set(ev) == {"frequency_score", "hf_ratio", "compression_score"}
    assert all(len(v) == 3 for v in ev.values())
    assert np.isnan(ev["compression_score"]).all()
    assert ev["frequency_score"][1] > max(ev["frequency_score"][0], ev["frequency_score"][2])
    ev2 = evidence_scores(crops, frames, boxes)
    np.testing.assert_allclose(
        ev2["compression_score"], [compression_mismatch(f, b) for f, b in zip(frames, boxes)]
    )
    with pytest.raises(DeepgenError, match="one frame and one box per crop"):
        evidence_scores(crops, frames[:2], boxes)
