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
    assert "Operating point:" in printed  # which decision point ships, and what it was fitted on
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


def test_demo_operating_point_fits_on_validation_people_only(ray_session, tiny_bundle, tmp_path):
    """The demo's shipped point is fitted on the photo corpus's validation reals, never on its test people."""
    from deepgen.experiments.demo import fit_operating_point, operating_statement
    from deepgen.testing.toyfaces import write_toy_faces

    faces = write_toy_faces(str(tmp_path / "photos.parquet"), n_per_class=30, splits=(0.4, 0.4), size=48)
    out = str(tmp_path / "demo")
    assert fit_operating_point(tiny_bundle, faces, out, 0.05) is None  # 12 validation reals cannot resolve 5%
    op = fit_operating_point(tiny_bundle, faces, out, 0.1)
    assert op["n_videos"] == 12 and op["flagged_after"] <= 0.1
    assert os.path.isfile(os.path.join(out, "run", "operating-point", "model.safetensors"))
    from deepgen.storage import read_table

    fitted = read_table(os.path.join(out, "faces", "photos-validation-reals.parquet"))
    assert set(fitted.column("split").to_pylist()) == {"val"} and set(fitted.column("label").to_pylist()) == {0}
    assert "12 real videos of the photos' validation people" in operating_statement(op, 0.1)
    assert "too few real videos" in operating_statement(None, 0.1)
    assert "as asked (--false-alarm 0)" in operating_statement(None, None)
    assert "no real people" in operating_statement(None, 0.1, people=False)
