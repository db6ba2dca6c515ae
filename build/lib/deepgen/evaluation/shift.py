"""Domain-shift detection between reference (training) features and new features.

The verdict comes from a kernel two-sample test (unbiased MMD^2, RBF kernel with the
median-heuristic bandwidth, permutation p-value) at a chosen alpha; mean and covariance shifts
are reported beside it as effect sizes. The reference may be a feature array or stored
statistics (``mean``, ``cov``, ``n`` and a small ``sample``, see :func:`reference_stats`), as
checkpoint bundles keep them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from deepgen.errors import DeepgenError


def _features(x, name: str, min_rows: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < min_rows:
        raise DeepgenError(f"{name} must be an (items x features) array with at least {min_rows} rows.")
    if not np.all(np.isfinite(a)):
        raise DeepgenError(f"{name} contains NaN or infinity; drop items whose features failed.")
    return a


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def _mmd2_from_sums(sxx, syy, sxy, n: int, m: int):
    # RBF kernel: k(a, a) = 1, so the diagonal sums are n and m
    return (sxx - n) / (n * (n - 1)) + (syy - m) / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd_test(
    x,
    y,
    n_permutations: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    bandwidth: float | None = None,
) -> dict:
    """Kernel two-sample test: unbiased MMD^2 with an RBF kernel and a permutation p-value.

    k(a, b) = exp(-|a - b|^2 / (2 sigma^2)); sigma is the median pairwise distance of the pooled
    sample unless ``bandwidth`` is given. p = (1 + #{permuted MMD^2 >= observed}) / (1 + n_perm);
    ``shift_detected`` is ``p_value < alpha``. The pooled kernel matrix is computed once and all
    permutations are evaluated as batched matrix products. ``x`` may also be stored reference
    statistics, whose ``sample`` is then used.
    """
    if isinstance(x, Mapping):
        if x.get("sample") is None:
            raise DeepgenError("reference statistics hold no 'sample'; store one (reference_stats) to run the MMD test.")
        x = x["sample"]
    x = _features(x, "x (reference features)")
    y = _features(y, "y (new features)")
    if x.shape[1] != y.shape[1]:
        raise DeepgenError(
            f"reference has {x.shape[1]} features but new data has {y.shape[1]}; use the same model's features."
        )
    if n_permutations < 1:
        raise DeepgenError(f"n_permutations={n_permutations} is invalid; pass at least 1.")
    if not 0 < alpha < 1:
        raise DeepgenError(f"alpha={alpha} is invalid; pass a level in (0, 1).")
    n, m = x.shape[0], y.shape[0]
    z = np.vstack([x, y])
    d2 = _sq_dists(z)
    if bandwidth is None:
        off = d2[np.triu_indices(n + m, k=1)]
        med = float(np.median(off))
        if med <= 0:
            positive = off[off > 0]
            med = float(positive.mean()) if positive.size else 0.0
        sigma = float(np.sqrt(med))
    else:
        sigma = float(bandwidth)
        if sigma <= 0:
            raise DeepgenError(f"bandwidth={bandwidth} is invalid; pass a positive kernel width.")
    out = {"n_x": n, "n_y": m, "bandwidth": sigma, "n_permutations": int(n_permutations),
           "alpha": float(alpha), "seed": int(seed)}
    if sigma == 0:  # every point identical: the two samples cannot differ
        return {**out, "mmd2": 0.0, "p_value": 1.0, "shift_detected": False}

    k = np.exp(-d2 / (2.0 * sigma * sigma))
    row = k.sum(axis=1)
    total = row.sum()

    def stats(ind: np.ndarray) -> np.ndarray:  # ind: (P, n+m) indicator of the x-group
        sxx = np.einsum("pi,pi->p", ind @ k, ind)
        sx_all = ind @ row
        sxy = sx_all - sxx
        syy = total - sxx - 2.0 * sxy
        return _mmd2_from_sums(sxx, syy, sxy, n, m)

    ident = np.zeros((1, n + m))
    ident[0, :n] = 1.0
    observed = float(stats(ident)[0])

    rng = np.random.default_rng(seed)
    count = 0
    chunk = max(1, min(n_permutations, int(2e7 // ((n + m) ** 2)) or 1))
    done = 0
    tol = 1e-12 * max(1.0, abs(observed))
    while done < n_permutations:
        p = min(chunk, n_permutations - done)
        perm = np.argsort(rng.random((p, n + m)), axis=1)[:, :n]
        ind = np.zeros((p, n + m))
        np.put_along_axis(ind, perm, 1.0, axis=1)
        count += int(np.sum(stats(ind) >= observed - tol))
        done += p
    p_value = (1.0 + count) / (1.0 + n_permutations)
    return {**out, "mmd2": observed, "p_value": float(p_value), "shift_detected": bool(p_value < alpha)}


def reference_stats(features, sample_size: int = 256, seed: int = 0) -> dict:
    """Statistics a checkpoint bundle stores for later shift checks: mean, cov, n and a random sample."""
    f = _features(features, "reference features")
    rng = np.random.default_rng(seed)
    idx = rng.choice(f.shape[0], size=min(sample_size, f.shape[0]), replace=False)
    return {"mean": f.mean(axis=0), "cov": np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1]),
            "n": int(f.shape[0]), "sample": f[np.sort(idx)]}


def _moments(a, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    if isinstance(a, Mapping):
        for key in ("mean", "cov", "n"):
            if key not in a:
                raise DeepgenError(f"{name} statistics lack {key!r}; store mean, cov and n (reference_stats).")
        mean = np.asarray(a["mean"], dtype=float).reshape(-1)
        cov = np.asarray(a["cov"], dtype=float).reshape(mean.size, mean.size)
        return mean, cov, int(a["n"])
    f = _features(a, name)
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1]), f.shape[0]


def mean_shift(x, y) -> dict:
    """Distance between feature means: raw L2 and standardized by the pooled per-feature std.

    ``l2_standardized`` is the L2 norm of per-feature effect sizes (mean difference / pooled std);
    ``max_effect`` the largest absolute one. Features constant in both samples count as zero
    effect when their means agree and infinite otherwise.
    """
    mx, cx, n = _moments(x, "x (reference)")
    my, cy, m = _moments(y, "y (new)")
    if mx.size != my.size:
        raise DeepgenError(f"reference has {mx.size} features but new data has {my.size}; use the same model.")
    diff = my - mx
    pooled = np.sqrt(((n - 1) * np.diag(cx) + (m - 1) * np.diag(cy)) / max(n + m - 2, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(pooled > 0, diff / pooled, np.where(diff == 0, 0.0, np.inf))
    return {"l2": float(np.linalg.norm(diff)), "l2_standardized": float(np.linalg.norm(eff)),
            "max_effect": float(np.max(np.abs(eff)))}


def covariance_shift(x, y) -> dict:
    """Frobenius norm of the covariance difference, absolute and relative to the reference's norm."""
    _, cx, _ = _moments(x, "x (reference)")
    _, cy, _ = _moments(y, "y (new)")
    if cx.shape != cy.shape:
        raise DeepgenError(f"reference has {cx.shape[0]} features but new data has {cy.shape[0]}; use the same model.")
    fro = float(np.linalg.norm(cy - cx, ord="fro"))
    ref = float(np.linalg.norm(cx, ord="fro"))
    rel = fro / ref if ref > 0 else (0.0 if fro == 0 else float("inf"))
    return {"frobenius": fro, "relative": rel}


def shift_report(ref, new, alpha: float = 0.05, n_permutations: int = 1000, seed: int = 0) -> dict:
    """Mean shift, covariance shift and the MMD test of ``new`` features against ``ref``.

    ``ref`` is a feature array or stored statistics; the MMD test runs against the array or the
    statistics' ``sample``. Without a sample there is no test: ``p_value`` is NaN and
    ``shift_detected`` None.
    """
    new_f = _features(new, "new features")
    out = {"n_new": int(new_f.shape[0])}
    ms, cs = mean_shift(ref, new_f), covariance_shift(ref, new_f)
    out.update({f"mean_{k}": v for k, v in ms.items()})
    out.update({f"cov_{k}": v for k, v in cs.items()})
    sample = ref.get("sample") if isinstance(ref, Mapping) else ref
    if sample is None:
        out.update({"mmd2": float("nan"), "p_value": float("nan"), "shift_detected": None,
                    "alpha": float(alpha), "n_ref": int(ref["n"])})
        return out
    t = mmd_test(sample, new_f, n_permutations=n_permutations, seed=seed, alpha=alpha)
    out.update({"mmd2": t["mmd2"], "p_value": t["p_value"], "shift_detected": t["shift_detected"],
                "alpha": t["alpha"], "bandwidth": t["bandwidth"], "n_permutations": t["n_permutations"],
                "n_ref": int(ref["n"]) if isinstance(ref, Mapping) else t["n_x"], "n_ref_sample": t["n_x"]})
    return out


def shift_table(reports: Mapping[str, dict] | dict) -> pd.DataFrame:
    """A table for the report: one row per compared set (dict name -> :func:`shift_report` output)."""
    if "mmd2" in reports:  # a single report
        reports = {"new": reports}
    cols = ["n_ref", "n_new", "mmd2", "p_value", "alpha", "shift_detected", "mean_l2",
            "mean_l2_standardized", "mean_max_effect", "cov_frobenius", "cov_relative"]
    rows = [{"set": name, **{c: r.get(c) for c in cols}} for name, r in reports.items()]
    return pd.DataFrame(rows)
