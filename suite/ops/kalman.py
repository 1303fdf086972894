"""Kalman smoother for the ELK (Levenberg-Marquardt) step.

The damped Newton step of ELK is the minimiser of

    sum_t ||s_t - A_t s_{t-1} - b_t||^2 + lam * sum_t ||s_t - y_t||^2,   s_0 = h0 fixed,

which is the posterior mean of the linear-Gaussian state-space model
``s_t = A_t s_{t-1} + b_t + N(0, I)``, ``y_t = s_t + N(0, sigma2 I)`` with
``lam = 1 / sigma2``.  The posterior mean is the Rauch-Tung-Striebel
*smoother* mean (the filter mean is only correct at t = T).

Implementation: sequential in time (``unbind``), vectorised over the batch and,
for the diagonal model, over the state.  ``sigma2 = inf`` gives the undamped
(DEER) step exactly.
"""
from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

__all__ = ["lm_smoother_mean"]


def lm_smoother_mean(A: Tensor, b: Tensor, h0: Tensor, y: Tensor, sigma2: Union[float, Tensor]) -> Tensor:
    """Posterior (RTS smoother) mean of the ELK state-space model = the LM step.

    Args:
        A: transitions, ``[B, T, D, D]`` (dense) or ``[B, T, D]`` (diagonal / quasi-ELK).
        b: offsets ``[B, T, D]``.
        h0: known initial state ``[B, D]``.
        y: pseudo-observations (the current Newton iterate) ``[B, T, D]``.
        sigma2: observation variance (``1 / lambda``); ``float('inf')`` disables damping.

    Returns:
        Smoothed means ``[B, T, D]``.
    """
    dense = A.dim() == b.dim() + 1
    if isinstance(sigma2, Tensor):
        lam = 1.0 / sigma2.to(b.dtype)
    else:
        lam = 0.0 if math.isinf(sigma2) else 1.0 / float(sigma2)
    if dense:
        return _dense(A, b, h0, y, lam)
    return _diag(A, b, h0, y, lam)


def _diag(a: Tensor, b: Tensor, h0: Tensor, y: Tensor, lam) -> Tensor:
    m = h0
    P = torch.zeros_like(h0)
    mps, Pps, ms, Ps = [], [], [], []
    for a_t, b_t, y_t in zip(a.unbind(1), b.unbind(1), y.unbind(1)):
        mp = a_t * m + b_t
        Pp = a_t * a_t * P + 1.0
        K = lam * Pp / (1.0 + lam * Pp)
        m = mp + K * (y_t - mp)
        P = (1.0 - K) * Pp
        mps.append(mp), Pps.append(Pp), ms.append(m), Ps.append(P)
    T = len(ms)
    a_l = a.unbind(1)
    out = [None] * T
    s = ms[-1]
    out[-1] = s
    for t in range(T - 2, -1, -1):
        G = Ps[t] * a_l[t + 1] / Pps[t + 1]
        s = ms[t] + G * (s - mps[t + 1])
        out[t] = s
    return torch.stack(out, 1)


def _dense(A: Tensor, b: Tensor, h0: Tensor, y: Tensor, lam) -> Tensor:
    D = b.shape[-1]
    eye = torch.eye(D, dtype=b.dtype, device=b.device)
    m = h0
    P = torch.zeros(h0.shape + (D,), dtype=b.dtype, device=b.device)
    mps, Pps, ms, Ps = [], [], [], []

    def mv(M: Tensor, v: Tensor) -> Tensor:
        return torch.matmul(M, v.unsqueeze(-1)).squeeze(-1)

    for A_t, b_t, y_t in zip(A.unbind(1), b.unbind(1), y.unbind(1)):
        mp = mv(A_t, m) + b_t
        Pp = A_t @ P @ A_t.mT + eye
        Pp = 0.5 * (Pp + Pp.mT)
        # K = lam Pp (I + lam Pp)^{-1}; both factors symmetric, so K^T = solve(I + lam Pp, lam Pp)
        K = torch.linalg.solve(eye + lam * Pp, lam * Pp).mT
        m = mp + mv(K, y_t - mp)
        P = Pp - K @ Pp
        P = 0.5 * (P + P.mT)
        mps.append(mp), Pps.append(Pp), ms.append(m), Ps.append(P)
    T = len(ms)
    A_l = A.unbind(1)
    out = [None] * T
    s = ms[-1]
    out[-1] = s
    for t in range(T - 2, -1, -1):
        # G = P_t A_{t+1}^T Pp_{t+1}^{-1}  =>  G^T = solve(Pp_{t+1}, A_{t+1} P_t)
        G = torch.linalg.solve(Pps[t + 1], A_l[t + 1] @ Ps[t]).mT
        s = ms[t] + mv(G, s - mps[t + 1])
        out[t] = s
    return torch.stack(out, 1)
