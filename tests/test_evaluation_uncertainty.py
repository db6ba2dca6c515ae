"""MC-dropout uncertainty and selective prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from deepgen.errors import DeepgenError
from deepgen.evaluation.uncertainty import (
    abstain_threshold,
    binary_entropy,
    mc_dropout_predict,
    mc_uncertainty,
    selective_prediction,
)


def test_mutual_information_zero_when_passes_agree():
    p = np.array([0.1, 0.5, 0.93, 0.0, 1.0])
    u = mc_uncertainty(np.tile(p, (12, 1)))
    assert np.all(u["mutual_information"] == 0.0) and np.all(u["variance"] == 0.0)
    assert u["predictive_entropy"] == pytest.approx(binary_entropy(p))
    assert u["predictive_entropy"][1] == pytest.approx(np.log(2))
    assert u["predictive_entropy"][3] == 0.0 and u["predictive_entropy"][4] == 0.0


def test_mutual_information_of_disagreeing_passes():
    # half the passes say 0 and half say 1: every pass is certain, the mean is not -> MI = log 2
    s = np.array([[0.0], [1.0]] * 5)
    u = mc_uncertainty(s)
    assert u["mutual_information"][0] == pytest.approx(np.log(2))
    assert u["expected_entropy"][0] == 0.0 and u["variance"][0] == pytest.approx(0.25)
    with pytest.raises(DeepgenError, match="probabilities"):
        mc_uncertainty(np.array([[2.0]]))


def test_selective_prediction_curve():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    unc = rng.random(n)
    # errors concentrate on uncertain items
    wrong = rng.random(n) < unc * 0.8
    p = np.where(wrong, 1 - y, y) * 0.6 + 0.2 + rng.normal(0, 0.05, n)
    curve = selective_prediction(y, p, unc, coverages=[0.25, 0.5, 1.0])
    assert curve["n_kept"].tolist() == [100, 200, 400]
    assert curve["accuracy"].is_monotonic_decreasing
    keep = unc <= np.sort(unc)[199]
    assert curve["accuracy"].iloc[1] == pytest.approx(np.mean((p[keep] >= 0.5) == y[keep]))
    assert curve["auc"].iloc[1] == pytest.approx(roc_auc_score(y[keep], p[keep]))
    assert curve["auc"].iloc[2] == pytest.approx(roc_auc_score(y, p))


def test_selective_prediction_keeps_ties_together():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.2, 0.6])
    curve = selective_prediction(y, p, [0.1, 0.1, 0.5, 0.5], coverages=[0.25])
    assert curve["n_kept"].iloc[0] == 2 and curve["coverage"].iloc[0] == 0.5


def test_abstain_threshold():
    y = np.array([1, 0, 1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.8, 0.7, 0.3, 0.4])  # correct: T T T F F T
    unc = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    out = abstain_threshold(y, p, unc, target_accuracy=0.75)  # acc 1 1 1 .75 .6 .667
    assert out["achievable"] and out["uncertainty_threshold"] == 0.4
    assert out["coverage"] == pytest.approx(4 / 6) and out["accuracy"] == pytest.approx(0.75)
    assert abstain_threshold(y, p, unc, 1.0)["uncertainty_threshold"] == 0.3
    none = abstain_threshold([1, 0], [0.1, 0.9], [0.1, 0.2], 0.9)
    assert not none["achievable"] and np.isnan(none["uncertainty_threshold"]) and none["coverage"] == 0.0


class _Net(torch.nn.Module):
    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(16, 1)
        self.as_dict = as_dict

    def forward(self, x):
        logit = self.head(self.drop(self.body(x)))
        return {"logit": logit, "features": x} if self.as_dict else logit


def test_mc_dropout_predict_enables_only_dropout():
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(8, 6)
    net.train()
    bn = net.body[1]
    bn_mean = bn.running_mean.clone()
    samples = mc_dropout_predict(net, x, passes=10, seed=3)
    assert samples.shape == (10, 8) and np.all((samples > 0) & (samples < 1))
    assert samples.std(axis=0).max() > 0  # dropout active: passes differ
    assert torch.equal(bn.running_mean, bn_mean)  # BatchNorm stayed in eval mode
    assert net.training and net.drop.training and bn.training  # modes restored
    net.eval()
    again = mc_dropout_predict(net, x, passes=10, seed=3)
    assert np.array_equal(samples, again) and not net.training and not net.drop.training
    u = mc_uncertainty(samples)
    assert np.all(u["mutual_information"] > 0)
    # dict output and (N, 1) logits
    dnet = _Net(as_dict=True)
    dnet.load_state_dict(net.state_dict())
    assert np.array_equal(mc_dropout_predict(dnet, x, passes=10, seed=3), samples)


def test_mc_dropout_predict_without_dropout_fails_clearly():
    with pytest.raises(DeepgenError, match="no Dropout"):
        mc_dropout_predict(torch.nn.Linear(3, 1), torch.randn(2, 3), passes=2)
    with pytest.raises(DeepgenError, match="shape"):
        mc_dropout_predict(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout()), torch.randn(2, 3))
