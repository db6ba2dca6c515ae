"""The Ray Data extraction pipeline: exact counts, bad inputs, s3:// in and out, atomic outputs, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import pyarrow as pa
import pytest
from click.testing import CliRunner

from deepgen.errors import DeepgenError
from deepgen.faces.command import extract
from deepgen.faces.extract import extract_faces, read_extract_config, read_faces, read_status
from deepgen.schema import FACES_SCHEMA, MANIFEST_SCHEMA
from deepgen.storage import get_fs, join, write_table
from deepgen.testing.faces import face_frames, load_rgb, noise_frames, write_bad_inputs, write_video

PHOTOS = ["img1.jpg", "img10.jpg", "img11.jpg"]


def manifest(items: list[tuple[str, str, str]]) -> pa.Table:
    """Rows from (media_id, uri, media_type)."""
    rows = [
        {"media_id": m, "uri": u, "label": i % 2, "dataset": "t", "method": "real" if i % 2 == 0 else "x",
         "split": "train", "source_id": f"s{i}", "compression": "c23", "media_type": mt}
        for i, (m, u, mt) in enumerate(items)
    ]
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


@pytest.fixture(scope="module")
def corpus(real_faces_dir, tmp_path_factory):
    """Three face videos, a faceless video, a 4K face video, a frame folder and the bad-input zoo."""
    d = tmp_path_factory.mktemp("corpus")
    items = []
    for i, name in enumerate(PHOTOS):
        frames = face_frames(load_rgb(real_faces_dir / name), 16, 320, 240, seed=i)
        items.append((f"t/face{i}.mp4", write_video(str(d / f"face{i}.mp4"), frames), "video"))
    items.append(("t/noise.mp4", write_video(str(d / "noise.mp4"), noise_frames(12, 160, 120)), "video"))
    uhd = [cv2.resize(f, (3840, 2160)) for f in face_frames(load_rgb(real_faces_dir / PHOTOS[0]), 2, 320, 180)]
    items.append(("t/uhd.mp4", write_video(str(d / "uhd.mp4"), uhd, crf=32), "video"))
    seq = d / "seq"
    seq.mkdir()
    for i, f in enumerate(face_frames(load_rgb(real_faces_dir / PHOTOS[1]), 5, 320, 240)):
        cv2.imwrite(str(seq / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    items.append(("t/seq", str(seq), "frames"))
    zoo = write_bad_inputs(str(d / "zoo"))
    for name in ("empty", "text", "truncated", "bad_codec", "audio_only"):
        items.append((f"t/{name}.mp4", zoo[name], "video"))
    items.append(("t/missing.mp4", str(d / "missing.mp4"), "video"))
    path = str(d / "manifest.parquet")
    write_table(manifest(items), path)
    return path


EXPECTED = {
    "t/face0.mp4": ("ok", 6, 6), "t/face1.mp4": ("ok", 6, 6), "t/face2.mp4": ("ok", 6, 6),
    "t/noise.mp4": ("no_face", 6, 0), "t/uhd.mp4": ("ok", 2, 2), "t/seq": ("ok", 5, 5),
    "t/empty.mp4": ("unreadable", 0, 0), "t/text.mp4": ("unreadable", 0, 0),
    "t/truncated.mp4": ("decode_error", 0, 0), "t/bad_codec.mp4": ("decode_error", 0, 0),
    "t/audio_only.mp4": ("decode_error", 0, 0), "t/missing.mp4": ("missing", 0, 0),
}


def check_output(out: str, expected: dict) -> None:
    status = read_status(out).to_pylist()
    assert len(status) == len(expected)
    assert {s["media_id"]: (s["status"], s["n_frames"], s["n_faces"]) for s in status} == expected
    assert all((s["error"] is None) == (s["status"] == "ok") for s in status)
    faces = read_faces(out)
    assert faces.schema.equals(FACES_SCHEMA)
    assert faces.num_rows == sum(n for _, _, n in expected.values())
    per_media = {}
    for m in faces.column("media_id").to_pylist():
        per_media[m] = per_media.get(m, 0) + 1
    assert per_media == {m: n for m, (_, _, n) in expected.items() if n}
    uhd = [r for r in faces.to_pylist() if r["media_id"] == "t/uhd.mp4"]
    assert all(r["box"][2] > 640 for r in uhd)  # boxes in 4K pixels, crops small
    assert all(cv2.imdecode(__import__("numpy").frombuffer(r["image"], "uint8"), 1).shape == (64, 64, 3)
               for r in faces.to_pylist())


def test_pipeline_counts_refusal_and_overwrite(ray_session, corpus, tmp_path):
    out = str(tmp_path / "faces_out")
    summary = extract_faces(corpus, out, frames=6, size=64)
    assert summary["media"] == 12 and summary["faces_written"] == 25
    assert summary["by_status"] == {"decode_error": 3, "missing": 1, "no_face": 1, "ok": 5, "unreadable": 2}
    check_output(out, EXPECTED)
    assert sorted(os.listdir(out)) == ["_SUCCESS", "extract.json", "faces", "status"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-") or p.endswith(".partial")]
    assert read_extract_config(out)["frames"] == 6 and read_extract_config(str(tmp_path)) is None

    runner = CliRunner()
    refused = runner.invoke(extract, ["--manifest", corpus, "--out", out, "--frames", "4", "--size", "64"])
    assert isinstance(refused.exception, DeepgenError) and "--overwrite" in str(refused.exception)
    res = runner.invoke(extract, ["--manifest", corpus, "--out", out, "--frames", "4", "--size", "64",
                                  "--overwrite"])
    assert res.exit_code == 0, res.output
    again = {m: (s, min(f, 4) if s in ("ok", "no_face") else 0, min(n, 4)) for m, (s, f, n) in EXPECTED.items()}
    check_output(out, again)


def test_s3_manifest_to_s3_output(ray_session, real_faces_dir, s3_bucket, tmp_path):
    fs, _ = get_fs(s3_bucket)
    items = []
    for i, name in enumerate(PHOTOS[:2]):
        local = write_video(str(tmp_path / f"f{i}.mp4"), face_frames(load_rgb(real_faces_dir / name), 10, 320, 240))
        fs.put(local, f"{s3_bucket[5:]}/videos/f{i}.mp4")
        items.append((f"s3/f{i}.mp4", f"{s3_bucket}/videos/f{i}.mp4", "video"))
    items.append(("s3/gone.mp4", f"{s3_bucket}/videos/gone.mp4", "video"))
    write_table(manifest(items), f"{s3_bucket}/manifest.parquet")
    out = f"{s3_bucket}/extracted"
    summary = extract_faces(f"{s3_bucket}/manifest.parquet", out, frames=4, size=64)
    assert summary["by_status"] == {"missing": 1, "ok": 2}
    check_output(out, {"s3/f0.mp4": ("ok", 4, 4), "s3/f1.mp4": ("ok", 4, 4), "s3/gone.mp4": ("missing", 0, 0)})
    assert fs.exists(join(out, "_SUCCESS")[5:])
    assert not [p for p in fs.ls(s3_bucket[5:]) if "/.tmp-" in p or p.endswith(".partial")]
    assert read_extract_config(out)["size"] == 64
    with pytest.raises(DeepgenError, match="already exists"):
        extract_faces(f"{s3_bucket}/manifest.parquet", out, frames=4)


def test_killed_run_leaves_no_table(ray_session, real_faces_dir, tmp_path):
    """SIGKILL the driver mid-run (a separate process joined to the test cluster): no output appears."""
    items = []
    for i in range(8):
        frames = face_frames(load_rgb(real_faces_dir / PHOTOS[i % 3]), 16, 320, 240, seed=i)
        items.append((f"k/{i}.mp4", write_video(str(tmp_path / f"{i}.mp4"), frames), "video"))
    write_table(manifest(items), str(tmp_path / "m.parquet"))
    out = tmp_path / "out"
    address = ray_session.get_runtime_context().gcs_address
    code = ("from deepgen.faces.extract import extract_faces; import sys; "
            "extract_faces(sys.argv[1], sys.argv[2], frames=16, size=64, address=sys.argv[3], batch_size=1)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "m.parquet"), str(out), address])
    try:
        deadline = time.time() + 180  # generous: the loop leaves as soon as a shard appears
        shard = None
        while time.time() < deadline and shard is None and proc.poll() is None:
            shard = next((tmp_path / "out.partial" / "faces").glob("part-*.parquet"), None)  # the run's work dir
            time.sleep(0.05)
        assert shard is not None, "the run finished or stalled before writing any shard"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
