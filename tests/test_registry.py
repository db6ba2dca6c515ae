"""The detector registry and ModelConfig's own checks (also applied to a loaded bundle)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from deepgen.errors import DeepgenError
from deepgen.models import Detector, ModelConfig, create_detector, list_models, register_model
from deepgen.models.bundle import load_bundle, save_bundle


def test_a_new_architecture_is_one_registered_function():
    @register_model("test_frozen_backbone")
    def frozen(cfg: ModelConfig) -> Detector:
        model = Detector(cfg)
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        return model

    assert "detector" in list_models() and "test_frozen_backbone" in list_models()
    model = create_detector(ModelConfig(arch="test_frozen_backbone", image_size=32))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    with pytest.raises(DeepgenError, match="registered twice"):
        register_model("test_frozen_backbone")(lambda cfg: None)


def test_unknown_arch_and_bad_values_are_one_sentence():
    with pytest.raises(DeepgenError, match="model.arch 'nope' is not a registered detector; use one of .*detector"):
        create_detector(ModelConfig(arch="nope"))
    with pytest.raises(DeepgenError, match=r"model.dropout is 1.5; set it in \[0, 1\)"):
        ModelConfig(dropout=1.5).validate()
    with pytest.raises(DeepgenError, match="unknown key"):
        ModelConfig.from_dict({"backbone": "test_efficientnet", "colour": 3}, strict=True)


def test_inference_skips_the_training_heads():
    model = create_detector(ModelConfig(image_size=32, num_domains=2, num_methods=2)).eval()
    calls = []
    for head in (model.domain_head, model.method_head, model.projection):
        head.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert set(out) == {"logit", "features"} and not calls
    model(torch.randn(2, 3, 32, 32), grl_coefficient=1.0)
    assert len(calls) == 3


def test_a_loaded_bundle_runs_the_model_checks(tmp_path):
    model = create_detector(ModelConfig(image_size=32))
    out = str(tmp_path / "b")
    save_bundle(out, model, reference=np.random.default_rng(0).normal(size=(8, model.num_features)))
    path = os.path.join(out, "config.json")
    config = json.load(open(path))
    config["model"]["dropout"] = 3.0
    json.dump(config, open(path, "w"))
    with pytest.raises(DeepgenError, match=r"bundle .*: model.dropout is 3.0"):
        load_bundle(out)
