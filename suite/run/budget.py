"""What a trial may spend, when it is evaluated, and how its configuration is scored: three small objects.

* :class:`Budget` -- exactly one of epochs, updates (``steps``) or seconds of training (``time_s``):
  :meth:`Budget.done` and :meth:`Budget.fraction` of a :class:`Progress`.
* :class:`EvalEvery` -- the evaluation frequency, in epochs, updates or seconds: :meth:`EvalEvery.due`.
* :class:`Selection` -- the selection score: ``sum over splits of weight x metric(split)``
  (:meth:`Selection.score`), oriented so that lower is better (:meth:`Selection.oriented`).

There is one rule for a configuration that failed: its oriented score is ``+inf``
(:data:`FAILED_SCORE`): it is never selected and always ranks last. The manifest's schema
(:mod:`suite.manifest`) validates what users write; these objects are what the trial runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from suite.store.record import FAILED_SCORE, orient  # noqa: F401  (the one failed-score rule lives with the record)


@dataclass(frozen=True)
class Progress:
    """What a trial has done so far: updates, passes over the data, training seconds."""

    steps: int
    epochs: int
    train_time_s: float


_UNITS = {"steps": "steps", "epochs": "epochs", "time_s": "train_time_s", "seconds": "train_time_s"}


def _one(d: dict[str, Any], keys: tuple[str, ...], what: str) -> tuple[str, float]:
    """The one ``(key, amount)`` set in ``d``; the amount as given (an int stays an int, so the plain data of a
    spec, which its record stores, reads back unchanged)."""
    unknown = sorted(set(d) - set(keys))
    given = [(k, d[k]) for k in keys if d.get(k) is not None]
    if len(given) != 1 or unknown:
        raise ValueError(f"{what} needs exactly one of {', '.join(keys)}, got {d}")
    key, amount = given[0]
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"{what}: {key} must be a number, got {amount!r}")
    return key, amount


@dataclass(frozen=True)
class Budget:
    """A trial's budget; also the ``budget`` section of its spec (plain data: ``{kind: amount}``)."""

    kind: Literal["epochs", "steps", "time_s"]
    amount: float

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> Budget:
        return cls(*_one(d, ("epochs", "steps", "time_s"), "a budget"))

    def to_config(self) -> dict[str, Any]:
        return {self.kind: self.amount}

    def spent(self, p: Progress) -> float:
        return float(getattr(p, _UNITS[self.kind]))

    def done(self, p: Progress) -> bool:
        return self.spent(p) >= self.amount

    def fraction(self, p: Progress) -> float:
        return self.spent(p) / self.amount


@dataclass(frozen=True)
class EvalEvery:
    """How often a trial is evaluated; also the ``eval_every`` section of its spec (plain data: ``{kind: amount}``)."""

    kind: Literal["epochs", "steps", "seconds"]
    amount: float

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> EvalEvery:
        return cls(*_one(d, ("epochs", "steps", "seconds"), "eval_every"))

    def to_config(self) -> dict[str, Any]:
        return {self.kind: self.amount}

    def due(self, p: Progress, last: Progress, at_epoch_end: bool = False) -> bool:
        """An evaluation is due: ``amount`` units since the ``last`` one. Epoch frequencies are checked
        at the end of an epoch only (``at_epoch_end``), the others after every update."""
        if (self.kind == "epochs") != at_epoch_end:
            return False
        unit = _UNITS[self.kind]
        return getattr(p, unit) - getattr(last, unit) >= self.amount


@dataclass(frozen=True)
class Selection:
    """The selection score of one trial: ``sum over splits of weight x metric(split)``."""

    metric: str
    direction: str
    split_weights: dict[str, float]

    def score(self, metrics_by_split: dict[str, dict[str, float]]) -> float:
        total = 0.0
        for split, w in self.split_weights.items():
            total += w * metrics_by_split.get(split, {}).get(self.metric, float("nan"))
        return total

    def oriented(self, score: float | None) -> float:
        """Lower is better; NaN (a failed evaluation) is :data:`FAILED_SCORE`."""
        return orient(score, self.direction)

    def uses_train(self) -> bool:
        return bool(self.split_weights.get("train"))
