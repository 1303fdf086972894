"""Sequential (loop-over-time) oracles.

These are the plain reference implementations that every parallel kernel in
:mod:`suite.ops` is tested against.  They split the sequence along time with
``unbind`` (never ``x[:, t]`` indexing, whose autograd cost grows with T^2)
and collect the states with ``torch.stack``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["sequential_rollout", "linear_recurrence_loop"]


def sequential_rollout(step: Callable[[Tensor, Tensor], Tensor], h0: Tensor, u: Tensor) -> Tensor:
    """Run ``h_t = step(h_{t-1}, u_t)`` for t = 1..T.

    Args:
        step: cell, ``step(h: [B, D], u_t: [B, I]) -> [B, D]``.
        h0: initial state ``[B, D]``.
        u: inputs ``[B, T, I]``.

    Returns:
        All states ``[B, T, D]`` (h0 excluded).  Differentiable (BPTT).
    """
    h = h0
    states = []
    for u_t in u.unbind(1):
        h = step(h, u_t)
        states.append(h)
    return torch.stack(states, 1)


def linear_recurrence_loop(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """Loop oracle for ``h_t = a_t * h_{t-1} + b_t`` (diagonal) or ``A_t @ h_{t-1} + b_t`` (dense).

    Args:
        a: ``[B, T, D]`` (diagonal, same shape as ``b``) or ``[B, T, D, D]`` (dense).
        b: ``[B, T, D]``.
        h0: optional initial state ``[B, D]`` (zero when omitted).

    Returns:
        ``h`` of shape ``[B, T, D]``; differentiable through autograd.
    """
    dense = a.dim() == b.dim() + 1
    if h0 is None:
        h = torch.zeros_like(b[:, 0])
    else:
        h = h0
    states = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        if dense:
            h = torch.matmul(a_t, h.unsqueeze(-1)).squeeze(-1) + b_t
        else:
            h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, 1)
