"""The training context a method receives (it implements :class:`suite.contracts.Trainer`).

A method calls ``ctx.step(loss, samples=...)`` after every parameter update. The context counts
steps and samples, ends the trial as *diverged* on a non-finite loss, evaluates on the validation
split at the manifest's fixed frequency (evaluation time is not charged to the budget), reports
through the reporter (``ray.tune.report`` inside Tune) and returns True once the budget is spent.
Method diagnostics (truncation length, Newton iterations, ...) go through ``ctx.log``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from suite.contracts import RecurrentModel, Task, TrainData
from suite.run.budget import Budget, EvalEvery, Progress, Selection
from suite.run.spec import TrialDiagnostics


class TrialStop(Exception):
    """Base of the exceptions that end a trial early with a status."""

    status = "error"


class Diverged(TrialStop):
    status = "diverged"


class TrialTimeout(TrialStop):
    status = "timeout"


Reporter = Callable[[dict[str, Any]], None]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam,
    "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
}


def build_optimizer(params: list[nn.Parameter], spec: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer a manifest's ``optimizer:`` mapping describes."""
    name = spec.get("name", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    kwargs: dict[str, Any] = {"lr": float(spec.get("lr", 1e-3)), "weight_decay": float(spec.get("weight_decay") or 0.0)}
    if name in ("adam", "adamw", "radam"):
        kwargs["betas"] = tuple(spec["betas"]) if spec.get("betas") else (0.9, 0.999)
    else:
        kwargs["momentum"] = float(spec.get("momentum") or 0.0)
    return OPTIMIZERS[name](params, **kwargs)


@dataclass
class TrainContext:
    """Budget, optimizer factory, counters and reporting for one trial (see the module docstring)."""

    task: Task
    model: RecurrentModel
    optimizer_spec: dict[str, Any]
    budget: Budget
    eval_every: EvalEvery
    selection: Selection
    reporter: Reporter
    device: torch.device
    dtype: torch.dtype
    seed: int
    time_limit_s: float | None = None
    method: Any = None  #: the method being trained (for the gradient-fidelity probe)
    train_data: TrainData | None = None  #: its TrainData (for the gradient-fidelity probe)
    diagnostics: TrialDiagnostics = field(default_factory=TrialDiagnostics)
    keep_best: bool = False  #: snapshot the parameters at every new best evaluation (``evaluation: best_val``)
    on_new_best: Callable[[dict[str, Tensor]], None] | None = None  #: e.g. writes the snapshot to disk

    steps: int = 0
    samples: int = 0
    epochs: int = 0
    evaluations: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    best_state: dict[str, Tensor] | None = None
    counters: dict[str, int] = field(default_factory=dict)  #: event counts stored in the trial row (``count``)
    _start: float = field(default_factory=time.perf_counter)
    _created: float = field(default_factory=time.perf_counter)  #: the time limit counts from here
    _stopped: float | None = None
    _eval_time: float = 0.0
    _loss_sum: float = 0.0
    _loss_n: int = 0
    _last_eval: Progress = field(default_factory=lambda: Progress(0, 0, 0.0))
    _diag: list[tuple[int, str, float]] = field(default_factory=list)

    # --- the Trainer services (suite.contracts.Trainer) -----------------------------------------
    def make_optimizer(self, params: Iterable[nn.Parameter] | None = None, **overrides: Any) -> torch.optim.Optimizer:
        """The manifest's optimizer over ``params`` (default: all model parameters)."""
        return build_optimizer(list(self.model.parameters() if params is None else params),
                               {**self.optimizer_spec, **overrides})

    @property
    def lr(self) -> float:
        return float(self.optimizer_spec.get("lr", 1e-3))

    def clip_gradients(self, params: Iterable[nn.Parameter] | None = None, scale: float = 1.0) -> float | None:
        """Clip the gradient norm to ``scale x`` the manifest's ``grad_clip`` (if set); returns the norm.
        ``scale`` lets a method tie the threshold to its update (adaptive TBPTT: 1/K, as the authors)."""
        clip = self.optimizer_spec.get("grad_clip")
        if not clip:
            return None
        params = self.model.parameters() if params is None else params
        return float(torch.nn.utils.clip_grad_norm_(params, float(clip) * float(scale)))

    def step(self, loss: Tensor | float, samples: int = 0, **diagnostics: float) -> bool:
        """Count one parameter update; True when the budget is spent and training must stop."""
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(value):
            raise Diverged(f"non-finite training loss ({value}) at step {self.steps + 1}")
        self.steps += 1
        self.samples += int(samples)
        self._loss_sum += value
        self._loss_n += 1
        for name, v in diagnostics.items():
            self._diag.append((self.steps, name, float(v)))
        self._check_time_limit()
        if self.eval_every.due(self.progress, self._last_eval):
            self._evaluate_and_report()
        return self.done

    def end_epoch(self) -> bool:
        """Count one pass over the training data; True when the budget is spent."""
        self.epochs += 1
        if self.eval_every.due(self.progress, self._last_eval, at_epoch_end=True):
            self._evaluate_and_report()
        return self.done

    def epoch_range(self) -> Iterator[int]:
        """``for epoch in ctx.epoch_range(): ...`` -- yields until the budget is spent, counting epochs."""
        while not self.done:
            yield self.epochs
            if self.end_epoch():
                return

    def log(self, **diagnostics: float) -> None:
        """Record method diagnostics at the current step (reported with the next evaluation)."""
        for name, v in diagnostics.items():
            self._diag.append((self.steps, name, float(v)))

    def count(self, name: str, n: int = 1) -> None:
        """Count events of a kind (e.g. ``nonconverged`` Newton solves); the total lands in the trial row."""
        self.counters[name] = self.counters.get(name, 0) + int(n)

    @property
    def progress(self) -> Progress:
        return Progress(self.steps, self.epochs, self.train_time_s)

    @property
    def train_time_s(self) -> float:
        """Training time so far, evaluation excluded (what a ``time_s`` budget counts)."""
        end = self._stopped if self._stopped is not None else time.perf_counter()
        return end - self._start - self._eval_time

    @property
    def done(self) -> bool:
        return self.budget.done(self.progress)

    @property
    def budget_fraction(self) -> float:
        return self.budget.fraction(self.progress)

    def evaluate(self, split: str) -> dict[str, float]:
        """Evaluate on ``split`` ("val" or "train") with the task's protocol; time not charged."""
        if split == "test":
            raise PermissionError("methods never evaluate the test split; the trial does")
        t0 = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                metrics = self.task.evaluate(self.model, split)
        finally:
            self.model.train(was_training)
            self._eval_time += time.perf_counter() - t0
        return metrics

    # --- the trial's side --------------------------------------------------------------------------
    def start_clock(self) -> None:
        """Start the budget clock (the trial calls this after building and warming up)."""
        self._start, self._stopped, self._eval_time = time.perf_counter(), None, 0.0

    def stop_clock(self) -> None:
        """Freeze the training time (the trial's final evaluation is not training)."""
        if self._stopped is None:
            self._stopped = time.perf_counter()

    def _check_time_limit(self) -> None:
        if self.time_limit_s and time.perf_counter() - self._created > self.time_limit_s:
            raise TrialTimeout(f"trial exceeded its time limit of {self.time_limit_s:g} s at step {self.steps}")

    def _evaluate_and_report(self) -> None:
        self._last_eval = self.progress
        val = self.evaluate("val")
        self.evaluations += 1
        by_split = {"val": val}
        if self.selection.uses_train():
            by_split["train"] = self.evaluate("train")
        score = self.selection.score(by_split)
        if self.diagnostics.gradient_fidelity:
            self._gradient_fidelity()
        if not self.best or self.selection.oriented(score) < self.selection.oriented(self.best["score"]):
            self.best = {"score": score, "step": self.steps, "val": dict(val)}
            if self.keep_best:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                if self.on_new_best is not None:
                    self.on_new_best(self.best_state)
        self.reporter(self.progress_record(by_split, score))

    def _gradient_fidelity(self) -> None:
        """Log grad_cos / grad_rel_err of the method's gradient vs full BPTT on a fixed probe batch."""
        from suite.training.gradient_fidelity import fidelity_diagnostics, probe_batch

        if self.method is None or self.train_data is None:
            return
        t0 = time.perf_counter()
        try:
            if not hasattr(self, "_probe"):
                self._probe = probe_batch(self.train_data.train, int(self.diagnostics.probe_sequences),
                                          self.diagnostics.probe_length)
            fid = fidelity_diagnostics(self.method, self.model, self.train_data, self._probe)
        finally:
            self._eval_time += time.perf_counter() - t0
        if fid:
            self.log(**fid)

    def progress_record(self, by_split: dict[str, dict[str, float]], score: float) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "step": self.steps,
            "samples": self.samples,
            "epoch": self.epochs,
            "train_time_s": self.train_time_s,
            "wall_time_s": time.perf_counter() - self._start,
            "objective": self.selection.oriented(score),
        }
        if self._loss_n:
            rec["train/loss"] = self._loss_sum / self._loss_n
        self._loss_sum, self._loss_n = 0.0, 0
        for split, metrics in by_split.items():
            for name, v in metrics.items():
                rec[f"{split}/{name}"] = float(v)
        rec.update(self.pop_diagnostics())
        return rec

    def pop_diagnostics(self) -> dict[str, Any]:
        """The diagnostics logged since the last report, as record fields (empty when there are none).

        ``diag/NAME`` holds the latest value per name (for live views such as W&B) and ``diag_events``
        every ``(step, name, value)`` event as JSON (for the curves table)."""
        if not self._diag:
            return {}
        rec: dict[str, Any] = {f"diag/{name}": v for _, name, v in self._diag}
        rec["diag_events"] = json.dumps(self._diag)
        self._diag = []
        return rec
