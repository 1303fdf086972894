"""DEER-family training of any STEP model: hidden states by Newton iterations parallel in time.

Each update solves ``h_t = model.step(h_{t-1}, u_t)`` for all t of a batch at once with
:func:`suite.ops.deer_solve` (DEER, Lim et al. 2024; quasi-DEER / ELK / quasi-ELK, Gonzalez et al.
2024), on ``model.step`` made functional with ``torch.func.functional_call``; the outputs are
``model.readout(H, u)`` and the loss is the task's. Gradients come from implicit differentiation
at the fixed point (``backward: implicit``, equal to BPTT's once converged) or from the adjoint
with diagonal Jacobians (``backward: quasi``, approximate). A model with ANALYTIC_JACOBIAN passes
its ``jacobian(h, u)`` to the solver instead of ``vmap(jacrev(step))``; the quasi variants use a
model's closed-form ``jacobian_diagonal(h, u)`` when it has one (lstm, gru, elman do).

Variants: ``dense`` (DEER), ``quasi`` (diagonal Jacobians), ``elk`` (Levenberg-Marquardt step by
Kalman smoothing, ``sigma2`` = 1/lambda) and ``quasi-elk``.

Data: whole training sequences (``seq_len: null``), ``batch_size`` sequences per update, from
the model's zero state; or chunks of ``seq_len`` steps processed in time order with the detached
final state carried to the next chunk (one update per chunk). ``warm_start``: the Newton initial
guess is the trajectory this method solved for the same batch (same sequences, same chunk) the
last time it saw it -- with one batch per epoch (the default: ``batch_size: null`` and a single
training sequence, as in the system-identification tasks) that is the previous step's trajectory.
Cached trajectories are kept up to ``warm_start_cache`` elements in total.

Logged per update through ``ctx.step``: ``newton_iters``, ``residual`` (max_t ||h_t - f(h_{t-1})||),
``converged`` (1/0), ``nan_events`` + ``clip_events`` (``resets``) and ``tokens_per_s``.
A solve that hits ``max_iter`` is not an error: training goes on with the last iterate.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from suite.contracts import STEP, Method, Params, RecurrentModel, SequenceData, TrainData, Trainer
from suite.training import GradientAverage, Timer, batches, chunk_bounds, scored_positions, trainable_parameters, update
from suite.training.newton import FunctionalCell, WarmStartCache, check_solve, deer_forward, solver_options


class DeerParams(Params):
    variant: Literal["dense", "quasi", "elk", "quasi-elk"] = Field("dense", description="Newton variant")
    max_iter: int = Field(100, gt=0, description="Newton / LM iteration cap per solve")
    sigma2: float = Field(1e8, gt=0.0, description="ELK: emission variance 1/lambda (larger: less damping)")
    backward: Literal["implicit", "quasi"] = Field(
        "implicit", description="gradient: implicit (exact at the fixed point) or quasi (diagonal adjoint)")
    warm_start: bool = Field(True, description="start Newton from the last trajectory solved for the same batch")
    warm_start_cache: int = Field(50_000_000, ge=0, description="max cached trajectory elements for warm starts")
    atol: float | None = Field(None, gt=0.0, description="absolute tolerance (None: DEER's default for the dtype)")
    rtol: float | None = Field(None, ge=0.0, description="relative tolerance (None: DEER's default for the dtype)")
    batch_size: int | None = Field(None, gt=0, description="sequences per update (None: all)")
    seq_len: int | None = Field(None, gt=0, description="chunk length with carried state (None: whole sequences)")
    shuffle: bool = Field(False, description="shuffle sequences each epoch (breaks warm-start reuse across batches)")
    scan_backend: Literal["auto", "loop", "chunked", "associative", "accelerated"] = Field(
        "auto", description="linear-scan backend of the Newton steps")
    on_nonconvergence: Literal["warn", "error", "ignore"] = Field(
        "warn", description="a solve that misses its tolerance: count and warn once, end the trial, or count only")


class Deer(Method):
    name = "deer"
    summary = "DEER / quasi-DEER / ELK / quasi-ELK: hidden states by parallel-in-time Newton on model.step"
    Params = DeerParams
    search_space = {"batch_size": {"choice": [4, 16, 64]}, "max_iter": {"choice": [10, 30, 100]}}
    requires = frozenset({STEP})

    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        p, train = self.params, data.train
        opt = ctx.make_optimizer()
        cell, solver = FunctionalCell(model), solver_options(p)
        cache = WarmStartCache(p.warm_start_cache if p.warm_start else 0)
        bounds = chunk_bounds(train.length, p.seq_len)
        for _ in ctx.epoch_range():
            for idx in batches(train.batch, p.batch_size, p.shuffle):
                seqs, h = train.select(idx.to(train.x.device)), None
                for a, b in bounds:
                    part, key = seqs.slice_time(a, b), (tuple(idx.tolist()), a)
                    timer = Timer(part.x)
                    h0 = h if h is not None else model.initial_state(part.batch)
                    init = cache.get(key, torch.Size((part.batch, part.length, model.state_size)))
                    y_hat, H, info = deer_forward(model, part.x, h0, init=init, cell=cell, **solver)
                    loss = data.loss(y_hat, part.y, part.mask)
                    cache.put(key, H)
                    h = H[:, -1].detach()
                    if update(ctx, opt, loss, samples=part.batch * part.length, timer=timer,
                              **check_solve(info, p.on_nonconvergence, ctx)):
                        return

    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[Tensor]:
        """The gradient of the mean loss over ``probe`` as this method computes it (chunks, carried state)."""
        cell, solver = FunctionalCell(model), solver_options(self.params)
        avg = GradientAverage(trainable_parameters(model))
        with torch.enable_grad():
            h = None
            for a, b in chunk_bounds(probe.length, self.params.seq_len):
                part = probe.slice_time(a, b)
                y_hat, H, _ = deer_forward(model, part.x, h, cell=cell, **solver)
                avg.add(data.loss(y_hat, part.y, part.mask), scored_positions(part.mask, part.batch, part.length))
                h = H[:, -1].detach()
        return avg.result()
