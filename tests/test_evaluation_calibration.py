"""Temperature scaling and calibration errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from deepgen.errors import DeepgenError
from deepgen.evaluation.calibration import (
    apply_temperature,
    brier_score,
    calibration_metrics,
    cross_domain_calibration,
    expected_calibration_error,
    fit_temperature,
    fit_temperatures_by_domain,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
    sigmoid,
)


def _overconfident(n: int, factor: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z); the 'model' reports logits factor * z (over-confident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < sigmoid(z)).astype(int)
    return factor * z, y


@pytest.mark.parametrize("factor", [3.0, 0.5])
def test_fit_temperature_recovers_known_factor(factor):
    logits, y = _overconfident(20000, factor, seed=1)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(factor, rel=0.04)
    # scaling by the fitted T lowers the NLL below the raw one
    assert negative_log_likelihood(y, apply_temperature(logits, t)) < negative_log_likelihood(y, sigmoid(logits))


def test_fit_temperature_edge_cases():
    with pytest.raises(DeepgenError, match="both real and fake"):
        fit_temperature([1.0, 2.0], [1, 1])
    with pytest.raises(DeepgenError, match="no samples"):
        fit_temperature([], [])
    assert fit_temperature([0.0, 0.0], [0, 1]) == 1.0
    # separable data: the optimum is at the lower bound, which is returned
    assert fit_temperature([-1.0, -2.0, 1.0, 3.0], [0, 0, 1, 1], bounds=(0.05, 20)) == pytest.approx(0.05)


def test_fit_temperatures_by_domain():
    la, ya = _overconfident(8000, 3.0, seed=2)
    lb, yb = _overconfident(8000, 1.0, seed=3)
    lc, yc = np.array([2.0, 1.0, 3.0]), np.array([1, 1, 1])
    logits, y = np.r_[la, lb, lc], np.r_[ya, yb, yc]
    dom = np.array(["a"] * la.size + ["b"] * lb.size + ["c"] * 3)
    t = fit_temperatures_by_domain(logits, y, dom)
    assert t["a"] == pytest.approx(3.0, rel=0.06) and t["b"] == pytest.approx(1.0, rel=0.06)
    assert t["c"] == t["__global__"] == pytest.approx(fit_temperature(logits, y))
    assert math.isnan(fit_temperatures_by_domain(logits, y, dom, fallback="nan")["c"])
    with pytest.raises(DeepgenError, match="only one class"):
        fit_temperatures_by_domain(logits, y, dom, fallback="error")


def test_ece_of_calibrated_large_sample_is_near_zero():
    rng = np.random.default_rng(4)
    p = rng.random(200000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, p, strategy="quantile") < 0.01
    # the same scores made over-confident are clearly mis-calibrated
    assert expected_calibration_error(y, sigmoid(4 * np.log(p / (1 - p)))) > 0.1


def test_ece_hand_computed_small_case():
    y = [1, 0, 1, 0, 1]
    p = [0.9, 0.25, 0.65, 0.55, 0.3]
    # top-label confidence .9 .75 .65 .55 .7 ; correct 1 1 1 0 0
    # 5 bins: (.4,.6] {.55: wrong} gap .55 ; (.6,.8] {.75,.65,.7} acc 2/3 conf .7 ; (.8,1] {.9} gap .1
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(0.2 * 0.55 + 0.6 * (0.7 - 2 / 3) + 0.2 * 0.1)
    assert maximum_calibration_error(y, p, n_bins=5) == pytest.approx(0.55)
    # equal mass, 2 bins: {.55,.65,.7} acc 1/3 conf .6333 ; {.75,.9} acc 1 conf .825
    assert expected_calibration_error(y, p, n_bins=2, strategy="quantile") == pytest.approx(
        0.6 * (1.9 / 3 - 1 / 3) + 0.4 * (1 - 0.825)
    )
    curve = reliability_curve(y, p, n_bins=5)
    assert curve["count"].tolist() == [1, 3, 1] and curve["bin"].tolist() == [2, 3, 4]


def test_brier_and_nll_match_sklearn():
    rng = np.random.default_rng(5)
    p = rng.random(500)
    y = rng.integers(0, 2, 500)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert negative_log_likelihood(y, p) == pytest.approx(log_loss(y, p), abs=1e-9)
    m = calibration_metrics(y, p)
    assert set(m) == {"ece", "ece_equal_mass", "mce", "brier", "nll"}
    with pytest.raises(DeepgenError, match=r"\[0, 1\]"):
        brier_score([0, 1], [0.5, 1.5])


def test_cross_domain_calibration_table():
    la, ya = _overconfident(4000, 3.0, seed=6)
    lb, yb = _overconfident(4000, 1.0, seed=7)
    df = pd.DataFrame({"dataset": ["a"] * la.size + ["b"] * lb.size, "label": np.r_[ya, yb],
                       "logit": np.r_[la, lb]})
    t = cross_domain_calibration(df).set_index(["fit_domain", "eval_domain"])
    assert len(t) == 4
    assert t.loc[("a", "a"), "temperature"] == pytest.approx(3.0, rel=0.08)
    assert t.loc[("a", "a"), "ece_after"] < t.loc[("a", "a"), "ece_before"]
    # T fit on the over-confident domain makes the calibrated one under-confident
    assert t.loc[("a", "b"), "ece_after"] > t.loc[("b", "b"), "ece_after"]
    sub = df[df["dataset"] == "b"]
    assert t.loc[("a", "b"), "ece_after"] == pytest.approx(
        expected_calibration_error(sub["label"], apply_temperature(sub["logit"], t.loc[("a", "b"), "temperature"]))
    )
    # scores only: logits are recovered from the probabilities
    t2 = cross_domain_calibration(df.assign(score=sigmoid(df["logit"])).drop(columns=["logit"]))
    assert np.allclose(t2["temperature"], t.reset_index()["temperature"], rtol=1e-4)
