"""Detection on real photos, tracking, cropping geometry and the per-media extraction function."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepgen.errors import DeepgenError
from deepgen.faces import (
    Detection,
    ExtractConfig,
    crop_box,
    crop_face,
    decode_image,
    encode_image,
    extract_media,
    get_detector,
    select_faces,
)
from deepgen.testing.faces import face_frames, load_rgb, noise_frames, write_bad_inputs, write_video

PHOTOS = ["img1.jpg", "img10.jpg", "img11.jpg", "img2.jpg"]


def test_haar_finds_faces_in_real_photos(real_faces_dir):
    files = sorted(real_faces_dir.glob("*.jpg"))
    assert len(files) >= 50
    det = get_detector("haar")
    found = [bool(d) for d in det.detect([load_rgb(f) for f in files])]
    assert sum(found) / len(files) >= 0.9
    img = load_rgb(files[0])
    for d in det.detect([img])[0]:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0] and d.score > 0


def test_unknown_detector_and_missing_dlib():
    with pytest.raises(DeepgenError, match="unknown"):
        get_detector("mtcnn")
    try:
        import dlib  # noqa: F401
    except ImportError:
        with pytest.raises(DeepgenError, match=r"pip install deepgen\[landmarks\]"):
            get_detector("dlib")


def _det(x0, y0, x1, y1, score=1.0):
    return Detection((x0, y0, x1, y1), score)


def test_main_track_beats_a_bigger_one_frame_false_positive():
    face = [_det(100 + 2 * t, 50, 160 + 2 * t, 110) for t in range(5)]
    dets = [[f] for f in face]
    dets[2] = [_det(0, 0, 90, 90), face[2]]  # larger, but seen once
    kept = select_faces(dets)
    assert [t for t, _ in kept] == [0, 1, 2, 3, 4]
    assert all(d.box == face[t].box for t, d in kept)
    assert len(select_faces(dets, all_faces=True)) == 6
    assert select_faces([[], []]) == []


def test_every_persistent_face_is_tracked_with_ids_by_size():
    from deepgen.faces.track import track_faces

    left = [_det(20 + t, 40, 80 + t, 100) for t in range(10)]
    right = [_det(200 - t, 50, 250 - t, 100) for t in range(10)]
    dets = [[left[t], right[t]] for t in range(10)]
    dets[4] = [left[4]]  # the right face is missed for two frames: the gap is bridged
    dets[5] = [left[5], _det(120, 150, 135, 165)]  # and a one-frame false positive appears
    kept = track_faces(dets)
    tracks = {}
    for t, k, d in kept:
        tracks.setdefault(k, []).append((t, d.box))
    assert sorted(tracks) == [0, 1]  # the false positive (1 of 10 frames) is dropped
    assert [t for t, _ in tracks[0]] == list(range(10))  # largest track (10 detections) is 0
    assert [t for t, _ in tracks[1]] == [0, 1, 2, 3, 6, 7, 8, 9]
    assert all(b[0] > 150 for _, b in tracks[1])
    assert len(track_faces(dets, all_faces=True)) == 19
    assert [t for t, _, _ in kept] == sorted(t for t, _, _ in kept)
    # when no track persists, the main one (largest summed area) still counts
    lone = [[], [_det(0, 0, 10, 10)], [], [], [], [_det(50, 50, 90, 90)], [], [], [], []]
    assert [(t, k) for t, k, _ in track_faces(lone)] == [(5, 0)]


def test_crop_box_is_square_and_inside_the_frame():
    assert crop_box((10, 10, 50, 50), 200, 100, 0.5) == (0, 0, 60, 60)
    x0, y0, x1, y1 = crop_box((150, 60, 200, 100), 200, 100, 0.3)
    assert x1 - x0 == y1 - y0 == 65 and x1 == 200 and y1 == 100
    assert crop_box((0, 0, 300, 300), 200, 100, 0.3) == (100, 0, 200, 100)
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 90:110] = 255
    crop = crop_face(frame, (90, 40, 110, 60), size=64, margin=0.0)
    assert crop.shape == (64, 64, 3) and crop.mean() > 250
    lm = np.zeros((68, 2), np.float32)
    lm[36:42], lm[42:48] = (90, 45), (110, 55)  # tilted eye line
    aligned = crop_face(frame, (90, 40, 110, 60), size=64, margin=0.5, landmarks=lm, align=True)
    assert aligned.shape == (64, 64, 3)


def test_encode_roundtrip():
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_image(img, "png")), img)
    jpg = encode_image(img, "jpeg")
    assert jpg[:2] == b"\xff\xd8" and decode_image(jpg).shape == (32, 32, 3)


@pytest.fixture(scope="module")
def face_video(real_faces_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("faces") / "face.mp4"
    return write_video(str(path), face_frames(load_rgb(real_faces_dir / PHOTOS[0]), 20, 320, 240))


def test_extract_media_on_a_face_video(face_video):
    row = {"media_id": "t/face.mp4", "uri": face_video, "label": 1, "dataset": "t", "method": "m",
           "split": "train", "source_id": "s", "media_type": "video"}
    faces, status = extract_media(row, ExtractConfig(frames=8, size=96, sampling="uniform"))
    assert status["status"] == "ok" and status["error"] is None
    assert status["n_frames"] == 8 and status["n_faces"] == len(faces) == 8
    assert [f["frame_index"] for f in faces] == [0, 3, 5, 8, 11, 14, 16, 19]
    for f in faces:
        img = decode_image(f["image"])
        assert img.shape == (96, 96, 3)
        x0, y0, x1, y1 = f["box"]
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
        # the default detector (yunet) gives 5 landmarks (Haar gave none); one face, one track
        assert f["label"] == 1 and f["split"] == "train" and len(f["landmarks"]) == 10 and f["track_id"] == 0


def test_size_hints_keep_the_same_faces(face_video):
    row = {"media_id": "t/face.mp4", "uri": face_video}
    hinted, _ = extract_media(row, ExtractConfig(frames=8, size=64))
    full, _ = extract_media(row, ExtractConfig(frames=8, size=64, size_hints=False))
    assert [f["frame_index"] for f in hinted] == [f["frame_index"] for f in full]
    assert np.allclose([f["box"] for f in hinted], [f["box"] for f in full], atol=6)


def test_boxes_are_in_original_pixels(real_faces_dir, tmp_path):
    photo = load_rgb(real_faces_dir / PHOTOS[1])
    small = face_frames(photo, 2, 320, 240)
    big = [cv2.resize(f, (1280, 960), interpolation=cv2.INTER_CUBIC) for f in small]
    row = {"media_id": "t/big", "uri": write_video(str(tmp_path / "big.mp4"), big)}
    faces, status = extract_media(row, ExtractConfig(frames=2, max_side=320))
    assert status["n_faces"] == 2
    ref = get_detector().detect([small[0]])[0][0].box  # the default detector, as extract_media used
    got = faces[0]["box"]
    assert np.allclose(np.array(got) / 4, ref, atol=12)


def test_extract_media_statuses_never_raise(tmp_path):
    noise = write_video(str(tmp_path / "noise.mp4"), noise_frames(10, 160, 120))
    zoo = write_bad_inputs(str(tmp_path / "zoo"))
    cases = {noise: "no_face", zoo["empty"]: "unreadable", zoo["text"]: "unreadable",
             zoo["truncated"]: "decode_error", zoo["bad_codec"]: "decode_error",
             str(tmp_path / "absent.mp4"): "missing"}
    for uri, expected in cases.items():
        faces, status = extract_media({"media_id": uri, "uri": uri}, ExtractConfig(frames=4))
        assert faces == [] and status["status"] == expected and status["n_faces"] == 0, uri
        assert status["error"] and "\n" not in status["error"]


def _moving_face(photo, n: int, step: int, jump_at: int | None = None) -> list[np.ndarray]:
    """``n`` 320x240 frames of a face photo moving ``step`` px right per frame (to the far side at ``jump_at``)."""
    from deepgen.testing.faces import background

    face = cv2.resize(photo, (100, 130), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        f = background(320, 240, 0)
        x = 200 if jump_at is not None and i >= jump_at else 30 + step * i
        f[50:180, x : x + 100] = face
        out.append(f)
    return out


@pytest.mark.parametrize("jump", [None, 7])
def test_clip_runs_interpolate_the_face_between_their_ends(real_faces_dir, jump):
    """Inside a run of consecutive frames the face between the run's ends is interpolated (two searches a
    run), close to what a search on each frame finds; a face that jumps is searched on every frame."""
    from deepgen.faces import ExtractConfig, get_detector
    from deepgen.faces.media import detect_frames

    det = get_detector("yunet")
    calls = []

    class Counted:
        supports_near = True

        def detect(self, frames, **kw):
            calls.append("full")
            return det.detect(frames, **kw)

        def detect_near(self, frame, box):
            calls.append("near")
            return det.detect_near(frame, box)

    frames = _moving_face(load_rgb(real_faces_dir / "img1.jpg"), 8, 2, jump)
    got = detect_frames(Counted(), frames, ExtractConfig(), follows=[False] + [True] * 7)
    assert calls == ["full", "near"] if jump is None else len(calls) > 2
    each = [det.detect([f])[0] for f in frames]
    assert all(len(g) >= 1 for g in got)
    for g, e in zip(got, each):
        assert np.allclose(g[0].box, e[0].box, atol=4), (g[0].box, e[0].box)
        assert g[0].landmarks is not None and np.allclose(g[0].landmarks, e[0].landmarks, atol=4)
    if jump:  # searched frame by frame: the face lands where it jumped to
        assert got[7][0].box[0] > 180
