"""The results store: batched parts, compaction, reruns, readers (pandas, pyarrow, duckdb, polars), URIs,
flattened parameter columns and version-1 stores."""

from __future__ import annotations

import dataclasses
import json

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from suite.analysis.ranking import leaderboard
from suite.store.record import TRIALS_SCHEMA, CurvePoint, TrialRecord, record_from_row
from suite.store.results import ResultsStore
from suite.store.results_v1 import V1_CURVES_SCHEMA, V1_TRIALS_SCHEMA


def rec(i: int, experiment: str = "exp", method: str = "tbptt", status: str = "ok", run: str = "r1", **params) -> TrialRecord:
    return TrialRecord(experiment=experiment, trial_key=f"{experiment}-k{i}", config_id=f"{experiment}-c{i % 3}",
                       task="t", model="gru", method=method, seed=i // 3, method_params=params or {"window": 10 * (i % 3 + 1)},
                       model_params={"hidden_size": 8}, optimizer={"name": "adam", "lr": 0.01, "betas": [0.9, 0.99]},
                       budget={"steps": 5}, status=status, primary_metric="rmse", direction="min",
                       selection_score=float(i % 3), metrics={"val": {"rmse": float(i % 3)}, "test": {"rmse": 1.0 + i}},
                       run_id=run, started_at=1.7e9, finished_at=1.7e9 + 1)


def point(r: TrialRecord, step: int) -> CurvePoint:
    return CurvePoint(r.experiment, r.trial_key, r.run_id, step, step, 0, 0.1 * step, 0.1 * step, "val", "rmse", 1.0 / step)


def test_record_round_trips_through_the_table(tmp_path):
    store = ResultsStore(tmp_path)
    r = rec(4)
    store.write([r])
    back = store.records("exp")[0]
    assert back == dataclasses.replace(r, written_at=back.written_at) and back.written_at is not None
    assert record_from_row(store.trials("exp").iloc[0].to_dict()) == back


def test_parts_are_batched_and_compaction_keeps_the_newest_row(tmp_path):
    store = ResultsStore(tmp_path)
    first = [rec(i) for i in range(6)]
    store.write(first[:3], [point(r, s) for r in first[:3] for s in (1, 2)])
    store.write(first[3:], [point(r, s) for r in first[3:] for s in (1, 2)])
    rerun = dataclasses.replace(rec(1, run="r2"), metrics={"test": {"rmse": -1.0}})
    store.write([rerun], [point(rerun, 7)])
    assert len(list((tmp_path / "trials" / "exp").glob("part-*.parquet"))) == 3  # one part per flush, not per trial
    trials = store.trials("exp").set_index("trial_key")
    assert len(trials) == 6 and trials.loc["exp-k1", "test.rmse"] == -1.0 and trials.loc["exp-k1", "run_id"] == "r2"
    curves = store.curves("exp")
    assert len(curves) == 11 and curves.loc[curves["trial_key"] == "exp-k1", "step"].tolist() == [7]
    reports = {r.table: r for r in store.compact()}
    assert (reports["trials"].rows_before, reports["trials"].rows_after) == (7, 6)
    assert (reports["curves"].rows_before, reports["curves"].rows_after) == (13, 11)
    files = sorted(p.name for p in (tmp_path / "trials" / "exp").iterdir())
    assert len(files) == 1 and files[0].startswith("compact-")
    assert store.trials("exp").set_index("trial_key").loc["exp-k1", "test.rmse"] == -1.0
    assert store.compact() == []  # one file per experiment: nothing left to do


def test_a_crash_during_compaction_loses_and_duplicates_nothing(tmp_path):
    store = ResultsStore(tmp_path)
    store.write([rec(0), rec(1)])
    store.write([rec(2)])
    parts = sorted((tmp_path / "trials" / "exp").glob("part-*.parquet"))
    saved = {p: p.read_bytes() for p in parts}
    store.compact()
    for p, data in saved.items():  # as if the process died after writing the compacted file
        p.write_bytes(data)
    assert sorted(store.trials("exp")["trial_key"]) == ["exp-k0", "exp-k1", "exp-k2"]
    store.compact()
    assert len(list((tmp_path / "trials" / "exp").iterdir())) == 1


def test_plain_readers_read_experiments_whose_parameters_are_set_in_one_and_unset_in_the_other(tmp_path):
    """An SGD experiment (no betas, a momentum) and an AdamW one (list betas, no momentum) in one store, read by
    plain pandas whichever file comes first (seen on a reproduction store: float64 vs JSON text)."""
    store = ResultsStore(tmp_path)
    sgd = [dataclasses.replace(rec(i, experiment="a-sgd"), optimizer={"name": "sgd", "lr": 1.0, "betas": None,
                                                                       "momentum": 0.9}) for i in range(2)]
    adamw = [dataclasses.replace(rec(i, experiment="b-adamw"), optimizer={"name": "adamw", "lr": 1e-3,
                                                                          "betas": [0.9, 0.95], "momentum": None})
             for i in range(2)]
    store.write(sgd)
    store.write(adamw)
    store.compact()
    for trials in (pd.read_parquet(tmp_path / "trials"), pq.read_table(tmp_path / "trials").to_pandas()):
        by_exp = trials.set_index("experiment")
        assert sorted(trials["experiment"]) == ["a-sgd", "a-sgd", "b-adamw", "b-adamw"]
        assert json.loads(by_exp.loc["b-adamw", "optimizer.betas"].iloc[0]) == [0.9, 0.95]
        assert by_exp.loc["a-sgd", "optimizer.momentum"].astype(float).tolist() == [0.9, 0.9]
    both = store.trials()  # rnnbench's reader: an unset column takes the type of the experiment that sets it
    assert both["optimizer.momentum"].dtype == "float64" and both["optimizer.momentum"].isna().sum() == 2
    assert sorted(json.loads(v) for v in both["optimizer.betas"].dropna()) == [[0.9, 0.95]] * 2


def test_plain_readers_read_the_store_directly(tmp_path):
    store = ResultsStore(tmp_path)
    store.write([rec(i) for i in range(3)], [point(rec(0), 1)])
    store.write([rec(i, experiment="other", method="bptt", batch_size=4) for i in range(2)])
    store.compact("exp")  # one compacted experiment beside one with a part
    trials, curves = str(tmp_path / "trials"), str(tmp_path / "curves")
    assert len(pd.read_parquet(trials)) == 5 and len(pd.read_parquet(curves)) == 1
    assert pq.read_table(trials).num_rows == 5
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{trials}/*/*.parquet', union_by_name=true)").fetchall() == [(5,)]
    assert pl.scan_parquet(f"{trials}/*/*.parquet", missing_columns="insert", extra_columns="ignore").collect().height == 5
    assert pl.read_parquet(f"{trials}/exp/*.parquet").height == 3
    # flattened, typed parameter columns: filter without json.loads
    exp = pd.read_parquet(f"{trials}/exp")
    assert exp["method.window"].dtype == "float64" and sorted(exp.loc[exp["method.window"] > 10, "trial_key"]) == ["exp-k1", "exp-k2"]
    assert json.loads(exp["optimizer.betas"].iloc[0]) == [0.9, 0.99]  # a list parameter: JSON text
    sql = duckdb.sql(f"""SELECT count(*) FROM read_parquet('{trials}/*/*.parquet', union_by_name=true)
                         WHERE "method.batch_size" = 4""").fetchall()
    assert sql == [(2,)]
    # the core columns have one type in every file
    for f in (tmp_path / "trials").rglob("*.parquet"):
        schema = pq.read_schema(f)
        assert all(schema.field(c.name).type == c.type for c in TRIALS_SCHEMA)


@pytest.mark.parametrize("uri", ["file", "memory"])
def test_stores_on_filesystem_uris(tmp_path, uri):
    root = f"file://{tmp_path}/res" if uri == "file" else f"memory://rnnbench-test-{tmp_path.name}/res"
    store = ResultsStore(root)
    store.write([rec(0), rec(1)], [point(rec(0), 1)])
    store.write([rec(2)])
    assert sorted(store.trials()["trial_key"]) == ["exp-k0", "exp-k1", "exp-k2"] and store.experiments() == ["exp"]
    assert store.compact()[0].files_after == 1
    assert len(store.trials("exp")) == 3 and len(store.curves("exp")) == 1
    assert len(leaderboard(store)) == 1
    if uri == "file":
        assert (tmp_path / "res" / "trials" / "exp").is_dir()


def _write_v1_store(root) -> None:
    """A store as rnnbench 0.1 wrote it: one file per trial under experiment=NAME/."""
    for i, (status, test) in enumerate([("ok", 1.5), ("diverged", None)]):
        row = {f.name: None for f in V1_TRIALS_SCHEMA}
        row.update(schema_version=1, experiment="old", trial_key=f"key{i}", config_id="cfg", task="t", model="gru",
                   method="tbptt", seed=i, task_params_json="{}", model_params_json='{"hidden_size": 8}',
                   method_params_json='{"window": 50}', optimizer_json='{"lr": 0.01}', budget_json='{"epochs": 2}',
                   status=status, primary_metric="rmse", direction="min", selection_score=1.0 if test else None,
                   metrics_json=json.dumps({"test": {"rmse": test}} if test else {}), best_val_json="{}",
                   test_primary=test, started_at=pd.Timestamp(1.7e9, unit="s", tz="UTC"),
                   finished_at=pd.Timestamp(1.7e9 + 5, unit="s", tz="UTC"))
        folder = root / "trials" / "experiment=old"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([row], schema=V1_TRIALS_SCHEMA), folder / f"key{i}.parquet")
        curve = {"schema_version": 1, "experiment": "old", "trial_key": f"key{i}", "step": 1, "samples": 1, "epoch": 0,
                 "train_time_s": 0.1, "wall_time_s": 0.1, "split": "val", "metric": "rmse", "value": 2.0}
        (root / "curves" / "experiment=old").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([curve], schema=V1_CURVES_SCHEMA), root / "curves" / "experiment=old" / f"key{i}.parquet")


def test_version_1_stores_are_read_and_migrated(tmp_path):
    _write_v1_store(tmp_path)
    store = ResultsStore(tmp_path)
    assert store.experiments() == ["old"] and store.has_legacy()
    trials = store.trials("old").set_index("trial_key")
    assert trials.loc["key0", "test.rmse"] == 1.5 and trials.loc["key0", "method.window"] == 50.0
    assert trials.loc["key1", "status"] == "diverged" and len(store.curves("old")) == 2
    before = leaderboard(store)
    store.compact()
    assert not store.has_legacy() and not (tmp_path / "trials" / "experiment=old").exists()
    assert store.trials("old").set_index("trial_key").loc["key0", "test.rmse"] == 1.5
    assert len(store.curves("old")) == 2 and leaderboard(store).equals(before)
    assert set(pd.read_parquet(tmp_path / "trials")["schema_version"]) == {2}


def test_rows_with_a_parameter_of_changing_type_stay_readable(tmp_path):
    store = ResultsStore(tmp_path)
    store.write([rec(0, mode=1.0)])
    store.write([rec(1, mode="stateful")])
    for _ in range(2):  # before and after compaction: the number is kept as text beside the string
        modes = store.trials("exp").set_index("trial_key")["method.mode"]
        assert modes["exp-k1"] == "stateful" and float(modes["exp-k0"]) == 1.0
        store.compact()
