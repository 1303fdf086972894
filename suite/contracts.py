"""The three plugin contracts: Task, Model and Method, and what a method may ask of the engine.

A *Task* owns data, splits and the evaluation protocol; a *Model* is a recurrent module with a
single-step function (usable under ``torch.func``) and a fused sequence ``forward``; a *Method*
owns a training procedure, ``train(model, data, ctx)``, where ``ctx`` is a :class:`Trainer`: the
narrow set of services the engine gives a method (optimizer, gradient clipping, counting an update,
logging, the budget). The trial wires them together and does the final evaluation itself, so every
method is measured the same way.

Optional parts are declared as Protocols: :class:`GradientProbe` (a method that can say what gradient it
would use, for the gradient-fidelity diagnostic), :class:`LinearRecurrence`, :class:`AnalyticJacobian` and
:class:`JacobianDiagonal` (models). ``rnnbench check`` tests plugins against all of it.

Plugin classes are discovered by the registry (:mod:`suite.registry`): any subclass of
:class:`Task`, :class:`RecurrentModel` or :class:`Method` with a ``name`` defined in a plugin file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from suite.datafiles import DataFileError  # noqa: F401  (part of the plugin contract: tasks raise it)


class Params(BaseModel):
    """Base class of every plugin's parameter schema. Unknown fields are errors.

    A trial's identity (its key and config id, which ``--resume`` and the suite's reference rows match on)
    hashes its parameters with their defaults filled in. A parameter added to a released plugin must not
    change the identity of trials that do not set it, or every stored row of that plugin would stop matching:
    declare it with ``Field(default, json_schema_extra={"added_in": "<version>"})`` and it leaves the
    identity while it holds its default (:meth:`identity`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def identity(cls, dumped: dict[str, Any]) -> dict[str, Any]:
        """``dumped`` (``model_dump(mode="json")`` of these params) without the fields marked ``added_in``
        that hold their default: the part of the parameters that names a trial."""
        out = dict(dumped)
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra
            if (isinstance(extra, dict) and "added_in" in extra and not f.is_required() and name in out
                    and out[name] == cls._json_default(f)):
                del out[name]
        return out

    @classmethod
    def _json_default(cls, field: Any) -> Any:
        """A field's default as ``model_dump(mode="json")`` writes it."""
        from pydantic import TypeAdapter

        return TypeAdapter(field.annotation).dump_python(field.get_default(call_default_factory=True), mode="json")


class NoParams(Params):
    """Schema of a plugin without parameters."""


# --- capabilities a model declares and a method may require --------------------------------
STEP = "step"  #: ``step(h, u)`` is a pure single-step function usable under torch.func
FUSED_SEQUENCE = "fused_sequence"  #: ``forward`` runs a fused kernel (cuDNN / nn.LSTM) over time
LINEAR_RECURRENCE = "linear_recurrence"  #: ``recurrence_coeffs(u) -> (a, b)``: h_t = a_t*h_{t-1}+b_t
ANALYTIC_JACOBIAN = "analytic_jacobian"  #: ``jacobian(h, u)`` gives d step / d h in closed form
OBSERVATION_INVERSE = "observation_inverse"  #: ``observation_inverse(x)`` and ``forcing_signals(x)`` (DSR, GTF)
#: the capabilities the engine knows (a plugin may declare its own names too)
CAPABILITIES = (STEP, FUSED_SEQUENCE, LINEAR_RECURRENCE, ANALYTIC_JACOBIAN, OBSERVATION_INVERSE)


@dataclass(frozen=True)
class IOSpec:
    """What flows in or out of a model: real channels, or integer tokens from a vocabulary."""

    kind: Literal["real", "tokens"]
    size: int  #: number of real channels, or vocabulary size / number of classes for tokens

    @property
    def is_tokens(self) -> bool:
        return self.kind == "tokens"


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports: its unit and whether lower or higher is better."""

    name: str
    direction: Literal["min", "max"]
    unit: str = ""
    description: str = ""
    low: float | None = None  #: smallest possible value (confidence intervals are clipped to [low, high])
    high: float | None = None  #: largest possible value


@dataclass
class SequenceData:
    """Aligned input/target sequences.

    ``x`` is ``[B, T, in]`` (float) or ``[B, T]`` (long tokens); ``y`` likewise for the outputs.
    ``mask`` (``[B, T]`` bool) marks positions that count in the loss; ``None`` means all.
    """

    x: Tensor
    y: Tensor
    mask: Tensor | None = None

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def length(self) -> int:
        return int(self.x.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SequenceData:
        """Move to ``device``; floating tensors (not tokens) are cast to ``dtype`` if given."""

        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)

        mask = None if self.mask is None else self.mask.to(device)
        return SequenceData(move(self.x), move(self.y), mask)

    def slice_time(self, start: int, stop: int) -> SequenceData:
        mask = None if self.mask is None else self.mask[:, start:stop]
        return SequenceData(self.x[:, start:stop], self.y[:, start:stop], mask)

    def select(self, index: Tensor | slice) -> SequenceData:
        mask = None if self.mask is None else self.mask[index]
        return SequenceData(self.x[index], self.y[index], mask)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in which precision ``model`` computes (from its first parameter)."""
    p = next(model.parameters())
    return p.device, p.dtype


def sequence_loss(output: IOSpec, y_hat: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean training loss over positions: MSE for real outputs, cross-entropy for tokens.

    For real outputs the mean runs over positions and channels, i.e. the loss is normalised by
    (positions x batch x outputs), as ``torch.mean`` does.
    """
    if output.is_tokens:
        per_pos = F.cross_entropy(y_hat.reshape(-1, y_hat.shape[-1]), y.reshape(-1), reduction="none")
        per_pos = per_pos.reshape(y.shape)
    else:
        sq = (y_hat - y).pow(2)
        per_pos = sq[..., 0] if sq.shape[-1] == 1 else sq.mean(dim=-1)  # one output: the same numbers, one op less
    if mask is None:
        return per_pos.mean()
    m = mask.to(per_pos.dtype)
    return (per_pos * m).sum() / m.sum().clamp_min(1.0)


@dataclass
class TrainData:
    """What a method sees of a task: the training split, the loss and the I/O specs. Never test."""

    task: str
    train: SequenceData
    input: IOSpec
    output: IOSpec

    def loss(self, y_hat: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        return sequence_loss(self.output, y_hat, y, mask)


class Task(ABC):
    """A dataset with splits, an evaluation protocol and metrics.

    Subclasses set ``name``, ``summary``, ``metrics`` and ``primary_metric`` and implement
    :meth:`split` and :meth:`evaluate`. ``input`` and ``output`` are set by ``__init__``.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    family: ClassVar[str] = "generic"
    Params: ClassVar[type[Params]] = NoParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    primary_metric: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    input: IOSpec
    output: IOSpec

    def __init__(self, params: Params, data_dir: Path | None = None) -> None:
        self.params = params
        self.data_dir = data_dir

    @abstractmethod
    def split(self, name: str) -> SequenceData:
        """The sequences of split ``name`` (one of :attr:`splits`), as training-ready tensors."""

    @abstractmethod
    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        """Evaluate ``model`` on ``split`` with this task's protocol; keys are metric names."""

    @classmethod
    def data_files(cls, params: Params) -> list[Any]:
        """The :class:`~suite.datafiles.DataFile` entries this task reads (checked before a sweep)."""
        return []

    def train_data(self) -> TrainData:
        return TrainData(self.name, self.split("train"), self.input, self.output)

    def metric(self, name: str) -> MetricSpec:
        for spec in self.metrics:
            if spec.name == name:
                return spec
        raise KeyError(f"task {self.name!r} has no metric {name!r}; it has {[m.name for m in self.metrics]}")


class RecurrentModel(nn.Module):
    """A recurrent sequence model with a flat state ``h: [B, state_size]``.

    Contract: ``encode`` maps raw inputs to real features ``u``; ``step(h, u_t)`` advances one
    step and is a pure function of the module's parameters (so ``torch.func.functional_call``,
    ``jacrev`` and ``vmap`` work on it); ``readout(h, u)`` maps states to outputs;
    ``forward(x, h0)`` runs a whole sequence (fused kernels where available) and returns
    ``(y_hat, h_T)``. ``forward`` and the ``step`` loop give the same numbers.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams
    capabilities: ClassVar[frozenset[str]] = frozenset({STEP})

    state_size: int

    def __init__(self, input: IOSpec, output: IOSpec, params: Params) -> None:
        super().__init__()
        self.input_spec = input
        self.output_spec = output
        self.params = params

    def initial_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        p = next(self.parameters())
        return torch.zeros(batch, self.state_size, device=device or p.device, dtype=dtype or p.dtype)

    def encode(self, x: Tensor) -> Tensor:
        """Raw inputs ``[B, T, in]`` or tokens ``[B, T]`` -> features ``[B, T, I]``."""
        return x

    @abstractmethod
    def step(self, h: Tensor, u: Tensor) -> Tensor:
        """One recurrence step: ``h [B, D], u [B, I] -> h' [B, D]``."""

    @abstractmethod
    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        """States ``[..., D]`` (and features ``[..., I]``) -> outputs ``[..., out]``."""

    def hidden_states(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        """All states ``[B, T, D]`` from the step loop (the sequential oracle)."""
        u = self.encode(x)
        h = self.initial_state(u.shape[0], u.device, u.dtype) if h0 is None else h0
        states = []
        for u_t in u.unbind(1):
            h = self.step(h, u_t)
            states.append(h)
        return torch.stack(states, 1)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Outputs ``[B, T, out]`` and the final state. Default: the step loop."""
        u = self.encode(x)
        hs = self.hidden_states(x, h0)
        return self.readout(hs, u), hs[:, -1]


class Method(ABC):
    """A training procedure. Declares its hyperparameters (``Params``) and the capabilities it
    needs from the model (``requires``). ``train`` must call ``ctx.step`` once per update and stop
    when it returns True; the context evaluates, reports and enforces the budget."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams
    requires: ClassVar[frozenset[str]] = frozenset()
    #: the workload-agnostic search space of the suites' ``tuned`` ruleset: parameter -> space in manifest syntax
    #: (``{uniform: [a, b]}``, ``{loguniform: [a, b]}``, ``{randint: [a, b]}``, ``{choice: [...]}``); None: the
    #: method declares none and cannot enter the ``tuned`` ruleset (``rnnbench check`` says so)
    search_space: ClassVar[dict[str, Any] | None] = None

    def __init__(self, params: Params) -> None:
        self.params = params

    @classmethod
    def not_applicable(cls, input: IOSpec, output: IOSpec) -> str | None:
        """Why this method cannot train on a task with these inputs/outputs (shown as "not applicable"), or None.
        Model capabilities are checked separately against ``requires``."""
        return None

    @abstractmethod
    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        """Train ``model`` in place on ``data.train`` until ``ctx.step(...)`` returns True."""


@runtime_checkable
class Trainer(Protocol):
    """What a method may ask of the engine during ``train`` (the trial's context implements it).

    ``step`` must be called once per parameter update; it returns True when the budget is spent (the
    method then returns). Everything a method reports beyond its loss goes through ``log`` (diagnostics
    at the current step, stored in the curves table) or ``count`` (event totals, stored in the trial row).
    The helpers of :mod:`suite.training` (``update``, windows, streams, ...) are written against it."""

    seed: int  #: the trial's seed (already applied to torch, numpy and random)
    device: Any  #: where the model lives (torch.device)
    dtype: Any  #: the model's floating dtype

    def make_optimizer(self, params: Iterable[nn.Parameter] | None = None, **overrides: Any) -> torch.optim.Optimizer:
        """The manifest's optimizer (``overrides`` replace its fields, e.g. ``lr=``) over ``params`` (default: the model's)."""

    def clip_gradients(self, params: Iterable[nn.Parameter] | None = None, scale: float = 1.0) -> float | None:
        """Clip the gradient norm to ``scale x`` the manifest's ``grad_clip`` if set; the norm, or None."""

    def step(self, loss: Tensor | float, samples: int = 0, **diagnostics: float) -> bool:
        """Count one update (evaluates, reports, enforces the budget); True: stop training."""

    def log(self, **diagnostics: float) -> None:
        """Record diagnostics at the current step."""

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` events of kind ``name`` to the trial row's counters."""

    def epoch_range(self) -> Iterator[int]:
        """``for _ in ctx.epoch_range():`` -- one iteration per pass over the data, until the budget is spent."""

    @property
    def steps(self) -> int:
        """Updates counted so far."""

    @property
    def lr(self) -> float:
        """The manifest's base learning rate."""

    @property
    def done(self) -> bool:
        """The budget is spent."""

    @property
    def budget_fraction(self) -> float:
        """The part of the budget spent so far (0..1; a time budget counts training seconds)."""


@runtime_checkable
class GradientProbe(Protocol):
    """A method that can report the gradient it would use on given sequences (the gradient-fidelity
    diagnostic compares it with full BPTT's): one tensor per trainable parameter, in ``model.parameters()``
    order, averaged over its windows with weights = scored positions; parameters and ``.grad`` untouched."""

    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[Tensor]: ...


@runtime_checkable
class LinearRecurrence(Protocol):
    """A model whose recurrence is linear in its state (capability LINEAR_RECURRENCE):
    ``recurrence_coeffs(u) -> (a, b)`` with ``c_t = a_t * c_{t-1} + b_t``."""

    def recurrence_coeffs(self, u: Tensor) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class AnalyticJacobian(Protocol):
    """Capability ANALYTIC_JACOBIAN: ``jacobian(h, u) -> [N, D, D]``, d step / d h in closed form."""

    def jacobian(self, h: Tensor, u: Tensor) -> Tensor: ...


@runtime_checkable
class JacobianDiagonal(Protocol):
    """Optional: ``jacobian_diagonal(h, u) -> [N, D]``, the diagonal of d step / d h in closed form
    (quasi-DEER uses it instead of the diagonal of a full autograd Jacobian)."""

    def jacobian_diagonal(self, h: Tensor, u: Tensor) -> Tensor: ...


@runtime_checkable
class ObservationInverse(Protocol):
    """Capability OBSERVATION_INVERSE (dynamical-systems reconstruction, GTF): ``observation_inverse(x)``
    maps observations ``[B, N]`` to a latent state ``[B, D]``; ``forcing_signals(y)`` gives GTF's forcing
    signals ``zhat [..., D]`` for observations ``y [..., N]`` and the number ``k`` of forced latent units."""

    def observation_inverse(self, x: Tensor) -> Tensor: ...

    def forcing_signals(self, y: Tensor) -> tuple[Tensor, int]: ...


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


PLUGIN_BASES: dict[str, type] = {"methods": Method, "tasks": Task, "models": RecurrentModel}
