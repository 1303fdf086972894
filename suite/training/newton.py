"""Newton-solve bookkeeping for the DEER-family methods: diagnostics and what a failed solve does.

``on_nonconvergence`` (a parameter of ``deer``, ``gtf_deer``): a Newton / LM solve that stops without
meeting its tolerance leaves the states off the true trajectory, so the gradient is not the method's
gradient. ``warn`` (default) counts it (``nonconverged`` in the trial row and the curves) and says so
once in the trial's log; ``error`` ends the trial as ``error`` at the first one; ``ignore`` only counts.
"""

from __future__ import annotations

import sys
from typing import Literal

from suite.context import TrainContext, TrialStop
from suite.ops import DeerInfo

NonConvergence = Literal["warn", "error", "ignore"]


class NotConverged(TrialStop):
    """A Newton solve did not converge and the method was asked to stop (``on_nonconvergence: error``)."""

    status = "error"


def newton_diagnostics(info: DeerInfo) -> dict[str, float]:
    """The per-update diagnostics of a solve: iterations, residual, converged (1/0), resets (NaN/clip)."""
    return {"newton_iters": float(info.iterations), "residual": float(info.residual),
            "converged": float(info.converged), "resets": float(info.nan_events + info.clip_events)}


def check_solve(info: DeerInfo, policy: NonConvergence, ctx: TrainContext) -> dict[str, float]:
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
