"""Generalized teacher forcing (Hess et al., ICML 2023): the forced recurrence, sequential and by DEER, and
the alpha schedule (aGTF). Used by the ``gtf`` and ``gtf_deer`` methods; see their module for the objective.

The alpha schedule counts *updates* (re-estimated every ``every`` updates, decayed per re-estimate), not
samples, so it is the same whatever the window length T.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from suite.contracts import RecurrentModel
from suite.ops import DeerInfo, NewtonNotConverged, deer_solve, gtf_deer_solve
from suite.training.newton import FunctionalCell

# --- the forced recurrence ------------------------------------------------------------------------

def force(z: Tensor, zhat: Tensor, alpha: float, k: int) -> Tensor:
    """``(1 - alpha) z + alpha zhat`` on the first ``k`` units, ``z`` on the others."""
    if k >= z.shape[-1]:
        return (1.0 - alpha) * z + alpha * zhat
    return torch.cat([(1.0 - alpha) * z[..., :k] + alpha * zhat[..., :k], z[..., k:]], -1)


def gtf_sequential(model: RecurrentModel, z0: Tensor, u: Tensor, zhat: Tensor, alpha: float,
                   k: int) -> tuple[Tensor, Tensor]:
    """Predictions ``z_t`` and forced states ``z~_t`` ``[B, T, D]`` by the step loop (BPTT-able)."""
    zf = z0
    preds, forced = [], []
    for u_t, zh_t in zip(u.unbind(1), zhat.unbind(1)):
        z = model.step(zf, u_t)
        zf = force(z, zh_t, alpha, k)
        preds.append(z)
        forced.append(zf)
    return torch.stack(preds, 1), torch.stack(forced, 1)


def gtf_parallel(model: RecurrentModel, z0: Tensor, u: Tensor, zhat: Tensor, alpha: float, k: int,
                 cell: FunctionalCell | None = None, init: Tensor | None = None,
                 **solver: Any) -> tuple[Tensor, Tensor, DeerInfo]:
    """Like :func:`gtf_sequential`, with the forced states from a DEER solve (``solver``: deer_solve options)."""
    cell = cell or FunctionalCell(model)
    B, T, D = zhat.shape
    alpha = float(alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NewtonNotConverged)
        jac_fn = cell.jac_fn if cell.has_jacobian else None
        if k >= D:
            Zf, info = gtf_deer_solve(cell.f, cell.params(), z0, u, alpha, zhat, init=init, jac_fn=jac_fn, **solver)
        else:
            Zf, info = _partial_solve(cell, z0, u, zhat, alpha, k, init, jac_fn, solver)
    hprev = torch.cat([z0.unsqueeze(1), Zf[:, :-1]], 1)
    preds = model.step(hprev.reshape(B * T, D), u.reshape(B * T, -1)).reshape(B, T, D)
    return preds, Zf, info


def _partial_solve(cell: FunctionalCell, z0: Tensor, u: Tensor, zhat: Tensor, alpha: float, k: int,
                   init: Tensor | None, jac_fn: Any, solver: dict[str, Any]) -> tuple[Tensor, DeerInfo]:
    """DEER on the partially forced map ``z -> force(F(z, u_t), zhat_t)`` (inputs ``[u, zhat]``)."""
    n_in = u.shape[-1]

    def f_forced(params: dict[str, Tensor], z: Tensor, v: Tensor) -> Tensor:
        return force(cell.f(params, z, v[..., :n_in]), v[..., n_in:], alpha, k)

    forced_jac = None
    if jac_fn is not None:
        def forced_jac(params: dict[str, Tensor], z: Tensor, v: Tensor) -> Tensor:
            J = jac_fn(params, z, v[..., :n_in])
            scale = torch.ones(z.shape[-1], dtype=J.dtype, device=J.device)
            scale[:k] = 1.0 - alpha
            return J * scale.unsqueeze(-1)

    v = torch.cat([u, zhat.to(u.dtype)], -1)
    return deer_solve(f_forced, cell.params(), z0, v, init=zhat if init is None else init, jac_fn=forced_jac,
                      **solver)


# --- alpha ----------------------------------------------------------------------------------------

def jacobians_at(model: RecurrentModel, z: Tensor, u: Tensor) -> Tensor:
    """``d step / d z`` at states ``z [P, D]`` with inputs ``u [P, I]``: ``[P, D, D]``."""
    if hasattr(model, "jacobian"):
        return model.jacobian(z, u)

    def single(h: Tensor, x: Tensor) -> Tensor:
        return model.step(h.unsqueeze(0), x.unsqueeze(0)).squeeze(0)

    return torch.func.vmap(torch.func.jacrev(single))(z, u)


@torch.no_grad()
def estimate_norm(model: RecurrentModel, zhat: Tensor, u: Tensor, estimator: str, points: int) -> float:
    """Jacobian-norm estimate N^ on forcing signals ``zhat [B, T, D]`` (see module docstring)."""
    if estimator == "jacobian_upper_bound":
        return float(model.norm_upper_bound())
    B, T, D = zhat.shape
    if T > points:
        sel = torch.linspace(0, T - 1, points, device=zhat.device).round().long()
        zhat, u = zhat[:, sel], u[:, sel]
        T = points
    J = jacobians_at(model, zhat.reshape(B * T, D), u.reshape(B * T, -1)).reshape(B, T, D, D)
    if estimator == "arithmetic_mean":
        return float(torch.linalg.matrix_norm(J.mean(1), ord=2).max())
    norms = torch.linalg.matrix_norm(J, ord=2)  # [B, T]
    if estimator == "batch_maximum":
        return float(norms.max())
    # product_upper_bound: geometric mean along each window, max over windows
    return float(torch.exp(torch.log(norms.clamp_min(1e-30)).mean(1)).max())


def optimal_alpha(norm: float) -> float:
    """alpha* = max(0, 1 - 1/N^)."""
    if not math.isfinite(norm) or norm <= 0:
        return 0.0 if norm <= 0 else 1.0
    return max(0.0, 1.0 - 1.0 / norm)


class AlphaSchedule:
    """Constant or adaptive alpha (GTF's annealing: raise at once, decay slowly)."""

    def __init__(self, mode: str, alpha: float, estimator: str, every: int, decay: float, points: int) -> None:
        self.mode, self.alpha, self.estimator = mode, float(alpha), estimator
        self.every, self.decay, self.points = every, decay, points
        self.updates = 0
        self.last_norm: float | None = None

    def update(self, model: RecurrentModel, zhat: Tensor, u: Tensor) -> float | None:
        """Count one update; re-estimate alpha when due. Returns N^ when it was estimated."""
        self.updates += 1
        if self.mode != "adaptive" or self.updates % self.every:
            return None
        norm = estimate_norm(model, zhat, u, self.estimator, self.points)
        a_est = optimal_alpha(norm)
        self.alpha = a_est if a_est > self.alpha else self.decay * self.alpha + (1.0 - self.decay) * a_est
        self.alpha = min(1.0, max(0.0, self.alpha))
        self.last_norm = norm
        return norm
