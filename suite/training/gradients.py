"""Gradients without touching ``.grad``: what a method's ``probe_gradient`` hook is built from."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters a gradient list refers to: ``model.parameters()`` that require grad, in order."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_gradients(loss: Tensor, params: Sequence[nn.Parameter]) -> list[Tensor]:
    """``d loss / d params`` without touching ``.grad``; unused parameters get zeros."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def scored_positions(mask: Tensor | None, rows: int, length: int) -> float:
    """How many positions a loss over ``rows x length`` outputs averages over (mask-aware)."""
    return float(mask.sum()) if mask is not None else float(rows * length)


class GradientAverage:
    """Weighted average of per-window gradients: ``add(loss, weight)`` then ``result()``.

    With weights = scored positions, the average of the windows' mean-loss gradients is the
    gradient of the mean over all scored positions (with the method's truncation).
    """

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.total = [torch.zeros_like(p) for p in self.params]
        self.weight = 0.0

    def add(self, loss: Tensor, weight: float) -> None:
        if weight <= 0:
            return
        for acc, g in zip(self.total, parameter_gradients(loss, self.params)):
            acc.add_(g, alpha=weight)
        self.weight += weight

    def result(self) -> list[Tensor]:
        if self.weight == 0:
            return self.total
        return [t / self.weight for t in self.total]
