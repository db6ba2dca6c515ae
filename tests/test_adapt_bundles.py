"""`deepgen adapt`: aligned and few-shot bundles are ordinary bundles with the adaptation folded in."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from deepgen.adapt.align import FeatureAlignment
from deepgen.cli import main
from deepgen.faces.crop import decode_image
from deepgen.models.bundle import load_bundle
from deepgen.storage import read_table, write_table
from deepgen.testing.toyfaces import toy_faces_table


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("target") / "t.parquet")
    write_table(toy_faces_table(n_per_class=30, size=48, seed=7, dataset="target", background=(120, 220)), path)
    return path


def _features(bundle, faces_uri):
    imgs = [decode_image(b) for b in read_table(faces_uri).column("image").to_pylist()]
    with torch.no_grad():
        return bundle.model.features(bundle.model.preprocess(imgs)).numpy()


def test_align_folds_the_map_into_the_head(ray_session, tiny_bundle, target, tmp_path):
    out = str(tmp_path / "aligned")
    main(["adapt", "align", "--checkpoint", tiny_bundle, "--target-faces", target, "--out", out])
    src, new = load_bundle(tiny_bundle), load_bundle(out)
    alignment = FeatureAlignment.from_dict(new.extras["alignment"])
    f = _features(src, target)
    with torch.no_grad():
        expected = src.model.classifier[1](torch.from_numpy(alignment.apply(f)).float()).squeeze(1).numpy()
        got = new.model.classifier[1](torch.from_numpy(f)).squeeze(1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert new.model_id != src.model_id and new.temperature == src.temperature
    aligned = alignment.apply(f)
    np.testing.assert_allclose(aligned.mean(0), src.reference["mean"], atol=1e-3 * (1 + np.abs(f).max()))


def test_fewshot_and_protocol(ray_session, tiny_bundle, target, tmp_path, capsys):
    out = str(tmp_path / "fewshot")
    main(["adapt", "fewshot", "--checkpoint", tiny_bundle, "--support", target, "--out", out, "--k", "5"])
    new = load_bundle(out)
    assert new.extras["fewshot"]["k"] == 5
    assert not torch.equal(new.model.classifier[1].weight, load_bundle(tiny_bundle).model.classifier[1].weight)
    capsys.readouterr()
    pdir = str(tmp_path / "protocol")
    main(["adapt", "protocol", "--checkpoint", tiny_bundle, "--faces", target, "--out", pdir, "--k", "0",
          "--k", "1", "--k", "5"])
    table = open(os.path.join(pdir, "protocol.csv")).read().splitlines()
    header = table[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in table[1:]]
    assert {r["held_out"] for r in rows} == {"swap", "smooth"}
    assert all(0.0 <= float(r["auc"]) <= 1.0 for r in rows)
    assert {(r["method"], r["k"]) for r in rows} >= {("fomaml", "5"), ("finetune_head", "1"), ("coral", "0")}
    with pytest.raises(SystemExit):
        main(["adapt", "fewshot", "--checkpoint", tiny_bundle, "--support", target, "--out", str(tmp_path / "x"),
              "--method", "fomaml"])
    assert "meta-faces" in capsys.readouterr().err
    json.dumps(new.extras)
