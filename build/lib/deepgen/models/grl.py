"""Gradient reversal (Ganin & Lempitsky 2015): identity forward, gradient times -coefficient backward."""

from __future__ import annotations

import math

import torch


class GradientReversal(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``-coefficient``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coefficient = float(coefficient)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        return -ctx.coefficient * grad_output, None


def grad_reverse(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Apply :class:`GradientReversal` with ``coefficient``."""
    return GradientReversal.apply(x, coefficient)


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN schedule 2/(1+exp(-gamma*p)) - 1: 0 at the start of training, towards 1 at the end."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
