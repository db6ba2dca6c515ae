"""Ensembles: weighted calibrated logits, non-negative stacking, the self-ensemble identity."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deepgen.errors import DeepgenError
from deepgen.evaluation.ensemble import combine_logits, fit_ensemble_weights


def validation(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = 3.0 * (2 * y - 1) + rng.normal(0, 2.0, n)  # an informative model
    fair = 1.0 * (2 * y - 1) + rng.normal(0, 2.0, n)  # a weaker one
    noise = rng.normal(0, 2.0, n)  # a model that knows nothing
    return y, good, fair, noise


def test_ensemble_of_a_model_with_itself_equals_the_model():
    y, good, _, _ = validation()
    np.testing.assert_array_equal(combine_logits([good, good]), good)
    w = fit_ensemble_weights([good, good], y)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(combine_logits([good, good], w), good, rtol=1e-12, atol=1e-12)
    # with the checkpoint's temperature, it equals the model's calibrated logit
    np.testing.assert_allclose(
        combine_logits([good, good], w, temperatures=[2.5, 2.5]), good / 2.5, rtol=1e-12
    )


def test_combine_is_the_weighted_mean_of_calibrated_logits():
    a, b = np.array([1.0, -2.0, 4.0]), np.array([3.0, 0.0, -1.0])
    np.testing.assert_allclose(combine_logits([a, b], [1.0, 0.0]), a)
    np.testing.assert_allclose(
        combine_logits([a, b], [0.25, 0.75], temperatures=[2.0, 1.0]), 0.25 * a / 2 + 0.75 * b
    )


def test_stacking_weights_follow_model_quality():
    y, good, fair, noise = validation()
    w = fit_ensemble_weights([good, fair, noise], y)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[0] > w[1] > w[2]
    assert w[2] < 0.05
    combined = combine_logits([good, fair, noise], w)
    equal = combine_logits([good, fair, noise])
    assert roc_auc_score(y, combined) > roc_auc_score(y, equal)
    np.testing.assert_allclose(fit_ensemble_weights([good, noise], y, method="equal"), [0.5, 0.5])


def test_stacking_falls_back_to_equal_when_no_model_helps():
    y, good, _, _ = validation()
    w = fit_ensemble_weights(
        [-good, -good], y
    )  # both anti-correlated: no non-negative weight helps
    np.testing.assert_allclose(w, [0.5, 0.5])


def test_ensemble_input_errors():
    y, good, fair, _ = validation()
    with pytest.raises(DeepgenError, match="different lengths"):
        combine_logits([good, fair[:-1]])
    with pytest.raises(DeepgenError, match="one weight per model"):
        combine_logits([good, fair], [1.0])
    with pytest.raises(DeepgenError, match="positive"):
        combine_logits([good, fair], temperatures=[1.0, 0.0])
    with pytest.raises(DeepgenError, match="both classes"):
        fit_ensemble_weights([good, fair], np.zeros_like(y))
    with pytest.raises(DeepgenError, match="unknown ensemble method"):
        fit_ensemble_weights([good, fair], y, method="vote")
    with pytest.raises(DeepgenError, match="NaN"):
        combine_logits([np.array([np.nan, 1.0])])
