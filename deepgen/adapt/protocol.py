"""Leave-one-manipulation-out protocol for adaptation methods, over a features table.

For each manipulation method held out: train a head on the reals and the other methods' fakes,
meta-train (FOMAML) on those other methods, then adapt to the held-out method from k labelled
support faces per class and measure AUC on its remaining faces plus held-out reals. The result
is the "AUC vs k" table of the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from deepgen.adapt.align import aligned_head, fit_coral, fit_moment_matching
from deepgen.adapt.fewshot import (
    adapt_head,
    finetune_head,
    make_tasks,
    meta_train_fomaml,
    predict_proba,
)
from deepgen.errors import DeepgenError


@dataclass(frozen=True)
class AdaptSettings:
    """Steps and learning rates of the protocol's source head and adaptation methods."""

    source_steps: int = 300
    source_lr: float = 1e-2
    finetune_steps: int = 50
    finetune_lr: float = 1e-2
    inner_steps: int = 10
    inner_lr: float = 0.5
    outer_lr: float = 1e-3
    meta_iters: int = 100
    meta_k: int = 5
    episodes_per_method: int = 8
    coral_eps: float = 1e-1


# name -> adapt(source head, source features, target features, settings): no labels, reported at k = 0
UNSUPERVISED_ADAPT: dict[str, Callable] = {
    "none": lambda head, sx, tx, s: head,
    "coral": lambda head, sx, tx, s: aligned_head(fit_coral(sx, tx, eps=s.coral_eps), head),
    "moment": lambda head, sx, tx, s: aligned_head(fit_moment_matching(sx, tx), head),
}
# name -> adapt(start head, k support features, their labels, settings); k = 0 is the start head itself
FEW_SHOT_ADAPT: dict[str, Callable] = {
    "finetune_head": lambda head, xs, ys, s: finetune_head(head, xs, ys, steps=s.finetune_steps, lr=s.finetune_lr),
    "fomaml": lambda head, xs, ys, s: adapt_head(head, xs, ys, inner_steps=s.inner_steps, inner_lr=s.inner_lr),
}
ADAPT_METHODS = (*UNSUPERVISED_ADAPT, *FEW_SHOT_ADAPT)
UNSUPERVISED = tuple(UNSUPERVISED_ADAPT)


def linear_head(dim: int) -> nn.Module:
    """Default head for the protocol: one linear layer to a logit."""
    return nn.Linear(dim, 1)


def _auc(head: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float(roc_auc_score(y, predict_proba(head, x)))


def leave_one_manipulation_out(
    features: Any,
    labels: Any,
    methods: Any,
    ks: Sequence[int] = (0, 1, 5, 20),
    adapt_methods: Sequence[str] = ADAPT_METHODS,
    seed: int = 0,
    repeats: int = 1,
    make_head: Callable[[int], nn.Module] = linear_head,
    settings: AdaptSettings | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """AUC on each held-out manipulation for each adaptation method and support size k.

    Returns one row per (method, k, held_out) with ``auc`` (mean over ``repeats`` seeded draws),
    ``auc_std`` and ``n_eval``. ``none``/``coral``/``moment`` use no labels and appear at k = 0
    only; ``finetune_head`` at k = 0 is the source head, ``fomaml`` at k = 0 the meta-init.
    Reals are split in half per draw: one half trains the source head, the other is the held-out
    domain's reals (k of them support, the rest evaluation), so no real face is seen twice.
    The evaluation set is fixed per draw (the support pool holds max(ks) per class), so AUCs are
    comparable across k. FOMAML meta-trains from the source head; its inner-loop defaults were
    picked on synthetic Gaussian features and may need rescaling for other feature scales.
    ``settings`` (or keyword ``overrides`` of its fields) sets steps and learning rates.
    """
    known = {f.name for f in fields(AdaptSettings)}
    if set(overrides) - known:
        raise DeepgenError(f"unknown protocol setting(s) {sorted(set(overrides) - known)}; use {', '.join(sorted(known))}.")
    st = replace(settings or AdaptSettings(), **overrides)
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels).astype(int)
    m = np.asarray(methods).astype(str)
    if x.ndim != 2 or not (len(x) == len(y) == len(m)):
        raise DeepgenError(
            "features must be (N, d) with one label and one method per row; pass "
            "columns of one features table."
        )
    unknown = set(adapt_methods) - set(ADAPT_METHODS)
    if unknown:
        raise DeepgenError(
            f"unknown adaptation methods {sorted(unknown)}; use some of {', '.join(ADAPT_METHODS)}."
        )
    fake_methods = sorted(set(m[y == 1].tolist()))
    if len(fake_methods) < 2:
        raise DeepgenError(
            f"leave-one-manipulation-out needs >= 2 manipulation methods, found "
            f"{fake_methods}; add faces of another method."
        )
    max_k = max(ks)
    reals = np.flatnonzero(y == 0)
    results: dict[tuple[str, int, str], list[float]] = {}
    n_eval: dict[tuple[str, int, str], int] = {}
    for h, held in enumerate(fake_methods):
        held_fakes = np.flatnonzero((y == 1) & (m == held))
        if len(held_fakes) < max_k + 2 or len(reals) // 2 < max_k + 2:
            raise DeepgenError(
                f"held-out method {held!r} has {len(held_fakes)} fakes and {len(reals) // 2} "
                f"held-out reals, fewer than k={max_k} support plus 2 to evaluate; lower k or add faces."
            )
        for r in range(repeats):
            rng = np.random.default_rng([seed, h, r])
            head_seed = int(rng.integers(2**31))
            perm_reals = rng.permutation(reals)
            src_reals, tgt_reals = perm_reals[: len(reals) // 2], perm_reals[len(reals) // 2 :]
            tgt_fakes = rng.permutation(held_fakes)
            src = np.concatenate([src_reals, np.flatnonzero((y == 1) & (m != held))])
            eval_idx = np.concatenate([tgt_fakes[max_k:], tgt_reals[max_k:]])
            target_all = np.concatenate([tgt_fakes, tgt_reals])
            xe, ye = x[eval_idx], y[eval_idx]

            with torch.random.fork_rng(devices=[]):  # seeded init, global torch RNG untouched
                torch.manual_seed(head_seed)
                init = make_head(x.shape[1])
            source_head = finetune_head(init, x[src], y[src], steps=st.source_steps, lr=st.source_lr)
            scores: dict[tuple[str, int], float] = {}
            for name, adapt in UNSUPERVISED_ADAPT.items():
                if name in adapt_methods:
                    scores[name, 0] = _auc(adapt(source_head, x[src], x[target_all], st), xe, ye)
            starts = {"finetune_head": source_head}
            if "fomaml" in adapt_methods:
                tasks = make_tasks(x[src], y[src], m[src], st.meta_k, rng, episodes_per_method=st.episodes_per_method)
                starts["fomaml"] = meta_train_fomaml(source_head, tasks, inner_steps=st.inner_steps,
                                                     inner_lr=st.inner_lr, outer_lr=st.outer_lr,
                                                     meta_iters=st.meta_iters, seed=int(rng.integers(2**31)))
            for k in ks:
                support = np.concatenate([tgt_fakes[:k], tgt_reals[:k]])
                for name, adapt in FEW_SHOT_ADAPT.items():
                    if name in adapt_methods:
                        head = starts[name] if k == 0 else adapt(starts[name], x[support], y[support], st)
                        scores[name, k] = _auc(head, xe, ye)
            for (method, k), auc in scores.items():
                results.setdefault((method, k, held), []).append(auc)
                n_eval[method, k, held] = len(eval_idx)
    rows = [
        {
            "method": method,
            "k": k,
            "held_out": held,
            "auc": float(np.mean(aucs)),
            "auc_std": float(np.std(aucs)),
            "n_eval": n_eval[method, k, held],
            "repeats": len(aucs),
        }
        for (method, k, held), aucs in results.items()
    ]
    order = {name: i for i, name in enumerate(ADAPT_METHODS)}
    table = pd.DataFrame(rows)
    table = table.sort_values(
        ["method", "k", "held_out"], key=lambda s: s.map(order) if s.name == "method" else s
    )
    return table.reset_index(drop=True)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean AUC over held-out methods, methods as rows and k as columns (the report's table)."""
    pivot = table.pivot_table(index="method", columns="k", values="auc", aggfunc="mean")
    order = [name for name in ADAPT_METHODS if name in pivot.index]
    return pivot.loc[order]
