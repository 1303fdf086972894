"""Generalized Teacher Forcing (GTF, Hess et al. ICML 2023), sequential and parallel in time (GTF-DEER).

Objective (both methods). A training window holds ``L + 1`` consecutive observations
``x_0 .. x_L`` (``L = seq_len``) of the task's targets ``y`` (DSR tasks: the trajectory, no inputs;
see :class:`suite.contracts.ObservationInverse`). With forcing signals ``zhat_t`` (the model's
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

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from suite.contracts import (
    OBSERVATION_INVERSE,
    STEP,
    Method,
    Params,
    RecurrentModel,
    TrainData,
    Trainer,
    forcing_signals,
    state_from_observation,
)
from suite.training import Timer, update
from suite.training.forcing import AlphaSchedule, gtf_parallel, gtf_sequential
from suite.training.newton import FunctionalCell, WarmStartCache, check_solve, solver_options

WARM_START_ELEMENTS = 50_000_000  #: trajectory elements kept for the whole-trajectory warm start


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

    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
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
                timer = Timer(y_win)
                u = model.encode(x_win)[:, 1:]
                z0 = state_from_observation(model, y_win[:, 0])
                zhat, k = forcing_signals(model, y_win[:, 1:])
                norm = schedule.update(model, zhat.detach(), u.detach())
                key = "whole" if whole else None  # random windows never repeat: no warm start
                preds, diag = self._forward(model, z0, u, zhat, schedule.alpha, k, state, key, ctx)
                loss = data.loss(model.readout(preds, u), y_win[:, 1:])
                penalty = p.l2 * sum(w.pow(2).sum() for w in weights) if p.l2 > 0 else None
                diag["alpha"] = schedule.alpha
                if norm is not None:
                    diag["norm_estimate"] = norm
                if update(ctx, opt, loss, samples=y_win.shape[0] * L, timer=timer,
                          objective=None if penalty is None else loss + penalty, **diag):
                    return

    def _setup(self, model: RecurrentModel) -> Any:
        return None

    def _forward(self, model: RecurrentModel, z0: Tensor, u: Tensor, zhat: Tensor, alpha: float, k: int,
                 state: Any, key: Any, ctx: Trainer) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError


class GTF(_GTFBase):
    name = "gtf"
    summary = "Generalized Teacher Forcing (Hess et al. 2023): BPTT through the alpha-forced recurrence, constant or adaptive alpha"
    Params = GTFParams
    search_space = {"alpha": {"uniform": [0.05, 0.5]}, "seq_len": {"choice": [100, 200, 1000]},
                    "batch_size": {"choice": [8, 16, 32]}}

    def _forward(self, model, z0, u, zhat, alpha, k, state, key, ctx):
        preds, _ = gtf_sequential(model, z0, u, zhat, alpha, k)
        return preds, {}


class GTFDeer(_GTFBase):
    name = "gtf_deer"
    summary = "GTF-DEER: the GTF forced recurrence solved parallel in time by DEER (gtf_deer_solve), implicit gradients"
    Params = GTFDeerParams
    search_space = {"alpha": {"uniform": [0.05, 0.5]}, "seq_len": {"choice": [100, 200, 1000]},
                    "batch_size": {"choice": [8, 16, 32]}}

    def _setup(self, model: RecurrentModel) -> Any:
        p = self.params
        solver = solver_options(p)
        cache = WarmStartCache(WARM_START_ELEMENTS if p.warm_start else 0)
        return FunctionalCell(model), solver, cache

    def _forward(self, model, z0, u, zhat, alpha, k, state, key, ctx):
        cell, solver, cache = state
        init = cache.get(key, zhat.shape) if key is not None else None
        preds, Zf, info = gtf_parallel(model, z0, u, zhat, alpha, k, cell=cell, init=init, **solver)
        if key is not None:
            cache.put(key, Zf)
        return preds, check_solve(info, self.params.on_nonconvergence, ctx)
