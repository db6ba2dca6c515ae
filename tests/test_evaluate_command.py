"""`deepgen evaluate` end to end: Ray scoring of faces tables, metrics.json, predictions, HTML report."""

from __future__ import annotations

import json
import os
import re

import pyarrow.compute as pc
import pytest

from deepgen.cli import main
from deepgen.evaluation.metrics import compute_metrics
from deepgen.storage import read_table, write_table
from deepgen.testing.toyfaces import toy_faces_table


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    a = toy_faces_table(n_per_class=16, size=48, seed=1, dataset="toyA")
    b = toy_faces_table(n_per_class=16, size=48, seed=2, dataset="toyB", background=(120, 220))
    skin = ["light" if i % 2 else "dark" for i in range(b.num_rows)]
    b = b.append_column("skin_tone", __import__("pyarrow").array(skin))
    write_table(a, str(d / "a.parquet"))
    write_table(b, str(d / "b.parquet"))
    return [str(d / "a.parquet"), str(d / "b.parquet")]


def test_evaluate_writes_report_metrics_and_predictions(ray_session, tiny_bundle, faces, tmp_path, capsys):
    out = str(tmp_path / "report")
    main(["evaluate", "--checkpoint", tiny_bundle, "--checkpoint", tiny_bundle, "--faces", faces[0],
          "--faces", faces[1], "--out", out, "--split", "all", "--mc-passes", "4", "--subgroup", "skin_tone",
          "--adversarial"])
    printed = json.loads(capsys.readouterr().out)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    preds = read_table(os.path.join(out, "predictions.parquet")).to_pandas()
    assert len(preds) == 64 and set(preds["dataset"]) == {"toyA", "toyB"}
    for d in ("toyA", "toyB"):
        g = preds[preds["dataset"] == d]
        assert metrics["per_dataset"][d]["auc"] == pytest.approx(compute_metrics(g["label"], g["score"])["auc"])
        assert printed["per_dataset_auc"][d] == pytest.approx(metrics["per_dataset"][d]["auc"])
    assert set(metrics["shift"]) == {"toyA", "toyB"} and 0 < metrics["shift"]["toyA"]["p_value"] <= 1
    # an ensemble of a model with itself equals the model
    rows = {r["model"]: r for r in metrics["ensemble"]["rows"]}
    assert rows["ensemble"]["toyA"] == pytest.approx(rows["model 0"]["toyA"])
    assert {r["attribute"] for r in metrics["subgroups"]} == {"skin_tone"}
    adv = {round(r["budget"] * 255): r for r in metrics["adversarial"]}
    assert adv[0]["auc"] == pytest.approx(adv[0]["auc_clean"])
    assert (preds["uncertainty"] >= 0).all()
    html = open(os.path.join(out, "report.html")).read()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 4
    for src in images:
        data = open(os.path.join(out, src), "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    for heading in ("Ensemble", "Subgroup metrics", "Adversarial robustness", "Artifact evidence AUC"):
        assert heading in html


def test_evaluate_default_split_and_errors(ray_session, tiny_bundle, faces, tmp_path):
    from deepgen.errors import DeepgenError
    from deepgen.evaluation.run import evaluate

    m = evaluate([tiny_bundle], [faces[0]], str(tmp_path / "r"), mc_passes=0, evidence=False, unseen_split="test")
    n_test = read_table(faces[0]).filter(pc.equal(read_table(faces[0])["split"], "test")).num_rows
    assert sum(r["n"] for r in m["per_dataset"].values()) == n_test
    # a dataset the checkpoint never saw is evaluated on all its rows by default
    m = evaluate([tiny_bundle], [faces[0]], str(tmp_path / "r4"), mc_passes=0, evidence=False)
    assert sum(r["n"] for r in m["per_dataset"].values()) == read_table(faces[0]).num_rows
    assert {r["dataset"] for r in m["calibration"]} == {"toyA"}
    with pytest.raises(DeepgenError, match="does not exist"):
        evaluate([tiny_bundle], [str(tmp_path / "nope")], str(tmp_path / "r2"))
    with pytest.raises(DeepgenError, match="not a checkpoint bundle"):
        evaluate([str(tmp_path)], [faces[0]], str(tmp_path / "r3"))
