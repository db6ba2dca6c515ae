"""Batch scoring and nightly rescoring with real Ray, the real decoder and the real S3 protocol."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepgen.errors import DeepgenError
from deepgen.schema import SCORES_COLUMNS
from deepgen.scoring import ScoreConfig, rescore, score
from deepgen.scoring.store import read_scores
from deepgen.storage import get_fs, read_table, write_table
from deepgen.testing.faces import face_frames, load_rgb, noise_frames, write_bad_inputs, write_video

CFG = ScoreConfig(frames=4, model_batch=4)
EXPECTED = {
    "t/face0.mp4": "ok", "t/face1.mp4": "ok", "t/noise.mp4": "no_face",
    "t/empty.mp4": "unreadable", "t/text.mp4": "unreadable", "t/truncated.mp4": "decode_error",
    "t/missing.mp4": "missing",
}


def _manifest(items: dict[str, str], path: str) -> str:
    rows = [{"media_id": m, "uri": u, "media_type": "video", "label": i % 2, "dataset": "t"}
            for i, (m, u) in enumerate(items.items())]
    write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def media(real_faces_dir, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("media")
    items = {}
    for i, name in enumerate(["img1.jpg", "img10.jpg"]):
        frames = face_frames(load_rgb(real_faces_dir / name), 8, 320, 240, seed=i)
        items[f"t/face{i}.mp4"] = write_video(str(d / f"face{i}.mp4"), frames)
    items["t/noise.mp4"] = write_video(str(d / "noise.mp4"), noise_frames(8, 160, 120))
    zoo = write_bad_inputs(str(d / "zoo"))
    for name in ("empty", "text", "truncated"):
        items[f"t/{name}.mp4"] = zoo[name]
    items["t/missing.mp4"] = str(d / "missing.mp4")
    return items


def test_score_contract_and_bad_inputs(ray_session, media, tiny_bundle, tmp_path):
    manifest = _manifest(media, str(tmp_path / "m.parquet"))
    out = str(tmp_path / "scores")
    summary = score(manifest, tiny_bundle, out, CFG)
    table = read_table(out)
    assert table.num_rows == len(EXPECTED)
    assert set(SCORES_COLUMNS) <= set(table.column_names)
    rows = {r["media_id"]: r for r in table.to_pylist()}
    assert {m: r["status"] for m, r in rows.items()} == EXPECTED
    for r in rows.values():
        assert r["model_id"] == summary["model_id"]
        if r["status"] == "ok":
            assert 0.0 <= r["score"] <= 1.0 and r["n_faces"] == 4 and r["error"] is None
            assert r["score"] == pytest.approx(1 / (1 + __import__("math").exp(-r["logit"] / 1.5)))
            assert len(r["features"]) > 0
            assert r["ood_score"] is not None and r["in_domain"] is not None
            assert len(r["frame_scores"]) == len(r["frame_indices"]) == len(r["frame_times"]) == r["n_faces"]
        else:  # a failure is a null score with its status, never 0.5; nothing else pretends to be a result
            assert r["score"] is None and r["error"]
            assert r["logit"] is r["uncertainty"] is r["ood_score"] is r["in_domain"] is r["frame_scores"] is None
    assert summary["by_status"] == {"decode_error": 1, "missing": 1, "no_face": 1, "ok": 2, "unreadable": 2}
    with pytest.raises(DeepgenError, match="already exists"):
        score(manifest, tiny_bundle, out, CFG)


def test_mc_dropout_and_allowed_roots(ray_session, media, tiny_bundle, tmp_path):
    manifest = _manifest({m: media[m] for m in ("t/face0.mp4", "t/face1.mp4")}, str(tmp_path / "m.parquet"))
    allowed = os.path.dirname(media["t/face0.mp4"])
    other = tmp_path / "elsewhere.mp4"
    other.write_bytes(open(media["t/face1.mp4"], "rb").read())
    table = pq.read_table(manifest).to_pylist()
    table.append({"media_id": "t/elsewhere.mp4", "uri": str(other), "media_type": "video", "label": 0,
                  "dataset": "t"})
    write_table(pa.Table.from_pylist(table), manifest)
    out = str(tmp_path / "scores")
    score(manifest, tiny_bundle, out, ScoreConfig(frames=4, mc_passes=5, evidence=True), allowed_roots=[allowed])
    rows = {r["media_id"]: r for r in read_table(out).to_pylist()}
    assert rows["t/elsewhere.mp4"]["status"] == "rejected"
    assert "allowed roots" in rows["t/elsewhere.mp4"]["error"]
    for m in ("t/face0.mp4", "t/face1.mp4"):
        assert rows[m]["status"] == "ok" and rows[m]["mutual_info"] >= 0 and rows[m]["uncertainty"] > 0
        assert __import__("math").isfinite(rows[m]["frequency_score"])
        assert __import__("math").isnan(rows[m]["boundary_score"])  # this model has no boundary head


def test_manifest_errors(tiny_bundle, tmp_path):
    dup = str(tmp_path / "dup.parquet")
    write_table(pa.Table.from_pylist([{"media_id": "a", "uri": "x"}, {"media_id": "a", "uri": "y"}]), dup)
    with pytest.raises(DeepgenError, match="duplicate media_id 'a'"):
        score(dup, tiny_bundle, str(tmp_path / "o1"))
    nouri = str(tmp_path / "nouri.parquet")
    write_table(pa.Table.from_pylist([{"media_id": "a"}]), nouri)
    with pytest.raises(DeepgenError, match="lacks the column"):
        score(nouri, tiny_bundle, str(tmp_path / "o2"))


def test_rescore_incremental_idempotent_and_model_change(ray_session, media, tiny_bundle, tmp_path):
    import shutil

    inc = tmp_path / "incoming"
    inc.mkdir()
    for m in ("t/face0.mp4", "t/noise.mp4", "t/empty.mp4"):
        shutil.copy(media[m], inc / os.path.basename(m))
    store = str(tmp_path / "store")
    first = rescore(str(inc), tiny_bundle, store, CFG, date="2026-11-25")
    assert first["items_scored"] == 3 and first["by_status"] == {"no_face": 1, "ok": 1, "unreadable": 1}
    again = rescore(str(inc), tiny_bundle, store, CFG, date="2026-11-25")
    assert again["items_scored"] == 0 and again["already_scored"] == 3 and again["rows"] == 3
    shutil.copy(media["t/face1.mp4"], inc / "new.mp4")  # a new item
    time.sleep(0.01)
    shutil.copy(media["t/face1.mp4"], inc / "noise.mp4")  # changed content, same media_id
    third = rescore(str(inc), tiny_bundle, store, CFG, date="2026-11-26")
    assert third["items_scored"] == 2 and third["rows"] == 2
    assert third["score_histogram"]["counts"] and "shift" in third
    # a different model (other weights) rescoring everything
    from deepgen.models.bundle import load_bundle, save_bundle

    b = load_bundle(tiny_bundle)
    with __import__("torch").no_grad():
        b.model.classifier[1].bias.add_(1.0)
    other = str(tmp_path / "other")
    save_bundle(other, b.model, reference=b.reference, temperature=1.0)
    fresh = rescore(str(inc), other, store, CFG, date="2026-11-26")
    assert fresh["items_scored"] == 4 and fresh["model_id"] != first["model_id"]


def test_rescore_killed_driver_resumes_exactly_once(ray_session, media, tiny_bundle, tmp_path):
    import shutil

    inc = tmp_path / "incoming"
    inc.mkdir()
    n = 10  # enough items that the kill lands well before the last one on a loaded machine
    for i in range(n):
        shutil.copy(media[f"t/face{i % 2}.mp4"], inc / f"v{i}.mp4")
    store = str(tmp_path / "store")
    address = ray_session.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "deepgen.cli", "rescore", "--incoming", str(inc), "--checkpoint", tiny_bundle,
           "--store", store, "--date", "2026-11-25", "--chunk-size", "1", "--model-batch", "1", "--frames", "4",
           "--address", address]  # one video per model call, so results (and chunks) stream one by one
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part_dir = os.path.join(store, "scores")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        fs, _ = get_fs(store)
        if os.path.isdir(part_dir) and any(p.endswith(".parquet") for p in fs.find(part_dir)):
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-run
    proc.wait()
    from deepgen.models.bundle import load_bundle

    model_id = load_bundle(tiny_bundle).model_id
    before = read_scores(store, model_id)
    assert before is not None and 1 <= before.num_rows < n  # killed mid-run
    summary = rescore(str(inc), tiny_bundle, store, CFG, date="2026-11-25")
    after = read_scores(store, model_id).column("media_id").to_pylist()
    assert sorted(after) == sorted(f"incoming/v{i}.mp4" for i in range(n))  # each exactly once
    assert summary["items_scored"] == n - before.num_rows


def test_ensemble_of_a_model_with_itself_equals_the_model(ray_session, media, tiny_bundle, tmp_path):
    manifest = _manifest({m: media[m] for m in ("t/face0.mp4", "t/noise.mp4")}, str(tmp_path / "m.parquet"))
    single, double = str(tmp_path / "one"), str(tmp_path / "two")
    one = score(manifest, tiny_bundle, single, CFG)
    two = score(manifest, [tiny_bundle, tiny_bundle], double, CFG)
    assert two["model_id"].startswith("ens-") and two["model_id"] != one["model_id"]
    a = {r["media_id"]: r for r in read_table(single).to_pylist()}
    b = {r["media_id"]: r for r in read_table(double).to_pylist()}
    assert a["t/face0.mp4"]["score"] == pytest.approx(b["t/face0.mp4"]["score"], rel=1e-6)
    assert b["t/noise.mp4"]["status"] == "no_face" and b["t/noise.mp4"]["score"] is None
