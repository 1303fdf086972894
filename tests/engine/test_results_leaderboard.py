"""The Parquet store (atomic, idempotent part files) and the leaderboard's selection and statistics."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from suite.leaderboard import leaderboard, to_markdown
from suite.results import ResultsStore, curve_rows, trial_row


def spec(method: str, config: str, seed: int, **params) -> dict:
    return {"experiment": "exp", "key": f"{method}-{config}-{seed}", "config_id": f"{method}-{config}",
            "task": "t", "model": "gru", "method": method, "seed": seed, "task_params": {}, "model_params": {},
            "method_params": params, "optimizer": {"name": "adam", "lr": 0.01}, "budget": {"steps": 1},
            "resources": {"cpu": 1, "gpu": 0}}


def final(val: float, test: float, status: str = "ok") -> dict:
    return {"final": True, "status": status, "primary_metric": "rmse", "direction": "min",
            "selection_score": val, "metrics_json": json.dumps({"val": {"rmse": val}, "test": {"rmse": test}}),
            "wall_time_s": 1.0, "peak_rss_bytes": 100, "step": 1, "samples": 1, "epoch": 0, "started_at": 0.0,
            "finished_at": 1.0}


def test_part_files_are_atomic_and_never_duplicated(tmp_path):
    store = ResultsStore(tmp_path)
    s = spec("bptt", "a", 0)
    report = {"step": 3, "samples": 30, "epoch": 1, "train_time_s": 0.5, "wall_time_s": 0.6,
              "val/rmse": 1.5, "train/loss": 2.0, "objective": 1.5,
              "diag_events": json.dumps([[2, "K", 10.0]])}
    rows = curve_rows(s, report)
    assert {(r["split"], r["metric"], r["step"]) for r in rows} == {("val", "rmse", 3), ("train", "loss", 3), ("diag", "K", 2)}
    store.write_trial(trial_row(s, final(1.0, 2.0)), rows)
    store.write_trial(trial_row(s, final(0.5, 1.0)), rows)  # a re-run replaces, never duplicates
    trials = store.trials("exp")
    assert len(trials) == 1 and trials["test_primary"].iloc[0] == 1.0
    assert len(store.curves("exp")) == 3
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_final_report_becomes_a_row():
    row = trial_row(spec("bptt", "a", 0), None, status="error", error="worker died")
    assert row["status"] == "error" and row["error"] == "worker died" and row["test_primary"] is None


def test_leaderboard_selects_on_validation_and_aggregates_test_over_seeds(tmp_path):
    store = ResultsStore(tmp_path)
    # config a: better validation, worse test; config b: worse validation, better test
    for seed, (va, ta, vb, tb) in enumerate([(1.0, 3.0, 2.0, 0.1), (1.2, 3.5, 2.1, 0.2), (0.9, 2.5, 2.2, 0.3)]):
        store.write_trial(trial_row(spec("tbptt", "a", seed, window=10), final(va, ta)), [])
        store.write_trial(trial_row(spec("tbptt", "b", seed, window=20), final(vb, tb)), [])
        store.write_trial(trial_row(spec("bptt", "x", seed), final(1.0, 1.0 + seed)), [])
    # config c has the best validation but one diverged seed: failures count, it is never selected
    store.write_trial(trial_row(spec("tbptt", "c", 0, window=30), final(0.1, 0.1)), [])
    store.write_trial(trial_row(spec("tbptt", "c", 1, window=30), final(math.nan, math.nan, "diverged")), [])
    board = leaderboard(store.trials("exp"))
    tb = board[board["method"] == "tbptt"].iloc[0]
    assert json.loads(tb["method_params"]) == {"window": 10}
    assert tb["n_seeds"] == 3 and tb["n_ok"] == 3 and tb["configs_tried"] == 3
    values = [3.0, 3.5, 2.5]
    assert tb["test_mean"] == pytest.approx(sum(values) / 3)
    sem = pd.Series(values).std(ddof=1) / math.sqrt(3)
    assert tb["ci95_high"] - tb["test_mean"] == pytest.approx(stats.t.ppf(0.975, 2) * sem)
    bp = board[board["method"] == "bptt"].iloc[0]
    assert bp["test_mean"] == pytest.approx(2.0)
    assert bp["rank"] == 1 and tb["rank"] == 2  # ranked on the test metric of the selected configurations


def test_split_by_keeps_parameter_values_apart(tmp_path):
    store = ResultsStore(tmp_path)
    for seed in range(2):
        store.write_trial(trial_row(spec("tbptt", "a", seed, window=10, burn_in=0), final(2.0, 2.0 + seed)), [])
        store.write_trial(trial_row(spec("tbptt", "b", seed, window=10, burn_in=5), final(1.0, 1.0 + seed)), [])
    board = leaderboard(store.trials("exp"), split_by=["burn_in"])
    assert set(board["method"]) == {"tbptt[burn_in=0]", "tbptt[burn_in=5]"}
    assert board.set_index("method").loc["tbptt[burn_in=5]", "test_mean"] == pytest.approx(1.5)
    assert len(leaderboard(store.trials("exp"))) == 1


def test_single_seed_rows_show_no_spread(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_trial(trial_row(spec("bptt", "x", 0), final(1.0, 1.25)), [])
    for seed in range(2):
        store.write_trial(trial_row(spec("tbptt", "a", seed, window=10), final(2.0, 2.0 + seed)), [])
    md = to_markdown(leaderboard(store.trials("exp")))
    assert "nan" not in md
    bptt_line = next(line for line in md.splitlines() if "| bptt |" in line)
    assert "| 1.25 | — |" in bptt_line
    tbptt_line = next(line for line in md.splitlines() if "| tbptt |" in line)
    assert "2.5 ± 0.71" in tbptt_line


def _store_with_k_trajectories(tmp_path):
    store = ResultsStore(tmp_path)
    for delta, ks in ((0.9, [50, 20, 12]), (0.1, [50, 80, 120])):
        s = spec("adaptive_tbptt", f"d{delta}", 0, delta=delta)
        events = [[40 * (i + 1), "K", float(k)] for i, k in enumerate(ks)]
        report = {"step": 120, "samples": 1, "epoch": 0, "train_time_s": 1.0, "wall_time_s": 1.0,
                  "val/rmse": 1.0, "diag_events": json.dumps(events)}
        store.write_trial(trial_row(s, final(1.0, 1.0)), curve_rows(s, report))
    return store


def test_trajectory_table_takes_the_last_value_at_each_point(tmp_path):
    from suite.trajectories import metric_curves, trajectory_table

    store = _store_with_k_trajectories(tmp_path)
    long = metric_curves(store.trials("exp"), store.curves("exp"), "K", "diag")
    table = trajectory_table(long, points=3).set_index("label")
    assert list(table.columns[3:6]) == ["step<=40", "step<=80", "step<=120"]
    assert table.loc["adaptive_tbptt gru delta=0.9"].iloc[3:6].tolist() == [50.0, 20.0, 12.0]
    assert table.loc["adaptive_tbptt gru delta=0.1", "final"] == 120.0
    assert table.loc["adaptive_tbptt gru delta=0.1", "mean"] == pytest.approx(250 / 3)
    with pytest.raises(ValueError, match="no curve rows for metric 'beta'.*\\('diag', 'K'\\)"):
        metric_curves(store.trials("exp"), store.curves("exp"), "beta")


def test_curves_command_prints_and_plots(tmp_path):
    from typer.testing import CliRunner

    from suite.cli import app

    _store_with_k_trajectories(tmp_path / "results")
    plot = tmp_path / "k.png"
    res = CliRunner().invoke(app, ["curves", str(tmp_path / "results"), "--metric", "K", "--points", "3",
                                   "--format", "md", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert "| adaptive_tbptt gru delta=0.9 | t | 0 |" in res.output and "| 50 | 20 | 12 | 12 |" in res.output
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["curves", str(tmp_path / "results"), "--metric", "nope"])
    assert bad.exit_code == 2 and "no curve rows for metric 'nope'" in bad.output
