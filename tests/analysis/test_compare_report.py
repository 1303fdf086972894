"""Cross-task aggregates, cost comparisons and the HTML report, on a store with known numbers."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from suite.analysis import compare
from suite.analysis.ranking import leaderboard
from suite.cli import app
from suite.store.record import CurvePoint, TrialRecord
from suite.store.results import ResultsStore

# task -> method -> per-seed test values (rmse, lower is better); "slow" is a method twice as slow
TESTS = {
    "t1": {"fast": [1.0, 1.1, 0.9], "slow": [2.0, 2.1, 1.9], "broken": None},
    "t2": {"fast": [3.0, 3.2, 2.8], "slow": [1.5, 1.4, 1.6], "broken": [9.0, 9.0, 9.0]},
    "t3": {"fast": [0.5, 0.6, 0.4], "slow": [0.5, 0.55, 0.45], "broken": [1.0, 1.2, 0.8]},
}


def _records_and_curves():
    records, curves = [], []
    for task, methods in TESTS.items():
        for method, values in methods.items():
            for seed in range(3):
                ok = values is not None
                test = values[seed] if ok else float("nan")
                key = f"{task}-{method}-{seed}"
                wall = 100.0 if method == "slow" else 50.0
                records.append(TrialRecord(
                    experiment="exp", trial_key=key, config_id=f"{task}-{method}", task=task, model="gru",
                    method=method, seed=seed, status="ok" if ok else "error", error=None if ok else "boom",
                    primary_metric="rmse", direction="min", selection_score=test if ok else None,
                    metrics={"val": {"rmse": test}, "test": {"rmse": test}} if ok else {},
                    metric_specs={"rmse": {"direction": "min", "unit": "", "low": 0.0, "high": None}},
                    wall_time_s=wall, train_time_s=wall - 10, steps=100, samples=1000, peak_rss_bytes=2**20,
                    run_id=f"r-{key}"))
                if ok:  # validation curve: from 2 x final value down to the final value at train_time 10..40
                    for i, t in enumerate((10.0, 20.0, 30.0, 40.0)):
                        v = test * (2.0 - i / 3.0)
                        curves.append(CurvePoint("exp", key, f"r-{key}", 10 * (i + 1), 100 * (i + 1), 0, t, t,
                                                 "val", "rmse", v))
                        curves.append(CurvePoint("exp", key, f"r-{key}", 10 * (i + 1), 100 * (i + 1), 0, t, t,
                                                 "diag", "K", float(10 + i)))
    return records, curves


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    s = ResultsStore(tmp_path / "results")
    s.write(*_records_and_curves())
    return s


def test_across_tasks_mean_rank_profile_and_iqm(store):
    board = leaderboard(store)
    agg = compare.across_tasks(board)
    ranks = agg["mean_rank"]
    # t1: fast 1, slow 2, broken failed (3); t2: slow 1, fast 2, broken 3; t3: fast/slow tie 1.5 each, broken 3
    assert ranks["gru/fast"] == pytest.approx((1 + 2 + 1.5) / 3)
    assert ranks["gru/slow"] == pytest.approx((2 + 1 + 1.5) / 3)
    assert ranks["gru/broken"] == pytest.approx(3.0)
    profile = agg["profile"]
    assert profile.loc[1.0, "gru/fast"] == pytest.approx(2 / 3)  # best (or tied best) on t1 and t3
    assert profile.loc[1.0, "gru/broken"] == 0.0 and profile["gru/broken"].iloc[-1] == pytest.approx(1 / 3)
    iqm = agg["iqm"].set_index("label")
    assert (iqm["ci95_low"] <= iqm["iqm"]).all() and (iqm["iqm"] <= iqm["ci95_high"]).all()
    assert iqm.loc["gru/broken", "tasks"] == 2


def test_cost_front_time_to_target_and_quality_at_budget(store):
    board = leaderboard(store)
    cost = compare.cost_table(board, "wall_time_s").set_index(["task", "label"])
    # t2: slow is better but costlier: both on the front; t1: fast dominates slow
    assert cost.loc[("t2", "gru/fast"), "on_front"] and cost.loc[("t2", "gru/slow"), "on_front"]
    assert cost.loc[("t1", "gru/fast"), "on_front"] and not cost.loc[("t1", "gru/slow"), "on_front"]
    trials, curves = store.trials(), store.curves()
    ttt = compare.time_to_target(board, trials, curves, targets={"t1": 1.5}).set_index(["task", "label"])
    # fast on t1 ends at [1.0, 1.1, 0.9] from twice that: 1.5 is reached at t = 30 (1.1: 1.4667) and 20 (0.9 * 5/3)
    row = ttt.loc[("t1", "gru/fast")]
    assert row["target"] == 1.5 and row["reached"] == 3 and row["median_train_time_s"] == 30.0
    assert ttt.loc[("t1", "gru/slow"), "reached"] == 0 and np.isinf(ttt.loc[("t1", "gru/slow"), "median_train_time_s"])
    q = compare.quality_at_budget(board, trials, curves).set_index(["task", "label"])
    assert q.loc[("t1", "gru/fast"), "f1.0"] == pytest.approx(1.0)  # the final values' mean
    assert q.loc[("t1", "gru/fast"), "f0.25"] == pytest.approx(2.0)  # the first point, x = 10 = 0.25 * 40
    diag = compare.diagnostics_summary(trials, curves, board).set_index(["task", "label", "metric"])
    assert diag.loc[("t1", "gru/fast", "K"), "first"] == 10.0 and diag.loc[("t1", "gru/fast", "K"), "last"] == 13.0


SECTIONS = ("leaderboard", "across-tasks", "curves", "cost", "diagnostics", "failed", "environment", "manifest")


def test_report_has_every_section(store, tmp_path):
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", store.root, "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    for section in SECTIONS:
        assert f'id="{section}-exp"' in page, section
    ids = __import__("re").findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids repeat"  # sections and SVG internals are unique on the page
    assert "<details open" not in page  # the resolved manifest is folded
    assert page.count("<svg") >= 4
    assert not any(f in page for f in ('src="http', "src='http", 'href="http', "<link", "<script"))  # self-contained
    assert "failed" in page and "gru/slow" in page
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "none"), "-o", str(out)])
    assert bad.exit_code == 2 and "no trial rows" in bad.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_renders_in_chromium(store, tmp_path):
    from PIL import Image

    out = tmp_path / "report.html"
    assert CliRunner().invoke(app, ["report", store.root, "-o", str(out)]).exit_code == 0
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    for section in SECTIONS:
        assert f'id="{section}-exp"' in dom.stdout, section
    subprocess.run(["chromium", *flags, "--window-size=1300,3000", f"--screenshot={shot}", out.as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert image.size == (1300, 3000) and colours is not None and len(colours) > 200  # text, tables and plots


def test_curves_are_not_carried_past_a_trials_end():
    import numpy as np
    import pandas as pd

    from suite.analysis.plots import resample

    run = pd.DataFrame({"step": [50, 100, 150], "value": [3.0, 2.0, 1.0]})
    grid = np.array([0, 50, 120, 150, 151, 600], dtype=float)
    got = resample(run, "step", grid)
    assert np.isnan(got[0]) and list(got[1:4]) == [3.0, 2.0, 1.0] and np.isnan(got[4]) and np.isnan(got[5])


def test_report_exports_figures_and_tables_for_papers(store, tmp_path):
    out, export = tmp_path / "report.html", tmp_path / "export"
    res = CliRunner().invoke(app, ["report", store.root, "-o", str(out), "--export", str(export)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in export.iterdir())
    figures = [n for n in names if n.endswith(".pdf")]
    assert figures and all(n.replace(".pdf", ".svg") in names for n in figures)
    tables = [n for n in names if n.endswith(".csv")]
    assert tables and all(n.replace(".csv", ".tex") in names for n in tables)
    tex = (export / tables[0].replace(".csv", ".tex")).read_text()
    assert tex.startswith("\\begin{tabular}") and "\\toprule" in tex and tex.rstrip().endswith("\\end{tabular}")
    page = out.read_text()
    assert "Failed trials" in page and "did not end ok" in page


def test_iqm_of_a_single_entry_task_is_unit_free():
    """One ranked entry on a task: rescaling its metric (x 1000) must not change the IQM or its interval."""
    import pandas as pd

    from suite.analysis.compare import across_tasks

    def board(scale):
        rows = []
        for task, entries in (("t1", {"a": [1.0, 1.2, 1.1], "b": [2.0, 2.2, 2.1]}), ("t2", {"a": [3.0, 3.3, 3.6]})):
            for method, vals in entries.items():
                v = [scale * x for x in vals] if task == "t2" else vals
                rows.append({"task": task, "model": "gru", "method": method, "status": "ranked", "direction": "min",
                             "test_mean": sum(v) / len(v), "test_values": v})
        return pd.DataFrame(rows)

    one, thousand = across_tasks(board(1.0))["iqm"], across_tasks(board(1000.0))["iqm"]
    pd.testing.assert_frame_equal(one.reset_index(drop=True), thousand.reset_index(drop=True), rtol=1e-9)
