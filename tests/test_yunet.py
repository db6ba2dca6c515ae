"""YuNet default detector on real photos (plain and hard copies), 5-point alignment, fallback and errors."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from deepgen.errors import DeepgenError
from deepgen.faces import ExtractConfig, crop_face, extract_media, get_detector
from deepgen.faces.align import alignment_matrix, apply, five_points, refine_landmarks, template
from deepgen.faces.detect import HaarDetector
from deepgen.testing.faces import face_frames, load_rgb, noise_frames, write_video

yuface = pytest.importorskip("yuface")


def hard_copy(img: np.ndarray, i: int) -> np.ndarray:
    """Half size, rolled +-30 degrees (sign alternating by index), JPEG quality 40."""
    h, w = img.shape[:2]
    img = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 30 if i % 2 == 0 else -30, 1.0)
    img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


@pytest.fixture(scope="module")
def photos(real_faces_dir) -> list[np.ndarray]:
    files = sorted(real_faces_dir.glob("*.jpg"))
    assert len(files) >= 50
    return [load_rgb(f) for f in files]


def test_default_detector_finds_faces_in_plain_and_hard_photos(photos):
    det = get_detector()
    assert det.name == "yunet"
    plain = det.detect(photos)
    hard = det.detect([hard_copy(p, i) for i, p in enumerate(photos)])
    assert np.mean([bool(d) for d in plain]) >= 0.98
    assert np.mean([bool(d) for d in hard]) >= 0.98
    for img, dets in zip(photos, plain):
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0] and 0 < d.score <= 1
            assert d.landmarks.shape == (5, 2)
            le, re_, nose, ml, mr = d.landmarks
            assert le[0] < re_[0] and ml[0] < mr[0] and le[1] < ml[1]  # image-left first, eyes above mouth


def _eye_errors(photos) -> np.ndarray:
    """Per photo: the larger distance of the two eyes re-detected on the aligned 224-px crop to the template."""
    det = get_detector("yunet")
    tpl = template(224, 0.3)
    errs = []
    for img in photos:
        found = det.detect([img])[0]
        if not found:
            errs.append(np.inf)
            continue
        # what extraction does with --align: refine the landmarks on the aligned crop, then crop
        lms = refine_landmarks(img, found[0].landmarks, lambda im: det.detect([im])[0], 224, 0.3,
                               passes=ExtractConfig().align_passes)
        crop = crop_face(img, found[0].box, 224, 0.3, lms, align=True)
        again = det.detect([crop])[0]
        errs.append(np.linalg.norm(again[0].landmarks[:2] - tpl[:2], axis=1).max() if again else np.inf)
    return np.array(errs)


def test_aligned_crops_put_both_eyes_within_3px_of_the_template(photos):
    # measured with the default (up to 8 damped passes, stopping at 2 px): 100% within 3 px, median
    # 1.8 px, 95th percentile 2.2 px on a 224-px crop (eye distance ~54 px); unrefined 6% (52 photos)
    errs = _eye_errors(photos)
    assert np.mean(errs <= 3.0) >= 0.95, np.round(np.sort(errs), 1)
    assert np.median(errs) <= 2.5, np.round(np.sort(errs), 1)


def test_refinement_keeps_the_best_crop_and_refuses_unalignable_landmarks(photos):
    det = get_detector("yunet")
    img = photos[0]
    start = det.detect([img])[0][0].landmarks
    tpl = template(224, 0.3)

    def eye_err(lms):
        again = det.detect([crop_face(img, (0, 0, 1, 1), 224, 0.3, lms, align=True)])[0]
        return np.linalg.norm(again[0].landmarks[:2] - tpl[:2], axis=1).max()

    refined = refine_landmarks(img, start, lambda im: det.detect([im])[0], 224, 0.3, passes=8)
    assert eye_err(refined) <= eye_err(start)  # the unrefined crop is one of the candidates
    assert refine_landmarks(img, np.zeros((5, 2)), lambda im: det.detect([im])[0]) is None
    no_face = refine_landmarks(img, start, lambda im: [], 224, 0.3)  # nothing re-detected: unchanged
    assert np.allclose(no_face, start)


def test_alignment_geometry():
    tpl = template(224, 0.3)
    assert np.allclose(template(112, 0.0), [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                            [41.5493, 92.3655], [70.7299, 92.2041]], atol=1e-3)
    # a rolled, scaled, shifted copy of the template maps back exactly
    a = np.deg2rad(25)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = tpl @ rot.T * 1.7 + (40, 90)
    m = alignment_matrix(pts, 224, 0.3)
    assert np.allclose(apply(m, pts), tpl, atol=1e-3)
    lm68 = np.zeros((68, 2), np.float32)
    lm68[36:42], lm68[42:48], lm68[30], lm68[48], lm68[54] = pts[0], pts[1], pts[2], pts[3], pts[4]
    assert np.allclose(five_points(lm68), pts, atol=1e-4)
    assert five_points(np.zeros(12)) is None and alignment_matrix(None) is None


def test_missing_yuface_falls_back_to_haar_with_one_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "yuface", None)  # import yuface -> ImportError
    get_detector.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match=r"yunet detector needs the yuface package.*falling back to the Haar"):
            det = get_detector("yunet")
        assert isinstance(det, HaarDetector)
    finally:
        get_detector.cache_clear()


def test_failing_detector_is_one_sentence(monkeypatch):
    det = get_detector("yunet")

    def boom(img):
        raise RuntimeError("bad input")

    monkeypatch.setattr(det.yuface, "c_detect", boom)
    with pytest.raises(DeepgenError, match=r"yunet detector failed .* use --detector haar\.$"):
        det.detect([np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(DeepgenError, match="unknown; choose one of yunet, haar, dlib"):
        get_detector("mtcnn")


def test_extract_media_default_landmarks_and_no_face(photos, tmp_path):
    path = write_video(str(tmp_path / "f.mp4"), face_frames(photos[0], 8, 320, 240))
    faces, status = extract_media({"media_id": "f", "uri": path}, ExtractConfig(frames=4, size=64, align=True))
    assert status["status"] == "ok" and len(faces) == 4
    for f in faces:
        assert len(f["landmarks"]) == 10 and f["track_id"] == 0
        x0, y0, x1, y1 = f["box"]
        lm = np.array(f["landmarks"]).reshape(5, 2)
        assert (lm[:, 0] > x0 - 5).all() and (lm[:, 0] < x1 + 5).all() and (lm[:, 1] < y1 + 5).all()
    noise = write_video(str(tmp_path / "n.mp4"), noise_frames(6, 160, 120))
    faces, status = extract_media({"media_id": "n", "uri": noise}, ExtractConfig(frames=4))
    assert faces == [] and status["status"] == "no_face" and "no face" in status["error"]
