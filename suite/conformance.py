"""Conformance checks: every registered plugin held to its contract (what ``benchopt test`` does for benchmarks).

The checks run on any plugin the registry knows -- built-in, from ``--plugins`` folders or from entry points --
and never raise for a misbehaving plugin: every outcome is a :class:`Finding` (``ok`` True, False, or None for
a check that was skipped, with the reason in ``message``).

* :func:`check_task` -- the default parameters validate; ``metrics`` is non-empty with directions ``min`` /
  ``max``; ``primary_metric`` is one of them; the ``data_files()`` of the default parameters resolve from the
  data directory (otherwise the remaining checks are skipped: "needs data file X (set RNNBENCH_DATA)"); the task
  builds (timed); ``splits`` holds train/val/test; ``split(s)`` gives aligned :class:`SequenceData` consistent
  with ``input`` / ``output`` (token ids below the vocabulary size, real channel counts equal to the IOSpec);
  ``evaluate(model, "val")`` with a small untrained model (``gru`` with 4 units, or the first registered model
  that accepts the task's I/O) returns finite floats for exactly the declared metrics.
* :func:`check_model` -- for real I/O (3 -> 2 channels) and token I/O (7 -> 7; refusing an I/O kind with an
  exception is allowed and recorded as skipped): ``state_size > 0``; ``step`` runs under
  ``torch.func.functional_call`` + ``vmap`` + ``jacrev`` (a ``[D, D]`` Jacobian per row); in float64 ``forward``
  equals the step loop (``hidden_states`` + ``readout``) to 1e-8, from the zero state and from a given ``h0``;
  declared capabilities are implemented and truthful (``linear_recurrence``: ``recurrence_coeffs`` reproduces the
  states; ``analytic_jacobian``: ``jacobian`` equals the autograd Jacobian; an optional ``jacobian_diagonal``
  equals its diagonal).
* :func:`check_method` -- the default parameters validate; ``requires`` names known capabilities; a 2-step trial
  (:func:`suite.run.trial.execute_trial`) on a small task with the first registered model that covers ``requires``
  ends ``ok`` after exactly 2 updates (the method stopped when ``ctx.step`` said the budget was spent), changed
  at least one model parameter (``updates``: calling ``ctx.step`` without an optimizer step fails), made at least
  one progress report, and has finite final test metrics.
* :func:`check_registry` -- all of the above for a registry, plus one ``loads`` finding per plugin file that
  failed to import.

Each kind's checks are a table of small functions run in order on one state object (:data:`TASK_CHECKS`,
:data:`MODEL_CHECKS` with :data:`BUILT_MODEL_CHECKS` per I/O kind, :data:`METHOD_CHECKS`): a check records its
findings, fills in what the checks after it need, and raises ``_Stop`` when they cannot run.

Plugin conventions read here:

* ``check_params: ClassVar[dict] = {...}`` on a **method** class: parameters for the smoke trial, for methods
  whose defaults are too heavy for a 2-step CPU run (e.g. a large teacher network). They must validate against
  the method's ``Params``; they also supply values for parameters without a default. Tasks and models are
  checked with their defaults.
* A method that cannot train on a task's kind of data should raise an exception saying so (e.g. "needs ...
  tokens"): the method check then tries the next task (real-valued system identification first, then a small
  token stream).

From the command line: ``rnnbench check [--plugins DIR] [--kind tasks] [--full] [NAME ...]``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from suite.contracts import (
    ANALYTIC_JACOBIAN,
    CAPABILITIES,
    FUSED_SEQUENCE,
    LINEAR_RECURRENCE,
    OBSERVATION_INVERSE,
    IOSpec,
    Method,
    RecurrentModel,
    SequenceData,
    Task,
)
from suite.datafiles import DataFileError, default_data_dir, resolve
from suite.registry import load_registry
from suite.run.sweep import TrialSpec
from suite.run.trial import execute_trial

KNOWN_CAPABILITIES = frozenset(CAPABILITIES)
REQUIRED_SPLITS = ("train", "val", "test")
KINDS = ("tasks", "models", "methods")

#: models tried, in order, for task evaluation and method trials (then any other registered model)
MODEL_PREFERENCE = ("gru", "lstm", "elman", "mingru", "lru", "shplrnn")
#: size fields shrunk for the small models the task and method checks build (when the schema has them)
EVAL_MODEL_SIZES = {"hidden_size": 4, "hidden_dim": 4, "embed_dim": 4}
TRIAL_MODEL_SIZES = {"hidden_size": 8, "hidden_dim": 8, "embed_dim": 8}
QUICK_MAX_VAL_POSITIONS = 200_000  #: quick mode: tasks with a larger val split are not evaluated

#: the tasks a method trial runs on, tried in order (a method may refuse a kind of data, see the module doc)
SYSID_TASK = ("toy-sysid", {"length": 60})
TOKEN_TASK = ("markov-tokens", {"train_tokens": 800, "val_tokens": 200, "test_tokens": 200, "streams": 4,
                                "eval_streams": 2})
DSR_TASK = ("lorenz63", {"source": "generated", "length": 600, "test_length": 300, "eval_length": 200})
TRIAL_STEPS = 2
TRIAL_TIME_LIMIT_S = 120.0

MODEL_BATCH, MODEL_LENGTH = 2, 17  #: the random batch of the model checks
REAL_IO = (IOSpec("real", 3), IOSpec("real", 2))
TOKEN_IO = (IOSpec("tokens", 7), IOSpec("tokens", 7))
TOL = 1e-8  #: float64 agreement, relative to max(1, |reference|)


@dataclass
class Finding:
    """One check of one plugin: ``ok`` True (passed), False (failed) or None (skipped; the reason in message)."""

    kind: str
    name: str
    check: str
    ok: bool | None
    message: str

    @property
    def failed(self) -> bool:
        return self.ok is False

    def __str__(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        kind = self.kind[:-1] if self.kind in KINDS else self.kind
        return f"{mark} {kind} {self.name}: {self.check}: {self.message}"


class _Findings:
    """Collects the findings of one plugin; ``guard`` turns an exception of plugin code into a failure."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name, self.items = kind, name, []

    def add(self, check: str, ok: bool | None, message: str = "") -> bool | None:
        self.items.append(Finding(self.kind, self.name, check, ok, message))
        return ok

    def ok(self, check: str, message: str = "") -> bool:
        self.add(check, True, message)
        return True

    def fail(self, check: str, message: str) -> bool:
        self.add(check, False, message)
        return False

    def warn(self, check: str, message: str) -> None:
        """Not a failure, but probably a mistake: reported as a warning (ok is None, message 'warning: ...')."""
        self.add(check, None, f"warning: {message}")

    def skip(self, check: str, message: str) -> None:
        self.add(check, None, message)

    def check(self, check: str, problems: list[str], message: str = "") -> bool:
        return self.fail(check, "; ".join(problems)) if problems else self.ok(check, message)

    @contextlib.contextmanager
    def guard(self, check: str, what: str = "") -> Iterator[None]:
        try:
            yield
        except _Stop:
            raise
        except Exception as exc:
            self.fail(check, f"{what + ' ' if what else ''}raised {_exc_text(exc)}")
            raise _Stop from exc


class _Stop(Exception):
    """Raised after recording a failure or a skip (by :meth:`_Findings.guard`, or by a check itself): the
    checks after it depend on what failed and do not run."""


#: one check: records its findings in the _Findings, reads and fills in the state of its kind (what the
#: checks before it learnt), and raises _Stop when the checks after it cannot run
_Check = Callable[[_Findings, Any], None]


def _run_checks(f: _Findings, checks: Sequence[tuple[str, _Check]], state: Any) -> None:
    """Run a table of checks (``(name, check)`` pairs) in order on one state; a _Stop ends the run."""
    for _name, check in checks:
        check(f, state)


def _collect(f: _Findings, run: Callable[[], None]) -> list[Finding]:
    """``run()``'s findings: a _Stop ends it quietly, any other exception (plugin code misbehaving in a way no
    check anticipated) is one more failure."""
    try:
        run()
    except _Stop:
        pass
    except Exception as exc:
        f.fail("unexpected", f"the checks stopped: {_exc_text(exc)}")
    return f.items


def _exc_text(exc: BaseException) -> str:
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        if tb.tb_next is None:
            where = f" ({Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})"
        tb = tb.tb_next
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}{where}"


def _max_err(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(max |a - b|, the tolerance TOL * max(1, max |b|))."""
    if a.numel() == 0:
        return 0.0, TOL
    err = float((a.detach() - b.detach()).abs().max())
    return err, TOL * max(1.0, float(b.detach().abs().max()))


def _close(a: Tensor, b: Tensor, what: str, problems: list[str]) -> None:
    if tuple(a.shape) != tuple(b.shape):
        problems.append(f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}")
        return
    err, tol = _max_err(a, b)
    if not err <= tol:  # also catches NaN
        problems.append(f"{what}: max |difference| {err:.3g} > {tol:.3g}")


@contextlib.contextmanager
def _offline(enabled: bool) -> Iterator[None]:
    """``RNNBENCH_OFFLINE=1`` for the duration (no data downloads during a check)."""
    if not enabled:
        yield
        return
    old = os.environ.get("RNNBENCH_OFFLINE")
    os.environ["RNNBENCH_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RNNBENCH_OFFLINE", None)
        else:
            os.environ["RNNBENCH_OFFLINE"] = old


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread for the duration, as a trial with ``resources.cpu: 1`` runs (tiny tensors are
    many times slower with several threads on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _required_fields(schema: type) -> list[str]:
    return [n for n, f in getattr(schema, "model_fields", {}).items() if f.is_required()]


def _small_params(cls: type, sizes: Mapping[str, int]) -> dict[str, Any]:
    """``sizes`` restricted to the fields of ``cls.Params`` (the defaults if they do not validate)."""
    fields = getattr(cls.Params, "model_fields", {})
    small = {k: v for k, v in sizes.items() if k in fields}
    try:
        cls.Params.model_validate(small)
    except Exception:
        return {}
    return small


def _model_order(registry: Any) -> list[str]:
    names = registry.names("models")
    return [n for n in MODEL_PREFERENCE if n in names] + [n for n in names if n not in MODEL_PREFERENCE]


# --- tasks ------------------------------------------------------------------------------------------

def _io_problems(task: Task) -> list[str]:
    problems = []
    for side in ("input", "output"):
        spec = getattr(task, side, None)
        if not isinstance(spec, IOSpec):
            problems.append(f"task.{side} is {type(spec).__name__}, not an IOSpec")
        elif spec.kind not in ("real", "tokens") or not isinstance(spec.size, int) or spec.size < 0:
            problems.append(f"task.{side} = {spec} (kind must be real/tokens, size an int >= 0)")
        elif spec.size == 0 and (side == "output" or spec.is_tokens):
            problems.append(f"task.{side} = {spec} has size 0")
    return problems


def _ids_problems(t: Tensor, spec: IOSpec, what: str) -> list[str]:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        return [f"{what} holds {t.dtype}, but {spec} needs integer token ids"]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= spec.size):
        return [f"{what} token ids span [{int(t.min())}, {int(t.max())}], outside [0, {spec.size}) of {spec}"]
    return []


def _tensor_problems(t: Tensor, spec: IOSpec, what: str, side: str, channels: str) -> list[str]:
    """What is wrong with ``x`` (``what``, the task's ``side`` "input", ``channels`` "in") or ``y`` against
    its IOSpec."""
    if t.ndim != (2 if spec.is_tokens else 3):
        return [f"{what} has shape {tuple(t.shape)}: {spec} needs [B, T{'' if spec.is_tokens else ', ' + channels}]"]
    if spec.is_tokens:
        return _ids_problems(t, spec, what)
    problems = []
    if not t.is_floating_point():
        problems.append(f"{what} holds {t.dtype}, but {spec} needs floats")
    if t.shape[-1] != spec.size:
        problems.append(f"{what} has {t.shape[-1]} channels, task.{side} says {spec.size}")
    elif t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        problems.append(f"{what} holds non-finite values")
    return problems


def _mask_problems(mask: Any, x: Tensor) -> list[str]:
    if mask is None:
        return []
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        return [f"mask is {getattr(mask, 'dtype', type(mask).__name__)}, not a bool tensor"]
    if x.ndim >= 2 and tuple(mask.shape) != tuple(x.shape[:2]):
        return [f"mask has shape {tuple(mask.shape)}, x is {tuple(x.shape[:2])} on [B, T]"]
    if not bool(mask.any()):
        return ["mask selects no position"]
    return []


def _sequence_problems(data: Any, task: Task) -> list[str]:
    """What is wrong with one split against the task's IOSpecs (empty: conforms)."""
    if not isinstance(data, SequenceData):
        return [f"split returned {type(data).__name__}, not SequenceData"]
    x, y = data.x, data.y
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        return [f"x / y are {type(x).__name__} / {type(y).__name__}, not tensors"]
    problems = _tensor_problems(x, task.input, "x", "input", "in") + _tensor_problems(y, task.output, "y", "output", "out")
    if x.ndim >= 2 and y.ndim >= 2 and tuple(x.shape[:2]) != tuple(y.shape[:2]):
        problems.append(f"x {tuple(x.shape)} and y {tuple(y.shape)} are not aligned on [B, T]")
    if x.ndim >= 2 and (x.shape[0] < 1 or x.shape[1] < 1):
        problems.append(f"empty split: x has shape {tuple(x.shape)}")
    return problems + _mask_problems(data.mask, x)


def _eval_model(task: Task, registry: Any) -> tuple[str, RecurrentModel] | tuple[None, str]:
    """A small untrained model for the task's I/O: ``gru`` with 4 units, else the next that builds."""
    refusals = []
    for name in _model_order(registry):
        cls = registry.get("models", name)
        try:
            with _seeded(0):
                model = cls(task.input, task.output, cls.Params.model_validate(_small_params(cls, EVAL_MODEL_SIZES)))
            return name, model.eval()
        except Exception as exc:
            refusals.append(f"{name}: {_exc_text(exc)}")
    return None, "no registered model builds for {} -> {} ({})".format(task.input, task.output, "; ".join(refusals))


def check_task(cls: type[Task], data_dir: str | Path | None = None, quick: bool = False, registry: Any = None,
               allow_download: bool = False) -> list[Finding]:
    """Check a task class against the :class:`~suite.contracts.Task` contract (see the module docstring).

    ``data_dir``: where data files are looked up (None: ``$RNNBENCH_DATA``, else ``./data``); nothing is
    downloaded unless ``allow_download``. ``quick``: only the first split's shapes (and val's, which the
    evaluation reads), and no evaluation for tasks whose val split has more than 200 000 positions.
    ``registry``: where the evaluation model comes from (default: the built-in registry)."""
    f = _Findings("tasks", getattr(cls, "name", cls.__name__))

    def run() -> None:
        with _offline(not allow_download), _one_thread():
            state = _TaskState(cls, Path(data_dir) if data_dir is not None else default_data_dir(), quick,
                               registry or load_registry())
            _run_checks(f, TASK_CHECKS, state)

    return _collect(f, run)


@dataclass
class _TaskState:
    """What the task checks learn, in order, for the checks after them."""

    cls: type[Task]
    data_dir: Path
    quick: bool
    registry: Any
    params: Any = None
    names: list[Any] = field(default_factory=list)  #: the class's metric names
    task: Any = None  #: the instance built with the default parameters
    inst_names: list[Any] = field(default_factory=list)  #: the instance's metric names
    splits: tuple[str, ...] = ()
    loaded: dict[str, SequenceData] = field(default_factory=dict)  #: the conforming splits


def _task_params(f: _Findings, s: _TaskState) -> None:
    with f.guard("params", "Params() with the defaults"):
        s.params = s.cls.Params()
    f.ok("params", f"defaults validate ({type(s.params).__name__})")


def _metrics_problems(metrics: tuple[Any, ...], names: list[Any]) -> list[str]:
    problems = [] if metrics else ["declares no metrics"]
    for m in metrics:
        if getattr(m, "direction", None) not in ("min", "max"):
            problems.append(f"metric {getattr(m, 'name', m)!r} has direction {getattr(m, 'direction', None)!r}, "
                            "not 'min' or 'max'")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"metric names repeated: {dupes}")
    return problems


def _task_metrics(f: _Findings, s: _TaskState) -> None:
    metrics = tuple(getattr(s.cls, "metrics", ()) or ())
    s.names = [getattr(m, "name", None) for m in metrics]
    f.check("metrics", _metrics_problems(metrics, s.names), f"{s.names}")
    for m in metrics:  # an error or loss bounded below by 0 is minimised; 'max' there is almost surely a slip
        if getattr(m, "direction", None) == "max" and getattr(m, "low", None) == 0 and getattr(m, "high", None) is None:
            f.warn("metric_direction", f"metric {m.name!r} is bounded below by 0 and unbounded above (an error or a "
                                       "loss) but declared 'max': higher would be better")


def _task_primary_metric(f: _Findings, s: _TaskState) -> None:
    primary = getattr(s.cls, "primary_metric", None)
    if primary in s.names:
        f.ok("primary_metric", repr(primary))
    else:
        f.fail("primary_metric", f"primary_metric {primary!r} is not among the declared metrics {s.names}")


def _unresolved(files: list[Any], data_dir: Path) -> tuple[list[Any], list[Any]]:
    """(missing, broken): the data files that do not resolve, absent or present but refused (a checksum)."""
    missing, broken = [], []
    for file in files:
        try:
            resolve(file, data_dir)
        except DataFileError:
            path = getattr(file, "path", str(file))
            present = isinstance(path, str) and (data_dir / path).is_file()
            (broken if present else missing).append(path)
    return missing, broken


def _task_data_files(f: _Findings, s: _TaskState) -> None:
    """The data files of the default parameters resolve; otherwise the checks that need them are skipped."""
    with f.guard("data_files", "data_files(default params)"):
        files = list(s.cls.data_files(s.params) or [])
    missing, broken = _unresolved(files, s.data_dir)
    if missing or broken:
        what = missing or broken
        more = f" (+{len(what) - 1} more)" if len(what) > 1 else ""
        reason = (f"needs data file {what[0]}{more} (set RNNBENCH_DATA)" if missing
                  else f"data file {what[0]}{more} under {s.data_dir} fails its checksum")
        for check in ("data_files", "instantiate", "splits", "split", "evaluate"):
            f.skip(check, reason)
        raise _Stop
    f.ok("data_files", f"{len(files)} file(s) resolve under {s.data_dir}" if files else "none needed")


def _task_instantiate(f: _Findings, s: _TaskState) -> None:
    t0 = time.perf_counter()
    with f.guard("instantiate", "the constructor (default params)"):
        s.task = s.cls(s.params, s.data_dir)
    f.ok("instantiate", f"built in {time.perf_counter() - t0:.1f} s")


def _task_instance_metrics(f: _Findings, s: _TaskState) -> None:
    """An instance may narrow its class's metrics (e.g. a variant parameter): check those again."""
    task = s.task
    inst_metrics = tuple(getattr(task, "metrics", ()) or ())
    s.inst_names = [getattr(m, "name", None) for m in inst_metrics]
    if s.inst_names == s.names:
        return
    problems = [] if inst_metrics else ["the instance declares no metrics"]
    problems += [f"metric {m.name!r} has direction {m.direction!r}" for m in inst_metrics
                 if getattr(m, "direction", None) not in ("min", "max")]
    if getattr(task, "primary_metric", None) not in s.inst_names:
        problems.append(f"the instance's primary_metric {task.primary_metric!r} is not among its metrics {s.inst_names}")
    f.check("instance_metrics", problems, f"{s.inst_names}")


def _task_splits(f: _Findings, s: _TaskState) -> None:
    s.splits = tuple(getattr(s.task, "splits", ()) or ())
    absent = [x for x in REQUIRED_SPLITS if x not in s.splits]
    f.check("splits", [f"splits {list(s.splits)} lack {absent}"] if absent else [], f"{list(s.splits)}")


def _task_io(f: _Findings, s: _TaskState) -> None:
    io = _io_problems(s.task)
    f.check("io", io, f"{s.task.input} -> {s.task.output}" if not io else "")
    if io:
        f.skip("split", "task.input / task.output are not valid IOSpecs")
        f.skip("evaluate", "task.input / task.output are not valid IOSpecs")
        raise _Stop


def _load_split(f: _Findings, task: Task, name: str) -> SequenceData | None:
    """``task.split(name)`` when it conforms (a ``split:<name>`` finding either way)."""
    try:
        t0 = time.perf_counter()
        data = task.split(name)
        problems = _sequence_problems(data, task)
    except Exception as exc:
        f.fail(f"split:{name}", f"split({name!r}) raised {_exc_text(exc)}")
        return None
    if f.check(f"split:{name}", problems, f"x {tuple(data.x.shape)} {data.x.dtype}, y {tuple(data.y.shape)} "
               f"{data.y.dtype}, mask {None if data.mask is None else tuple(data.mask.shape)} "
               f"({time.perf_counter() - t0:.1f} s)"):
        return data
    return None


def _task_split(f: _Findings, s: _TaskState) -> None:
    to_check = list(s.splits[:1]) if s.quick else list(s.splits)
    if "val" in s.splits and "val" not in to_check:
        to_check.append("val")  # the evaluation reads it anyway
    for name in to_check:
        data = _load_split(f, s.task, name)
        if data is not None:
            s.loaded[name] = data
    if s.quick and len(s.splits) > 1:
        f.skip("split", f"quick: only {to_check} checked")


def _task_distinct_splits(f: _Findings, s: _TaskState) -> None:
    names_loaded = sorted(s.loaded)
    for i, a in enumerate(names_loaded):
        for b in names_loaded[i + 1:]:
            da, db = s.loaded[a], s.loaded[b]
            if da.x.shape == db.x.shape and da.y.shape == db.y.shape and bool((da.x == db.x).all()) and bool((da.y == db.y).all()):
                f.warn("distinct_splits", f"splits {a!r} and {b!r} hold the same data: a score on one is a score on the "
                                          "other (train on test?)")


def _evaluation_model(f: _Findings, s: _TaskState) -> tuple[str, RecurrentModel]:
    """The untrained model to evaluate on val, or a skipped ``evaluate`` and the end of the checks."""
    if "val" not in s.loaded:
        f.skip("evaluate", "no conforming val split to evaluate on")
        raise _Stop
    positions = s.loaded["val"].batch * s.loaded["val"].length
    if s.quick and positions > QUICK_MAX_VAL_POSITIONS:
        f.skip("evaluate", f"quick: the val split has {positions} positions (> {QUICK_MAX_VAL_POSITIONS})")
        raise _Stop
    model_name, model = _eval_model(s.task, s.registry)
    if model_name is None:
        f.skip("evaluate", str(model))
        raise _Stop
    return model_name, model


def _result_problems(result: Mapping[Any, Any], declared: set[Any]) -> tuple[list[str], dict[Any, Any]]:
    """(problems, the non-finite or non-numeric values) of an evaluation's result."""
    problems = []
    extra = sorted(str(k) for k in set(result) - declared)
    lacking = sorted(declared - set(result))
    if extra:
        problems.append(f"returns undeclared metric(s) {extra} (declared: {sorted(declared)})")
    if lacking:
        problems.append(f"does not return declared metric(s) {lacking}")
    bad = {}
    for k, v in result.items():
        try:
            value = float(v)
        except Exception:
            bad[k] = type(v).__name__
            continue
        if not math.isfinite(value):
            bad[k] = value
    if bad:
        problems.append(f"non-finite or non-numeric values {bad}")
    return problems, bad


def _task_evaluate(f: _Findings, s: _TaskState) -> None:
    model_name, model = _evaluation_model(f, s)
    t0 = time.perf_counter()
    try:
        with _seeded(0), torch.no_grad():
            result = s.task.evaluate(model, "val")
    except Exception as exc:
        f.fail("evaluate", f"evaluate({model_name} model, 'val') raised {_exc_text(exc)}")
        return
    elapsed = time.perf_counter() - t0
    if not isinstance(result, Mapping):
        f.fail("evaluate", f"evaluate returned {type(result).__name__}, not a dict of metrics")
        return
    problems, bad = _result_problems(result, set(s.inst_names))
    shown = {k: round(float(v), 4) for k, v in result.items() if k not in bad}
    f.check("evaluate", problems, f"{shown} with an untrained {model_name} ({elapsed:.1f} s)")


#: the task checks, in order (a check that the later ones depend on ends the run with _Stop when it fails)
TASK_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("params", _task_params),
    ("metrics", _task_metrics),  # and the metric_direction warning
    ("primary_metric", _task_primary_metric),
    ("data_files", _task_data_files),
    ("instantiate", _task_instantiate),
    ("instance_metrics", _task_instance_metrics),
    ("splits", _task_splits),
    ("io", _task_io),
    ("split", _task_split),
    ("distinct_splits", _task_distinct_splits),
    ("evaluate", _task_evaluate),
)


# --- models -----------------------------------------------------------------------------------------

class _StepCall(nn.Module):
    """``forward = model.step``, so ``torch.func.functional_call`` can swap the model's parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, h: Tensor, u: Tensor) -> Tensor:
        return self.model.step(h, u)


def _random_inputs(spec: IOSpec, dtype: torch.dtype) -> Tensor:
    if spec.is_tokens:
        return torch.randint(0, spec.size, (MODEL_BATCH, MODEL_LENGTH))
    return torch.randn(MODEL_BATCH, MODEL_LENGTH, spec.size, dtype=dtype)


def check_model(cls: type[RecurrentModel]) -> list[Finding]:
    """Check a model class against the :class:`~suite.contracts.RecurrentModel` contract (module docstring)."""
    f = _Findings("models", getattr(cls, "name", cls.__name__))

    def run() -> None:
        with _seeded(0), _one_thread():
            _run_checks(f, MODEL_CHECKS, _ModelState(cls))

    return _collect(f, run)


@dataclass
class _ModelState:
    cls: type[RecurrentModel]
    params: Any = None
    caps: frozenset[str] = frozenset()


def _model_params(f: _Findings, s: _ModelState) -> None:
    with f.guard("params", "Params() with the defaults"):
        s.params = s.cls.Params()
    f.ok("params", f"defaults validate ({type(s.params).__name__})")


def _model_capabilities(f: _Findings, s: _ModelState) -> None:
    s.caps = frozenset(getattr(s.cls, "capabilities", ()) or ())
    unknown = sorted(s.caps - KNOWN_CAPABILITIES)
    f.add("capabilities", True, f"{sorted(s.caps)}" + (f" (not known to the suite: {unknown})" if unknown else ""))


def _build_model(f: _Findings, s: _ModelState, label: str, inp: IOSpec, out: IOSpec) -> RecurrentModel | None:
    """The model for ``inp -> out`` (a ``build[label]`` finding), or None when the class refuses that I/O."""
    check = f"build[{label}]"
    try:
        model = s.cls(inp, out, s.params)
    except Exception as exc:
        if str(exc).strip():
            f.skip(check, f"refuses {inp} -> {out}: {_exc_text(exc)}")
        else:
            f.fail(check, f"refuses {inp} -> {out} with an exception that gives no reason: {_exc_text(exc)}")
        return None
    return model


def _model_builds(f: _Findings, s: _ModelState) -> None:
    """Per I/O kind the model accepts, the checks of :data:`BUILT_MODEL_CHECKS` (a _Stop ends that kind's)."""
    built = 0
    for label, (inp, out) in (("real", REAL_IO), ("tokens", TOKEN_IO)):
        model = _build_model(f, s, label, inp, out)
        if model is None:
            continue
        built += 1
        f.ok(f"build[{label}]", f"{inp} -> {out}")
        with contextlib.suppress(_Stop):
            _run_checks(f, BUILT_MODEL_CHECKS, _BuiltModel(model, s.caps, f"[{label}]", inp, out))
    if built == 0:
        f.fail("io", "accepts neither real (3 -> 2 channels) nor token (7 -> 7) inputs and outputs")


#: the model checks, in order
MODEL_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("params", _model_params),
    ("capabilities", _model_capabilities),
    ("build", _model_builds),  # and the checks of each model built
)


@dataclass
class _BuiltModel:
    """One model built for one I/O kind, and what its checks compute for the checks after them."""

    model: RecurrentModel
    caps: frozenset[str]
    sfx: str  #: "[real]" / "[tokens]", appended to the check names
    inp: IOSpec
    out: IOSpec
    D: int = 0  #: state_size
    x: Any = None  #: a random float64 input batch [B, T, ...]
    h0: Any = None  #: a random initial state [B, D]
    u: Any = None  #: encode(x)
    zero: Any = None  #: initial_state(B)
    hs: Any = None  #: hidden_states(x)
    hs0: Any = None  #: hidden_states(x, h0)
    H: Any = None  #: the rows the Jacobians are taken at: a random state, and one on the trajectory
    U: Any = None
    J_ad: Any = None  #: the autograd Jacobian of step at (H, U); None when torch_func failed


def _state_size(f: _Findings, s: _BuiltModel) -> None:
    D = getattr(s.model, "state_size", None)
    if not isinstance(D, int) or isinstance(D, bool) or D <= 0:
        f.fail("state_size" + s.sfx, f"state_size is {D!r}, not a positive int")
        raise _Stop
    s.D = D
    f.ok("state_size" + s.sfx, str(D))


def _float64(f: _Findings, s: _BuiltModel) -> None:
    with f.guard("float64" + s.sfx, "model.double()"):
        s.model = s.model.double().eval()
        if not any(True for _ in s.model.parameters()):
            raise ValueError("the model has no parameters (initial_state and the trial need one)")


def _step_loop_problems(s: _BuiltModel) -> list[str]:
    B, T, D = MODEL_BATCH, MODEL_LENGTH, s.D
    problems = []
    if tuple(s.zero.shape) != (B, D):
        problems.append(f"initial_state({B}) has shape {tuple(s.zero.shape)}, not {(B, D)}")
    if s.u.ndim != 3 or tuple(s.u.shape[:2]) != (B, T):
        problems.append(f"encode(x) has shape {tuple(s.u.shape)}, not [B={B}, T={T}, features]")
    for what, h in (("hidden_states(x)", s.hs), ("hidden_states(x, h0)", s.hs0)):
        if tuple(h.shape) != (B, T, D):
            problems.append(f"{what} has shape {tuple(h.shape)}, not {(B, T, D)}")
        elif not bool(torch.isfinite(h).all()):
            problems.append(f"{what} holds non-finite values")
    return problems


def _step_loop(f: _Findings, s: _BuiltModel) -> None:
    """encode / initial_state / hidden_states from the zero state and from a random h0 (float64)."""
    s.x = _random_inputs(s.inp, torch.float64)
    s.h0 = 0.5 * torch.randn(MODEL_BATCH, s.D, dtype=torch.float64)
    with f.guard("step_loop" + s.sfx, "encode / initial_state / hidden_states"):
        s.u = s.model.encode(s.x)
        s.zero = s.model.initial_state(MODEL_BATCH)
        s.hs = s.model.hidden_states(s.x)
        s.hs0 = s.model.hidden_states(s.x, s.h0)
    if not f.check("step_loop" + s.sfx, _step_loop_problems(s), f"states [B, T, {s.D}]"):
        raise _Stop


def _torch_func(f: _Findings, s: _BuiltModel) -> None:
    """step under torch.func: functional_call + vmap + jacrev, one [D, D] Jacobian per row."""
    T, D = MODEL_LENGTH, s.D
    s.H = H = torch.cat([s.h0, s.hs0[:, T // 2 - 1]], 0)  # rows: a random state, and one on the trajectory
    s.U = U = torch.cat([s.u[:, 0], s.u[:, T // 2]], 0)
    with f.guard("torch_func" + s.sfx, "step under functional_call + vmap + jacrev"):
        call = _StepCall(s.model)
        p = {k: v.detach() for k, v in call.named_parameters()}
        p.update({k: v for k, v in call.named_buffers()})

        def one(h: Tensor, u_t: Tensor) -> Tensor:
            return torch.func.functional_call(call, p, (h[None], u_t[None]))[0]

        stepped = torch.func.vmap(one)(H, U)
        J_ad = torch.func.vmap(torch.func.jacrev(one))(H, U)
    problems = []
    if tuple(J_ad.shape) != (H.shape[0], D, D):
        problems.append(f"Jacobian per row has shape {tuple(J_ad.shape[1:])}, not {(D, D)}")
    elif not bool(torch.isfinite(J_ad).all()):
        problems.append("the Jacobian holds non-finite values")
    with torch.no_grad():
        _close(stepped, s.model.step(H, U), "vmap(step) vs step on the batch", problems)
    if f.check("torch_func" + s.sfx, problems, f"vmap(jacrev(step)): {H.shape[0]} x [{D}, {D}]"):
        s.J_ad = J_ad


def _forward_matches_steps(f: _Findings, s: _BuiltModel) -> None:
    """forward == step loop (hidden_states + readout), float64, from the zero state and from h0."""
    B, T, model = MODEL_BATCH, MODEL_LENGTH, s.model
    problems: list[str] = []
    with f.guard("forward_matches_steps" + s.sfx, "forward / readout"):
        with torch.no_grad():
            for start, states in ((None, s.hs), (s.h0, s.hs0)):
                what = "from h0" if start is not None else "from the zero state"
                y_f, h_T = model(s.x) if start is None else model(s.x, start)
                y_l = model.readout(states, s.u)
                if tuple(y_l.shape[:2]) != (B, T) or y_l.shape[-1] != s.out.size:
                    problems.append(f"readout(states) has shape {tuple(y_l.shape)}, not [B, T, {s.out.size}]")
                _close(y_f, y_l, f"outputs {what}", problems)
                _close(h_T, states[:, -1], f"final state {what}", problems)
    f.check("forward_matches_steps" + s.sfx, problems, f"forward == step loop to {TOL:g} (float64, B={B}, T={T})")


def _fused_sequence(f: _Findings, s: _BuiltModel) -> None:
    if FUSED_SEQUENCE not in s.caps:
        return
    if type(s.model).forward is RecurrentModel.forward:
        f.fail("fused_sequence" + s.sfx, "declares fused_sequence but forward() is the contract's default step loop")
    else:
        f.ok("fused_sequence" + s.sfx, f"forward is {type(s.model).__name__}'s own (it matches the step loop above)")


def _recurrence_coeffs(f: _Findings, check: str, model: RecurrentModel, u: Tensor) -> tuple[Tensor, Tensor] | None:
    """``recurrence_coeffs(u)``, both [B, T, S]; None (after a failure) when it is missing or malformed."""
    fn = getattr(model, "recurrence_coeffs", None)
    if not callable(fn):
        f.fail(check, "declares linear_recurrence but has no recurrence_coeffs()")
        return None
    try:
        with torch.no_grad():
            a, b = fn(u)
    except NotImplementedError:
        f.fail(check, "declares linear_recurrence but recurrence_coeffs() raises NotImplementedError")
        return None
    except Exception as exc:
        f.fail(check, f"recurrence_coeffs(u) raised {_exc_text(exc)}")
        return None
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape or a.ndim != 3 \
            or tuple(a.shape[:2]) != tuple(u.shape[:2]):
        f.fail(check, f"recurrence_coeffs(u) must return (a, b), both [B, T, S]; got shapes "
                      f"{tuple(getattr(a, 'shape', ()))} and {tuple(getattr(b, 'shape', ()))}")
        return None
    return a, b


def _scan(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """The states ``c_t = a_t * c_{t-1} + b_t`` from ``c``, [B, T, S]."""
    cs = []
    for t in range(a.shape[1]):
        c = a[:, t] * c + b[:, t]
        cs.append(c)
    return torch.stack(cs, 1)


_UNMAPPED_SCAN = ("the scan state has {} values per row, the flat state {}, and the model has no "
                  "to_scan_state/from_scan_state: the mapping is not checkable generically (forward_matches_steps "
                  "compares the scan-based forward with the step loop)")


def _linear_recurrence(f: _Findings, s: _BuiltModel) -> None:
    """``c_t = a_t * c_{t-1} + b_t`` from ``recurrence_coeffs(u)`` reproduces the step-loop states, through
    ``to_scan_state`` / ``from_scan_state`` when the model has them (the scan state may differ from the flat
    state, e.g. the LRU's complex state)."""
    if LINEAR_RECURRENCE not in s.caps:
        return
    check, model = "linear_recurrence" + s.sfx, s.model
    coeffs = _recurrence_coeffs(f, check, model, s.u)
    if coeffs is None:
        return
    a, b = coeffs
    to_scan, from_scan = getattr(model, "to_scan_state", None), getattr(model, "from_scan_state", None)
    problems: list[str] = []
    try:
        with torch.no_grad():
            for start, states, what in ((s.h0, s.hs0, "from h0"), (s.zero, s.hs, "from the zero state")):
                c = to_scan(start) if callable(to_scan) else start
                if c.shape[-1] != a.shape[-1]:
                    f.skip(check, _UNMAPPED_SCAN.format(a.shape[-1], c.shape[-1]))
                    return
                got = _scan(a, b, c)
                got = from_scan(got) if callable(from_scan) else got
                _close(got, states, f"recurrence states {what} vs step loop", problems)
    except Exception as exc:
        problems.append(f"running the recurrence raised {_exc_text(exc)}")
    mapped = " (through to_scan_state / from_scan_state)" if callable(to_scan) or callable(from_scan) else ""
    f.check(check, problems, f"c_t = a_t * c_(t-1) + b_t reproduces the states to {TOL:g}{mapped}")


def _analytic_jacobian(f: _Findings, s: _BuiltModel) -> None:
    if ANALYTIC_JACOBIAN not in s.caps:
        return
    check = "analytic_jacobian" + s.sfx
    if not callable(getattr(s.model, "jacobian", None)):
        f.fail(check, "declares analytic_jacobian but has no jacobian()")
    elif s.J_ad is None:
        f.skip(check, "no autograd Jacobian to compare with (torch_func failed)")
    else:
        problems: list[str] = []
        try:
            with torch.no_grad():
                _close(s.model.jacobian(s.H, s.U), s.J_ad, "jacobian(h, u) vs autograd", problems)
        except Exception as exc:
            problems.append(f"jacobian(h, u) raised {_exc_text(exc)}")
        f.check(check, problems, f"jacobian == autograd Jacobian of step to {TOL:g}")


def _jacobian_diagonal(f: _Findings, s: _BuiltModel) -> None:
    if not callable(getattr(s.model, "jacobian_diagonal", None)):
        return
    check = "jacobian_diagonal" + s.sfx
    if s.J_ad is None:
        f.skip(check, "no autograd Jacobian to compare with (torch_func failed)")
        return
    problems: list[str] = []
    try:
        with torch.no_grad():
            _close(s.model.jacobian_diagonal(s.H, s.U), s.J_ad.diagonal(dim1=-2, dim2=-1),
                   "jacobian_diagonal(h, u) vs autograd diagonal", problems)
    except Exception as exc:
        problems.append(f"jacobian_diagonal(h, u) raised {_exc_text(exc)}")
    f.check(check, problems, f"== the autograd Jacobian's diagonal to {TOL:g}")


#: the checks of one built model, in order (a _Stop ends those of this I/O kind only)
BUILT_MODEL_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("state_size", _state_size),
    ("float64", _float64),
    ("step_loop", _step_loop),
    ("torch_func", _torch_func),
    ("forward_matches_steps", _forward_matches_steps),
    ("fused_sequence", _fused_sequence),
    ("linear_recurrence", _linear_recurrence),
    ("analytic_jacobian", _analytic_jacobian),
    ("jacobian_diagonal", _jacobian_diagonal),
)


# --- methods ----------------------------------------------------------------------------------------

def _known_capabilities(registry: Any) -> frozenset[str]:
    caps = set(KNOWN_CAPABILITIES)
    for name in registry.names("models"):
        caps |= set(getattr(registry.get("models", name), "capabilities", ()) or ())
    return frozenset(caps)


def _plugin_dirs(registry: Any, picks: Iterable[tuple[str, str]]) -> list[str]:
    """The folders the trial's own registry must load for these (kind, name) plugins: the folder of every
    one that the built-in registry does not already have (the same class)."""
    builtin = load_registry()
    dirs: list[str] = []
    for kind, name in picks:
        info = registry.plugins[kind].get(name)
        if info is None or info.cls is None:
            continue
        base = builtin.plugins[kind].get(name)
        if base is not None and base.cls is info.cls:
            continue
        origin = Path(str(info.origin))
        if origin.is_file():
            folder = str(origin.parent)
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def _refuses_data(record: Any) -> bool:
    """The trial ended because the method refused the task's kind of data (it says so: tokens, real ...)."""
    if record.status != "error" or not record.error:
        return False
    head = str(record.error).strip().splitlines()[0]
    return bool(re.search(r"\btokens?\b|real[- ]valued|kind of data|task type", head, re.I))


def check_method(cls: type[Method], registry: Any = None, plugin_dirs: Iterable[str | Path] | None = None,
                 data_dir: str | Path | None = None, time_limit_s: float = TRIAL_TIME_LIMIT_S) -> list[Finding]:
    """Check a method class with a 2-step smoke trial (see the module docstring).

    ``registry``: where models and tasks come from (default: the built-in registry); ``plugin_dirs``: the
    folders the trial's registry loads (default: the folders of the method, model and task when they are not
    built in); ``time_limit_s`` bounds the trial (a method that does not stop ends ``timeout``)."""
    registry = registry or load_registry()
    f = _Findings("methods", getattr(cls, "name", cls.__name__))
    state = _MethodState(cls, registry, plugin_dirs, data_dir, time_limit_s)
    return _collect(f, lambda: _run_checks(f, METHOD_CHECKS, state))


@dataclass
class _TrialRun:
    """One smoke trial: its record and reports, and the model's parameters around ``method.train``."""

    task_name: str
    task_params: dict[str, Any]
    record: Any = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    before: dict[str, Tensor] | None = None  #: the parameters when the budget clock started (training began)
    after: dict[str, Tensor] | None = None  #: ... and when it stopped (training ended)


@dataclass
class _MethodState:
    """What the method checks learn, in order, for the checks after them."""

    cls: type[Method]
    registry: Any
    plugin_dirs: Iterable[str | Path] | None
    data_dir: str | Path | None
    time_limit_s: float
    check_params: dict[str, Any] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)  #: parameters without a default
    requires: frozenset[str] = frozenset()
    unknown: list[str] = field(default_factory=list)  #: required capabilities no model has
    model_name: str = ""
    model_params: dict[str, Any] = field(default_factory=dict)
    candidates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  #: the smoke-trial tasks
    trial: _TrialRun | None = None


#: the checks that need the smoke trial (skipped together when it cannot run)
TRIAL_CHECKS = ("trial", "budget", "updates", "reports", "final_metrics")


def _method_params(f: _Findings, s: _MethodState) -> None:
    s.check_params = dict(getattr(s.cls, "check_params", None) or {})
    s.required = _required_fields(s.cls.Params)
    if s.required:
        f.skip("params", f"parameters without a default: {s.required}")
        return
    with f.guard("params", "Params() with the defaults"):
        s.cls.Params()
    f.ok("params", "defaults validate")


def _method_check_params(f: _Findings, s: _MethodState) -> None:
    if s.check_params:
        with f.guard("check_params", f"Params(**check_params) with {s.check_params}"):
            s.cls.Params.model_validate(s.check_params)
        f.ok("check_params", f"{s.check_params}")


def _method_requires(f: _Findings, s: _MethodState) -> None:
    s.requires = frozenset(getattr(s.cls, "requires", ()) or ())
    known = _known_capabilities(s.registry)
    s.unknown = sorted(s.requires - known)
    if s.unknown:
        f.fail("requires", f"requires unknown capabilities {s.unknown} (known: {sorted(known)})")
    else:
        f.ok("requires", f"{sorted(s.requires)}")


def _skip_trial(f: _Findings, reason: str) -> None:
    for check in TRIAL_CHECKS:
        f.skip(check, reason)
    raise _Stop


def _method_trial_setup(f: _Findings, s: _MethodState) -> None:
    """The model and the tasks of the smoke trial, or every trial check skipped with the reason."""
    unfilled = [n for n in s.required if n not in s.check_params]
    if unfilled:
        _skip_trial(f, f"parameters {unfilled} have no default and no check_params value: the trial cannot be defaulted")
    if s.unknown:
        _skip_trial(f, "no model can have the unknown capabilities")
    model_name = next((n for n in _model_order(s.registry)
                       if s.requires <= frozenset(getattr(s.registry.get("models", n), "capabilities", ()))), None)
    if model_name is None:
        _skip_trial(f, f"no registered model has the capabilities {sorted(s.requires)}")
    candidates = [DSR_TASK] if OBSERVATION_INVERSE in s.requires else [SYSID_TASK, TOKEN_TASK]
    s.candidates = [c for c in candidates if c[0] in s.registry.names("tasks")]
    if not s.candidates:
        _skip_trial(f, "the smoke-trial tasks (toy-sysid, markov-tokens, lorenz63) are not registered")
    s.model_name = model_name
    s.model_params = _small_params(s.registry.get("models", model_name), TRIAL_MODEL_SIZES)


def _parameters(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}


def _parameter_observer(run: _TrialRun) -> Callable[[str, nn.Module], None]:
    """An ``execute_trial`` observer that keeps snapshots of the model's parameters in ``run.before`` /
    ``run.after``, taken right before and right after ``method.train``."""
    def observe(event: str, model: nn.Module) -> None:
        if event == "train_start":
            run.before = _parameters(model)
        elif event == "train_end":
            run.after = _parameters(model)

    return observe


def _trial_spec(s: _MethodState, method: str, task_name: str, task_params: dict[str, Any]) -> TrialSpec:
    return TrialSpec(
        experiment="conformance", task=task_name, task_params=dict(task_params), model=s.model_name,
        model_params=s.model_params, method=method, method_params=s.check_params,
        optimizer={"name": "adam", "lr": 0.01}, seed=0, budget={"steps": TRIAL_STEPS},
        eval_every={"steps": 1}, selection={"metric": None, "split_weights": {"val": 1.0}},
        resources={"cpu": 1, "device": "cpu", "time_limit_s": s.time_limit_s},
        key=f"conformance-{method}-{task_name}",
    )


def _run_trial(f: _Findings, s: _MethodState, task_name: str, task_params: dict[str, Any]) -> _TrialRun:
    """The smoke trial on one task (an exception of execute_trial itself fails ``trial`` and ends the checks)."""
    dirs = ([str(d) for d in s.plugin_dirs] if s.plugin_dirs is not None else
            _plugin_dirs(s.registry, [("methods", f.name), ("models", s.model_name), ("tasks", task_name)]))
    runtime: dict[str, Any] = {"plugin_dirs": dirs}
    if s.data_dir is not None:
        runtime["data_dir"] = str(s.data_dir)
    run = _TrialRun(task_name, task_params)
    t0 = time.perf_counter()
    try:
        with _one_thread():  # the trial sets the threads from resources.cpu; restored
            run.record = execute_trial(_trial_spec(s, f.name, task_name, task_params), runtime, run.reports.append,
                                       _parameter_observer(run))
    except Exception as exc:
        f.fail("trial", f"execute_trial raised {_exc_text(exc)}")
        raise _Stop from exc
    run.elapsed = time.perf_counter() - t0
    return run


def _method_trial(f: _Findings, s: _MethodState) -> None:
    """The smoke trial ends ok, on the first candidate task whose kind of data the method does not refuse."""
    refused: list[str] = []
    for task_name, task_params in s.candidates:
        run = _run_trial(f, s, task_name, task_params)
        if _refuses_data(run.record) and (task_name, task_params) != s.candidates[-1]:
            refused.append(f"{task_name}: {str(run.record.error).strip().splitlines()[0]}")
            continue
        break
    s.trial, record = run, run.record
    where = f"{run.task_name} {run.task_params} with {s.model_name} {s.model_params}"
    note = f" (after refusing {'; '.join(refused)})" if refused else ""
    if record.status != "ok":
        error = str(record.error or "").strip().splitlines()
        f.fail("trial", f"{where}: status {record.status!r}: {error[0] if error else 'no error message'}{note}")
        for check in TRIAL_CHECKS[1:]:
            f.skip(check, "the trial did not end ok")
        raise _Stop
    f.ok("trial", f"{where}: ok in {run.elapsed:.1f} s{note}")


def _method_budget(f: _Findings, s: _MethodState) -> None:
    steps = s.trial.record.steps
    if steps == TRIAL_STEPS:
        f.ok("budget", f"{steps} updates for a budget of {TRIAL_STEPS} steps")
    else:
        f.fail("budget", f"{steps} updates for a budget of {TRIAL_STEPS} steps: train must call ctx.step once "
                         "per update and return when it says True")


def _changed(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> list[str]:
    """The parameters that differ (or that only one side has)."""
    return sorted(n for n in set(before) | set(after)
                  if n not in before or n not in after or before[n].shape != after[n].shape
                  or not torch.equal(before[n], after[n]))


def _method_updates(f: _Findings, s: _MethodState) -> None:
    """``ctx.step`` counts parameter updates: at least one parameter must have changed over the trial."""
    run = s.trial
    if run.before is None or run.after is None:
        f.skip("updates", "the model's parameters were not seen before and after training")
        return
    if not run.before:
        f.skip("updates", "the model has no parameters")
        return
    changed = _changed(run.before, run.after)
    if changed:
        f.ok("updates", f"{len(changed)} of {len(run.before)} parameter tensors changed over "
                        f"{run.record.steps} updates")
    else:
        f.fail("updates", f"train called ctx.step {run.record.steps} times but no model parameter changed: does it "
                          "call optimizer.step() (or suite.training.update) after backward?")


def _method_reports(f: _Findings, s: _MethodState) -> None:
    progress = [r for r in s.trial.reports if not r.get("final")]
    if progress:
        f.ok("reports", f"{len(progress)} progress report(s)")
    else:
        f.fail("reports", "no progress report (evaluation every step was due)")


def _method_final_metrics(f: _Findings, s: _MethodState) -> None:
    test = (s.trial.record.metrics or {}).get("test") or {}
    bad = {k: v for k, v in test.items() if not (isinstance(v, (int, float)) and math.isfinite(v))}
    if not test:
        f.fail("final_metrics", "no final test metrics")
    elif bad:
        f.fail("final_metrics", f"non-finite final test metrics {bad}")
    else:
        f.ok("final_metrics", f"test {dict((k, round(v, 4)) for k, v in test.items())}")


#: the method checks, in order
METHOD_CHECKS: tuple[tuple[str, _Check], ...] = (
    ("params", _method_params),
    ("check_params", _method_check_params),
    ("requires", _method_requires),
    ("trial", _method_trial_setup),  # the trial checks are skipped when the trial cannot run
    ("trial", _method_trial),
    ("budget", _method_budget),
    ("updates", _method_updates),
    ("reports", _method_reports),
    ("final_metrics", _method_final_metrics),
)


# --- everything -------------------------------------------------------------------------------------

def check_registry(registry: Any = None, kinds: Iterable[str] = KINDS, data_dir: str | Path | None = None,
                   quick: bool = False, only: Iterable[str] | None = None,
                   plugin_dirs: Iterable[str | Path] | None = None, ruleset: str | None = None) -> list[Finding]:
    """All checks for every plugin of ``kinds`` in ``registry`` (default: the built-in one), plus a failing
    ``loads`` finding per plugin file that failed to import. ``only``: plugin names to check (all if None);
    ``ruleset="tuned"``: a method without a search space fails (see :func:`check_search_space`)."""
    registry = registry or load_registry()
    kinds = tuple(kinds)
    wanted = None if only is None else set(only)
    out: list[Finding] = []
    for info in registry.failures:
        if (info.kind in kinds or info.kind == "unknown") and (wanted is None or info.name in wanted):
            kind = info.kind if info.kind in KINDS else "unknown"
            out.append(Finding(kind, info.name, "loads", False, f"{info.error} ({info.origin})"))
    for kind in kinds:
        for name in registry.names(kind):
            if wanted is not None and name not in wanted:
                continue
            cls = registry.get(kind, name)
            if kind == "tasks":
                out += check_task(cls, data_dir, quick=quick, registry=registry)
            elif kind == "models":
                out += check_model(cls)
            elif kind == "methods":
                out += check_method(cls, registry, plugin_dirs=plugin_dirs, data_dir=data_dir)
                out += check_search_space(cls, ruleset)
    return out


def check_search_space(cls: type[Method], ruleset: str | None = None) -> list[Finding]:
    """The method's declared ``search_space`` (the suites' ``tuned`` ruleset draws from it): every key a
    parameter, every value a space in manifest syntax, and quasi-random draws that validate. A method that
    declares none is skipped, or fails when ``ruleset == "tuned"`` (it cannot enter that ruleset)."""
    from suite.manifest import check_space
    from suite.suites.compile import quasi_random_configs

    f = _Findings("methods", getattr(cls, "name", cls.__name__))
    space = getattr(cls, "search_space", None)
    if space is None:
        message = ("declares no search_space, so it cannot enter a suite's tuned ruleset (add `search_space = "
                   "{param: {uniform: [lo, hi]}, ...}` to the class)")
        if ruleset == "tuned":
            f.fail("search_space", message)
        else:
            f.skip("search_space", message)
        return f.items
    if not isinstance(space, dict):
        f.fail("search_space", f"must be a dict of parameter -> space, not {type(space).__name__}")
        return f.items
    problems = [f"{k}: not a parameter of {cls.Params.__name__}" for k in space if k not in cls.Params.model_fields]
    for k, v in space.items():
        ok_shape = isinstance(v, dict) and len(v) == 1 and next(iter(v)) in ("choice", "uniform", "loguniform", "randint")
        why = check_space(v) if ok_shape else "a space is one of {choice: [...]}, {uniform|loguniform|randint: [lo, hi]}"
        if why:
            problems.append(f"{k}: {why}")
    if not problems:
        base = dict(getattr(cls, "check_params", None) or {})
        for cfg in quasi_random_configs(space, 8, 0):
            try:
                cls.Params.model_validate({**base, **cfg})
            except Exception as exc:  # noqa: BLE001
                problems.append(f"the draw {cfg} does not validate: {_exc_text(exc)}")
                break
    f.check("search_space", problems, f"{len(space)} parameters: {', '.join(sorted(space)) or '(only the optimizer)'}")
    return f.items


def failures(findings: Iterable[Finding]) -> list[Finding]:
    return [x for x in findings if x.ok is False]
