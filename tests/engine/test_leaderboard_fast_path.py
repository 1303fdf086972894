"""``rnnbench leaderboard`` starts fast: its path imports neither torch, Ray, W&B, matplotlib, SciPy nor pandas
(structural checks, not timings), and what it computes without them equals the DataFrame API."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from suite.analysis.ranking import leaderboard, leaderboard_rows
from suite.store import results as store_results
from suite.store.record import TrialRecord
from suite.store.results import ResultsStore

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HEAVY = ("torch", "ray", "wandb", "matplotlib", "scipy", "pandas", "pyarrow.dataset")

PROBE = """
import json, sys
from suite.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    sys.stdout.flush()
    print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def _imported_by(args: list[str]) -> tuple[str, list[str]]:
    env = {"PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout, json.loads(res.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_the_leaderboard_command_imports_no_heavy_library(fmt):
    out, heavy = _imported_by(["leaderboard", str(FIXTURES / "suite-reference"), "--format", fmt])
    assert "toy-sysid" in out and "markov-tokens" in out
    assert heavy == [], f"rnnbench leaderboard --format {fmt} imported {heavy}"


def test_importing_the_cli_and_the_leaderboard_imports_no_heavy_library():
    code = ("import sys, json, suite.cli, suite.analysis.ranking, suite.analysis.stats, suite.store.results; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout) == []


def rec(method: str, config: str, seed: int, val: float, test: float, status: str = "ok", task: str = "t",
        experiment: str = "exp", direction: str = "min", **params) -> TrialRecord:
    metric = "rmse" if direction == "min" else "accuracy"
    return TrialRecord(experiment=experiment, trial_key=f"{experiment}-{task}-{method}-{config}-{seed}",
                       config_id=f"{experiment}-{task}-{method}-{config}", task=task, model="gru", method=method,
                       seed=seed, method_params=params, optimizer={"name": "adam", "lr": 0.01}, budget={"steps": 1},
                       status=status, primary_metric=metric, direction=direction,
                       selection_score=None if math.isnan(val) else val,
                       metrics={} if math.isnan(val) else {"val": {metric: val}, "test": {metric: test, "mae": test / 2}},
                       metric_specs={metric: {"direction": direction, "unit": "V", "low": 0.0}}, wall_time_s=1.0 + seed,
                       peak_rss_bytes=2**20, steps=1, samples=1, epochs=0, started_at=0.0, finished_at=1.0,
                       run_id=f"run-{seed}")


@pytest.fixture
def varied_store(tmp_path):
    store = ResultsStore(tmp_path / "results")
    records = []
    for exp, d in (("a", 0.0), ("b", 0.05)):  # pooled, equal means would be picked by the order of summation
        for s in range(5):
            records += [rec("bptt", "x", s, 1.0 + 0.1 * s + d, 1.1 + 0.1 * s, experiment=exp),
                        rec("tbptt", "w10", s, 0.9 + 0.13 * s + d, 1.0 + 0.12 * s, experiment=exp, window=10, burn_in=0),
                        rec("tbptt", "w20", s, 1.2 + 0.01 * s + d, 1.3 + 0.2 * s, experiment=exp, window=20, burn_in=5),
                        rec("smt", "r2", s, 0.5 + d, 0.5, task="acc", direction="max", experiment=exp, rank=2),
                        rec("bptt", "x", s, 0.6 + 0.01 * s + d, 0.61 + 0.02 * s, task="acc", direction="max",
                            experiment=exp)]
        records += [rec("lstm", "two", s, 2.0 + s + d, 2.0 + s, experiment=exp) for s in range(2)]
        records += [rec("dead", "d", s, math.nan, math.nan, "error", experiment=exp) for s in range(3)]
    store.write(records[:40])
    store.write(records[40:])  # two parts, one with columns the other lacks
    return store


def _same(board: pd.DataFrame, rows: list) -> None:
    assert list(board.columns) == list(rows[0]._fields) and len(board) == len(rows)
    for (_, expected), got in zip(board.iterrows(), rows):
        for col, value in expected.items():
            mine = getattr(got, col)
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(mine, float) and math.isnan(mine), col
            elif value is pd.NA:
                assert mine is None, col
            else:
                assert mine == value, (col, mine, value)


@pytest.mark.parametrize("options", [{}, {"pool": True}, {"split_by": ["window", "burn_in"]}, {"metric": "mae"},
                                     {"task": "acc"}, {"experiment": "b"}, {"test": "wilcoxon"}])
def test_leaderboard_rows_equal_the_dataframe(varied_store, options):
    _same(leaderboard(varied_store, **options), leaderboard_rows(varied_store, **options))


@pytest.mark.parametrize("name", ["v2", "v2-before-checkpoint", "v2-added-column", "v3-newer", "v1"])
def test_leaderboard_rows_equal_the_dataframe_on_every_shipped_schema(name):
    store = ResultsStore(FIXTURES / "stores" / name)
    _same(leaderboard(store), leaderboard_rows(store))


@pytest.mark.parametrize("path", ["suite-reference", "stores/v2", "stores/v2-before-checkpoint", "stores/v2-added-column",
                                  "stores/v3-newer"])
def test_duckdb_reads_the_parts_as_pyarrow_dataset_does(path, monkeypatch):
    """The duckdb Parquet reader path gives the rows and types the pyarrow.dataset path gives."""
    store = ResultsStore(FIXTURES / path)
    native = {t: getattr(store, t)() for t in ("trials", "curves")}
    monkeypatch.setattr(store_results, "_native_select", lambda *a: None)
    for table, frame in native.items():
        via_dataset = getattr(store, table)()
        key = ["trial_key", "step", "split", "metric"] if table == "curves" else ["trial_key"]
        pd.testing.assert_frame_equal(frame.sort_values(key).reset_index(drop=True),
                                      via_dataset.sort_values(key).reset_index(drop=True), check_exact=True)


def test_parts_with_different_columns_read_the_same_both_ways(varied_store, monkeypatch):
    native = varied_store.trials()
    monkeypatch.setattr(store_results, "_native_select", lambda *a: None)
    pd.testing.assert_frame_equal(native.sort_values("trial_key").reset_index(drop=True),
                                  varied_store.trials().sort_values("trial_key").reset_index(drop=True), check_exact=True)


def test_connections_share_a_database_but_not_their_views(varied_store):
    other = ResultsStore(FIXTURES / "suite-reference")
    a, b = varied_store.connect(), other.connect("toy.toy-sysid.defaults.94c111fa")
    count_a = a.sql("SELECT count(*) FROM trials").fetchall()
    a.close()
    assert b.sql("SELECT DISTINCT experiment FROM trials").fetchall() == [("toy.toy-sysid.defaults.94c111fa",)]
    assert varied_store.connect().sql("SELECT count(*) FROM trials").fetchall() == count_a == [(60,)]
