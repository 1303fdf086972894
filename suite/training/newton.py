"""DEER-family building blocks: a model as a pure cell for the solver, solver options, warm starts, Newton
diagnostics and what a failed solve does.

:class:`FunctionalCell` makes ``model.step`` a function of the parameters (``torch.func.functional_call``)
for :func:`suite.ops.deer_solve`, with the model's analytic Jacobian or Jacobian diagonal when it has one;
:func:`deer_forward` solves a batch; :class:`WarmStartCache` keeps solved trajectories as initial guesses.

``on_nonconvergence`` (a parameter of ``deer``, ``gtf_deer``): a Newton / LM solve that stops without
meeting its tolerance leaves the states off the true trajectory, so the gradient is not the method's
gradient. ``warn`` (default) counts it (``nonconverged`` in the trial row and the curves) and says so
once in the trial's log; ``error`` ends the trial as ``error`` at the first one; ``ignore`` only counts.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Literal

import torch
from torch import Tensor, nn

from suite.contracts import ANALYTIC_JACOBIAN, RecurrentModel, Trainer
from suite.ops import DeerInfo, NewtonNotConverged, deer_solve

NonConvergence = Literal["warn", "error", "ignore"]


class NotConverged(RuntimeError):
    """A Newton solve did not converge and the method was asked to stop (``on_nonconvergence: error``);
    the trial ends as ``error`` with this message."""


def newton_diagnostics(info: DeerInfo) -> dict[str, float]:
    """The per-update diagnostics of a solve: iterations, residual, converged (1/0), resets (NaN/clip)."""
    return {"newton_iters": float(info.iterations), "residual": float(info.residual),
            "converged": float(info.converged), "resets": float(info.nan_events + info.clip_events)}


def check_solve(info: DeerInfo, policy: NonConvergence, ctx: Trainer) -> dict[str, float]:
    """Apply ``policy`` to one solve; returns its diagnostics (for ``ctx.step``)."""
    ctx.count("nonconverged", 0 if info.converged else 1)
    if not info.converged:
        message = (f"Newton solve did not converge at step {ctx.steps + 1}: {info.iterations} iterations, residual "
                   f"{info.residual:.3g}, {info.nan_events + info.clip_events} NaN/clip resets")
        if policy == "error":
            raise NotConverged(message + "; raise max_iter (or the tolerances), or set on_nonconvergence: warn")
        if policy == "warn" and ctx.counters["nonconverged"] == 1:
            print(f"rnnbench warning: {message}; training goes on with an inexact gradient "
                  "(counted as `nonconverged` in the trial row)", file=sys.stderr)
    return newton_diagnostics(info)


VARIANTS = {  # variant -> (jacobian, damping)
    "dense": ("dense", None),
    "quasi": ("diag", None),
    "elk": ("dense", "elk"),
    "quasi-elk": ("diag", "elk"),
}


def solver_options(p: Any) -> dict[str, Any]:
    """``deer_solve`` keyword arguments of a method's parameters (``variant``, ``sigma2``, ``max_iter``,
    ``atol``, ``rtol``, ``backward``, ``scan_backend``)."""
    jacobian, damping = VARIANTS[p.variant]
    return dict(jacobian=jacobian, damping=damping, sigma2=p.sigma2, max_iter=p.max_iter, atol=p.atol,
                rtol=p.rtol, backward=p.backward, backend=p.scan_backend)


class _Call(nn.Module):
    """``forward(*args) = model.<fn>(*args)``, so ``functional_call`` can swap the model's parameters."""

    def __init__(self, model: nn.Module, fn: str) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: Tensor) -> Tensor:
        return getattr(self.model, self.fn)(*args)


class FunctionalCell:
    """``f(params, h [N, D], u [N, I])`` and (if the model has one) ``jac_fn`` for ``deer_solve``.

    ``params`` maps ``"model.<name>"`` to the model's trainable parameters themselves, so the
    solver's gradients land on them.
    """

    def __init__(self, model: RecurrentModel) -> None:
        self.step_call = _Call(model, "step")
        self.has_jacobian = ANALYTIC_JACOBIAN in model.capabilities and hasattr(model, "jacobian")
        self.jac_call = _Call(model, "jacobian") if self.has_jacobian else None
        self.has_diagonal = callable(getattr(model, "jacobian_diagonal", None))
        self.diag_call = _Call(model, "jacobian_diagonal") if self.has_diagonal else None
        self.model = model

    def params(self) -> dict[str, Tensor]:
        return {f"model.{n}": p for n, p in self.model.named_parameters() if p.requires_grad}

    def f(self, params: dict[str, Tensor], h: Tensor, u: Tensor) -> Tensor:
        return torch.func.functional_call(self.step_call, params, (h, u))

    def jac_fn(self, params: dict[str, Tensor], h: Tensor, u: Tensor) -> Tensor:
        assert self.jac_call is not None
        return torch.func.functional_call(self.jac_call, params, (h, u))

    def diag_fn(self, params: dict[str, Tensor], h: Tensor, u: Tensor) -> Tensor:
        assert self.diag_call is not None
        return torch.func.functional_call(self.diag_call, params, (h, u))

    def solve(self, h0: Tensor, u: Tensor, **kwargs: Any) -> tuple[Tensor, DeerInfo]:
        """``deer_solve`` on this cell (keyword arguments as there); non-convergence is not warned.

        Quasi variants use the model's closed-form ``jacobian_diagonal`` when it has one (O(D) per
        step instead of a full autograd Jacobian); otherwise its analytic ``jacobian``, else autograd."""
        if kwargs.get("jacobian") == "diag" and self.has_diagonal:
            kwargs.setdefault("jac_fn", self.diag_fn)
        kwargs.setdefault("jac_fn", self.jac_fn if self.has_jacobian else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NewtonNotConverged)
            return deer_solve(self.f, self.params(), h0, u, **kwargs)


def deer_forward(model: RecurrentModel, x: Tensor, h0: Tensor | None = None, init: Tensor | None = None,
                 cell: FunctionalCell | None = None, **solver: Any) -> tuple[Tensor, Tensor, DeerInfo]:
    """Outputs ``[B, T, out]``, states ``[B, T, D]`` and solver info for raw inputs ``x``."""
    cell = cell or FunctionalCell(model)
    u = model.encode(x)
    if h0 is None:
        h0 = model.initial_state(u.shape[0], u.device, u.dtype)
    H, info = cell.solve(h0, u, init=init, **solver)
    return model.readout(H, u), H, info


class WarmStartCache:
    """Trajectories keyed by batch identity, up to ``capacity`` elements in total."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.store: dict[Any, Tensor] = {}
        self.size = 0

    def get(self, key: Any, shape: torch.Size) -> Tensor | None:
        H = self.store.get(key)
        return H if H is not None and H.shape == shape else None

    def put(self, key: Any, H: Tensor) -> None:
        old = self.store.pop(key, None)
        if old is not None:
            self.size -= old.numel()
        if self.size + H.numel() <= self.capacity:
            self.store[key] = H.detach()
            self.size += H.numel()
