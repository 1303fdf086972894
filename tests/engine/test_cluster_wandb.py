"""A sweep on a real 2-node Ray cluster, logged to offline W&B: trials on both nodes, metrics in the runs."""

from __future__ import annotations

import pytest
import ray
from conftest import read_wandb_run
from ray.cluster_utils import Cluster

from suite.manifest import load_manifest
from suite.registry import load_registry
from suite.run.orchestrate import run_sweep
from suite.run.sweep import expand
from suite.store.results import ResultsStore

pytestmark = pytest.mark.ray


def test_two_node_sweep_with_offline_wandb(write_manifest, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    path = write_manifest()
    manifest = load_manifest(path, load_registry)
    trials = expand(manifest, load_registry()).trials
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        results = tmp_path / "results"
        outcome = run_sweep(manifest, trials, results_dir=results, address=cluster.address, wandb_mode="offline")
        node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert outcome.ran == 4
    rows = ResultsStore(results).trials("toy")
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}
    assert set(rows["node_id"]) == node_ids and len(node_ids) == 2  # trials landed on both nodes
    runs = sorted((results / "wandb").rglob("offline-run-*/run-*.wandb"))
    assert len(runs) == 4  # one offline run per trial, written by the trial's own worker
    keys = set()
    for run_file in runs:
        run = read_wandb_run(run_file)
        logged = {k for row in run["history"] for k in row}
        assert {"val/rmse", "train/loss"} <= logged, sorted(logged)
        summary = run["summary"]
        assert summary["status"] == "ok" and summary["primary_metric"] == "rmse" and summary["direction"] == "min"
        assert isinstance(summary["test/rmse"], float)
        assert set(run["tags"]) >= {"toy-sysid", "gru"} and run["config"]["experiment"] == "toy"
        assert run["exit_code"] == 0
        keys.add(run["config"]["trial_key"])
    assert keys == set(rows["trial_key"])
