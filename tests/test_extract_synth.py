"""Extraction on procedural synth trees (video and WildDeepfake-style tar frame sequences)."""

from __future__ import annotations

import os

import pytest

from deepgen.faces.extract import extract_faces, read_faces, read_status
from deepgen.storage import write_table

synth = pytest.importorskip("deepgen.synth.presets")
datasets = pytest.importorskip("deepgen.datasets")


@pytest.mark.parametrize("preset", ["celebdf", "wilddeepfake"])
def test_extract_on_a_synth_tree(ray_session, tmp_path, preset):
    root = synth.render_preset(preset, str(tmp_path / preset), videos=4, seed=1, frames=8)
    manifest = datasets.build_manifest(preset, os.path.relpath(root))  # relative roots work too
    write_table(manifest, str(tmp_path / "m.parquet"))
    out = str(tmp_path / "faces")
    summary = extract_faces(str(tmp_path / "m.parquet"), out, frames=8, size=64)
    status = read_status(out).to_pylist()
    faces = read_faces(out)
    assert sorted(s["media_id"] for s in status) == sorted(manifest.column("media_id").to_pylist())
    assert all(s["status"] == "ok" for s in status), [s for s in status if s["status"] != "ok"]
    assert faces.num_rows == summary["faces_written"] == sum(s["n_faces"] for s in status)
    assert faces.num_rows >= 0.9 * sum(s["n_frames"] for s in status)
    by_id = {r["media_id"]: r for r in manifest.to_pylist()}
    for f in faces.select(["media_id", "label", "split", "skin_tone"]).to_pylist():
        m = by_id[f["media_id"]]
        assert (f["label"], f["split"], f["skin_tone"]) == (m["label"], m["split"], m["skin_tone"])
    # the identity attributes of the synth sidecar ride along for subgroup metrics
    assert manifest.column("skin_tone").null_count == 0
