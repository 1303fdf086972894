"""Dynamical systems reconstruction (DSR): data layout, observation protocol, free-run evaluation.

Data layout
-----------
A DSR task is one (or a few) long observed trajectories ``X [T, N]`` of an autonomous system. It is
presented as :class:`~suite.contracts.SequenceData` with **no input channels**:
``x = zeros [1, T, 0]`` (float) and ``y = X [1, T, N]``; ``input = IOSpec("real", 0)``,
``output = IOSpec("real", N)``. The model is autonomous, ``step(h, u)`` gets ``u [B, 0]``. The
targets ``y`` are what DSR methods (``gtf``, ``gtf_deer``) read: they cut windows from ``y`` and use
the observations both as forcing signals and as targets (they never feed observations as inputs).
Generic methods (``bptt``, ``deer``, ...) would fit a free run from the zero state to ``y``.
This is ``inputs: none``, the default; ``inputs: previous`` (below) is the autoregressive layout for
models without observation inversion.

Observation protocol (capability :data:`OBSERVATION_INVERSE`)
-------------------------------------------------------------
A model made for DSR (``shplrnn``) provides

* ``observation_inverse(x [..., N]) -> z [..., D]``: the latent state that explains observation
  ``x`` (GTF's ``init_state``: identity observation -> ``[x; L x]``, affine -> pseudo-inverse);
* ``forcing_signals(x [..., N]) -> (zhat [..., D], k)``: GTF's forcing signals (``apply_inverse``)
  and the number ``k`` of leading latent dimensions they force (``k < D``: partial forcing);
* ``readout(h)``: the observation model.

Models without it are evaluated from their zero initial state (documented fallback: a generic
RNN has no way to invert its readout).

Evaluation protocol (Hess et al., ICML 2023, GTF-shPLRNN ``train_!``)
-------------------------------------------------------------------
For split ``s`` with reference ``X`` (capped at ``eval_length`` steps if set): generate a free run
of the same length from the first point, ``z_1 = O^{-1}(x_1)``, ``x~_1 = O(z_1)``,
``x~_{t+1} = O(F(z_t))``; then ``dstsp`` (30 bins per dimension for N < 6, GMM estimator otherwise),
``dh`` (power-spectrum Hellinger distance, sigma = 20) and ``pe20`` (20-step prediction error from
every point of ``X``, initialised by observation inversion). All three: lower is better.

Autoregressive protocol (``inputs: previous``; models without observation inversion)
------------------------------------------------------------------------------------
For models that cannot invert their readout (the class-1 linear-recurrence SSMs ``lru``, ``mingru``,
``s6``, and generic RNNs), the observations are also the inputs, one step late:
``x_t = X_{t-1}`` for ``t >= 1`` and ``x_0 = X_0`` (the first step has no predecessor; its input is
``X_0`` itself, so the first target is the identity of the input), ``y = X``; ``input =
IOSpec("real", N)``. Training on ``(x, y)`` is teacher forcing: ``scan``, ``bptt``, ``tbptt`` ...
fit one-step-ahead predictions over whole sequences (``scan``: in parallel). The GTF family
(``gtf``, ``gtf_deer``) requires observation inversion and keeps ``inputs: none``.

*Warm-up* of a window ``X[s : t+1]``: from the model's zero state feed the teacher-forced inputs of
that window exactly as ``split`` presents any sequence, ``X_s, X_s, X_{s+1}, ..., X_t``
(``t - s + 2`` steps, the first input duplicated as in ``x_0 = X_0``); the readout of the last step is
the prediction of ``X_{t+1}``. *Closed loop*: from then on, each prediction is fed back as the next
input (``model.encode``, ``model.step``, ``model.readout`` step by step, under ``no_grad``).

* **free run** (``dstsp``, ``dh``): warm-up on the first observation alone (``s = t = 0``), then the
  closed loop until the run has ``T`` points. Its first point is the given ``X_0`` (like the identity
  readout ``O(O^{-1}(x_1)) = x_1`` of the inversion protocol); point ``t >= 1`` is the model's
  prediction fed on its own predictions since ``X_0``. The inputs of the first two steps are exactly
  those of the teacher-forced training sequence (``X_0, X_0``). It is a sequential loop of batch-1
  steps (no fused scan can run it): about 0.1-0.3 ms per step for a small SSM on one CPU thread, so
  ``eval_length`` bounds its cost on long splits.
* **pe20**: from every start point ``t`` with ``t + 20 < T``, warm-up on ``X[max(0, t - w) : t+1]``
  with ``w`` = :data:`PE_WARMUP` = 50 (at most ``w + 1`` true observations, fewer near the start), then
  the closed loop; the 20th prediction is compared with ``X_{t+20}`` (MSE over start points and
  dimensions, as ``pe20`` above). Start points are every :data:`PE_STRIDE` = 5th, ``t = 0, 5, 10, ...``
  (deterministic): each start costs ``w + 21`` model steps instead of 20, and neighbouring starts (one
  sample, 0.01 time units for the Lorenz tasks, apart) are strongly correlated, so the subsample keeps the cost near that of the inversion
  protocol's ``pe20`` while barely changing the estimate. All start points of a chunk run as one batch
  (rows with a shorter warm-up hold the zero state until their window begins), so the cost is
  ``w + 21`` batched steps per chunk of :data:`PE_BATCH` start points, not a loop over start points.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer
from torch import Tensor

from suite.contracts import (
    IOSpec,
    MetricSpec,
    Params,
    RecurrentModel,
    SequenceData,
    Task,
    model_device_dtype,
    state_from_observation,
)
from suite.metrics.dynamics import dstsp, power_spectrum_hellinger, prediction_error

PE_STEPS = 20
DSTSP_BINS = 30
DH_SIGMA = 20.0
#: ``inputs: previous``: teacher-forced warm-up (steps of true observations) before each PE start point
PE_WARMUP = 50
#: ``inputs: previous``: PE start points t = 0, PE_STRIDE, 2 PE_STRIDE, ... (deterministic subsample)
PE_STRIDE = 5
#: start points propagated together as one batch
PE_BATCH = 16384

DSR_METRICS = (
    MetricSpec("dstsp", "min", "", "state-space divergence of a free run (30 bins for N < 6, GMM otherwise)", low=0.0),
    MetricSpec("dh", "min", "", "power-spectrum Hellinger distance of a free run (smoothing sigma 20)", low=0.0, high=1.0),
    MetricSpec("pe20", "min", "", "20-step-ahead prediction MSE from every point (observation inversion)", low=0.0),
)


# --- the model side of the protocol ---------------------------------------------------------------

def no_inputs(model: RecurrentModel, batch: int, length: int, device: Any, dtype: torch.dtype) -> Tensor:
    """Raw inputs of an autonomous run: ``[B, T, in]`` zeros (``in`` = 0 for DSR tasks)."""
    return torch.zeros(batch, length, model.input_spec.size, device=device, dtype=dtype)


@torch.no_grad()
def free_run(model: RecurrentModel, x0: Tensor, length: int) -> Tensor:
    """Generated observations ``[length, N]`` starting from observation ``x0 [N]`` (see module doc)."""
    device, dtype = model_device_dtype(model)
    x0 = x0.to(device=device, dtype=dtype)[None]
    z0 = state_from_observation(model, x0)
    u0 = model.encode(no_inputs(model, 1, 1, device, dtype))[:, 0]
    first = model.readout(z0, u0)  # [1, N]
    if length <= 1:
        return first[:length]
    y, _ = model(no_inputs(model, 1, length - 1, device, dtype), z0)
    return torch.cat([first, y[0]], 0)


def prediction_error_of(model: RecurrentModel, X: Tensor, n: int = PE_STEPS, batch: int = 16384) -> float:
    """PE(n) of ``model`` on observations ``X [T, N]`` (observation inversion, autonomous steps)."""
    device, dtype = model_device_dtype(model)
    X = X.to(device=device, dtype=dtype)
    u_cache: dict[int, Tensor] = {}

    def u_for(b: int) -> Tensor:
        if b not in u_cache:
            u_cache[b] = model.encode(no_inputs(model, b, 1, device, dtype))[:, 0]
        return u_cache[b]

    def step(z: Tensor) -> Tensor:
        return model.step(z, u_for(z.shape[0]))

    return prediction_error(step, X, n=n, encode=lambda x: state_from_observation(model, x),
                            decode=lambda z: model.readout(z, u_for(z.shape[0])), batch=batch)


def _scores(ref: np.ndarray, gen: np.ndarray, pe: Any) -> dict[str, float]:
    """The three metrics from a free run ``gen`` of ``ref`` and a callable giving the PE (or None)."""
    out = {"dstsp": float("nan"), "dh": float("nan"), "pe20": float("nan")}
    if np.isfinite(gen).any():
        out["dstsp"] = float(dstsp(ref, gen, n_bins=DSTSP_BINS))
        out["dh"] = float(power_spectrum_hellinger(ref, gen, smoothing_sigma=DH_SIGMA))
    if pe is not None:
        value = pe()
        out["pe20"] = value if np.isfinite(value) else float("nan")
    return out


def dsr_evaluate(model: RecurrentModel, X: np.ndarray, pe_steps: int = PE_STEPS) -> dict[str, float]:
    """``dstsp``, ``dh``, ``pe20`` of ``model`` against the reference trajectory ``X [T, N]``."""
    device, dtype = model_device_dtype(model)
    Xt = torch.tensor(np.asarray(X), dtype=dtype, device=device)
    gen = free_run(model, Xt[0], len(X)).double().cpu().numpy()
    ref = np.asarray(X, dtype=np.float64)
    return _scores(ref, gen, (lambda: prediction_error_of(model, Xt, n=pe_steps)) if len(X) > pe_steps else None)


# --- the autoregressive protocol (inputs: previous) ------------------------------------------------

def previous_inputs(y: Tensor) -> Tensor:
    """Teacher-forcing inputs of observations ``y [B, T, N]``: ``x_t = y_{t-1}``, ``x_0 = y_0``."""
    return torch.cat([y[:, :1], y[:, :-1]], 1)


def _feed(model: RecurrentModel, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """One autoregressive step: observation input ``x [B, N]`` -> (next state, prediction ``[B, N]``)."""
    u = model.encode(x[:, None])[:, 0]
    h = model.step(h, u)
    return h, model.readout(h, u)


def teacher_forced_warmup(model: RecurrentModel, X: Tensor, t: Tensor, warmup: int) -> tuple[Tensor, Tensor]:
    """Warm-up on the windows ``X[max(0, t - warmup) : t + 1]``, one row per start ``t [B]`` (long).

    From the zero state, row ``b`` is fed ``X_s, X_s, X_{s+1}, ..., X_t`` (``s = max(0, t_b - warmup)``,
    the inputs ``split`` gives a sequence, see the module docstring); all rows run together for
    ``warmup + 2`` batched steps, a row with a shorter window keeping the zero state until its window
    begins. Returns the states and the predictions of ``X_{t+1}``, both batched over ``t``.
    """
    device, dtype = X.device, X.dtype
    t = t.to(device)
    s = (t - warmup).clamp_min(0)
    first = (warmup - t).clamp_min(0)  # the batched step at which each row's window begins
    h = model.initial_state(len(t), device, dtype)
    pred = X.new_zeros(len(t), X.shape[1])
    for j in range(warmup + 2):
        idx = torch.maximum(t - warmup + j - 1, s)  # X_s twice (step `first` and the next), then X_{s+1} ...
        h_new, pred = _feed(model, h, X[idx])
        h = torch.where((j >= first)[:, None], h_new, h)
    return h, pred  # at the last step every row is active: pred predicts X_{t+1}


@torch.no_grad()
def closed_loop_run(model: RecurrentModel, X0: Tensor, length: int) -> Tensor:
    """Closed-loop free run ``[length, N]`` from the first observation ``X0 [N]`` (``inputs: previous``).

    Point 0 is ``X0``; the model is warmed up on ``X0`` (inputs ``X0, X0`` from the zero state) and from
    then on fed its own predictions, one step at a time.
    """
    device, dtype = model_device_dtype(model)
    X0 = X0.to(device=device, dtype=dtype)
    out = X0.new_empty(length, X0.shape[-1])
    if length < 1:
        return out
    out[0] = X0
    if length == 1:
        return out
    h, pred = teacher_forced_warmup(model, X0[None], torch.zeros(1, dtype=torch.long, device=device), 0)
    out[1] = pred[0]
    for t in range(2, length):
        h, pred = _feed(model, h, pred)
        out[t] = pred[0]
    return out


@torch.no_grad()
def closed_loop_prediction_error(model: RecurrentModel, X: Tensor, n: int = PE_STEPS, warmup: int = PE_WARMUP,
                                 stride: int = PE_STRIDE, batch: int = PE_BATCH) -> float:
    """PE(n) with teacher-forced warm-up and closed-loop prediction (``inputs: previous``, module doc).

    Start points ``t = 0, stride, 2 stride, ... < T - n``; for each, warm up on
    ``X[max(0, t - warmup) : t + 1]``, predict ``n`` steps closed-loop, MSE of the ``n``-th prediction
    against ``X_{t+n}`` over start points and dimensions. Vectorised over start points (chunks of ``batch``).
    """
    if n < 1 or stride < 1 or batch < 1 or warmup < 0:
        raise ValueError(f"need n, stride, batch >= 1 and warmup >= 0; got {n}, {stride}, {batch}, {warmup}")
    device, dtype = model_device_dtype(model)
    X = X.to(device=device, dtype=dtype)
    starts = torch.arange(0, len(X) - n, stride, device=device)
    if len(starts) == 0:
        raise ValueError(f"trajectory of length {len(X)} too short for n = {n}")
    sq_sum, count = 0.0, 0
    for chunk in starts.split(batch):
        h, pred = teacher_forced_warmup(model, X, chunk, warmup)
        for _ in range(n - 1):
            h, pred = _feed(model, h, pred)
        diff = pred.double() - X[chunk + n].double()
        sq_sum += float((diff**2).sum())
        count += diff.numel()
    return sq_sum / count


def autoregressive_evaluate(model: RecurrentModel, X: np.ndarray, pe_steps: int = PE_STEPS) -> dict[str, float]:
    """``dstsp``, ``dh``, ``pe20`` of ``model`` under the autoregressive protocol (``inputs: previous``)."""
    device, dtype = model_device_dtype(model)
    Xt = torch.tensor(np.asarray(X), dtype=dtype, device=device)
    gen = closed_loop_run(model, Xt[0], len(X)).double().cpu().numpy()
    ref = np.asarray(X, dtype=np.float64)
    pe = (lambda: closed_loop_prediction_error(model, Xt, n=pe_steps)) if len(X) > pe_steps else None
    return _scores(ref, gen, pe)


# --- the task side ----------------------------------------------------------------------------------

class DynamicsParams(Params):
    train_length: int | None = Field(
        None, ge=50, description="use only the first steps of the training trajectory (after the validation tail)")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.9, description="tail of the training trajectory held out for validation (0: validate on train)")
    eval_length: int | None = Field(
        None, ge=50, description="cap on the free-run length of val/test evaluation (None: the whole split)")
    inputs: Literal["none", "previous"] = Field(
        "none", description="none: autonomous, observation-inversion protocol (GTF family); previous: the previous "
                            "observation as input, teacher forcing and closed-loop evaluation, for models without "
                            "observation inversion")

    @model_serializer(mode="wrap")
    def _omit_default_inputs(self, handler: SerializerFunctionWrapHandler) -> Any:
        # inputs: none is left out of dumps, so the trial keys of sweeps made before the field existed stay as they were
        data = handler(self)
        if isinstance(data, dict) and data.get("inputs") == "none":
            data.pop("inputs")
        return data


class DynamicsTask(Task):
    """Base class of the DSR tasks: subclasses implement :meth:`trajectories` (``train``/``test`` arrays)."""

    family = "dynamics"
    Params = DynamicsParams
    metrics = DSR_METRICS
    primary_metric = "dstsp"
    #: shown by ``rnnbench list``; the free-run protocol is in the module docstring
    protocol: ClassVar[str] = ("free run from the first point of the split (observation inversion); "
                               "inputs: previous -> teacher forcing, closed-loop free run")

    @abstractmethod
    def trajectories(self) -> dict[str, np.ndarray]:
        """``{"train": [T, N], "test": [T', N]}``, already standardised as the benchmark ships them."""

    @cached_property
    def _splits(self) -> dict[str, np.ndarray]:
        raw = self.trajectories()
        train = np.asarray(raw["train"], dtype=np.float64)
        train = train.reshape(len(train), -1)
        test = np.asarray(raw["test"], dtype=np.float64)
        test = test.reshape(len(test), -1)
        p = self.params
        n_val = int(round(len(train) * p.val_fraction))
        if n_val:
            val, train = train[len(train) - n_val:], train[: len(train) - n_val]
        else:
            val = train
        if p.train_length is not None:
            train = train[: p.train_length]
            if not n_val:
                val = train
        return {"train": train, "val": val, "test": test}

    def __init__(self, params: Any, data_dir: Any = None) -> None:
        super().__init__(params, data_dir)
        n = self._splits["train"].shape[1]
        self.input = IOSpec("real", n if self.params.inputs == "previous" else 0)
        self.output = IOSpec("real", n)


    def trajectory(self, split: str) -> np.ndarray:
        """The observations of ``split`` as ``[T, N]`` float64 (uncapped)."""
        return self._splits[split]

    def split_lengths(self) -> dict[str, int]:
        return {s: len(v) for s, v in self._splits.items()}

    def split(self, name: str) -> SequenceData:
        X = self._splits[name]
        y = torch.tensor(X, dtype=torch.float32)[None]
        if self.params.inputs == "previous":
            return SequenceData(previous_inputs(y), y)
        return SequenceData(torch.zeros(1, len(X), 0), y)

    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        X = self._splits[split]
        if self.params.eval_length is not None:
            X = X[: self.params.eval_length]
        if self.params.inputs == "previous":
            return autoregressive_evaluate(model, X)
        return dsr_evaluate(model, X)
