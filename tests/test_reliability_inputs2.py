"""Issue 32: hostile inputs. Bad sampling options never poison the rescore store; phone video decodes
upright; MPEG-TS, raw H.264, variable frame rates, non-UTF-8 names and disguised images are handled;
messages and exit codes say what happened."""

from __future__ import annotations

import av
import numpy as np
import pytest

from deepgen.testing.faces import face_frames, load_rgb, marked_frame, read_mark, write_video
from deepgen.testing.toyfaces import draw_face
from deepgen.video import sample_frames, uniform_indices


def marked(i: int) -> np.ndarray:
    return marked_frame(i, w=96, h=64)


def encode(path: str, frames, fmt: str | None = None, gop: int = 10, durations_ms: list[int] | None = None,
           rotation: int = 0) -> str:
    """H.264 in ``fmt`` (mp4 by the name, mpegts, raw h264); ``durations_ms`` makes it variable-rate;
    ``rotation`` writes a display matrix (counter-clockwise degrees, as phones do for portrait video)."""
    return write_video(path, frames, crf=12, gop=gop, fmt=fmt, durations_ms=durations_ms, rotation=rotation)


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
    s = sample_frames(path, n_frames=16, sampling="uniform")
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


# --- finding 2: bad sampling options are refused up front and never poison the rescore store ---------

def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    from deepgen.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def _snapshot(root) -> dict[str, bytes]:
    import os

    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(root) for f in files}


def _face_video(path, seed: int = 0) -> str:
    from deepgen.testing.faces import write_video

    return write_video(str(path), face_frames(draw_face(np.random.default_rng(0), size=160), 4, 320, 240, seed=seed))


BAD_OPTIONS = [(["--sampling", "clips", "--clip-len", "0"], "--clip-len is 0; give 1 or more"),
               (["--frames", "0"], "--frames is 0; sample 1 or more"),
               (["--frames", "-3"], "--frames is -3; sample 1 or more")]


@pytest.mark.parametrize("bad,match", BAD_OPTIONS)
def test_score_refuses_bad_sampling_options_before_any_work(tmp_path, tiny_bundle, capsys, bad, match):
    video = _face_video(tmp_path / "a.mp4")
    for argv in (["score", video, "--checkpoint", tiny_bundle],  # one file
                 ["score", "--manifest", str(tmp_path), "--checkpoint", tiny_bundle, "--out", str(tmp_path / "o")]):
        code, out, err = _cli(capsys, argv + bad)
        assert code == 2 and err == f"error: {err[7:]}" and match in err and "\n" not in err, (argv, out, err)
        assert not (tmp_path / "o").exists()


def test_extract_refuses_bad_options_with_the_same_sentences(tmp_path):
    from deepgen.errors import DeepgenError
    from deepgen.faces.extract import extract_faces

    for kwargs, match in [({"frames": -3}, "--frames is -3"), ({"sampling": "clips", "clip_len": 0}, "--clip-len is 0"),
                          ({"size": 8}, "--size is 8"), ({"margin": float("nan")}, "--margin is nan")]:
        with pytest.raises(DeepgenError, match=match):
            extract_faces(str(tmp_path / "absent.parquet"), str(tmp_path / "out"), **kwargs)


def test_rescore_with_a_bad_option_changes_nothing_and_the_rerun_scores_every_item(ray_session, tiny_bundle,
                                                                                  tmp_path, capsys):
    inc, store = tmp_path / "incoming", tmp_path / "store"
    inc.mkdir()
    _face_video(inc / "a.mp4")
    base = ["rescore", "--incoming", str(inc), "--checkpoint", tiny_bundle, "--store", str(store),
            "--date", "2026-12-07", "--frames", "4", "--quiet"]
    code, out, err = _cli(capsys, base)
    assert code == 0, err
    for i in range(1, 8):
        _face_video(inc / f"v{i}.mp4", seed=i)
    before = _snapshot(store)
    for bad, match in BAD_OPTIONS:
        code, out, err = _cli(capsys, base + bad)
        assert code == 2 and match in err and "\n" not in err, err
        assert _snapshot(store) == before  # byte for byte: no rows, no run file, no lease left behind
    code, out, err = _cli(capsys, base)
    import json

    summary = json.loads(out)
    assert code == 0 and summary["items_scored"] == 7 and summary["already_scored"] == 1, summary
    assert summary["by_status"] == {"ok": 8}


def test_an_item_failed_by_something_outside_it_is_not_recorded_and_is_retried(ray_session, tiny_bundle, tmp_path):
    import pyarrow as pa

    from deepgen import storage
    from deepgen.scoring import ScoreConfig, rescore
    from deepgen.scoring.store import read_scores

    a, b = _face_video(tmp_path / "a.mp4"), _face_video(tmp_path / "b.mp4", seed=1)
    manifest = str(tmp_path / "m.parquet")

    def write(media_type: str) -> None:  # b's row names a media type the decoders do not know: not b's fault
        storage.write_table(pa.Table.from_pylist([{"media_id": "a", "uri": a, "media_type": "video"},
                                                  {"media_id": "b", "uri": b, "media_type": media_type}]), manifest)

    write("gif")
    store, cfg = str(tmp_path / "store"), ScoreConfig(frames=4)
    first = rescore(manifest, tiny_bundle, store, cfg, date="2026-12-07", quiet=True)
    assert first["items_scored"] == 1 and first["items_not_recorded"] == 1 and first["by_status"] == {"ok": 1}
    write("video")
    second = rescore(manifest, tiny_bundle, store, cfg, date="2026-12-07", quiet=True)
    assert second["items_scored"] == 1 and second["already_scored"] == 1 and second["by_status"] == {"ok": 2}
    assert sorted(read_scores(store, first["model_id"]).column("media_id").to_pylist()) == ["a", "b"]


# --- finding 8: file names that are not UTF-8, images whose name lies ---------------------------------

def test_a_file_name_that_is_not_utf8_is_scored_alone_and_a_status_row_in_a_folder(ray_session, tiny_bundle,
                                                                                   tmp_path, capsys):
    import os

    from deepgen import storage

    folder = tmp_path / "in"
    folder.mkdir()
    _face_video(folder / "good.mp4")
    odd = os.fsdecode(os.path.join(os.fsencode(str(folder)), b"\xff.mp4"))
    os.rename(_face_video(tmp_path / "x.mp4"), odd)
    code, out, err = _cli(capsys, ["score", odd, "--checkpoint", tiny_bundle, "--frames", "4"])
    assert code == 0 and "\\xff.mp4: likely" in out, (out, err)
    code, out, err = _cli(capsys, ["score", "--manifest", str(folder), "--checkpoint", tiny_bundle, "--frames", "4",
                                   "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0, err
    rows = {r["media_id"]: r for r in storage.read_table(str(tmp_path / "o")).to_pylist()}
    assert rows["in/good.mp4"]["status"] == "ok"
    assert rows["in/\\xff.mp4"]["status"] == "unreadable" and "not valid UTF-8" in rows["in/\\xff.mp4"]["error"]


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header says ``w`` x ``h`` (the pixel data is not there: only the header is read)."""
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def test_too_large_images_report_their_true_size_whatever_the_format(tmp_path, monkeypatch):
    import cv2

    from deepgen import video
    from deepgen.video import MediaError

    (tmp_path / "big.png").write_bytes(_png_header(20000, 20000))
    with pytest.raises(MediaError) as e:
        sample_frames(str(tmp_path / "big.png"), media_type="image")
    assert e.value.status == "too_large" and "20000x20000" in e.value.reason  # not 65536x65536
    # a Radiance HDR image named .png: PIL cannot read its header, so the decoded size is checked
    assert cv2.imwrite(str(tmp_path / "hdr.hdr"), np.random.default_rng(0).random((200, 300, 3), np.float32))
    (tmp_path / "hdr.png").write_bytes((tmp_path / "hdr.hdr").read_bytes())
    monkeypatch.setattr(video, "MAX_IMAGE_PIXELS", 50_000)
    with pytest.raises(MediaError) as e:
        sample_frames(str(tmp_path / "hdr.png"), media_type="image")
    assert e.value.status == "too_large" and "300x200" in e.value.reason


# --- finding 9: messages and exit codes --------------------------------------------------------------

def test_a_symlink_loop_is_named_as_one(tmp_path, tiny_bundle, capsys):
    import os

    loop = tmp_path / "loop.mp4"
    os.symlink(loop, loop)
    code, out, err = _cli(capsys, ["score", str(loop), "--checkpoint", tiny_bundle])
    assert code == 2 and err == f"error: {loop} is a symlink loop; point the link at a real file."
    with pytest.raises(Exception) as e:
        sample_frames(str(loop))
    assert e.value.status == "unreadable" and "symlink loop" in e.value.reason


def test_score_file_exits_non_zero_when_the_item_gets_no_score(tmp_path, tiny_bundle, capsys):
    from deepgen.testing.faces import noise_frames, write_video

    noise = write_video(str(tmp_path / "noise.mp4"), noise_frames(4, 160, 120))
    code, out, err = _cli(capsys, ["score", noise, "--checkpoint", tiny_bundle, "--frames", "4"])
    assert code == 1 and "no score; status no_face" in out, (out, err)
    code, out, err = _cli(capsys, ["score", _face_video(tmp_path / "a.mp4"), "--checkpoint", tiny_bundle,
                                   "--frames", "4"])
    assert code == 0 and "score " in out, (out, err)


def _bump(uri: str, n: int) -> None:
    from deepgen import storage

    for _ in range(n):
        while True:
            data, version = storage.read_versioned(uri)
            if storage.replace_if_version(uri, str(int(data) + 1).encode(), version) is not None:
                break


def test_local_compare_and_swap_stays_exclusive_and_leaves_no_lock_file(tmp_path):
    import multiprocessing
    import os

    from deepgen import storage
    from deepgen.scoring.lease import Lease, lease_uri

    uri = str(tmp_path / "leases" / "counter.json")
    storage.write_bytes(uri, b"0")
    procs = [multiprocessing.get_context("spawn").Process(target=_bump, args=(uri, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert storage.read_versioned(uri)[0] == b"100"  # no lost update: the lock still excludes
    with Lease(str(tmp_path / "store"), "m1", wait_s=1):
        pass
    assert os.listdir(tmp_path / "leases") == ["counter.json"]
    assert not [f for f in os.listdir(os.path.dirname(lease_uri(str(tmp_path / "store"), "m1"))) if f.endswith(".lock")]
