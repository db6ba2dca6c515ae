"""Checkpoint bundle: round trip (same logits, stable model id), local and s3://, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.models import ModelConfig, create_detector
from deepgen.models.bundle import load_bundle, reference_stats, save_bundle


def _model(seed: int = 0):
    torch.manual_seed(seed)
    model = create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, num_domains=2, num_methods=3))
    # move BatchNorm running stats off their init so the round trip covers buffers too
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    return model.eval()


def _images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 40, 40, 3), dtype=np.uint8)


def _save(model, out, **kw):
    feats = np.random.default_rng(1).normal(size=(300, model.num_features))
    return save_bundle(
        out, model, recipe={"epochs": 2, "lambda_domain": 0.1}, temperature=1.7,
        domain_temperatures={"ffpp": 1.5, "celebdf": 2.0}, reference=reference_stats(feats, np.arange(300) % 2),
        datasets=["ffpp", "celebdf"], metrics={"val_mean_auc": 0.91}, **kw,
    )


def test_round_trip_same_logits_and_stable_id(tmp_path):
    model = _model()
    out = str(tmp_path / "bundle")
    model_id = _save(model, out, extras={"alignment": {"method": "coral"}})
    assert len(model_id) == 16 and storage.table_complete(out)
    b = load_bundle(out)
    assert b.model_id == model_id and not b.model.training
    x = model.preprocess(_images())
    with torch.no_grad():
        assert torch.equal(model(x)["logit"], b.model(x)["logit"])
    assert b.temperature == 1.7 and b.domain_temperatures == {"ffpp": 1.5, "celebdf": 2.0}
    assert b.reference["sample"].shape == (256, model.num_features)
    assert b.reference["mean"].shape == (model.num_features,)
    assert b.reference["cov"].shape == (model.num_features, model.num_features)
    assert b.datasets == ["ffpp", "celebdf"] and b.metrics == {"val_mean_auc": 0.91}
    assert b.config["recipe"]["lambda_domain"] == 0.1 and b.model_config.num_methods == 3
    assert b.extras == {"alignment": {"method": "coral"}}
    from deepgen.inference import bundle_predict

    pred = bundle_predict(b, _images())
    assert np.allclose(pred["score"], 1 / (1 + np.exp(-pred["logit"] / 1.7)))
    # same weights -> same id; different weights -> different id
    assert _save(b.model, str(tmp_path / "again")) == model_id
    assert _save(_model(seed=1), str(tmp_path / "other")) != model_id


def test_refuses_to_overwrite_without_flag(tmp_path):
    out = str(tmp_path / "b")
    _save(_model(), out)
    with pytest.raises(DeepgenError, match="already exists"):
        _save(_model(), out)
    _save(_model(seed=2), out, overwrite=True)


def test_not_a_bundle_is_one_sentence(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DeepgenError, match=r"is not a checkpoint bundle .*deepgen train") as e:
        load_bundle(str(tmp_path))
    assert str(e.value).count(". ") == 0
    with pytest.raises(DeepgenError, match="not a checkpoint bundle"):
        load_bundle(str(tmp_path / "missing"))


def test_s3_round_trip(s3_bucket):
    model = _model()
    uri = f"{s3_bucket}/runs/bundle"
    model_id = _save(model, uri)
    b = load_bundle(uri)
    assert b.model_id == model_id
    x = model.preprocess(_images(3))
    with torch.no_grad():
        assert torch.equal(model(x)["logit"], b.model(x)["logit"])
