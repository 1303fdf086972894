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

import time
import warnings
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from suite.context import TrainContext
from suite.contracts import ANALYTIC_JACOBIAN, STEP, Method, Params, RecurrentModel, SequenceData, TrainData
from suite.ops import DeerInfo, NewtonNotConverged, deer_solve
from suite.training.newton import check_solve

VARIANTS = {  # variant -> (jacobian, damping)
    "dense": ("dense", None),
    "quasi": ("diag", None),
    "elk": ("dense", "elk"),
    "quasi-elk": ("diag", "elk"),
}


# --- the model as a pure cell for the solver --------------------------------------------------------

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


def solver_options(p: "DeerParams") -> dict[str, Any]:
    """``deer_solve`` keyword arguments of a parameter set (variant, tolerances, backward, ...)."""
    jacobian, damping = VARIANTS[p.variant]
    return dict(jacobian=jacobian, damping=damping, sigma2=p.sigma2, max_iter=p.max_iter, atol=p.atol,
                rtol=p.rtol, backward=p.backward, backend=p.scan_backend)


def deer_forward(model: RecurrentModel, x: Tensor, h0: Tensor | None = None, init: Tensor | None = None,
                 cell: FunctionalCell | None = None, **solver: Any) -> tuple[Tensor, Tensor, DeerInfo]:
    """Outputs ``[B, T, out]``, states ``[B, T, D]`` and solver info for raw inputs ``x``."""
    cell = cell or FunctionalCell(model)
    u = model.encode(x)
    if h0 is None:
        h0 = model.initial_state(u.shape[0], u.device, u.dtype)
    H, info = cell.solve(h0, u, init=init, **solver)
    return model.readout(H, u), H, info


# --- the method ---------------------------------------------------------------------------------------

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


def chunk_bounds(length: int, seq_len: int | None) -> list[tuple[int, int]]:
    if not seq_len or seq_len >= length:
        return [(0, length)]
    return [(s, min(s + seq_len, length)) for s in range(0, length, seq_len)]


class Deer(Method):
    name = "deer"
    summary = "DEER / quasi-DEER / ELK / quasi-ELK: hidden states by parallel-in-time Newton on model.step"
    Params = DeerParams
    requires = frozenset({STEP})

    def train(self, model: RecurrentModel, data: TrainData, ctx: TrainContext) -> None:
        p, train = self.params, data.train
        opt = ctx.make_optimizer()
        cell = FunctionalCell(model)
        solver = solver_options(p)
        cache = WarmStartCache(p.warm_start_cache if p.warm_start else 0)
        batch = p.batch_size or train.batch
        bounds = chunk_bounds(train.length, p.seq_len)
        for _ in ctx.epoch_range():
            order = torch.randperm(train.batch) if p.shuffle else torch.arange(train.batch)
            for start in range(0, train.batch, batch):
                idx = order[start: start + batch]
                seqs = train.select(idx.to(train.x.device))
                key_rows = tuple(idx.tolist())
                h = None
                for a, b in bounds:
                    part = seqs.slice_time(a, b)
                    key = (key_rows, a)
                    t0 = time.perf_counter()
                    h0 = h if h is not None else model.initial_state(part.batch)
                    init = cache.get(key, torch.Size((part.batch, part.length, model.state_size)))
                    y_hat, H, info = deer_forward(model, part.x, h0, init=init, cell=cell, **solver)
                    loss = data.loss(y_hat, part.y, part.mask)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    ctx.clip_gradients()
                    opt.step()
                    cache.put(key, H)
                    h = H[:, -1].detach()
                    if H.is_cuda:
                        torch.cuda.synchronize()
                    elapsed = time.perf_counter() - t0
                    if ctx.step(loss, samples=part.batch * part.length, **check_solve(info, p.on_nonconvergence, ctx),
                                tokens_per_s=part.batch * part.length / max(elapsed, 1e-9)):
                        return

    # --- gradient-fidelity hook (suite.gradient_fidelity) ----------------------------------------
    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[Tensor]:
        """The gradient of the mean loss over ``probe`` as this method computes it (chunks, carried state)."""
        from suite.gradient_fidelity import GradientAverage, scored_positions, trainable_parameters

        p = self.params
        cell = FunctionalCell(model)
        solver = solver_options(p)
        avg = GradientAverage(trainable_parameters(model))
        with torch.enable_grad():
            h = None
            for a, b in chunk_bounds(probe.length, p.seq_len):
                part = probe.slice_time(a, b)
                y_hat, H, _ = deer_forward(model, part.x, h, cell=cell, **solver)
                avg.add(data.loss(y_hat, part.y, part.mask), scored_positions(part.mask, part.batch, part.length))
                h = H[:, -1].detach()
        return avg.result()


