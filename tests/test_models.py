"""Detector model: gradient reversal, DANN schedule, SupCon against a hand computation, heads, preprocessing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepgen.errors import DeepgenError
from deepgen.evaluation.uncertainty import mc_dropout_predict
from deepgen.models import (
    ModelConfig,
    create_detector,
    dann_coefficient,
    grad_reverse,
    preprocess,
    supcon_loss,
)


@pytest.mark.parametrize("coefficient", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_flips_gradient_scaled(coefficient):
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64)
    y = grad_reverse(x, coefficient)
    assert torch.equal(y, x)  # identity forward
    (y * w).sum().backward()
    assert torch.equal(x.grad, -coefficient * w)


def test_dann_schedule():
    assert dann_coefficient(0.0) == 0.0
    assert dann_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_coefficient(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [dann_coefficient(p) for p in np.linspace(0, 1, 11)]
    assert values == sorted(values) and values[-1] < 1.0


def _supcon_by_hand(z: list[list[float]], labels: list[int], t: float) -> float:
    norm = [[v / math.sqrt(sum(c * c for c in row)) for v in row] for row in z]
    n = len(norm)
    dot = [[sum(a * b for a, b in zip(norm[i], norm[j])) / t for j in range(n)] for i in range(n)]
    total, anchors = 0.0, 0
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(dot[i][a]) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(dot[i][p]) / denom) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_supcon_matches_hand_computation():
    z = [[1.0, 0.0, 0.5], [0.8, 0.2, 0.1], [0.0, 1.0, -0.3], [-0.2, 0.9, 0.4], [0.3, -0.5, 1.0]]
    labels = [0, 0, 1, 1, 1]
    for t in (0.1, 0.5):
        got = supcon_loss(torch.tensor(z, dtype=torch.float64), torch.tensor(labels), t).item()
        assert got == pytest.approx(_supcon_by_hand(z, labels, t), rel=1e-6)


def test_supcon_skips_anchor_without_positive():
    z = [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]
    labels = [0, 1, 1]  # the real anchor has no positive
    got = supcon_loss(torch.tensor(z), torch.tensor(labels), 0.2).item()
    assert got == pytest.approx(_supcon_by_hand(z, labels, 0.2), rel=1e-5)
    assert supcon_loss(torch.tensor(z[:2]), torch.tensor([0, 1])).item() == 0.0


def test_detector_outputs_and_heads():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="test_efficientnet", image_size=32, num_domains=3, num_methods=4, proj_dim=16)
    model = create_detector(cfg)
    out = model(torch.randn(5, 3, 32, 32), grl_coefficient=0.5)
    assert out["logit"].shape == (5,)
    assert out["features"].shape == (5, model.num_features)
    assert out["proj"].shape == (5, 16)
    assert out["domain_logits"].shape == (5, 3)
    assert out["method_logits"].shape == (5, 4)
    # the domain loss pushes the backbone the opposite way from the domain head
    model.zero_grad()
    out = model(torch.randn(5, 3, 32, 32), grl_coefficient=1.0)
    out["domain_logits"].sum().backward()
    assert model.domain_head[0].weight.grad.abs().sum() > 0
    assert model.classifier[1].weight.grad is None


def test_mc_dropout_varies_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, dropout=0.5)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():  # as inference.py samples it: features once, the head's dropout per pass
        samples = mc_dropout_predict(model.classifier, model.features(x), 8, return_logits=True)
    assert samples.shape == (8, 3) and samples.std(0).sum() > 0
    assert not model.training and torch.equal(model(x)["logit"], model(x)["logit"])


def test_unknown_backbone_names_it():
    with pytest.raises(DeepgenError, match="no_such_net.*timm.list_models"):
        create_detector(ModelConfig(backbone="no_such_net"))


def test_preprocess_resizes_and_normalizes():
    cfg = ModelConfig(backbone="test_efficientnet", image_size=24)
    images = np.full((2, 40, 30, 3), 255, np.uint8)
    x = preprocess(images, cfg)
    assert x.shape == (2, 3, 24, 24) and x.dtype == torch.float32
    expected = (1.0 - 0.485) / 0.229  # ImageNet mean/std of this backbone, red channel
    assert x[0, 0].mean().item() == pytest.approx(expected, rel=1e-5)
