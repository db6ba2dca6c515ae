"""Keyframe-anchored clip sampling: N frames in runs of T, each at a keyframe, fewer frames decoded."""

from __future__ import annotations

import av
import numpy as np
import pytest

from deepgen.testing.faces import marked_frame as marked
from deepgen.testing.faces import read_mark, write_video
from deepgen.video import clip_runs, run_positions, sample_frames, scan_packets


def write(path: str, n: int, gop: int, durations_ms: list[int] | None = None) -> str:
    """A tiny H.264 MP4 of marked frames with a set GOP; ``durations_ms`` makes it variable-rate."""
    return write_video(path, (marked(i) for i in range(n)), crf=18, gop=gop, preset="ultrafast",
                       durations_ms=durations_ms)


def keyframes(path: str) -> list[int]:
    with av.open(path) as c:
        return scan_packets(c, c.streams.video[0]).keyframes


def check_runs(s, n: int, t: int) -> None:
    """n frames, in order, each the frame its index names, in runs of t consecutive frames."""
    assert len(s.frames) == len(s.indices) == n == sum(length for _, length in s.runs)
    assert s.indices == sorted(s.indices) == [a + j for a, length in s.runs for j in range(length)]
    assert all(length == t for _, length in s.runs)
    assert [read_mark(f) for f in s.frames] == s.indices
    assert run_positions(s.indices, s.runs) == [(c, j) for c in range(n // t) for j in range(t)]


def test_short_gops_runs_start_at_keyframes_and_decode_little(tmp_path):
    path = write(str(tmp_path / "short.mp4"), 100, gop=5)
    keys = keyframes(path)
    assert keys == list(range(0, 100, 5))
    s = sample_frames(path, n_frames=16, sampling="clips", clip_len=4)
    check_runs(s, 16, 4)
    assert s.off_key == 0 and all(a in keys for a, _ in s.runs)
    assert s.runs[0][0] == 0 and s.runs[-1][0] >= 90  # spread over the whole video
    u = sample_frames(path, n_frames=16, sampling="uniform")
    assert s.n_decoded <= 16 + 4 * 3 < u.n_decoded  # about N frames (plus decoder look-ahead) vs most GOPs
    again = sample_frames(path, n_frames=16, sampling="clips", clip_len=4)
    assert again.indices == s.indices and all(np.array_equal(a, b) for a, b in zip(again.frames, s.frames))


def test_long_gop_runs_still_cover_the_video_and_skip_unreferenced_frames(tmp_path):
    """One keyframe (uploads with a keyframe every 5-10 s): the runs still spread over the whole video,
    decoded forward with the frames nothing refers to skipped; the frames kept are bit-exact."""
    path = write_video(str(tmp_path / "long.mp4"), (marked(i) for i in range(60)), crf=18, gop=250,
                       preset="veryfast")  # veryfast: B-frames, some of them unreferenced
    assert keyframes(path) == [0]
    s = sample_frames(path, n_frames=12, sampling="clips", clip_len=4)
    check_runs(s, 12, 4)
    assert s.runs == [(0, 4), (28, 4), (56, 4)] and s.off_key == 2
    assert (s.indices[-1] - s.indices[0] + 1) / s.n_total >= 0.8  # the span covered
    every = sample_frames(path, n_frames=60)  # every frame wanted: nothing skipped
    assert every.n_decoded == 60 and s.n_decoded < 60
    for i, f in zip(s.indices, s.frames):
        assert np.array_equal(f, every.frames[i])
    u = sample_frames(path, n_frames=12)  # uniform skips the unreferenced frames it does not keep too
    assert u.n_decoded < 60 and [read_mark(f) for f in u.frames] == u.indices
    for i, f in zip(u.indices, u.frames):
        assert np.array_equal(f, every.frames[i])


def test_variable_frame_rate(tmp_path):
    path = write(str(tmp_path / "vfr.mp4"), 80, gop=10, durations_ms=[20, 60, 33])
    s = sample_frames(path, n_frames=12, sampling="clips", clip_len=3)
    check_runs(s, 12, 3)
    assert s.n_total == 80 and s.off_key == 0 and all(a % 10 == 0 for a, _ in s.runs)


def test_clip_runs_plan():
    assert clip_runs(range(0, 100, 10), 100, 16, 4) == ([(0, 4), (30, 4), (60, 4), (90, 4)], 0)
    assert clip_runs([0], 10, 32, 8) == ([(0, 8), (8, 2)], 1)  # fewer frames than asked: all of them
    runs, off = clip_runs([0, 50, 100], 120, 16, 4)  # spots 0, 39, 77, 116: keyframes within 15 win
    assert runs == [(0, 4), (50, 4), (77, 4), (116, 4)] and off == 2
    assert clip_runs([0, 250], 300, 32, 8) == ([(0, 8), (97, 8), (195, 8), (292, 8)], 3)  # DFDC-like GOPs
    runs, off = clip_runs([0], 250, 32, 8)  # one keyframe in 10 s: still spread over the whole video
    assert runs == [(0, 8), (81, 8), (161, 8), (242, 8)] and off == 3
    assert clip_runs([], 0, 8, 4) == ([], 0)


def test_frame_folders_sample_clips(tmp_path):
    import cv2

    for i in range(30):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), marked(i))
    s = sample_frames(str(tmp_path), n_frames=8, media_type="frames", sampling="clips", clip_len=4)
    assert s.runs == [(0, 4), (26, 4)] and s.indices == [0, 1, 2, 3, 26, 27, 28, 29]


def test_unknown_sampling_is_one_clear_error(tmp_path):
    from deepgen.errors import DeepgenError

    with pytest.raises(DeepgenError, match="use uniform or clips"):
        sample_frames(str(tmp_path / "x.mp4"), sampling="random")


def _face_video(path: str, photo, n: int, gop: int) -> str:
    from deepgen.testing.faces import face_frames, write_video

    return write_video(path, face_frames(photo, n, 128, 96), crf=18, gop=gop, preset="ultrafast")


def test_extract_records_each_face_clip_and_the_fallback(tmp_path, ray_session, real_faces_dir):
    """deepgen extract --sampling clips: faces carry clip_index/clip_pos; extract.json names long-GOP videos."""
    import json

    import pyarrow as pa
    from click.testing import CliRunner

    from deepgen.faces.command import extract
    from deepgen.faces.extract import read_faces, read_status
    from deepgen.schema import MANIFEST_SCHEMA
    from deepgen.storage import write_table
    from deepgen.testing.faces import load_rgb

    photo = load_rgb(real_faces_dir / "img1.jpg")
    rows = []
    for name, gop in (("short", 4), ("long", 250)):
        uri = _face_video(str(tmp_path / f"{name}.mp4"), photo, 24, gop)
        rows.append({"media_id": f"t/{name}", "uri": uri, "label": 0, "dataset": "t", "method": "real",
                     "split": "test", "source_id": name, "compression": "c23", "media_type": "video"})
    write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), str(tmp_path / "m.parquet"))
    out = str(tmp_path / "faces")
    res = CliRunner().invoke(extract, ["--manifest", str(tmp_path / "m.parquet"), "--out", out, "--frames", "6",
                                       "--sampling", "clips", "--clip-len", "3", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    faces = read_faces(out).to_pylist()
    by = {m: [(f["frame_index"], f["clip_index"], f["clip_pos"]) for f in faces if f["media_id"] == m]
          for m in ("t/short", "t/long")}
    assert by["t/short"] == [(0, 0, 0), (1, 0, 1), (2, 0, 2), (20, 1, 0), (21, 1, 1), (22, 1, 2)]
    assert by["t/long"] == [(0, 0, 0), (1, 0, 1), (2, 0, 2), (21, 1, 0), (22, 1, 1), (23, 1, 2)]
    status = {s["media_id"]: s["clips_off_key"] for s in read_status(out).to_pylist()}
    assert status == {"t/short": 0, "t/long": 1}
    settings = json.loads((tmp_path / "faces" / "extract.json").read_text())
    assert settings["sampling"] == "clips" and settings["clip_len"] == 3
    assert settings["clips_fallback"]["media"] == 1 and settings["clips_fallback"]["examples"] == ["t/long"]
