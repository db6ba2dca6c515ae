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


def test_two_person_dfdc_clip_yields_two_tracks_and_the_swapped_one(tmp_path):
    """A DFDC-like clip with two people, one face swapped: two tracks, the swapped one identifiable."""
    import numpy as np

    from deepgen.faces import ExtractConfig, extract_media
    from deepgen.faces.track import iou

    root = synth.render_preset("dfdc", str(tmp_path / "dfdc"), videos=6, seed=2, frames=8)
    media = synth.load_groundtruth(root)["media"]
    two = {k: e for k, e in media.items() if e.get("faces")}
    fakes = [k for k, e in two.items() if e["label"] == 1]
    reals = [k for k, e in two.items() if e["label"] == 0]
    assert fakes and reals
    for key in fakes + reals:
        e = two[key]
        assert len(e["faces"]) == 2 and e["faces"][0]["boxes"][0][0] < e["faces"][1]["boxes"][0][0]
        if e["label"]:
            assert e["method"] == "two_person_swap" and sum(f["swapped"] for f in e["faces"]) == 1
            assert e["faces"][e["swapped_face"]]["boxes"] == e["boxes"]
        else:
            assert e["swapped_face"] is None and not any(f["swapped"] for f in e["faces"])
        faces, status = extract_media({"media_id": key, "uri": os.path.join(root, key)},
                                      ExtractConfig(frames=8, size=64))
        assert status["status"] == "ok"
        tracks: dict[int, list[dict]] = {}
        for f in faces:
            tracks.setdefault(f["track_id"], []).append(f)
        assert sorted(tracks) == [0, 1], key
        assert all(len(v) >= 6 for v in tracks.values())
        # each track overlaps exactly one ground-truth face (frame_index indexes the gt boxes)
        match = {}
        for k, rows in tracks.items():
            overlap = [np.mean([iou(r["box"], gt["boxes"][r["frame_index"]]) for r in rows]) for gt in e["faces"]]
            assert max(overlap) > 0.4 and min(overlap) < 0.05, overlap
            match[k] = int(np.argmax(overlap))
        assert sorted(match.values()) == [0, 1]
        if e["label"]:
            swapped_track = [k for k, p in match.items() if p == e["swapped_face"]]
            assert len(swapped_track) == 1
