"""The Parquet store (atomic, idempotent part files) and the leaderboard's selection and statistics."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest

from suite.analysis.ranking import LeaderboardError, leaderboard, to_markdown
from suite.analysis.stats import bootstrap_ci
from suite.store.record import TrialRecord, curve_points
from suite.store.results import ResultsStore


def rec(method: str, config: str, seed: int, val: float = 1.0, test: float = 1.0, status: str = "ok",
        task: str = "t", experiment: str = "exp", **params) -> TrialRecord:
    """A finished trial's record, as the trial would produce it."""
    return TrialRecord(experiment=experiment, trial_key=f"{experiment}-{task}-{method}-{config}-{seed}",
                       config_id=f"{experiment}-{method}-{config}", task=task, model="gru", method=method, seed=seed,
                       method_params=params, optimizer={"name": "adam", "lr": 0.01}, budget={"steps": 1},
                       status=status, primary_metric="rmse", direction="min", selection_score=val,
                       metrics={"val": {"rmse": val}, "test": {"rmse": test}},
                       metric_specs={"rmse": {"direction": "min", "unit": "V"}}, wall_time_s=1.0, peak_rss_bytes=100,
                       steps=1, samples=1, epochs=0, started_at=0.0, finished_at=1.0, run_id=f"run-{seed}")


def report(step: int, **values) -> dict:
    return {"step": step, "samples": 1, "epoch": 0, "train_time_s": 1.0, "wall_time_s": 1.0, **values}


def test_curve_points_of_a_report():
    points = curve_points("exp", "k", "r1", report(3, **{"val/rmse": 1.5, "train/loss": 2.0, "objective": 1.5,
                                                          "diag_events": json.dumps([[2, "K", 10.0]])}))
    assert {(p.split, p.metric, p.step) for p in points} == {("val", "rmse", 3), ("train", "loss", 3), ("diag", "K", 2)}
    assert {p.run_id for p in points} == {"r1"}


def test_a_rerun_replaces_a_row_and_its_curves(tmp_path):
    store = ResultsStore(tmp_path)
    first = rec("bptt", "a", 0, test=2.0)
    store.write([first], curve_points("exp", first.trial_key, first.run_id, report(3, **{"val/rmse": 1.0})))
    again = dataclasses.replace(rec("bptt", "a", 0, test=1.0), run_id="run-again")
    store.write([again], curve_points("exp", again.trial_key, again.run_id, report(5, **{"val/rmse": 0.5})))
    trials = store.trials("exp")
    assert len(trials) == 1 and trials["test_primary"].iloc[0] == 1.0 and trials["run_id"].iloc[0] == "run-again"
    curves = store.curves("exp")
    assert curves["step"].tolist() == [5]  # only the curves of the live run
    assert not list(tmp_path.rglob("*.tmp"))


def test_missing_final_report_becomes_a_row():
    from suite.run.sweep import TrialSpec

    spec = TrialSpec(experiment="exp", task="t", task_params={}, model="gru", model_params={}, method="bptt",
                     method_params={}, optimizer={}, seed=0, budget={"steps": 1}, eval_every={"steps": 1},
                     selection={"metric": None, "split_weights": {"val": 1.0}}, resources={"cpu": 1}, key="k", config_id="c")
    row = spec.new_record("r")
    assert row.status == "error" and row.metric("test") is None and row.objective == float("inf")


def test_leaderboard_selects_on_validation_and_aggregates_test_over_seeds(tmp_path):
    store = ResultsStore(tmp_path)
    records = []
    # config a: better validation, worse test; config b: worse validation, better test
    for seed, (va, ta, vb, tb) in enumerate([(1.0, 3.0, 2.0, 0.1), (1.2, 3.5, 2.1, 0.2), (0.9, 2.5, 2.2, 0.3)]):
        records += [rec("tbptt", "a", seed, va, ta, window=10), rec("tbptt", "b", seed, vb, tb, window=20),
                    rec("bptt", "x", seed, 1.0, 1.0 + seed)]
    # config c has the best validation but one diverged seed: failures count, it is never selected
    records += [rec("tbptt", "c", 0, 0.1, 0.1, window=30), rec("tbptt", "c", 1, math.nan, math.nan, "diverged", window=30)]
    store.write(records[:5])
    store.write(records[5:])  # two parts: the leaderboard reads across them
    board = leaderboard(store)
    pd.testing.assert_frame_equal(board, leaderboard(store.trials()))  # a store or its DataFrame: the same answer
    tb = board[board["method"] == "tbptt"].iloc[0]
    assert json.loads(tb["method_params"]) == {"window": 10}
    assert tb["n_seeds"] == 3 and tb["n_ok"] == 3 and tb["configs_tried"] == 3
    values = [3.0, 3.5, 2.5]
    assert tb["test_mean"] == pytest.approx(sum(values) / 3)
    assert (tb["ci95_low"], tb["ci95_high"]) == pytest.approx(bootstrap_ci(values, bounds=(0.0, None)))
    bp = board[board["method"] == "bptt"].iloc[0]
    assert bp["test_mean"] == pytest.approx(2.0)
    assert bp["rank"] == 1 and tb["rank"] == 2  # ranked on the test metric of the selected configurations


def test_honest_statistics_with_few_seeds(tmp_path):
    """Two seeds: no interval at all (not a Student-t interval with a negative bound); a failed-only entry
    is listed as failed and not ranked; the tie with the best follows a Holm-corrected paired test."""
    store = ResultsStore(tmp_path)
    store.write([rec("bptt", "x", s, 1.0, t) for s, t in enumerate([0.1, 0.9])]
                + [rec("tbptt", "a", 0, math.nan, math.nan, "error", window=5)])
    board = leaderboard(store).set_index("method")
    assert math.isnan(board.loc["bptt", "ci95_low"]) and board.loc["bptt", "n_ok"] == 2
    assert "n<3" in to_markdown(leaderboard(store))
    assert board.loc["tbptt", "status"] == "failed" and pd.isna(board.loc["tbptt", "rank"])
    assert board.loc["bptt", "rank"] == 1 and "| failed |" in to_markdown(leaderboard(store))
    # six seeds: one method clearly worse on every seed, one within noise of the best
    store = ResultsStore(tmp_path / "ties")
    base = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95]
    noise = [0.02, -0.03, 0.01, 0.0, -0.01, 0.02]
    store.write([rec("best", "b", s, v, v) for s, v in enumerate(base)]
                + [rec("close", "c", s, v + e, v + e) for s, (v, e) in enumerate(zip(base, noise))]
                + [rec("worse", "w", s, v + 0.5, v + 0.5) for s, v in enumerate(base)])
    board = leaderboard(store).set_index("method")
    assert board.loc["best", "rank"] == 1 and bool(board.loc["best", "tied_with_best"])
    assert bool(board.loc["close", "tied_with_best"]) and board.loc["close", "p_vs_best"] > 0.05
    assert not bool(board.loc["worse", "tied_with_best"]) and board.loc["worse", "p_vs_best"] < 0.05
    assert "2 ≈" in to_markdown(leaderboard(store)) or "3 ≈" in to_markdown(leaderboard(store))


def test_experiments_are_kept_apart_unless_pooled_and_any_metric_can_be_reported(tmp_path):
    store = ResultsStore(tmp_path)
    short = [rec("bptt", "x", s, 2.0, 2.0 + s, experiment="short") for s in range(3)]
    long = [rec("bptt", "x", s, 1.0, 1.0 + s, experiment="long") for s in range(3)]
    for r in long:
        r.budget = {"steps": 100}
        r.metrics["test"]["mae"] = 0.5
    store.write(short + long)
    board = leaderboard(store)
    assert sorted(board["experiment"]) == ["long", "short"] and (board["rank"] == 1).all()
    assert set(board["budget"]) == {"steps=1", "steps=100"}
    pooled = leaderboard(store, pool=True)
    assert len(pooled) == 2 and set(pooled["experiment"]) == {"long", "short"}  # different budgets stay apart
    for r in long:
        r.budget = {"steps": 1}
    store = ResultsStore(tmp_path / "same-budget")
    store.write(short + long)
    pooled = leaderboard(store, pool=True)
    assert len(pooled) == 1 and pooled["experiment"].iloc[0] == "long"  # the better configuration, named
    mae = leaderboard(ResultsStore(tmp_path / "same-budget"), metric="mae", experiment="long")
    assert mae["metric"].iloc[0] == "mae" and mae["test_mean"].iloc[0] == pytest.approx(0.5)


def test_split_by_keeps_parameter_values_apart(tmp_path):
    store = ResultsStore(tmp_path)
    store.write([rec("tbptt", c, seed, 2.0 - b / 5, 2.0 - b / 5 + seed, window=10, burn_in=b)
                 for seed in range(2) for c, b in (("a", 0), ("b", 5))])
    board = leaderboard(store, split_by=["burn_in"])
    assert set(board["method"]) == {"tbptt[burn_in=0]", "tbptt[burn_in=5]"}
    assert board.set_index("method").loc["tbptt[burn_in=5]", "test_mean"] == pytest.approx(1.5)
    assert len(leaderboard(store)) == 1
    two = leaderboard(store, split_by=["burn_in", "window"])
    assert set(two["method"]) == {"tbptt[burn_in=0,window=10]", "tbptt[burn_in=5,window=10]"}
    with pytest.raises(LeaderboardError, match="no parameter 'nope'"):
        leaderboard(store, split_by=["nope"])


def test_single_seed_rows_show_no_spread(tmp_path):
    store = ResultsStore(tmp_path)
    store.write([rec("bptt", "x", 0, 1.0, 1.25)] + [rec("tbptt", "a", seed, 2.0, 2.0 + seed, window=10) for seed in range(2)])
    md = to_markdown(leaderboard(store))
    assert "nan" not in md
    bptt_line = next(line for line in md.splitlines() if "| bptt |" in line)
    assert "| 1.25 | n<3 |" in bptt_line
    tbptt_line = next(line for line in md.splitlines() if "| tbptt |" in line)
    assert "2.5 ± 0.71" in tbptt_line


def _store_with_k_trajectories(tmp_path):
    store = ResultsStore(tmp_path)
    for delta, ks in ((0.9, [50, 20, 12]), (0.1, [50, 80, 120])):
        r = rec("adaptive_tbptt", f"d{delta}", 0, delta=delta)
        events = [[40 * (i + 1), "K", float(k)] for i, k in enumerate(ks)]
        store.write([r], curve_points("exp", r.trial_key, r.run_id,
                                      report(120, **{"val/rmse": 1.0, "diag_events": json.dumps(events)})))
    return store


def test_trajectory_table_takes_the_last_value_at_each_point(tmp_path):
    from suite.analysis.trajectories import metric_curves, trajectory_table

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


def test_cli_table_shows_split_by_labels_as_written(tmp_path):
    """``--split-by`` labels such as ``tbptt[window=10]`` are shown in the table, not swallowed as markup."""
    from typer.testing import CliRunner

    from suite.cli import app

    store = ResultsStore(tmp_path)
    store.write([rec("tbptt", c, s, 1.0 + s, 1.0 + s, window=w) for c, w in (("a", 10), ("b", 20)) for s in range(3)])
    res = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--split-by", "window"], terminal_width=240)
    assert res.exit_code == 0, res.output
    assert "tbptt[window=10]" in res.output and "tbptt[window=20]" in res.output


def test_leaderboard_columns_pick_and_order_display_columns():
    """--columns (table and md) shows exactly the named columns in the given order; a wrong name is exit 2
    with the list of columns; csv/json refuse it (they keep every column)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from suite.cli import app

    store = str(Path(__file__).resolve().parents[1] / "fixtures" / "suite-reference")
    cols = "method,test mean ± std,seeds ok"
    res = CliRunner().invoke(app, ["leaderboard", store, "--format", "md", "--columns", cols])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "| method | test mean ± std | seeds ok |"
    assert all(line.count("|") == 4 for line in lines if line.startswith("|"))
    table = CliRunner().invoke(app, ["leaderboard", store, "--columns", "seeds ok,method"], terminal_width=200)
    assert table.exit_code == 0 and table.output.index("seeds ok") < table.output.index("method")
    assert "wall s" not in table.output and "defaults" not in table.output  # no params lines either
    bad = CliRunner().invoke(app, ["leaderboard", store, "--columns", "method,wal s"])
    assert bad.exit_code == 2 and "'wal s'" in bad.output and "wall s" in bad.output
    assert CliRunner().invoke(app, ["leaderboard", store, "--format", "csv", "--columns", "method"]).exit_code == 2


def test_leaderboard_per_seed_column_lists_successful_seeds_in_seed_order(tmp_path):
    """'per seed' (only on request) shows each successful seed's test value in seed order; a failed seed is left
    out; the default md columns do not include it."""
    from typer.testing import CliRunner

    from suite.cli import app

    store = ResultsStore(tmp_path)
    rows = [rec("tbptt", "a", s, 1.0, v, window=10) for s, v in ((2, 1.25), (0, 1.5), (1, 2.0))]
    store.write([*rows, rec("tbptt", "a", 3, 1.0, 9.0, status="error", window=10)])
    res = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--format", "md", "--columns", "method,per seed"])
    assert res.exit_code == 0, res.output
    assert "| tbptt | 1.5 / 2 / 1.25 |" in res.output
    default = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--format", "md"])
    assert default.exit_code == 0 and "per seed" not in default.output


def test_leaderboard_updates_and_train_s_columns_are_means_over_the_entrys_trials(tmp_path):
    """'updates' and 'train s' (only on request: an equal-time table needs them beside its scores) are the mean
    updates and training seconds over the selected configuration's trials, a failed one included, as 'wall s'
    (what the entry cost); the default columns leave them out."""
    import dataclasses

    from typer.testing import CliRunner

    from suite.cli import app

    store = ResultsStore(tmp_path)
    rows = []
    for seed, steps, train_s in ((0, 100, 10.0), (1, 200, 20.0), (2, 600, 60.0)):
        r = rec("tbptt", "a", seed, 1.0, 1.0 + seed, window=10)
        rows.append(dataclasses.replace(r, steps=steps, train_time_s=train_s))
    failed = rec("tbptt", "a", 3, 1.0, 9.0, status="error", window=10)
    store.write([*rows, dataclasses.replace(failed, steps=10_000, train_time_s=999.0)])
    res = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--format", "md", "--columns",
                                   "method,updates,train s"])
    assert res.exit_code == 0, res.output
    assert "| tbptt | 2725 | 272.2 |" in res.output  # (100 + 200 + 600 + 10 000) / 4
    default = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--format", "md"])
    assert default.exit_code == 0 and "updates" not in default.output and "train s" not in default.output


def test_an_entry_with_a_non_finite_test_metric_is_listed_not_ranked_and_changes_no_other_p_value(tmp_path):
    """A free run that leaves the state space makes D_H or PE inf or NaN on some seeds, with the trial ok: the
    entry is listed as 'not finite' (not 'failed', not ranked, no CI), and the ranks and Holm-adjusted p-values of
    the other entries are those of the board without it."""
    from typer.testing import CliRunner

    from suite.analysis.ranking import NOT_FINITE, leaderboard
    from suite.cli import app

    finite = [rec("a", "a", s, 1.0, v) for s, v in enumerate((1.0, 1.2, 1.1))]
    finite += [rec("b", "b", s, 1.0, v) for s, v in enumerate((1.5, 1.35, 1.9))]
    finite += [rec("c", "c", s, 1.0, v) for s, v in enumerate((2.0, 2.6, 2.3))]
    store_finite = ResultsStore(tmp_path / "finite")
    store_finite.write(finite)
    store = ResultsStore(tmp_path / "all")
    store.write([*finite, *(rec("d", "d", s, 1.0, v) for s, v in enumerate((float("nan"), 0.5, 0.4))),
                 *(rec("e", "e", s, 1.0, v) for s, v in enumerate((0.1, float("inf"), 0.2)))])
    want = leaderboard(store_finite).set_index("method")
    got = leaderboard(store).set_index("method")
    assert list(got.loc[["d", "e"], "status"]) == [NOT_FINITE, NOT_FINITE]
    assert got.loc[["d", "e"], "rank"].isna().all() and got.loc[["d", "e"], "ci95_low"].isna().all()
    for m in "abc":
        assert got.loc[m, "rank"] == want.loc[m, "rank"] and got.loc[m, "status"] == "ranked"
        assert got.loc[m, "p_vs_best"] == pytest.approx(want.loc[m, "p_vs_best"], nan_ok=True)
    res = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "all"), "--format", "md", "--columns",
                                   "rank,method,test mean ± std,95% CI,p vs best"])
    assert res.exit_code == 0, res.output
    assert "| not finite | d | not finite in 1 of 3 | — | — |" in res.output
    assert "| not finite | e | not finite in 1 of 3 | — | — |" in res.output


def test_curve_labels_show_only_parameters_that_differ_between_trials_having_them():
    """A parameter only one method has does not make every row of that method list it (SMT has thirty); one
    that differs between trials that have it (delta) and one two methods share with different values
    (batch_size) are shown."""
    import pandas as pd

    from suite.analysis.trajectories import _labels

    rows = [("smt", {"K": 4, "Tc": 128, "batch_size": 64}), ("bptt", {"batch_size": 16}),
            ("adaptive_tbptt", {"delta": 0.9, "W": 100}), ("adaptive_tbptt", {"delta": 0.5, "W": 100})]
    trials = pd.DataFrame({"method": [m for m, _ in rows], "model": "gru",
                           "method_params_json": [json.dumps(p) for _, p in rows],
                           "model_params_json": json.dumps({"hidden_size": 8})})
    assert list(_labels(trials)) == ["smt gru batch_size=64", "bptt gru batch_size=16",
                                     "adaptive_tbptt gru delta=0.9", "adaptive_tbptt gru delta=0.5"]


def test_suite_workload_table_lists_a_non_finite_entry_as_such(tmp_path):
    """The suite site's per-workload table labels a 'not finite' entry so, with the count, and no CI."""
    from suite.analysis.ranking import leaderboard
    from suite.suites.report_tables import board_table

    store = ResultsStore(tmp_path)
    store.write([*(rec("a", "a", s, 1.0, v) for s, v in enumerate((1.0, 1.2, 1.1))),
                 *(rec("d", "d", s, 1.0, v) for s, v in enumerate((float("nan"), 0.5, float("inf"))))])
    table = board_table(leaderboard(store), {}, "t").set_index("entry")
    assert table.loc["d", "rank"] == "not finite" and table.loc["a", "rank"] == "1"
    assert table.loc["d", "test mean ± std"] == "not finite in 2 of 3" and table.loc["d", "95% CI"] == "—"
