"""A sweep of 300 trivial trials through real Ray: batched parts, compaction, resume, leaderboard."""

from __future__ import annotations

import pandas as pd
import pytest
import ray

from suite.analysis.ranking import leaderboard
from suite.manifest import validate
from suite.registry import load_registry
from suite.run.orchestrate import run_sweep
from suite.run.sweep import expand
from suite.store.results import ResultsStore

pytestmark = pytest.mark.ray


def _manifest(seeds: int):
    registry = load_registry()
    data = {"name": "scale", "tasks": [{"name": "toy-sysid", "params": {"length": 40}}],
            "models": [{"name": "gru", "params": {"hidden_size": 4}}],
            "methods": [{"name": "bptt", "params": {"batch_size": 1}},
                        {"name": "tbptt", "params": {"window": {"grid": [10, 20]}, "batch_size": 4}}],
            "seeds": list(range(seeds)), "budget": {"steps": 1}, "eval_every": {"steps": 1},
            "optimizer": {"name": "adam", "lr": 0.01}, "resources": {"cpu": 1}, "wandb": {"mode": "disabled"}}
    manifest = validate(data, registry)
    return manifest, expand(manifest, registry).trials


def test_300_trials_compact_resume_and_rank(tmp_path):
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = tmp_path / "results"
        manifest, trials = _manifest(100)
        assert len(trials) == 300
        out = run_sweep(manifest, trials, results_dir=results, wandb_mode="disabled", flush_every=64, compact=False)
        assert len(out.statuses) == 300 and set(out.statuses.values()) == {"ok"}
        parts = sorted((results / "trials" / "scale").glob("part-*.parquet"))
        assert len(parts) >= 5  # written in batches (64 rows or 5 s), never one file per trial
        store = ResultsStore(results)
        assert len(store.trials("scale")) == 300 and store.curves("scale")["trial_key"].nunique() == 300
        store.compact()
        assert [p.name[:8] for p in (results / "trials" / "scale").iterdir()] == ["compact-"]
        # resume with more seeds: only the new trials run, nothing is duplicated
        manifest, trials = _manifest(105)
        out = run_sweep(manifest, trials, results_dir=results, wandb_mode="disabled", resume=True)
        assert out.ran == 15 and out.skipped_finished == 300
    finally:
        ray.shutdown()
    trials = pd.read_parquet(results / "trials")
    assert len(trials) == 315 and trials["trial_key"].is_unique
    assert len(list((results / "trials" / "scale").iterdir())) == 1  # compacted at the end of the sweep
    board = leaderboard(ResultsStore(results))
    assert sorted(board["method"]) == ["bptt", "tbptt"]
    assert (board["n_seeds"] == 105).all() and (board["n_ok"] == 105).all()
    assert board.set_index("method").loc["tbptt", "configs_tried"] == 2
