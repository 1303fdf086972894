"""What defines a trial, typed: :class:`TrialSpec` and its frozen sections.

A spec is built by :func:`suite.run.sweep.expand` from a validated manifest. Its sections -- the budget
(:class:`~suite.run.budget.Budget`), the evaluation frequency (:class:`~suite.run.budget.EvalEvery`),
:class:`TrialSelection`, :class:`TrialResources`, :class:`TrialEvaluation` and :class:`TrialDiagnostics` --
are frozen objects the trial code reads by attribute. A spec crosses the Ray boundary as plain data:
:meth:`TrialSpec.to_config` on the driver, :meth:`TrialSpec.from_config` in the worker. That plain data is
what the manifest's sections dump to (``model_dump``), key for key, so a trial's record and its key are the
same as when the spec was a dict. The hyperparameters (``task_params``, ``model_params``, ``method_params``,
``optimizer``) stay mappings: they are points of a search space whose keys belong to the plugins.

How this run executes a trial (paths, shipped plugins, W&B) is :class:`suite.run.runtime.TrialRuntime`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from suite.run.budget import Budget, EvalEvery, Selection
from suite.store.record import TrialRecord


class _Section:
    """A frozen section of a spec: plain data is its fields in order (``to_config``), read back by
    ``from_config``, which names unknown keys instead of dropping them."""

    what: ClassVar[str] = "a section"

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Any:
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"{cls.what}: unknown keys {unknown}; known: {', '.join(known)}")
        return cls(**d)

    def to_config(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class TrialSelection(_Section):
    """How the trial's configuration is scored: a task metric (None: the task's primary one) weighted over splits."""

    what: ClassVar[str] = "selection"
    metric: str | None = None
    split_weights: dict[str, float] = field(default_factory=lambda: {"val": 1.0})

    def rule(self, task: Any) -> Selection:
        """The scoring rule on ``task`` (its metric's direction comes from the task)."""
        metric = self.metric or task.primary_metric
        return Selection(metric, task.metric(metric).direction, dict(self.split_weights))


@dataclass(frozen=True)
class TrialResources(_Section):
    """What a trial runs on and may use (the manifest's ``resources``; its defaults)."""

    what: ClassVar[str] = "resources"
    cpu: float = 1.0
    gpu: float = 0.0
    time_limit_s: float | None = None  #: the trial ends as ``timeout`` past it
    retries: int = 1  #: restarts after a lost worker (used by the driver)
    log_limit_mib: float | None = 16.0  #: the captured output is cut to its head and tail of this size
    device: str = "auto"  #: auto | cpu | cuda
    dtype: str = "float32"  #: float32 | float64


@dataclass(frozen=True)
class TrialEvaluation(_Section):
    """Which parameters the final metrics are measured at: ``final`` or ``best_val``."""

    what: ClassVar[str] = "evaluation"
    checkpoint: str = "final"
    to_disk_after_s: float = 600.0  #: best_val: write the checkpoint once the trial trained this long

    @property
    def best_val(self) -> bool:
        return self.checkpoint == "best_val"


@dataclass(frozen=True)
class TrialDiagnostics(_Section):
    """Optional measurements at every evaluation (the manifest's ``diagnostics``; its defaults)."""

    what: ClassVar[str] = "diagnostics"
    gradient_fidelity: bool = False
    probe_sequences: int = 8
    probe_length: int | None = 512  #: None: whole sequences


#: the typed sections of a spec; given as plain data (a mapping) they are converted when the spec is built
_SECTIONS: dict[str, Any] = {"budget": Budget, "eval_every": EvalEvery, "selection": TrialSelection,
                             "resources": TrialResources, "evaluation": TrialEvaluation,
                             "diagnostics": TrialDiagnostics}


@dataclass(frozen=True)
class TrialSpec:
    """Everything that defines one trial. Sections may be given as plain data (mappings, as in
    :meth:`to_config`); they are typed when the spec is built."""

    experiment: str
    task: str
    task_params: dict[str, Any]
    model: str
    model_params: dict[str, Any]
    method: str
    method_params: dict[str, Any]
    optimizer: dict[str, Any]
    seed: int
    budget: Budget
    eval_every: EvalEvery
    selection: TrialSelection
    resources: TrialResources
    evaluation: TrialEvaluation = field(default_factory=TrialEvaluation)
    diagnostics: TrialDiagnostics = field(default_factory=TrialDiagnostics)
    config_id: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                object.__setattr__(self, name, cls.from_config(dict(value)))

    # --- the Ray boundary --------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """Plain data (mappings, lists, numbers, strings) for Ray: the sections as the manifest dumps them."""
        return {f.name: (getattr(self, f.name).to_config() if f.name in _SECTIONS else _plain(getattr(self, f.name)))
                for f in fields(self)}

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> TrialSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"a trial spec: unknown keys {unknown}")
        return cls(**d)

    # --- views ----------------------------------------------------------------------------------------------
    def new_record(self, run_id: str = "") -> TrialRecord:
        """This trial's record before it runs: identity and parameters from the spec, status ``error``."""
        return TrialRecord(
            experiment=self.experiment, trial_key=self.key, config_id=self.config_id, task=self.task,
            model=self.model, method=self.method, seed=self.seed, task_params=self.task_params,
            model_params=self.model_params, method_params=self.method_params, optimizer=self.optimizer,
            budget=self.budget.to_config(), selection_json=json.dumps(self.selection.to_config(), sort_keys=True),
            run_id=run_id, cpu=float(self.resources.cpu), gpu_fraction=float(self.resources.gpu),
        )

    @property
    def label(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in sorted(self.method_params.items()))
        return f"{self.task}/{self.model}/{self.method}({params})/seed={self.seed}"
