"""Reading stores written by rnnbench 0.1 (schema version 1): one part file per trial under hive folders.

Layout of a version-1 store::

    RESULTS/trials/experiment=NAME/TRIAL_KEY.parquet   one row
    RESULTS/curves/experiment=NAME/TRIAL_KEY.parquet   the trial's curve rows

:class:`suite.store.results.ResultsStore` reads such parts through :func:`upgrade_trials` / :func:`upgrade_curves`
and ``rnnbench compact`` migrates them into the current layout (and deletes them).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from suite.store.record import CurvePoint, TrialRecord, curves_to_table, records_to_table

LEGACY_FOLDER_PREFIX = "experiment="

V1_TRIALS_SCHEMA = pa.schema([
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

V1_CURVES_SCHEMA = pa.schema([
    ("schema_version", pa.int16()),
    ("experiment", pa.string()), ("trial_key", pa.string()),
    ("step", pa.int64()), ("samples", pa.int64()), ("epoch", pa.int64()),
    ("train_time_s", pa.float64()), ("wall_time_s", pa.float64()),
    ("split", pa.string()), ("metric", pa.string()), ("value", pa.float64()),
])


def run_id_of(trial_key: str) -> str:
    """Version-1 rows had no run id: one per trial key, shared by its row and its curves."""
    return f"v1-{trial_key}"


def _ts(value: Any) -> float | None:
    return None if value is None else value.timestamp()


def _record(row: dict[str, Any]) -> TrialRecord:
    loads = lambda key: json.loads(row.get(key) or "{}")  # noqa: E731
    return TrialRecord(
        experiment=row["experiment"], trial_key=row["trial_key"], config_id=row["config_id"], task=row["task"],
        model=row["model"], method=row["method"], seed=row["seed"], task_params=loads("task_params_json"),
        model_params=loads("model_params_json"), method_params=loads("method_params_json"),
        optimizer=loads("optimizer_json"), budget=loads("budget_json"), status=row["status"], error=row["error"],
        primary_metric=row["primary_metric"], direction=row["direction"], selection_score=row["selection_score"],
        metrics=loads("metrics_json"), best_val=loads("best_val_json"), best_step=row["best_step"],
        steps=row["steps"], samples=row["samples"], epochs=row["epochs"], evaluations=row["evaluations"],
        wall_time_s=row["wall_time_s"], train_time_s=row["train_time_s"], peak_rss_bytes=row["peak_rss_bytes"],
        peak_cuda_bytes=row["peak_cuda_bytes"], cpu=row["cpu"], gpu_fraction=row["gpu_fraction"],
        gpu_model=row["gpu_model"], node_id=row["node_id"], hostname=row["hostname"],
        suite_version=row["suite_version"], python=row["python"], torch_version=row["torch_version"],
        ray_version=row["ray_version"], numpy_version=row["numpy_version"], git_commit=row["git_commit"],
        git_dirty=row["git_dirty"], started_at=_ts(row["started_at"]), finished_at=_ts(row["finished_at"]),
        trial_id=row["trial_id"], run_id=run_id_of(row["trial_key"]), written_at=_ts(row["finished_at"]),
    )


def upgrade_trials(table: pa.Table) -> pa.Table:
    """Version-1 ``trials`` rows in the current schema (parameters and metrics flattened)."""
    return records_to_table([_record(r) for r in table.to_pylist()])


def upgrade_curves(table: pa.Table) -> pa.Table:
    """Version-1 ``curves`` rows in the current schema (with the run id their trial row gets)."""
    points = [CurvePoint(experiment=r["experiment"], trial_key=r["trial_key"], run_id=run_id_of(r["trial_key"]),
                         step=r["step"], samples=r["samples"], epoch=r["epoch"], train_time_s=r["train_time_s"],
                         wall_time_s=r["wall_time_s"], split=r["split"], metric=r["metric"], value=r["value"])
              for r in table.to_pylist()]
    return curves_to_table(points)
