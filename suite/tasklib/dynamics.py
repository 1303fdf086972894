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

Evaluation protocol (methods.md §5.1, GTF ``train_!``)
-----------------------------------------------------
For split ``s`` with reference ``X`` (capped at ``eval_length`` steps if set): generate a free run
of the same length from the first point, ``z_1 = O^{-1}(x_1)``, ``x~_1 = O(z_1)``,
``x~_{t+1} = O(F(z_t))``; then ``dstsp`` (30 bins per dimension for N < 6, GMM estimator otherwise),
``dh`` (power-spectrum Hellinger distance, sigma = 20) and ``pe20`` (20-step prediction error from
every point of ``X``, initialised by observation inversion). All three: lower is better.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from suite.contracts import IOSpec, MetricSpec, Params, RecurrentModel, SequenceData, Task, model_device_dtype
from suite.metrics.dynamics import dstsp, power_spectrum_hellinger, prediction_error

#: capability: the model has ``observation_inverse`` and ``forcing_signals`` (see module docstring)
OBSERVATION_INVERSE = "observation_inverse"

PE_STEPS = 20
DSTSP_BINS = 30
DH_SIGMA = 20.0

DSR_METRICS = (
    MetricSpec("dstsp", "min", "", "state-space divergence of a free run (30 bins for N < 6, GMM otherwise)", low=0.0),
    MetricSpec("dh", "min", "", "power-spectrum Hellinger distance of a free run (smoothing sigma 20)", low=0.0, high=1.0),
    MetricSpec("pe20", "min", "", "20-step-ahead prediction MSE from every point (observation inversion)", low=0.0),
)


# --- the model side of the protocol ---------------------------------------------------------------

def has_observation_inverse(model: RecurrentModel) -> bool:
    return OBSERVATION_INVERSE in getattr(model, "capabilities", ()) and hasattr(model, "observation_inverse")


def state_from_observation(model: RecurrentModel, x: Tensor) -> Tensor:
    """``z = O^{-1}(x)`` for ``x [B, N]``; the model's zero state when it cannot invert."""
    if has_observation_inverse(model):
        return model.observation_inverse(x)
    return model.initial_state(x.shape[0], x.device, x.dtype)


def forcing_signals(model: RecurrentModel, y: Tensor) -> tuple[Tensor, int]:
    """GTF forcing signals ``zhat [..., D]`` for observations ``y [..., N]`` and the forced dims ``k``."""
    if hasattr(model, "forcing_signals"):
        return model.forcing_signals(y)
    raise TypeError(f"model {type(model).__name__} has no forcing_signals (needs capability {OBSERVATION_INVERSE!r})")


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


def dsr_evaluate(model: RecurrentModel, X: np.ndarray, pe_steps: int = PE_STEPS) -> dict[str, float]:
    """``dstsp``, ``dh``, ``pe20`` of ``model`` against the reference trajectory ``X [T, N]``."""
    device, dtype = model_device_dtype(model)
    Xt = torch.tensor(np.asarray(X), dtype=dtype, device=device)
    gen = free_run(model, Xt[0], len(X)).double().cpu().numpy()
    ref = np.asarray(X, dtype=np.float64)
    out = {"dstsp": float("nan"), "dh": float("nan"), "pe20": float("nan")}
    if np.isfinite(gen).any():
        out["dstsp"] = float(dstsp(ref, gen, n_bins=DSTSP_BINS))
        out["dh"] = float(power_spectrum_hellinger(ref, gen, smoothing_sigma=DH_SIGMA))
    if len(X) > pe_steps:
        pe = prediction_error_of(model, Xt, n=pe_steps)
        out["pe20"] = pe if np.isfinite(pe) else float("nan")
    return out


# --- the task side ----------------------------------------------------------------------------------

class DynamicsParams(Params):
    train_length: int | None = Field(
        None, ge=50, description="use only the first steps of the training trajectory (after the validation tail)")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.9, description="tail of the training trajectory held out for validation (0: validate on train)")
    eval_length: int | None = Field(
        None, ge=50, description="cap on the free-run length of val/test evaluation (None: the whole split)")


class DynamicsTask(Task):
    """Base class of the DSR tasks: subclasses implement :meth:`trajectories` (``train``/``test`` arrays)."""

    family = "dynamics"
    Params = DynamicsParams
    metrics = DSR_METRICS
    primary_metric = "dstsp"
    #: shown by ``rnnbench list``; the free-run protocol is in the module docstring
    protocol: ClassVar[str] = "free run from the first point of the split (observation inversion)"

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
        self.input = IOSpec("real", 0)
        self.output = IOSpec("real", n)

    def hints(self) -> dict[str, Any]:
        return {"dynamics": True, "observation_dim": self.output.size}

    def trajectory(self, split: str) -> np.ndarray:
        """The observations of ``split`` as ``[T, N]`` float64 (uncapped)."""
        return self._splits[split]

    def split_lengths(self) -> dict[str, int]:
        return {s: len(v) for s, v in self._splits.items()}

    def split(self, name: str) -> SequenceData:
        X = self._splits[name]
        y = torch.tensor(X, dtype=torch.float32)[None]
        return SequenceData(torch.zeros(1, len(X), 0), y)

    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        X = self._splits[split]
        if self.params.eval_length is not None:
            X = X[: self.params.eval_length]
        return dsr_evaluate(model, X)
