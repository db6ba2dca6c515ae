"""Supervised contrastive loss (Khosla et al. 2020) over real vs fake classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon "L_out": mean over anchors with positives of -mean_p log softmax(z_a.z_p / t).

    ``features`` (N, D) are L2-normalized here; ``labels`` (N,) are the classes (0 real, 1 fake),
    so every fake is a positive of every other fake whatever its manipulation method.
    Anchors without a positive are skipped; returns 0 when no anchor has one.
    """
    z = F.normalize(features.float(), dim=1)
    labels = labels.view(-1)
    n = z.shape[0]
    sim = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has_pos] / n_pos[has_pos]
    return -mean_log_prob_pos.mean()
