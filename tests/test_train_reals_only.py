"""Training from real faces alone: pseudo-fake recipes validate on seeded pseudo-fakes; others refuse."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

import deepgen.runtime
from deepgen.errors import DeepgenError
from deepgen.models.bundle import load_bundle
from deepgen.storage import read_table, write_table
from deepgen.testing.toyfaces import toy_faces_table
from deepgen.train import load_config, train
from deepgen.train.command import train as train_command
from deepgen.train.data import build_train_data, validation_rows
from deepgen.train.loop import per_dataset_auc

SMALL = {"epochs": 1, "batch_size": 8, "model.backbone": "test_efficientnet", "model.weights": None,
         "model.image_size": 48}


@pytest.fixture(scope="module")
def reals(tmp_path_factory) -> str:
    """A faces table of real faces only (train/val/test splits, no fake anywhere)."""
    table = toy_faces_table(n_per_class=40, size=48, seed=4, dataset="reals")
    path = str(tmp_path_factory.mktemp("reals") / "reals.parquet")
    write_table(table.filter(pc.equal(table["label"], 0)), path)
    return path


def test_validation_gets_fixed_seeded_pseudo_fake_twins(reals):
    cfg = load_config("sbi", SMALL)
    a, b = build_train_data([reals], cfg), build_train_data([reals], cfg)
    assert a.validation_fakes == "synthetic" and a.methods == ["sbi"]
    val = a.val.to_pydict()
    synthetic, labels = np.array(val["synthetic"]), np.array(val["label"])
    n_real = int((labels == 0).sum())
    assert n_real == 6 and synthetic.sum() == n_real and np.all(labels[synthetic] == 1) and np.all(labels[~synthetic] == 0)
    assert len(set(val["video"])) == 2 * n_real  # a twin is its own media item, never its real's
    assert a.val["image"].to_pylist() == b.val["image"].to_pylist()  # fixed: the same images every build
    reseeded = build_train_data([reals], load_config("sbi", {**SMALL, "seed": 1}))
    assert reseeded.val["image"].to_pylist()[n_real:] != a.val["image"].to_pylist()[n_real:]
    assert set(np.array(val["image"], object)[synthetic]).isdisjoint(np.array(val["image"], object)[~synthetic])


def test_real_fakes_select_and_pseudo_fakes_are_reported_apart():
    labels = np.array([0, 0, 1, 1, 1, 1])
    synthetic = np.array([0, 0, 0, 0, 1, 1], bool)
    datasets = np.zeros(6, np.int64)
    scores = np.array([0.1, 0.6, 0.5, 0.9, 0.05, 0.8])  # real fakes 3/4 ranked above reals, pseudo-fakes 2/4
    assert validation_rows(labels, synthetic, datasets).tolist() == [True] * 4 + [False] * 2
    m = per_dataset_auc(labels, scores, datasets, ["d"], synthetic=synthetic)
    assert m["val_auc"] == m["val_mean_auc"] == pytest.approx(0.75)
    assert m["val_synthetic_auc"] == pytest.approx(0.5)
    only = per_dataset_auc(labels[[0, 1, 4, 5]], scores[[0, 1, 4, 5]], datasets[:4], ["d"], synthetic=synthetic[[0, 1, 4, 5]])
    assert only["val_auc"] == only["val_synthetic_auc"] == pytest.approx(0.5)  # no real fakes: pseudo-fakes select


def test_erm_on_reals_only_refuses_in_one_sentence_naming_sbi(reals, tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("Ray was started before the faces were checked")

    monkeypatch.setattr(deepgen.runtime, "init_ray", refuse)
    for recipe in ("erm", "supcon"):
        with pytest.raises(DeepgenError, match=r"reals.parquet hold no fake faces to train or validate on "
                           r"\(34 train/val faces, all real\) "
                           rf"and recipe '{recipe}' makes no pseudo-fakes; .*--config sbi") as e:
            train(recipe, [reals], str(tmp_path / recipe), workers=1, overrides=SMALL)
        assert "\n" not in str(e.value) and str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_sbi_trains_on_reals_only_and_the_bundle_scores_media(ray_session, reals, real_faces_dir, tmp_path):
    from deepgen.scoring import ScoreConfig, score
    from deepgen.testing.faces import face_frames, load_rgb, write_video

    recipe = tmp_path / "sbi_small.yaml"  # the packaged sbi recipe, shrunk for a test
    recipe.write_text(json.dumps({"base": "sbi", "epochs": 1, "batch_size": 8,
                                  "model": {"backbone": "test_efficientnet", "weights": None, "image_size": 48}}))
    res = CliRunner().invoke(train_command, ["--config", str(recipe), "--faces", reals, "--out", str(tmp_path / "run"),
                                             "--workers", "1", "--quiet"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "validated and calibrated on pseudo-fakes of the validation reals" in res.stdout
    bundle = load_bundle(str(tmp_path / "run" / "bundle"))
    assert bundle.metrics["validation_fakes"] == "synthetic"  # the bundle records what it was validated on
    selected = bundle.metrics["selected"]
    assert 0.0 <= selected["val_auc"] <= 1.0 and selected["val_auc"] == selected["val_synthetic_auc"]
    assert bundle.temperature > 0 and bundle.datasets["train"] == ["reals"]

    video = write_video(str(tmp_path / "face.mp4"), face_frames(load_rgb(real_faces_dir / "img1.jpg"), 4, 192, 144))
    manifest = str(tmp_path / "m.parquet")
    write_table(pa.Table.from_pylist([{"media_id": "t/face.mp4", "uri": video, "media_type": "video",
                                       "label": 0, "dataset": "t"}]), manifest)
    summary = score(manifest, str(tmp_path / "run" / "bundle"), str(tmp_path / "scores"),
                    ScoreConfig(frames=2, model_batch=2))
    row = read_table(str(tmp_path / "scores")).to_pylist()[0]
    assert summary["model_id"] == bundle.model_id == row["model_id"]
    assert row["status"] == "ok" and 0.0 <= row["score"] <= 1.0 and row["n_faces"] == 2
    assert row["score"] == pytest.approx(1 / (1 + np.exp(-row["logit"] / bundle.temperature)))
