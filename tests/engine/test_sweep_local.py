"""Sweeps on a real local Ray instance: statuses, Parquet rows, leaderboard, resume after an interrupt."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from suite.analysis.ranking import leaderboard
from suite.manifest import load_manifest
from suite.registry import load_registry
from suite.run.orchestrate import run_sweep
from suite.run.sweep import expand
from suite.store.results import ResultsStore

pytestmark = pytest.mark.ray
FIXTURE_PLUGINS = str(Path(__file__).resolve().parent.parent / "fixtures" / "plugins")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _sweep(path: Path, results: Path, overrides=(), plugins=()):
    manifest = load_manifest(path, lambda extra: load_registry([*plugins, *extra]), list(overrides))
    registry = load_registry([*plugins, *manifest.plugins])
    matrix = expand(manifest, registry)
    outcome = run_sweep(manifest, matrix.trials, results_dir=results, wandb_mode="disabled", plugin_dirs=list(plugins))
    return manifest, matrix, outcome


def test_statuses_rows_and_leaderboard(local_ray, write_manifest, toy_manifest_text, tmp_path):
    text = toy_manifest_text.replace("""  - name: tbptt
    params: {window: 30, batch_size: 8}""", """  - name: tbptt
    params: {window: 30, batch_size: 8}
  - name: bptt
    optimizer: {name: sgd, lr: 1.0e+12}
  - name: raising
  - name: late_log""")
    path = write_manifest(text)
    results = tmp_path / "results"
    manifest, matrix, outcome = _sweep(path, results, plugins=[FIXTURE_PLUGINS])
    assert outcome.ran == len(matrix.trials) == 10
    trials = ResultsStore(results).trials("toy")
    assert len(trials) == 10 and trials["trial_key"].is_unique
    by_method = trials.groupby(["method", "optimizer_json"])["status"].apply(set).to_dict()
    statuses = {(m, json.loads(o)["name"]): s for (m, o), s in by_method.items()}
    assert statuses[("bptt", "adam")] == {"ok"}
    assert statuses[("tbptt", "adam")] == {"ok"}
    assert statuses[("bptt", "sgd")] == {"diverged"}  # the huge learning rate; the sweep went on
    assert statuses[("raising", "adam")] == {"error"}
    err = trials.loc[trials["method"] == "raising", "error"].iloc[0]
    assert "deliberate failure" in err
    ok = trials[trials["status"] == "ok"]
    assert ok["test_primary"].notna().all() and (ok["steps"] == 6).all()
    assert (ok["peak_rss_bytes"] > 0).all() and ok["torch_version"].notna().all()
    curves = ResultsStore(results).curves("toy")
    assert set(curves["split"]) >= {"train", "val"}
    assert set(curves.loc[curves["split"] == "val", "step"]) == {3, 6}  # the fixed evaluation frequency
    late_keys = set(trials.loc[trials["method"] == "late_log", "trial_key"])
    late = curves[(curves["split"] == "diag") & (curves["metric"] == "after_training")]
    assert set(late["trial_key"]) == late_keys and (late["value"] == 42.0).all()  # logged after the last report
    board = leaderboard(trials, "toy-sysid")
    row = board[board["method"] == "bptt"].iloc[0]
    assert row["n_ok"] == 2 and row["configs_tried"] == 2
    assert json.loads(row["optimizer"])["name"] == "adam"  # the diverged configuration is never selected


def test_resume_after_interrupt_runs_each_trial_once(write_manifest, toy_manifest_text, tmp_path):
    text = toy_manifest_text.replace("""  - name: bptt
  - name: tbptt
    params: {window: 30, batch_size: 8}""", """  - name: slow
    params: {sleep_s: {grid: [0.2, 0.21, 0.22]}}""").replace("budget: {steps: 6}", "budget: {steps: 12}")
    path = write_manifest(text)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "suite.cli", "run", str(path), "--results", str(results), "--plugins",
           FIXTURE_PLUGINS, "--max-concurrent", "1", "--num-cpus", "1", "--wandb", "disabled"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = ResultsStore(results)
    deadline = time.time() + 120
    while len(store.finished_keys("toy")) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C mid-sweep
    proc.communicate(timeout=120)
    before = store.finished_keys("toy")
    assert 2 <= len(before) < 6, "the interrupt should land mid-sweep"
    res = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(before)} of 6 trials already have a row" in res.stdout + res.stderr
    finished_lines = re.findall(r"\[(\d+)/(\d+)\] slow/\S+ seed \d+ \w{8}: ok  val rmse=", res.stdout + res.stderr)
    assert len(finished_lines) == 6 - len(before)  # one plain line per finished trial, also when not on a TTY
    trials = store.trials("toy")
    assert len(trials) == 6 and trials["trial_key"].is_unique
    assert set(trials["status"]) == {"ok"}
    # a second resume has nothing to do; a plain re-run refuses instead of duplicating
    again = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "6 of 6 trials already have a row" in again.stdout + again.stderr
    plain = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "--resume" in plain.stdout + plain.stderr
    assert len(store.trials("toy")) == 6


def test_optuna_search_asks_tells_and_resumes(local_ray, write_manifest, toy_manifest_text, tmp_path):
    from typer.testing import CliRunner

    from suite.cli import app

    text = toy_manifest_text.replace("""  - name: bptt
  - name: tbptt
    params: {window: 30, batch_size: 8}""", """  - name: bptt
    optimizer: {lr: {loguniform: [1.0e-3, 1.0e-1]}}""") + "search: {algorithm: optuna, num_samples: 3, seed: 0}\n"
    path = write_manifest(text)
    results = tmp_path / "results"
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(path), "--results", str(results), "--wandb", "disabled", "--max-concurrent", "2"])
    assert res.exit_code == 0, res.output
    trials = ResultsStore(results).trials("toy")
    assert len(trials) == 6 and trials["config_id"].nunique() == 3  # 3 configurations x 2 seeds
    lrs = {json.loads(o)["lr"] for o in trials["optimizer_json"]}
    assert len(lrs) == 3 and all(1e-3 <= lr <= 1e-1 for lr in lrs)
    res = runner.invoke(app, ["run", str(path), "--results", str(results), "--wandb", "disabled", "--resume",
                              "--set", "search.num_samples=4"])
    assert res.exit_code == 0, res.output
    assert "re-told 3 finished configurations" in res.output
    trials = ResultsStore(results).trials("toy")
    assert len(trials) == 8 and trials["trial_key"].is_unique and trials["config_id"].nunique() == 4


def test_optuna_failed_configuration_is_a_fail_trial():
    """The one failed-score rule: a configuration with a failed seed scores FAILED_SCORE and the study sees a
    FAIL trial (never its best); a max-metric is negated."""
    import optuna
    import pandas as pd

    from suite.run.budget import FAILED_SCORE
    from suite.run.optuna_search import _outcome, _score

    ok = pd.DataFrame({"status": ["ok", "ok"], "selection_score": [0.8, 0.6], "direction": ["max", "max"]})
    failed = pd.DataFrame({"status": ["ok", "diverged"], "selection_score": [0.1, float("nan")], "direction": ["min"] * 2})
    assert _score(ok) == pytest.approx(-0.7) and _score(failed) == FAILED_SCORE and _score(ok.iloc[:0]) == FAILED_SCORE
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={"x": 0.2}, distributions=dist, **_outcome(optuna, _score(failed))))
    trial = study.ask(dist)
    study.tell(trial, **_outcome(optuna, _score(ok)))
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"] and study.best_value == pytest.approx(-0.7)
