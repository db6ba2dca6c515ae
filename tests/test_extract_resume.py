"""Resumable extraction: a SIGKILLed `deepgen extract` continues with --resume to the same table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from deepgen.errors import DeepgenError
from deepgen.faces import extract as extract_mod
from deepgen.faces.command import extract
from deepgen.faces.extract import extract_faces, partial_uri, read_faces, read_status
from deepgen.schema import MANIFEST_SCHEMA
from deepgen.storage import get_fs, write_table
from deepgen.testing.faces import face_frames, load_rgb, noise_frames, write_video

N_ITEMS = 36
PHOTOS = ["img1.jpg", "img10.jpg", "img11.jpg"]


def _manifest(uris: list[str], prefix: str = "r") -> pa.Table:
    rows = [{"media_id": f"{prefix}/{i:03d}.mp4", "uri": u, "label": i % 2, "dataset": "t",
             "method": "real" if i % 2 == 0 else "x", "split": "train", "source_id": f"s{i}",
             "compression": "c23", "media_type": "video"} for i, u in enumerate(uris)]
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)


@pytest.fixture(scope="module")
def clips(real_faces_dir, tmp_path_factory) -> list[str]:
    """Three face clips and a faceless one, hard-linked into N_ITEMS files."""
    d = tmp_path_factory.mktemp("clips")
    base = [write_video(str(d / f"b{i}.mp4"), face_frames(load_rgb(real_faces_dir / n), 12, 320, 240, seed=i))
            for i, n in enumerate(PHOTOS)]
    base.append(write_video(str(d / "noise.mp4"), noise_frames(12, 160, 120)))
    out = []
    for i in range(N_ITEMS):
        p = str(d / f"{i:03d}.mp4")
        os.link(base[i % len(base)], p)
        out.append(p)
    return out


def _rows(out: str) -> tuple[list, list]:
    """Status rows (without timings) and face rows, as sorted comparable tuples."""
    status = sorted((s["media_id"], s["status"], s["n_frames"], s["n_faces"]) for s in read_status(out).to_pylist())
    faces = read_faces(out).select(["media_id", "frame_index", "box", "image"]).to_pylist()
    return status, sorted((f["media_id"], f["frame_index"], tuple(f["box"]), f["image"]) for f in faces)


def test_killed_extract_resumes_to_the_same_table(ray_session, clips, tmp_path):
    manifest = str(tmp_path / "m.parquet")
    write_table(_manifest(clips), manifest)
    opts = ["--frames", "6", "--size", "48", "--chunk-size", "4"]
    runner = CliRunner()
    ref = str(tmp_path / "ref")
    res = runner.invoke(extract, ["--manifest", manifest, "--out", ref, *opts])
    assert res.exit_code == 0, res.output
    assert f"extract: {N_ITEMS}/{N_ITEMS} (100.0%)" in res.stderr  # the final progress line
    ref_status, ref_faces = _rows(ref)
    assert len(ref_status) == N_ITEMS and ref_faces

    out = tmp_path / "out"
    chunks = tmp_path / "out.partial" / "status"
    address = ray_session.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "deepgen.cli", "extract", "--manifest", manifest, "--out",
                             str(out), *opts, "--workers", "1", "--address", address], env=env)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None and not list(chunks.glob("chunk-*.parquet")):
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it committed a chunk"
        assert list(chunks.glob("chunk-*.parquet")), "no chunk was committed in time"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    committed = len(read_status(str(tmp_path / "out.partial")).to_pylist())
    assert 0 < committed < N_ITEMS

    refused = runner.invoke(extract, ["--manifest", manifest, "--out", str(out), *opts])
    assert isinstance(refused.exception, DeepgenError) and "--resume" in str(refused.exception)
    other = runner.invoke(extract, ["--manifest", manifest, "--out", str(out), "--frames", "5", "--size", "48",
                                    "--resume"])
    assert isinstance(other.exception, DeepgenError) and "frames 6 -> 5" in str(other.exception)

    res = runner.invoke(extract, ["--manifest", manifest, "--out", str(out), *opts, "--resume"])
    assert res.exit_code == 0, res.output
    assert f'"resumed_items": {committed}' in res.output
    assert _rows(str(out)) == (ref_status, ref_faces)  # one status row per item, no face duplicated or lost
    assert not (tmp_path / "out.partial").exists()
    print(f"kill + resume took {time.time() - t0:.1f} s")


def test_interrupted_s3_extract_resumes(ray_session, clips, s3_bucket, tmp_path, monkeypatch):
    """On s3:// too: chunks committed before a failure survive; --resume finishes the same table."""
    fs, _ = get_fs(s3_bucket)
    uris = []
    for i, local in enumerate(clips[:12]):
        fs.put(local, f"{s3_bucket[5:]}/v/{i:03d}.mp4")
        uris.append(f"{s3_bucket}/v/{i:03d}.mp4")
    manifest = f"{s3_bucket}/m.parquet"
    write_table(_manifest(uris, "s3"), manifest)
    kw = {"frames": 4, "size": 48, "chunk_size": 4, "quiet": True}
    ref = f"{s3_bucket}/ref"
    extract_faces(manifest, ref, **kw)

    calls = {"n": 0}
    commit = extract_mod._ChunkCommitter._commit

    def failing_commit(self):
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        commit(self)

    monkeypatch.setattr(extract_mod._ChunkCommitter, "_commit", failing_commit)
    out = f"{s3_bucket}/out"
    with pytest.raises(KeyboardInterrupt):
        extract_faces(manifest, out, **kw)
    monkeypatch.setattr(extract_mod._ChunkCommitter, "_commit", commit)
    assert not fs.exists(out[5:]) and fs.exists(partial_uri(out)[5:])
    summary = extract_faces(manifest, out, resume=True, **kw)
    assert summary["resumed_items"] == 4
    assert _rows(out) == _rows(ref)
    fs.invalidate_cache()
    assert not fs.exists(partial_uri(out)[5:])


def test_resume_retries_items_that_failed_outside_the_item(ray_session, clips, tmp_path, monkeypatch, capsys):
    """An ``error`` row (environment, not the item) committed before a kill is extracted again on --resume."""
    manifest = str(tmp_path / "m.parquet")
    # 5 faceless clips of 8: whichever 4 items an actor batch gets, one of them is faceless
    write_table(_manifest(clips[3:20:4] + clips[:3]), manifest)
    kw = {"frames": 4, "size": 48, "chunk_size": 4, "num_workers": 1}
    ref = str(tmp_path / "ref")
    extract_faces(manifest, ref, quiet=True, **kw)
    commit = extract_mod._ChunkCommitter._commit

    def killed_once_a_faceless_item_is_committed(self):
        # killed at the commit after the first chunk holding a faceless item, wherever Ray Data puts it
        if any(r["status"] == "no_face" for r in self.committed):
            raise KeyboardInterrupt("killed")
        commit(self)

    monkeypatch.setattr(extract_mod._ChunkCommitter, "_commit", killed_once_a_faceless_item_is_committed)
    out = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        extract_faces(manifest, out, quiet=True, **kw)
    monkeypatch.undo()
    chunks = {c: pq.read_table(c).to_pylist() for c in (tmp_path / "out.partial" / "status").glob("chunk-*.parquet")}
    (chunk, rows), = [(c, rows) for c, rows in chunks.items() if any(r["status"] == "no_face" for r in rows)]
    victim = next(r for r in rows if r["status"] == "no_face")  # wrote no faces: as an item that failed
    victim.update(status="error", error="OSError: connection reset by peer")  # ... on a transient read
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(chunk)), chunk)
    summary = extract_faces(manifest, out, resume=True, **kw)
    assert "retrying 1 item(s)" in capsys.readouterr().err
    committed = sum(len(r) for r in chunks.values())
    assert summary["resumed_items"] == committed - 1 and "error" not in summary["by_status"]
    assert _rows(out) == _rows(ref)  # the retried item has its own status again, every face once
