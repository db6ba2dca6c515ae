"""Training on any faces table: no val split -> one is carved from 10% of the training identities."""

from __future__ import annotations

import json
import warnings

import pyarrow as pa
import pytest
from click.testing import CliRunner

from deepgen.errors import DeepgenError
from deepgen.storage import write_table
from deepgen.testing.toyfaces import toy_faces_table
from deepgen.train import load_config
from deepgen.train.command import train as train_command
from deepgen.train.data import build_train_data

CFG = {"name": "noval", "epochs": 2, "batch_size": 16, "lr": 0.003,
       "model": {"backbone": "test_efficientnet", "image_size": 64}}


@pytest.fixture(scope="module")
def train_only(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("noval")
    return write_toy_faces_train_only(str(d / "train_only.parquet"))


def write_toy_faces_train_only(path: str, n_per_class: int = 50) -> str:
    table = toy_faces_table(n_per_class=n_per_class, seed=0, dataset="toy", splits=(1.0, 0.0))
    assert set(table["split"].to_pylist()) == {"train"}
    write_table(table, path)
    return path


def test_carved_split_is_deterministic_and_by_identity(train_only):
    cfg = load_config(CFG)
    with pytest.warns(UserWarning, match=r"no validation split .* validating on 5 of 50 training identities"):
        a = build_train_data([train_only], cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = build_train_data([train_only], cfg)
    assert a.val.num_rows == b.val.num_rows == 10 and a.train.num_rows == 90
    assert a.val["image"].to_pylist() == b.val["image"].to_pylist()
    assert set(a.val["label"].to_pylist()) == {0, 1}
    assert not set(a.val["image"].to_pylist()) & set(a.train["image"].to_pylist())


def test_one_class_altogether_fails_in_one_sentence(tmp_path):
    table = toy_faces_table(n_per_class=20, seed=0, splits=(1.0, 0.0))
    fakes = table.filter(pa.compute.equal(table["label"], 1))
    path = str(tmp_path / "fakes.parquet")
    write_table(fakes, path)
    with pytest.raises(DeepgenError, match=r"fakes.parquet hold no real faces at all \(20 faces, all fake\)"):
        build_train_data([path], load_config({**CFG, "sbi_prob": 0.5}))
    reals = str(tmp_path / "reals.parquet")  # reals alone: a pseudo-fake recipe carves real identities
    write_table(table.filter(pa.compute.equal(table["label"], 0)), reals)
    with pytest.warns(UserWarning, match=r"no validation split with real faces; validating on 2 of 20"):
        data = build_train_data([reals], load_config({**CFG, "batch_size": 4, "sbi_prob": 0.5}))
    assert data.validation_fakes == "synthetic" and data.train.num_rows == 18


def test_train_cli_without_val_split(ray_session, train_only, tmp_path):
    recipe = tmp_path / "noval.yaml"
    recipe.write_text(json.dumps(CFG))
    res = CliRunner().invoke(train_command, ["--config", str(recipe), "--faces", train_only,
                                             "--out", str(tmp_path / "run"), "--workers", "1"])
    assert res.exit_code == 0, (res.output, res.exception)
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "no validation split" in warned[0], res.stderr
    epochs = [line for line in res.stderr.splitlines() if line.startswith("train: epoch")]
    assert [line.split()[2] for line in epochs] == ["1/2", "2/2"], res.stderr
    assert "val mean AUC" in epochs[0] and "loss" in epochs[0]
    assert "selected: val_mean_auc" in res.stdout
