"""Few-shot adaptation of a classifier head to a new manipulation type.

Works on features, not images: ``head`` is any ``nn.Module`` mapping (N, d) features to (N,) or
(N, 1) logits. Two ways to adapt from k labelled faces per class: fine-tune the head (baseline),
or first-order MAML (Finn et al. 2017, FOMAML): meta-train an initialization across manipulation
types so a few SGD steps on a new type's support set suffice. Heads run in eval mode while they
adapt (dropout off), so adaptation is deterministic.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from deepgen.errors import DeepgenError


class Task(NamedTuple):
    """One episode: labelled support set to adapt on, query set to measure the adapted head."""

    support_feats: torch.Tensor
    support_labels: torch.Tensor
    query_feats: torch.Tensor
    query_labels: torch.Tensor


def _tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(
        np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32
    )


def head_logits(
    head: nn.Module, feats: Any, params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """(N,) logits of ``head`` on features, optionally with substituted parameters."""
    x = _tensor(feats)
    out = head(x) if params is None else functional_call(head, params, (x,))
    return out.reshape(x.shape[0], -1)[:, 0] if out.ndim > 1 else out


def head_loss(
    head: nn.Module, feats: Any, labels: Any, params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Binary cross-entropy of the head's logits against labels (1 = fake)."""
    return F.binary_cross_entropy_with_logits(head_logits(head, feats, params), _tensor(labels))


def predict_proba(head: nn.Module, feats: Any) -> np.ndarray:
    """P(fake) for each feature row, as numpy."""
    head.eval()
    with torch.no_grad():
        return torch.sigmoid(head_logits(head, feats)).numpy()


def _check_support(feats: Any, labels: Any) -> None:
    y = np.asarray(labels)
    if len(y) == 0 or len(y) != len(feats):
        raise DeepgenError(
            f"support set has {len(feats)} features and {len(y)} labels; give one label per row."
        )
    if set(np.unique(y).tolist()) - {0, 1}:
        raise DeepgenError("support labels must be 0 (real) or 1 (fake); convert them first.")


def finetune_head(
    head: nn.Module,
    support_feats: Any,
    support_labels: Any,
    steps: int = 50,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
) -> nn.Module:
    """Baseline: a copy of ``head`` trained full-batch with Adam on the support set."""
    _check_support(support_feats, support_labels)
    tuned = copy.deepcopy(head).eval()
    params = [p for p in tuned.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    x, y = _tensor(support_feats), _tensor(support_labels)
    for _ in range(steps):
        opt.zero_grad()
        head_loss(tuned, x, y).backward()
        opt.step()
    return tuned


def _inner_loop(
    head: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float
) -> dict[str, torch.Tensor]:
    """Plain SGD steps from the head's parameters; returns the adapted (leaf) parameters."""
    fast = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in head.named_parameters()
        if p.requires_grad
    }
    for _ in range(steps):
        grads = torch.autograd.grad(head_loss(head, x, y, fast), list(fast.values()))
        fast = {
            n: (w - lr * g).detach().requires_grad_(True) for (n, w), g in zip(fast.items(), grads)
        }
    return fast


def adapt_head(
    meta_head: nn.Module,
    support_feats: Any,
    support_labels: Any,
    inner_steps: int = 10,
    inner_lr: float = 0.1,
) -> nn.Module:
    """Test-time MAML adaptation: a copy of ``meta_head`` after the inner SGD steps on the support."""
    _check_support(support_feats, support_labels)
    adapted = copy.deepcopy(meta_head).eval()
    fast = _inner_loop(
        adapted, _tensor(support_feats), _tensor(support_labels), inner_steps, inner_lr
    )
    with torch.no_grad():
        for n, p in adapted.named_parameters():
            if n in fast:
                p.copy_(fast[n])
    return adapted


def meta_train_fomaml(
    head: nn.Module,
    tasks: Sequence[Task],
    inner_steps: int = 5,
    inner_lr: float = 0.1,
    outer_lr: float = 1e-2,
    meta_iters: int = 100,
    meta_batch: int = 4,
    seed: int = 0,
) -> nn.Module:
    """First-order MAML: a copy of ``head`` whose parameters adapt well in ``inner_steps`` steps.

    Each meta-iteration adapts to ``meta_batch`` sampled tasks on their support sets and moves the
    initialization along the mean query-loss gradient taken at the adapted parameters (Adam).
    """
    if not tasks:
        raise DeepgenError(
            "meta-training got no tasks; build them with make_tasks from a features "
            "table with at least one manipulation method."
        )
    meta = copy.deepcopy(head).eval()
    names = [n for n, p in meta.named_parameters() if p.requires_grad]
    params = dict(meta.named_parameters())
    opt = torch.optim.Adam([params[n] for n in names], lr=outer_lr)
    rng = np.random.default_rng(seed)
    batch = min(meta_batch, len(tasks))
    for _ in range(meta_iters):
        grads = {n: torch.zeros_like(params[n]) for n in names}
        for i in rng.choice(len(tasks), size=batch, replace=False):
            sx, sy, qx, qy = tasks[i]
            fast = _inner_loop(meta, _tensor(sx), _tensor(sy), inner_steps, inner_lr)
            q_grads = torch.autograd.grad(head_loss(meta, qx, qy, fast), list(fast.values()))
            for n, g in zip(fast, q_grads):
                grads[n] += g / batch
        opt.zero_grad()
        for n in names:
            params[n].grad = grads[n]
        opt.step()
    return meta


def make_tasks(
    features: Any,
    labels: Any,
    methods: Any,
    k: int,
    rng: np.random.Generator,
    episodes_per_method: int = 1,
    query_per_class: int | None = None,
) -> list[Task]:
    """Episodes from a features table: each is one manipulation method's fakes vs the reals.

    Support: ``k`` fakes of the method and ``k`` reals; query: the rest of both (at most
    ``query_per_class`` each). Reals are the rows with label 0, whatever their method.
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels).astype(int)
    m = np.asarray(methods).astype(str)
    if not (len(x) == len(y) == len(m)):
        raise DeepgenError(
            f"features ({len(x)}), labels ({len(y)}) and methods ({len(m)}) "
            "must have one row each per face; pass columns of one table."
        )
    reals = np.flatnonzero(y == 0)
    fake_methods = sorted(set(m[y == 1].tolist()))
    tasks: list[Task] = []
    for method in fake_methods:
        fakes = np.flatnonzero((y == 1) & (m == method))
        if len(fakes) <= k or len(reals) <= k:
            raise DeepgenError(
                f"method {method!r} has {len(fakes)} fakes and the table {len(reals)} reals, too few "
                f"for k={k} support plus a query set; lower k or add faces."
            )
        for _ in range(episodes_per_method):
            f, r = rng.permutation(fakes), rng.permutation(reals)
            qf, qr = f[k:], r[k:]
            if query_per_class is not None:
                qf, qr = qf[:query_per_class], qr[:query_per_class]
            s_idx = np.concatenate([f[:k], r[:k]])
            q_idx = np.concatenate([qf, qr])
            tasks.append(
                Task(
                    torch.from_numpy(x[s_idx]),
                    torch.from_numpy(y[s_idx]).float(),
                    torch.from_numpy(x[q_idx]),
                    torch.from_numpy(y[q_idx]).float(),
                )
            )
    return tasks
