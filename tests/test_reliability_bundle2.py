"""Issue 32, findings 4 and 9 (bundles): the domain check's files (``ood.json``, ``reference_features.npz``)
and ``temporal.json`` belong to the bundle's digests and ``model_id``; an edited, added or removed one is
refused at load naming the file, a malformed one in one sentence naming the file and field, and batch
scoring refuses a bad bundle in the driver (one ``error:`` line, not a Ray actor's death)."""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deepgen.cli import main
from deepgen.errors import DeepgenError
from deepgen.evaluation.ood import fit_ood
from deepgen.inference import load_bundles, load_frozen_ood
from deepgen.models import ModelConfig, create_detector
from deepgen.models.bundle import (
    bundle_model_id,
    calibration_record,
    load_bundle,
    preprocessing_record,
    reference_stats,
    save_bundle,
)
from deepgen.testing.faces import noise_frames

TEMPORAL = {"frame_temperature": 1.1, "temporal_temperature": 1.3, "fusion_temperature": 0.9}


def _one_sentence(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and msg.endswith(".")
    return msg


def _save(out: str, model, ref: np.ndarray, ood: dict, **extras) -> str:
    return save_bundle(out, model, temperature=1.5, reference={**reference_stats(ref), "ood_sample": ref[:24]},
                       datasets=["t"], extras={"ood": ood, **extras})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    torch.manual_seed(0)
    model = create_detector(ModelConfig(image_size=32))
    ref = np.random.default_rng(0).normal(size=(32, model.num_features))
    ood = fit_ood(ref[:24], ref[24:], np.arange(8))
    out = str(tmp_path_factory.mktemp("b") / "bundle")
    return {"uri": out, "model_id": _save(out, model, ref, ood), "model": model, "ref": ref, "ood": ood}


def _copy(uri: str, tmp_path: Path, name: str = "copy") -> str:
    out = str(tmp_path / name)
    shutil.copytree(uri, out)
    return out


def _write_json(path: str, name: str, record) -> None:
    with open(os.path.join(path, name), "w") as f:
        json.dump(record, f)


def _edit_ood(path: str, fn) -> None:
    file = os.path.join(path, "ood.json")
    rec = json.load(open(file))
    _write_json(path, "ood.json", fn(rec))


def _older(uri: str, tmp_path: Path) -> str:
    """The bundle as a deepgen before this change wrote it: digests of preprocessing and calibration only."""
    b = _copy(uri, tmp_path, "older")
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["digests"].pop("files", None)
    _write_json(b, "config.json", cfg)
    return b


def _scaled(rec, key, factor):
    rec["thresholds"][rec["method"]] = rec["thresholds"][rec["method"]] * factor if factor is not None else key
    return rec


EDITS = {
    "threshold x1000": lambda r: _scaled(r, None, 1000.0),
    "threshold NaN": lambda r: _scaled(r, float("nan"), None),
    "threshold 0": lambda r: _scaled(r, 0.0, None),
    "threshold -1": lambda r: _scaled(r, -1.0, None),
    "empty": lambda r: {},
    "k abc": lambda r: {**r, "k": "abc"},
    "a list": lambda r: [r],
    "no thresholds": lambda r: {k: v for k, v in r.items() if k != "thresholds"},
}


def test_model_id_covers_the_domain_check(saved, tmp_path):
    """Two bundles differing only in their ood threshold or reference sample have different ids."""
    m, ref, ood = saved["model"], saved["ref"], saved["ood"]
    assert load_bundle(saved["uri"]).model_id == saved["model_id"]
    other = {**ood, "thresholds": {k: v * 2 for k, v in ood["thresholds"].items()}}
    assert _save(str(tmp_path / "t"), m, ref, other) != saved["model_id"]
    assert _save(str(tmp_path / "r"), m, ref + 0.01, ood) != saved["model_id"]
    assert _save(str(tmp_path / "same"), m, ref, ood) == saved["model_id"]


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_ood_json_is_refused_naming_the_file(saved, tmp_path, edit):
    b = _copy(saved["uri"], tmp_path)
    _edit_ood(b, EDITS[edit])
    with pytest.raises(DeepgenError, match="ood.json edited since it was saved") as e:
        load_bundle(b)
    _one_sentence(e)


def test_edited_added_or_removed_scored_files_are_named(saved, tmp_path):
    b = _copy(saved["uri"], tmp_path)
    path = os.path.join(b, "reference_features.npz")
    arrays = dict(np.load(path))
    arrays["ood_sample"] = arrays["ood_sample"] * 100  # every item would read as in domain
    np.savez(path, **arrays)
    with pytest.raises(DeepgenError, match="reference_features.npz edited") as e:
        load_bundle(b)
    _one_sentence(e)

    b = _copy(saved["uri"], tmp_path, "removed")
    os.remove(os.path.join(b, "ood.json"))  # "domain not checked" before
    with pytest.raises(DeepgenError, match="ood.json removed") as e:
        load_bundle(b)
    _one_sentence(e)

    b = _copy(saved["uri"], tmp_path, "added")
    _write_json(b, "temporal.json", TEMPORAL)
    with pytest.raises(DeepgenError, match="temporal.json added") as e:
        load_bundle(b)
    assert "calibration.json" not in _one_sentence(e)  # finding 9: it named calibration.json


def test_temporal_json_edits_name_temporal_json(saved, tmp_path):
    b = str(tmp_path / "temporal")
    _save(b, saved["model"], saved["ref"], saved["ood"], temporal=TEMPORAL)
    assert load_bundle(b).extras["temporal"] == TEMPORAL
    _write_json(b, "temporal.json", {**TEMPORAL, "fusion_temperature": 0.5})
    with pytest.raises(DeepgenError, match="temporal.json edited") as e:
        load_bundle(b)
    assert "calibration.json" not in _one_sentence(e)
    os.remove(os.path.join(b, "temporal.json"))
    with pytest.raises(DeepgenError, match="temporal.json removed"):
        load_bundle(b)


def test_older_bundle_loads_with_one_warning_and_its_old_model_id(saved, tmp_path):
    b = _older(saved["uri"], tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_bundle(b)
    assert len(caught) == 1 and "older deepgen" in str(caught[0].message) and "\n" not in str(caught[0].message)
    weights = open(os.path.join(b, "model.safetensors"), "rb").read()
    pre = preprocessing_record(json.load(open(os.path.join(b, "config.json")))["model"], None)
    assert loaded.model_id == bundle_model_id(weights, pre, calibration_record(1.5, {}))  # the id it always had
    assert loaded.model_id != saved["model_id"]
    assert load_bundles(b)[0].model_id == loaded.model_id


@pytest.mark.parametrize("edit,match", [
    ("threshold NaN", "thresholds.mahalanobis in .*ood.json is nan"),
    ("threshold 0", "thresholds.mahalanobis in .*ood.json is 0.0"),
    ("threshold -1", "thresholds.mahalanobis in .*ood.json is -1.0"),
    ("empty", "ood.json has no 'method' field"),
    ("k abc", "k in .*ood.json is 'abc'"),
    ("a list", "ood.json holds a list"),
    ("no thresholds", "ood.json has no 'thresholds' field"),
])
def test_malformed_ood_json_of_an_older_bundle_is_one_sentence(saved, tmp_path, edit, match):
    """Where no digest protects it, the domain check is validated field by field (before: in domain for
    every item, "domain not checked", ood_score 1e14, or a raw ValueError / KeyError / TypeError)."""
    b = _older(saved["uri"], tmp_path)
    _edit_ood(b, EDITS[edit])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DeepgenError, match=match) as e:
            load_bundles(b)
    _one_sentence(e)


def test_frozen_view_of_an_older_bundle_is_validated(saved, tmp_path):
    """The frozen-backbone view (``frozen`` in ood.json, ``ood_frozen_sample``): before, a missing sample
    silently dropped it, a NaN threshold passed, and a bad size or a list was a raw ValueError / TypeError."""
    b = _older(saved["uri"], tmp_path)
    frozen = {"method": "mahalanobis", "threshold": 2.0, "size": 32}
    _edit_ood(b, lambda r: {**r, "frozen": frozen})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DeepgenError, match="holds no ood_frozen_sample") as e:
            load_bundles(b)
        _one_sentence(e)
        path = os.path.join(b, "reference_features.npz")
        np.savez(path, **dict(np.load(path)), ood_frozen_sample=np.random.default_rng(1).normal(size=(8, 16)))
        assert load_frozen_ood(load_bundles(b)[0]).size == 32
        for bad, match in [({**frozen, "threshold": float("nan")}, "frozen.threshold in .*ood.json is nan"),
                           ({**frozen, "threshold": 0}, "frozen.threshold in .*ood.json is 0"),
                           ({**frozen, "size": "big"}, "frozen.size in .*ood.json is 'big'"),
                           ([frozen], "frozen in .*ood.json holds a list"),
                           ({"method": "mahalanobis"}, "frozen in .*ood.json has no 'threshold' field")]:
            _edit_ood(b, lambda r, bad=bad: {**r, "frozen": bad})
            with pytest.raises(DeepgenError, match=match) as e:
                load_bundles(b)
            _one_sentence(e)


def test_added_temporal_json_of_an_older_bundle_names_temporal_json(saved, tmp_path):
    b = _older(saved["uri"], tmp_path)
    _write_json(b, "temporal.json", TEMPORAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DeepgenError, match="has temporal.json added") as e:
            load_bundle(b)
    assert "calibration.json edited" not in _one_sentence(e)


def test_reference_features_of_the_wrong_shape_or_damaged_are_one_sentence(saved, tmp_path):
    b = _older(saved["uri"], tmp_path)
    path = os.path.join(b, "reference_features.npz")
    arrays = dict(np.load(path))
    np.savez(path, **{**arrays, "ood_sample": arrays["ood_sample"][:, :5]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DeepgenError, match="'ood_sample' in .*reference_features.npz has shape 24x5") as e:
            load_bundle(b)
        _one_sentence(e)
        np.savez(path, **{k: v for k, v in arrays.items() if k != "ood_sample"})
        with pytest.raises(DeepgenError, match="holds no ood_sample") as e:
            load_bundles(b)
        _one_sentence(e)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        open(path, "wb").write(buf.getvalue()[:200])
        with pytest.raises(DeepgenError, match="damaged or not a numpy .npz") as e:
            load_bundle(b)
        _one_sentence(e)


@pytest.mark.parametrize("command", ["score", "rescore"])
@pytest.mark.parametrize("older", [False, True])
def test_batch_scoring_refuses_a_bad_bundle_in_the_driver(ray_session, saved, tmp_path, capsys, command, older):
    """Before: the driver's load passed and each Ray actor died (ActorDiedError traceback)."""
    b = _older(saved["uri"], tmp_path) if older else _copy(saved["uri"], tmp_path)
    _edit_ood(b, EDITS["k abc"])
    media = tmp_path / "media"
    media.mkdir()
    cv2.imwrite(str(media / "m0.png"), noise_frames(1, 64, 48, seed=0)[0])
    address = ray_session.get_runtime_context().gcs_address
    out = ["--out", str(tmp_path / "scores")] if command == "score" else ["--store", str(tmp_path / "store")]
    src = ["--manifest", str(media)] if command == "score" else ["--incoming", str(media)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SystemExit) as e:
            main([command, *src, "--checkpoint", b, *out, "--frames", "1", "--address", address, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    assert "ood.json" in err and "ActorDied" not in err


def test_frame_scoring_for_evaluate_and_adapt_refuses_a_bad_bundle_in_the_driver(ray_session, saved, tmp_path):
    """evaluate and adapt (align, fewshot, threshold) score frames on Ray actors: before, an actor died."""
    import pyarrow as pa

    from deepgen.evaluation.run import score_frames
    from deepgen.synth.encode import encode_png

    b = _older(saved["uri"], tmp_path)
    _edit_ood(b, EDITS["threshold NaN"])
    faces = pa.table({"media_id": ["m"], "frame_index": [0], "image": [encode_png(np.zeros((32, 32, 3), np.uint8))]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DeepgenError, match="thresholds.mahalanobis in .*ood.json is nan") as e:
            score_frames(faces, b, quiet=True)
    _one_sentence(e)
