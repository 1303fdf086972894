"""Generalized Teacher Forcing (GTF, Hess et al. ICML 2023), sequential and parallel in time (GTF-DEER).

Objective (both methods). A training window holds ``L + 1`` consecutive observations
``x_0 .. x_L`` (``L = seq_len``) of the task's targets ``y`` (DSR tasks: the trajectory, no inputs;
see :mod:`suite.tasklib.dynamics`). With forcing signals ``zhat_t`` (the model's
``forcing_signals``: ``[x_t; 0]`` for an identity observation, forcing the first N latent units)::

    z~_0 = O^{-1}(x_0)                                         (observation inversion)
    z_t  = F(z~_{t-1}, u_t)                                    (unforced prediction)
    z~_t = (1 - alpha) z_t + alpha zhat_t   on the forced units, z~_t = z_t on the others
    loss = MSE(O(z_t), x_t) over t = 1..L  (+ l2 * sum of squared weight matrices)

``gtf`` runs the forced recurrence with a Python loop (BPTT through it, d z~_t / d z~_{t-1} =
(1 - alpha) J_t on forced units). ``gtf_deer`` solves the same forced recurrence for all t at once
with :func:`suite.ops.gtf_deer_solve` (DEER on ``G_t(z) = (1 - alpha) F(z) + alpha zhat_t``, Newton
steps as parallel scans, implicit-function gradients = BPTT through the forced recurrence at the
fixed point), then computes every prediction ``z_t = F(z~_{t-1})`` in one batched call. With
partial forcing (latent units beyond the observed ones) the forced map is built explicitly and
solved with :func:`suite.ops.deer_solve` (same iteration; ``gtf_deer_solve`` takes a scalar alpha on
all units). Its fixed point is the sequential ``gtf`` forward (tested).

Windows: ``batch_size`` windows with uniformly random starts per update (GTF's ``sample_batch``);
a ``seq_len`` at least the trajectory length means the whole trajectory, one window. An "epoch" is
``batches_per_epoch`` updates (GTF: 50).

alpha (``alpha_mode``): ``constant`` keeps ``alpha``; ``adaptive`` (aGTF) starts at ``alpha`` and
every ``alpha_every`` updates (k = 5) estimates the Jacobian norm N^ on the batch's forcing
signals and sets alpha* = max(0, 1 - 1/N^); if alpha* > alpha, alpha = alpha*, else
alpha = gamma alpha + (1 - gamma) alpha* (gamma = ``alpha_decay`` = 0.999). Estimators
(``alpha_estimator``): ``product_upper_bound`` (default; per window the geometric mean over t of
the spectral norms ||J(zhat_t)||_2, max over windows), ``batch_maximum``, ``arithmetic_mean``
(||mean_t J_t||_2) and ``jacobian_upper_bound`` (the model's ``norm_upper_bound()``). Long windows
are subsampled to ``alpha_points`` evenly spaced time points for the estimate.

``gtf_deer`` with ``warm_start`` (whole-trajectory training, where every update solves the same
window) starts Newton from the previous update's solution; random windows start from ``zhat``.

Logged: ``alpha`` and ``tokens_per_s`` (predicted steps x windows / wall time of the update) every
update, ``norm_estimate`` when alpha is re-estimated; ``gtf_deer`` also ``newton_iters``,
``residual``, ``converged`` and ``resets`` (NaN/clip events of the Newton iterates).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from suite.context import TrainContext
from suite.contracts import STEP, Method, Params, RecurrentModel, TrainData
from suite.ops import DeerInfo, NewtonNotConverged, deer_solve, gtf_deer_solve
from suite.tasklib.dynamics import OBSERVATION_INVERSE, forcing_signals, state_from_observation
from suite.training.newton import check_solve


def _sibling(name: str) -> Any:
    """Another built-in method module, loaded the way the registry loads it (same module object)."""
    from suite.registry import _import_file

    return _import_file(Path(__file__).with_name(f"{name}.py"))


_deer = _sibling("deer")
FunctionalCell = _deer.FunctionalCell


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


# --- the methods ----------------------------------------------------------------------------------

class GTFParams(Params):
    seq_len: int = Field(200, gt=0, description="predicted steps per window L (>= trajectory: whole trajectory)")
    batch_size: int = Field(16, gt=0, description="windows per update")
    batches_per_epoch: int = Field(50, gt=0, description="updates per epoch")
    alpha_mode: Literal["constant", "adaptive"] = Field("adaptive", description="fixed alpha, or aGTF annealing")
    alpha: float = Field(1.0, ge=0.0, le=1.0, description="the constant alpha, or the initial alpha (adaptive)")
    alpha_estimator: Literal["product_upper_bound", "batch_maximum", "arithmetic_mean", "jacobian_upper_bound"] = Field(
        "product_upper_bound", description="Jacobian-norm estimate behind alpha* = max(0, 1 - 1/N)")
    alpha_every: int = Field(5, gt=0, description="re-estimate alpha every k updates")
    alpha_decay: float = Field(0.999, ge=0.0, le=1.0, description="gamma: alpha <- gamma alpha + (1 - gamma) alpha*")
    alpha_points: int = Field(4096, gt=0, description="time points per window used by the alpha estimate")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty on the weight matrices (parameters with >= 2 dims)")


class GTFDeerParams(GTFParams):
    variant: Literal["dense", "quasi", "elk", "quasi-elk"] = Field("dense", description="Newton variant")
    on_nonconvergence: Literal["warn", "error", "ignore"] = Field(
        "warn", description="a solve that misses its tolerance: count and warn once, end the trial, or count only")
    max_iter: int = Field(100, gt=0, description="Newton iteration cap per solve")
    sigma2: float = Field(1e8, gt=0.0, description="ELK: emission variance 1/lambda")
    backward: Literal["implicit", "quasi"] = Field("implicit", description="implicit (exact) or quasi gradient")
    warm_start: bool = Field(
        True, description="whole-trajectory training: start Newton from the previous update's solution")
    atol: float | None = Field(None, gt=0.0, description="absolute tolerance (None: DEER default)")
    rtol: float | None = Field(None, ge=0.0, description="relative tolerance (None: DEER default)")
    scan_backend: Literal["auto", "loop", "chunked", "associative", "accelerated"] = Field(
        "auto", description="linear-scan backend of the Newton steps")


class _GTFBase(Method):
    requires = frozenset({STEP, OBSERVATION_INVERSE})

    def train(self, model: RecurrentModel, data: TrainData, ctx: TrainContext) -> None:
        p, train = self.params, data.train
        opt = ctx.make_optimizer()
        schedule = AlphaSchedule(p.alpha_mode, p.alpha, p.alpha_estimator, p.alpha_every, p.alpha_decay,
                                 p.alpha_points)
        L = min(p.seq_len, train.length - 1)
        n_starts = train.length - L  # window = L + 1 observations
        whole = n_starts == 1 and train.batch == 1
        offsets = torch.arange(L + 1, device=train.y.device)
        state = self._setup(model)
        weights = [w for w in model.parameters() if w.requires_grad and w.dim() >= 2]
        for _ in ctx.epoch_range():
            for _ in range(p.batches_per_epoch):
                if whole:
                    rows = torch.zeros(1, 1, dtype=torch.long, device=train.y.device)
                    starts = torch.zeros(1, dtype=torch.long, device=train.y.device)
                else:
                    rows = torch.randint(train.batch, (p.batch_size, 1), device=train.y.device)
                    starts = torch.randint(n_starts, (p.batch_size,), device=train.y.device)
                cols = starts[:, None] + offsets
                x_win, y_win = train.x[rows, cols], train.y[rows, cols]
                t0 = time.perf_counter()
                u = model.encode(x_win)[:, 1:]
                z0 = state_from_observation(model, y_win[:, 0])
                zhat, k = forcing_signals(model, y_win[:, 1:])
                norm = schedule.update(model, zhat.detach(), u.detach())
                key = "whole" if whole else None  # random windows never repeat: no warm start
                preds, diag = self._forward(model, z0, u, zhat, schedule.alpha, k, state, key, ctx)
                loss = data.loss(model.readout(preds, u), y_win[:, 1:])
                total = loss + p.l2 * sum(w.pow(2).sum() for w in weights) if p.l2 > 0 else loss
                opt.zero_grad(set_to_none=True)
                total.backward()
                ctx.clip_gradients()
                opt.step()
                if preds.is_cuda:
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - t0
                diag["alpha"] = schedule.alpha
                diag["tokens_per_s"] = y_win.shape[0] * L / max(elapsed, 1e-9)
                if norm is not None:
                    diag["norm_estimate"] = norm
                if ctx.step(loss, samples=y_win.shape[0] * L, **diag):
                    return

    def _setup(self, model: RecurrentModel) -> Any:
        return None

    def _forward(self, model: RecurrentModel, z0: Tensor, u: Tensor, zhat: Tensor, alpha: float, k: int,
                 state: Any, key: Any, ctx: TrainContext) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError


class GTF(_GTFBase):
    name = "gtf"
    summary = "Generalized Teacher Forcing (Hess et al. 2023): BPTT through the alpha-forced recurrence, constant or adaptive alpha"
    Params = GTFParams

    def _forward(self, model, z0, u, zhat, alpha, k, state, key, ctx):
        preds, _ = gtf_sequential(model, z0, u, zhat, alpha, k)
        return preds, {}


class GTFDeer(_GTFBase):
    name = "gtf_deer"
    summary = "GTF-DEER: the GTF forced recurrence solved parallel in time by DEER (gtf_deer_solve), implicit gradients"
    Params = GTFDeerParams

    def _setup(self, model: RecurrentModel) -> Any:
        p = self.params
        solver = _deer.solver_options(p)
        cache = _deer.WarmStartCache(50_000_000 if p.warm_start else 0)
        return FunctionalCell(model), solver, cache

    def _forward(self, model, z0, u, zhat, alpha, k, state, key, ctx):
        cell, solver, cache = state
        init = cache.get(key, zhat.shape) if key is not None else None
        preds, Zf, info = gtf_parallel(model, z0, u, zhat, alpha, k, cell=cell, init=init, **solver)
        if key is not None:
            cache.put(key, Zf)
        return preds, check_solve(info, self.params.on_nonconvergence, ctx)
