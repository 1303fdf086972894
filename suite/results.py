"""The Parquet results store: ``trials`` and ``curves`` tables, one part file per trial.

Layout::

    RESULTS/trials/experiment=NAME/TRIAL_KEY.parquet   one row per trial, whatever its outcome
    RESULTS/curves/experiment=NAME/TRIAL_KEY.parquet   one row per (report, metric)

Only the driver writes (through :class:`ResultsWriter`, a Tune callback). Each part file is written
to a temporary name and renamed, so a crash never leaves half a file; the file name is the trial's
content key, so a re-run or resume replaces a row instead of duplicating it. The curves part is
written before the trials part: a trial row means the trial is complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from suite import SCHEMA_VERSION

STATUSES = ("ok", "diverged", "error", "timeout", "pruned")  # every status is a finished row

TRIALS_SCHEMA = pa.schema([
    ("schema_version", pa.int16()),
    ("experiment", pa.string()), ("trial_key", pa.string()), ("config_id", pa.string()), ("trial_id", pa.string()),
    ("task", pa.string()), ("model", pa.string()), ("method", pa.string()), ("seed", pa.int64()),
    ("task_params_json", pa.string()), ("model_params_json", pa.string()), ("method_params_json", pa.string()),
    ("optimizer_json", pa.string()), ("budget_json", pa.string()),
    ("status", pa.string()), ("error", pa.string()),
    ("primary_metric", pa.string()), ("direction", pa.string()),
    ("selection_score", pa.float64()),
    ("val_primary", pa.float64()), ("test_primary", pa.float64()), ("train_primary", pa.float64()),
    ("best_val_primary", pa.float64()), ("best_step", pa.int64()),
    ("metrics_json", pa.string()), ("best_val_json", pa.string()),
    ("steps", pa.int64()), ("samples", pa.int64()), ("epochs", pa.int64()), ("evaluations", pa.int64()),
    ("wall_time_s", pa.float64()), ("train_time_s", pa.float64()),
    ("peak_rss_bytes", pa.int64()), ("peak_cuda_bytes", pa.int64()),
    ("cpu", pa.float64()), ("gpu_fraction", pa.float64()), ("gpu_model", pa.string()),
    ("node_id", pa.string()), ("hostname", pa.string()),
    ("suite_version", pa.string()), ("python", pa.string()), ("torch_version", pa.string()),
    ("ray_version", pa.string()), ("numpy_version", pa.string()),
    ("git_commit", pa.string()), ("git_dirty", pa.bool_()),
    ("started_at", pa.timestamp("ms", tz="UTC")), ("finished_at", pa.timestamp("ms", tz="UTC")),
])

CURVES_SCHEMA = pa.schema([
    ("schema_version", pa.int16()),
    ("experiment", pa.string()), ("trial_key", pa.string()),
    ("step", pa.int64()), ("samples", pa.int64()), ("epoch", pa.int64()),
    ("train_time_s", pa.float64()), ("wall_time_s", pa.float64()),
    ("split", pa.string()), ("metric", pa.string()), ("value", pa.float64()),
])

_PROGRESS_KEYS = {"step", "samples", "epoch", "train_time_s", "wall_time_s"}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def curve_rows(spec: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Long-format rows of one progress report: ``split/metric`` keys and diagnostics events."""
    base = {"schema_version": SCHEMA_VERSION, "experiment": spec["experiment"], "trial_key": spec["key"],
            **{k: result.get(k) for k in _PROGRESS_KEYS}}
    rows = []
    for key, value in result.items():
        if "/" not in key or key.startswith(("diag/", "config/")):
            continue
        split, metric = key.split("/", 1)
        v = _num(value)
        if v is not None:
            rows.append({**base, "split": split, "metric": metric, "value": v})
    for step, name, value in json.loads(result.get("diag_events") or "[]"):
        rows.append({**base, "step": step, "split": "diag", "metric": name, "value": float(value)})
    return rows


def trial_row(spec: dict[str, Any], final: dict[str, Any] | None, *, status: str | None = None,
              error: str | None = None, trial_id: str | None = None) -> dict[str, Any]:
    """The ``trials`` row of a trial from its spec and final report (``final`` may be missing)."""
    final = final or {}
    env = json.loads(final.get("env_json") or "{}")
    metrics = json.loads(final.get("metrics_json") or "{}")
    best_val = json.loads(final.get("best_val_json") or "{}")
    primary = final.get("primary_metric")

    def pick(split: str) -> float | None:
        return _num(metrics.get(split, {}).get(primary)) if primary else None

    def ts(v: Any) -> pd.Timestamp | None:
        return pd.Timestamp(v, unit="s", tz="UTC") if v is not None else None

    resources = spec.get("resources", {})
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": spec["experiment"], "trial_key": spec["key"], "config_id": spec["config_id"],
        "trial_id": trial_id,
        "task": spec["task"], "model": spec["model"], "method": spec["method"], "seed": spec["seed"],
        "task_params_json": json.dumps(spec["task_params"], sort_keys=True),
        "model_params_json": json.dumps(spec["model_params"], sort_keys=True),
        "method_params_json": json.dumps(spec["method_params"], sort_keys=True),
        "optimizer_json": json.dumps(spec["optimizer"], sort_keys=True),
        "budget_json": json.dumps(spec["budget"], sort_keys=True),
        "status": status or final.get("status", "error"),
        "error": error if error is not None else final.get("error"),
        "primary_metric": primary, "direction": final.get("direction"),
        "selection_score": _num(final.get("selection_score")),
        "val_primary": pick("val"), "test_primary": pick("test"), "train_primary": pick("train"),
        "best_val_primary": _num(best_val.get(primary)) if primary else None,
        "best_step": final.get("best_step"),
        "metrics_json": json.dumps(metrics), "best_val_json": json.dumps(best_val),
        "steps": final.get("step"), "samples": final.get("samples"), "epochs": final.get("epoch"),
        "evaluations": final.get("evaluations"),
        "wall_time_s": _num(final.get("wall_time_s")), "train_time_s": _num(final.get("train_time_s")),
        "peak_rss_bytes": final.get("peak_rss_bytes"), "peak_cuda_bytes": final.get("peak_cuda_bytes"),
        "cpu": _num(resources.get("cpu")), "gpu_fraction": _num(resources.get("gpu")),
        "gpu_model": env.get("gpu_model"), "node_id": final.get("node_id"), "hostname": env.get("hostname"),
        "suite_version": env.get("suite_version"), "python": env.get("python"),
        "torch_version": env.get("torch_version"), "ray_version": env.get("ray_version"),
        "numpy_version": env.get("numpy_version"), "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "started_at": ts(final.get("started_at")), "finished_at": ts(final.get("finished_at")),
    }


def _atomic_write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsStore:
    """Reads and writes the ``trials`` and ``curves`` Parquet tables under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _part(self, table: str, experiment: str, key: str) -> Path:
        return self.root / table / f"experiment={experiment}" / f"{key}.parquet"

    def write_trial(self, row: dict[str, Any], curves: list[dict[str, Any]]) -> Path:
        """Write one trial's curves then its row, each atomically; replaces an earlier version."""
        exp, key = row["experiment"], row["trial_key"]
        _atomic_write(pa.Table.from_pylist(curves, schema=CURVES_SCHEMA), self._part("curves", exp, key))
        path = self._part("trials", exp, key)
        _atomic_write(pa.Table.from_pylist([row], schema=TRIALS_SCHEMA), path)
        return path

    def finished_keys(self, experiment: str) -> set[str]:
        folder = self.root / "trials" / f"experiment={experiment}"
        return {p.stem for p in folder.glob("*.parquet")} if folder.is_dir() else set()

    def _read(self, table: str, schema: pa.Schema, experiment: str | None) -> pd.DataFrame:
        base = self.root / table
        pattern = f"experiment={experiment}/*.parquet" if experiment else "*/*.parquet"
        files = sorted(base.glob(pattern)) if base.is_dir() else []
        if not files:
            return schema.empty_table().to_pandas()
        tables = [pq.read_table(f, schema=schema) for f in files]
        return pa.concat_tables(tables).to_pandas()

    def trials(self, experiment: str | None = None) -> pd.DataFrame:
        return self._read("trials", TRIALS_SCHEMA, experiment)

    def curves(self, experiment: str | None = None) -> pd.DataFrame:
        return self._read("curves", CURVES_SCHEMA, experiment)

    def experiments(self) -> list[str]:
        base = self.root / "trials"
        return sorted(p.name.split("=", 1)[1] for p in base.glob("experiment=*")) if base.is_dir() else []


class CurveBuffer:
    """Progress reports per trial, held on the driver until the trial finishes."""

    def __init__(self) -> None:
        self._rows: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        self._rows[spec["key"]].extend(curve_rows(spec, result))

    def pop(self, key: str) -> list[dict[str, Any]]:
        return self._rows.pop(key, [])
