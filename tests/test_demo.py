"""`deepgen demo --quick` end to end on the shared embedded Ray: every stage writes what it says."""

from __future__ import annotations

import json
import os

from deepgen.cli import main
from deepgen.experiments.real import default_photos
from deepgen.experiments.realdf import default_real_deepfakes


def test_demo_quick(ray_session, tmp_path, capsys):
    out = str(tmp_path / "demo")
    main(["demo", "--quick", "--out", out])
    printed = capsys.readouterr().out
    for step in ("synth ffpp", "extract faces celebdf", "train 'full' recipe", "evaluate across datasets",
                 "batch-score dfdc"):
        assert f"{step}" in printed
    assert "dataset" in printed and "AUC" in printed and "total" in printed
    assert "What the detector has seen:" in printed and "real flagged" in printed
    metrics = json.load(open(os.path.join(out, "report", "metrics.json")))
    photos = default_photos() is not None  # the demo trains and tests on real people when the photos are there
    real_deepfakes = default_real_deepfakes() is not None  # scored (never trained on) whenever present
    assert set(metrics["per_dataset"]) == ({"ffpp", "celebdf", "dfdc"} | ({"photos"} if photos else set())
                                           | ({"real_deepfakes"} if real_deepfakes else set()))
    if real_deepfakes:
        row = metrics["per_dataset"]["real_deepfakes"]
        assert not row["seen"] and row["n"] >= 90 and "real_deepfakes" in printed
    if photos:
        assert "videos made from photos of" in printed and metrics["per_dataset"]["photos"]["seen"]
    else:
        assert "no real face at all" in printed
    assert metrics["per_dataset"]["ffpp"]["seen"] and not metrics["per_dataset"]["dfdc"]["seen"]
    assert os.path.getsize(os.path.join(out, "report", "report.html")) > 1000
    assert os.path.isfile(os.path.join(out, "run", "bundle", "model.safetensors"))
    from deepgen.storage import read_table

    scores = read_table(os.path.join(out, "scores", "dfdc"))
    manifest = read_table(os.path.join(out, "manifests", "dfdc.parquet"))
    assert sorted(scores.column("media_id").to_pylist()) == sorted(manifest.column("media_id").to_pylist())
