"""Issue 32: hostile inputs. Bad sampling options never poison the rescore store; phone video decodes
upright; MPEG-TS, raw H.264, variable frame rates, non-UTF-8 names and disguised images are handled;
messages and exit codes say what happened."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import pytest

from deepgen.testing.faces import face_frames, load_rgb
from deepgen.testing.toyfaces import draw_face
from deepgen.video import sample_frames, uniform_indices

BITS, CELL = 8, 8  # frame index written as 8 black/white cells of 8 px


def marked(i: int, w: int = 96, h: int = 64) -> np.ndarray:
    f = np.full((h, w, 3), 90, np.uint8)
    f[CELL:, :] = (i * 7) % 200 + 20
    for b in range(BITS):
        f[0:CELL, b * CELL : (b + 1) * CELL] = 255 if (i >> b) & 1 else 0
    return f


def read_mark(frame: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if frame[CELL // 2, int((b + 0.5) * CELL)].mean() > 128)


def encode(path: str, frames, fmt: str | None = None, gop: int = 10, durations_ms: list[int] | None = None,
           rotation: int = 0) -> str:
    """H.264 in ``fmt`` (mp4 by the name, mpegts, raw h264); ``durations_ms`` makes it variable-rate;
    ``rotation`` writes a display matrix (counter-clockwise degrees, as phones do for portrait video)."""
    frames = iter(frames)
    first = next(frames)
    with av.open(path, "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=25)
        s.height, s.width = first.shape[:2]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "12", "preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        if rotation:
            s.set_display_rotation(rotation)
        if durations_ms:
            s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, f in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if durations_ms:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += durations_ms[i % len(durations_ms)]
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# --- finding 8: containers and streams the decoders mishandled ---------------------------------------

@pytest.mark.parametrize("name,fmt", [("v.ts", "mpegts"), ("v.h264", "h264"), ("v.mp4", None)])
@pytest.mark.parametrize("sampling", ["uniform", "clips"])
def test_mpegts_and_raw_h264_decode_under_both_samplings(tmp_path, name, fmt, sampling):
    path = encode(str(tmp_path / name), (marked(i) for i in range(40)), fmt=fmt)
    s = sample_frames(path, n_frames=16, sampling=sampling, clip_len=4)
    assert len(s.frames) == 16 and s.n_total == 40
    assert [read_mark(f) for f in s.frames] == s.indices
    if sampling == "clips":
        assert s.indices == [a + j for a, n in s.runs for j in range(n)] and all(n == 4 for _, n in s.runs)
    else:
        assert s.indices == uniform_indices(40, 16)


def test_variable_frame_rate_gives_the_requested_count(tmp_path):
    # 20 frames at 25 fps, then 20 at 100 fps: a time-based index collides and skips frames
    path = encode(str(tmp_path / "vfr.mp4"), (marked(i) for i in range(40)), durations_ms=[40] * 20 + [10] * 20)
    s = sample_frames(path, n_frames=16)
    assert len(s.frames) == 16 and s.indices == uniform_indices(40, 16)
    assert [read_mark(f) for f in s.frames] == s.indices


# --- finding 3: phone video stored sideways with a display matrix ------------------------------------

def _face(kind: str, real_dir) -> np.ndarray:
    if kind == "drawn":
        return draw_face(np.random.default_rng(0), size=160)
    photos = sorted(p for p in real_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return load_rgb(str(photos[0]))


def _portrait_and_sideways(tmp_path, face: np.ndarray, rotation: int) -> tuple[str, str, list[np.ndarray]]:
    """An upright portrait video and its phone-style copy: frames stored turned, a display matrix to undo it."""
    upright = face_frames(face, 8, 240, 320, seed=1)
    a = encode(str(tmp_path / "upright.mp4"), upright, gop=4)
    turned = [np.rot90(f, -rotation // 90) for f in upright]  # what the camera stores
    b = encode(str(tmp_path / f"sideways{rotation}.mp4"), turned, gop=4, rotation=rotation)
    return a, b, upright


@pytest.mark.parametrize("rotation", [90, -90, 180])
@pytest.mark.parametrize("sampling", ["uniform", "clips"])
def test_rotated_video_decodes_upright(tmp_path, rotation, sampling):
    a, b, upright = _portrait_and_sideways(tmp_path, draw_face(np.random.default_rng(0), size=160), rotation)
    with av.open(b) as c:  # the file really is stored sideways, with the matrix saying so
        stored = next(c.decode(video=0))
        assert stored.rotation % 360 == rotation % 360 and (stored.width, stored.height) == ((320, 240) if rotation % 180 else
                                                                                 (240, 320))
    sa = sample_frames(a, n_frames=4, sampling=sampling, clip_len=2)
    sb = sample_frames(b, n_frames=4, sampling=sampling, clip_len=2)
    assert (sb.width, sb.height) == (sa.width, sa.height) == (240, 320) and sb.indices == sa.indices
    for fa, fb, i in zip(sa.frames, sb.frames, sa.indices):
        assert fb.shape == fa.shape == (320, 240, 3)
        assert np.abs(fb.astype(int) - fa.astype(int)).mean() < 4  # the same picture, up to compression
        assert np.abs(fb.astype(int) - upright[i].astype(int)).mean() < 4


@pytest.mark.parametrize("kind", ["drawn", "real"])
def test_rotated_video_scores_like_the_upright_one(tmp_path, tiny_bundle, kind, request):
    from deepgen.scoring.score import score_file

    real_dir = request.getfixturevalue("real_faces_dir") if kind == "real" else None
    a, b, _ = _portrait_and_sideways(tmp_path, _face(kind, real_dir), 90)
    ra, rb = score_file(a, tiny_bundle), score_file(b, tiny_bundle)
    assert ra["status"] == rb["status"] == "ok" and ra["n_faces"] > 0 and rb["n_faces"] > 0
    assert abs(ra["score"] - rb["score"]) < 0.05
