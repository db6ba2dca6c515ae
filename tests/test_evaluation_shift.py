"""Domain-shift statistics: MMD permutation test, mean and covariance shift."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deepgen.errors import DeepgenError
from deepgen.evaluation.shift import (
    covariance_shift,
    mean_shift,
    mmd_test,
    reference_stats,
    shift_report,
    shift_table,
)


def _naive_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma**2))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * k(x, y).mean())


def test_mmd2_is_the_unbiased_estimator_with_median_bandwidth():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1.2, size=(25, 4))
    out = mmd_test(x, y, n_permutations=50)
    z = np.vstack([x, y])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(55, 1)]
    assert out["bandwidth"] == pytest.approx(np.median(d), rel=1e-9)
    assert out["mmd2"] == pytest.approx(_naive_mmd2(x, y, np.median(d)), abs=1e-12)
    # the permutation p-value, recomputed naively with the same permutations
    rng2 = np.random.default_rng(0)
    perms = np.argsort(rng2.random((50, 55)), axis=1)[:, :30]
    stats = []
    for p in perms:
        mask = np.zeros(55, bool)
        mask[p] = True
        stats.append(_naive_mmd2(z[mask], z[~mask], np.median(d)))
    expected = (1 + np.sum(np.array(stats) >= out["mmd2"] - 1e-12)) / 51
    assert out["p_value"] == pytest.approx(expected)


def test_mmd_null_false_positive_rate_near_alpha():
    rng = np.random.default_rng(1)
    rejections = 0
    for i in range(100):
        x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
        rejections += mmd_test(x, y, n_permutations=200, seed=i, alpha=0.05)["shift_detected"]
    assert 0.01 <= rejections / 100 <= 0.12


def test_mmd_detects_mean_shift():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 8)) + 0.6
    out = mmd_test(x, y, n_permutations=500)
    assert out["p_value"] < 0.01 and out["shift_detected"]
    assert out["p_value"] >= 1 / 501  # never below the smallest attainable permutation p-value


def test_mmd_is_fast_and_deterministic():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 64)), rng.normal(size=(200, 64))
    t0 = time.perf_counter()
    a = mmd_test(x, y, n_permutations=1000, seed=7)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0  # vectorized: well under a second on one core
    assert a == mmd_test(x, y, n_permutations=1000, seed=7)
    assert a["p_value"] > 0.05 and not a["shift_detected"]


def test_mmd_degenerate_and_bad_inputs():
    same = np.ones((5, 3))
    out = mmd_test(same, same.copy(), n_permutations=10)
    assert out["mmd2"] == 0.0 and out["p_value"] == 1.0 and not out["shift_detected"]
    with pytest.raises(DeepgenError, match="features"):
        mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DeepgenError, match="at least 2 rows"):
        mmd_test(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(DeepgenError, match="NaN"):
        mmd_test(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_mean_and_covariance_shift():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3))
    y = x.copy()
    assert mean_shift(x, y)["l2"] == 0.0 and covariance_shift(x, y)["frobenius"] == 0.0
    ms = mean_shift(x, y + np.array([1.0, 0.0, 0.0]))
    assert ms["l2"] == pytest.approx(1.0)
    assert ms["l2_standardized"] == pytest.approx(1.0 / x[:, 0].std(ddof=1), rel=1e-9)
    cs = covariance_shift(x, 2 * x)  # cov(2x) = 4 cov(x): difference 3 cov(x)
    assert cs["relative"] == pytest.approx(3.0)
    assert cs["frobenius"] == pytest.approx(3 * np.linalg.norm(np.cov(x, rowvar=False)))


def test_shift_report_from_reference_statistics():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(2000, 16))
    ref = reference_stats(train, sample_size=150, seed=0)
    assert ref["sample"].shape == (150, 16) and ref["n"] == 2000
    same = shift_report(ref, rng.normal(size=(150, 16)), n_permutations=300)
    moved = shift_report(ref, rng.normal(size=(150, 16)) * 1.5 + 0.3, n_permutations=300)
    assert not same["shift_detected"] and moved["shift_detected"] and moved["p_value"] < 0.01
    assert moved["mean_l2"] > same["mean_l2"] and moved["cov_relative"] > same["cov_relative"]
    # stored statistics give the same moment shifts as the full reference array
    new = rng.normal(size=(100, 16)) + 0.2
    for f in (mean_shift, covariance_shift):
        from_stats, from_array = f(ref, new), f(train, new)
        assert from_stats == pytest.approx(from_array, rel=1e-9)
    assert mmd_test(ref, new, n_permutations=50) == mmd_test(ref["sample"], new, n_permutations=50)
    no_sample = shift_report({k: v for k, v in ref.items() if k != "sample"}, train[:50])
    assert no_sample["shift_detected"] is None and np.isnan(no_sample["p_value"])
    table = shift_table({"tonight": moved, "yesterday": same})
    assert table["set"].tolist() == ["tonight", "yesterday"] and bool(table["shift_detected"].iloc[0])
