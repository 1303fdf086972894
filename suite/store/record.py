"""The trial record: what one finished trial stores, as one typed object with its Arrow schema derived from it.

:class:`TrialRecord` is produced by the trial (:func:`suite.run.trial.execute_trial`), travels to the driver
as JSON inside the final Tune report, and is written by the results store as one row of the ``trials``
table. :class:`CurvePoint` is one row of the ``curves`` table (a metric at a report). Adding a field here
adds a column: the Arrow schemas below are derived from the dataclass fields, so what is stored is
defined in this one file.

Beside the fixed (core) columns, a trial row holds flattened, typed copies of its parameters and metrics,
so users filter with SQL or pandas without ``json.loads``:

* ``task.<name>``, ``model.<name>``, ``method.<name>``, ``optimizer.<name>``, ``budget.<name>``: every
  parameter (numbers as float64, booleans as bool, anything else as a string; lists and mappings as JSON);
* ``train.<metric>``, ``val.<metric>``, ``test.<metric>``, ``best_val.<metric>``: every final metric (float64).

The core columns have the same types in every file of every store, so plain ``pandas.read_parquet``,
``pyarrow.parquet.read_table``, duckdb and polars read a whole store. The flattened columns differ between
experiments (a column a file lacks reads as null).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import pyarrow as pa

from suite._version import SCHEMA_VERSION

Status = Literal["ok", "diverged", "error", "timeout", "pruned"]
STATUSES: tuple[str, ...] = typing.get_args(Status)  #: every status is a finished row
ERROR_MESSAGE_LIMIT = 4000  #: characters of an error message (with its traceback) kept in a trial row
FAILED_STATUSES = ("error", "timeout")  #: what ``--retry-failed`` reruns (``diverged`` only when asked)
PARAM_GROUPS = ("task", "model", "method", "optimizer", "budget")
METRIC_GROUPS = ("train", "val", "test", "best_val")

_TIMESTAMP = pa.timestamp("ms", tz="UTC")


FAILED_SCORE = math.inf  #: the oriented score of a failed trial or configuration


def orient(score: float | None, direction: str | None) -> float:
    """Lower is better: max-metrics are negated; a missing or NaN score is :data:`FAILED_SCORE`."""
    if score is None or math.isnan(score):
        return FAILED_SCORE
    return -score if direction == "max" else score



_TS = {"arrow": _TIMESTAMP}  # float seconds since the epoch in the record, a UTC timestamp in Parquet


@dataclass
class TrialRecord:
    """One trial, whatever its outcome. Identity and parameters come from the trial spec; outcome, metrics,
    cost and environment from the trial; ``trial_id``, ``written_at`` from the driver."""

    # --- identity (from the spec) ---------------------------------------------------------------------
    experiment: str
    trial_key: str  #: content hash of everything that defines the trial (seed included)
    config_id: str  #: content hash of the configuration (the trial key without the seed)
    task: str
    model: str
    method: str
    seed: int
    task_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    method_params: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    selection_json: str = "{}"  #: the selection rule (metric, split weights) the score was computed with
    # --- outcome ----------------------------------------------------------------------------------------
    status: str = "error"
    error: str | None = None
    log_path: str | None = None  #: the trial's captured stdout/stderr, relative to the results root
    primary_metric: str | None = None  #: the selection metric
    direction: str | None = None  #: "min" or "max", of the selection metric
    selection_score: float | None = None  #: sum over splits of weight x metric (NaN when it could not be computed)
    checkpoint: str = "final"  #: which parameters the final metrics were measured at: "final" or "best_val"
    checkpoint_step: int | None = None  #: the step of those parameters
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    best_val: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None  #: the step of the best validation selection score during training
    metric_specs: dict[str, dict[str, str]] = field(default_factory=dict)  #: {metric: {direction, unit}}
    nonconverged: int | None = None  #: Newton solves that did not converge (DEER family), None if not counted
    # --- cost -------------------------------------------------------------------------------------------
    steps: int | None = None
    samples: int | None = None
    epochs: int | None = None
    evaluations: int | None = None
    wall_time_s: float | None = None  #: the whole trial: build, training, evaluations, final evaluation
    train_time_s: float | None = None  #: training only (evaluation excluded; what a time budget counts)
    setup_time_s: float | None = None  #: building task, model and method before the budget clock starts
    peak_rss_bytes: int | None = None  #: the trial's own peak resident-memory increase over its start
    peak_cuda_bytes: int | None = None  #: CUDA peak allocated during the trial (reset at its start)
    cpu: float | None = None
    gpu_fraction: float | None = None
    # --- environment ------------------------------------------------------------------------------------
    gpu_model: str | None = None
    node_id: str | None = None
    hostname: str | None = None
    suite_version: str | None = None
    python: str | None = None
    torch_version: str | None = None
    ray_version: str | None = None
    numpy_version: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    started_at: float | None = field(default=None, metadata=_TS)
    finished_at: float | None = field(default=None, metadata=_TS)
    # --- bookkeeping (driver) ---------------------------------------------------------------------------
    trial_id: str | None = None  #: Ray Tune's trial id
    run_id: str = ""  #: one execution of the trial (a rerun gets a new one; its curves carry the same id)
    attempts: int = 1  #: executions Ray made of it in this sweep (retries after a lost worker)
    written_at: float | None = field(default=None, metadata=_TS)  #: set by the store; the newest row of a key wins
    schema_version: int = SCHEMA_VERSION

    # --- views ------------------------------------------------------------------------------------------
    def metric(self, split: str, name: str | None = None) -> float | None:
        """A final metric of ``split`` (default: the selection metric), or None."""
        name = name or self.primary_metric
        value = self.metrics.get(split, {}).get(name) if name else None
        return None if value is None else float(value)

    @property
    def objective(self) -> float:
        """The selection score oriented so that lower is better; +inf when the trial failed."""
        if self.status != "ok":
            return math.inf
        return orient(self.selection_score, self.direction)

    # --- transport -------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> TrialRecord:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class CurvePoint:
    """One value of one metric at one report of a trial (a row of the ``curves`` table)."""

    experiment: str
    trial_key: str
    run_id: str
    step: int | None
    samples: int | None
    epoch: int | None
    train_time_s: float | None
    wall_time_s: float | None
    split: str  #: "train" / "val" (evaluations), "diag" (method diagnostics)
    metric: str
    value: float
    schema_version: int = SCHEMA_VERSION


# --- Arrow schemas, derived from the dataclasses --------------------------------------------------------
_SCALARS: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(f: dataclasses.Field, hint: Any) -> pa.DataType:
    if "arrow" in f.metadata:
        return f.metadata["arrow"]
    if f.name == "schema_version":
        return pa.int16()
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else hint
    if base in _SCALARS:
        return _SCALARS[base]
    return pa.string()  # mappings: stored as JSON


def _columns(cls: type) -> list[tuple[str, pa.DataType, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        name = f"{f.name}_json" if typing.get_origin(hint) is dict else f.name  # mappings are stored as JSON
        out.append((name, _arrow_type(f, hint), f))
    return out


_TRIAL_COLUMNS = _columns(TrialRecord)
_CURVE_COLUMNS = _columns(CurvePoint)
#: derived convenience columns of the selection metric (what the leaderboard reads by default)
DERIVED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("val_primary", pa.float64()), ("test_primary", pa.float64()), ("train_primary", pa.float64()),
    ("best_val_primary", pa.float64()), ("objective", pa.float64()),
)

TRIALS_SCHEMA = pa.schema([(name, t) for name, t, _ in _TRIAL_COLUMNS] + list(DERIVED_COLUMNS))
"""The core columns of the ``trials`` table (flattened parameter and metric columns come beside them)."""
CURVES_SCHEMA = pa.schema([(name, t) for name, t, _ in _CURVE_COLUMNS])


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _cell(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if t == _TIMESTAMP:
        return int(round(float(value) * 1000))
    if t == pa.string() and not isinstance(value, str):
        return _json(value)
    if t == pa.int64() or t == pa.int16():
        return int(value)
    if t == pa.float64():
        return float(value)
    return value


def _array(values: list[Any], t: pa.DataType) -> pa.Array:
    cells = [_cell(v, t) for v in values]
    if t == _TIMESTAMP:
        return pa.array(cells, type=pa.int64()).cast(t)
    return pa.array(cells, type=t)


def flat_value_type(values: Iterable[Any]) -> pa.DataType:
    """The column type of a flattened parameter: float64 for numbers, bool, else string.

    A column with no value at all (e.g. ``optimizer.betas`` of an SGD experiment) is a string column: plain
    readers take the first file's schema, and string is the type every other file's values (numbers, lists
    as JSON) can be read into; an all-null float64 column made ``pd.read_parquet`` fail on a store where
    another experiment holds text there."""
    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _flat_cell(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if t == pa.string():
        return value if isinstance(value, str) else _json(value)
    return float(value) if t == pa.float64() else value


_PARAM_FIELDS = {"task": "task_params", "model": "model_params", "method": "method_params", "optimizer": "optimizer",
                 "budget": "budget"}


def flattened(record: TrialRecord) -> dict[str, Any]:
    """The flattened parameter and metric values of a record: ``{"method.window": 50, "test.rmse": 0.1, ...}``."""
    out: dict[str, Any] = {}
    for group in PARAM_GROUPS:
        for k, v in (getattr(record, _PARAM_FIELDS[group]) or {}).items():
            out[f"{group}.{k}"] = v
    for split, values in (record.metrics or {}).items():
        for k, v in values.items():
            out[f"{split}.{k}"] = None if v is None else float(v)
    for k, v in (record.best_val or {}).items():
        out[f"best_val.{k}"] = None if v is None else float(v)
    return out


def _derived(r: TrialRecord) -> list[Any]:
    best = r.best_val.get(r.primary_metric) if r.primary_metric else None
    return [r.metric("val"), r.metric("test"), r.metric("train"), None if best is None else float(best), r.objective]


def records_to_table(records: list[TrialRecord], flat_types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """A ``trials`` table of ``records``: the core columns, then the flattened columns (sorted by name).

    ``flat_types`` fixes the flattened columns and their types (e.g. from the whole trial matrix, so
    every part of an experiment has the same schema); columns the records add are inferred."""
    arrays, names = [], []
    for name, t, f in _TRIAL_COLUMNS:
        arrays.append(_array([getattr(r, f.name) for r in records], t))
        names.append(name)
    derived = [_derived(r) for r in records]
    for i, (name, t) in enumerate(DERIVED_COLUMNS):
        arrays.append(_array([d[i] for d in derived], t))
        names.append(name)
    flats = [flattened(r) for r in records]
    types_ = dict(flat_types or {})
    for key in sorted({k for fl in flats for k in fl} - set(types_)):
        types_[key] = flat_value_type(fl.get(key) for fl in flats)
    for key in sorted(types_):
        t = types_[key]
        values = [fl.get(key) for fl in flats]
        if t != pa.string() and flat_value_type(values) not in (t, pa.null()) and any(v is not None for v in values):
            t = pa.string()  # a value of another type than the fixed column: keep it, as text
        arrays.append(pa.array([_flat_cell(v, t) for v in values], type=t))
        names.append(key)
    return pa.Table.from_arrays(arrays, names=names)


def curves_to_table(points: list[CurvePoint]) -> pa.Table:
    arrays = [_array([getattr(p, f.name) for p in points], t) for _, t, f in _CURVE_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=CURVES_SCHEMA)


def _from_cell(value: Any, t: pa.DataType) -> Any:
    if value is None or value != value:  # noqa: PLR0124 -- NaN and NaT: pandas reads a null as one of them
        return None
    if hasattr(value, "timestamp"):  # pandas / datetime timestamps
        return value.timestamp()
    if t in (pa.int64(), pa.int16()):
        return int(value)
    if t == pa.bool_():
        return bool(value)
    return value


def record_from_row(row: dict[str, Any]) -> TrialRecord:
    """A :class:`TrialRecord` from a stored row (a dict of core columns, e.g. ``DataFrame.to_dict('records')``)."""
    kwargs: dict[str, Any] = {}
    for name, t, f in _TRIAL_COLUMNS:
        if name not in row:
            continue
        value = row[name]
        if name != f.name:  # a mapping stored as JSON
            value = json.loads(value) if isinstance(value, str) and value else {}
            kwargs[f.name] = value
        else:
            kwargs[f.name] = _from_cell(value, t)
    return TrialRecord(**kwargs)


def flat_types_of(records: Iterable[TrialRecord]) -> dict[str, pa.DataType]:
    """Column types of the flattened parameters of ``records`` (the metric columns are always float64)."""
    values: dict[str, list[Any]] = {}
    for r in records:
        for k, v in flattened(r).items():
            values.setdefault(k, []).append(v)
    return {k: (pa.float64() if k.split(".", 1)[0] in METRIC_GROUPS else flat_value_type(v)) for k, v in values.items()}


_PROGRESS_KEYS = ("step", "samples", "epoch", "train_time_s", "wall_time_s")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def curve_points(experiment: str, trial_key: str, run_id: str, report: dict[str, Any]) -> list[CurvePoint]:
    """The curve rows of one progress report: its ``split/metric`` values, and its diagnostics events
    (``diag_events``: ``[[step, name, value], ...]``, each at the step it was logged)."""
    base = {k: report.get(k) for k in _PROGRESS_KEYS}
    points = []
    for key, value in report.items():
        if "/" not in key or key.startswith(("diag/", "config/")):
            continue
        v = _number(value)
        if v is not None:
            split, metric = key.split("/", 1)
            points.append(CurvePoint(experiment, trial_key, run_id, split=split, metric=metric, value=v, **base))
    for step, name, value in json.loads(report.get("diag_events") or "[]"):
        points.append(CurvePoint(experiment, trial_key, run_id, split="diag", metric=name, value=float(value),
                                 **{**base, "step": step}))
    return points
