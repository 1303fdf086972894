"""End-to-end trials (no Ray) of the parallel-in-time methods, and how the methods use the data."""

from __future__ import annotations

import json
import math

import torch
from parallel_helpers import make_model, plugin

from suite.run.sweep import TrialSpec
from suite.run.trial import execute_trial


def spec(task, task_params, model, model_params, method, method_params, steps=4, **extra):
    return TrialSpec(
        experiment="parallel-test", task=task, task_params=task_params, model=model, model_params=model_params,
        method=method, method_params=method_params, optimizer={"name": "adam", "lr": 0.01}, seed=0,
        budget={"steps": steps}, eval_every={"steps": 2}, selection={"metric": None, "split_weights": {"val": 1.0}},
        resources={"cpu": 1, **extra.pop("resources", {})}, **extra)


def run(s):
    reports = []
    final = execute_trial(s, {}, reports.append)
    assert final.status == "ok", final.error
    return final, reports


def diag_events(reports):
    return [(step, name, v) for r in reports[:-1] for step, name, v in json.loads(r.get("diag_events", "[]"))]


def test_scan_mingru_on_toy_sysid():
    final, reports = run(spec("toy-sysid", {"length": 120}, "mingru", {"hidden_size": 8}, "scan",
                              {"drift_every": 2}))
    metrics = final.metrics
    assert final.steps == 4 and all(math.isfinite(v) for v in metrics["test"].values())
    names = {name for _, name, _ in diag_events(reports)}
    assert {"tokens_per_s", "scan_drift"} <= names
    assert max(v for _, n, v in diag_events(reports) if n == "scan_drift") < 1e-4


def test_gtf_deer_shplrnn_on_generated_lorenz63():
    task_params = {"source": "generated", "length": 1200, "test_length": 800, "eval_length": 400}
    final, reports = run(spec("lorenz63", task_params, "shplrnn", {"hidden_dim": 16}, "gtf_deer",
                              {"seq_len": 50, "batch_size": 4, "batches_per_epoch": 3, "alpha_every": 2}))
    metrics = final.metrics
    assert set(metrics["test"]) == {"dstsp", "dh", "pe20"}
    assert all(math.isfinite(v) for split in ("val", "test") for v in metrics[split].values())
    events = diag_events(reports)
    names = {name for _, name, _ in events}
    assert {"alpha", "norm_estimate", "newton_iters", "residual", "converged"} <= names
    assert final.epochs == 1  # 4 updates at 3 per epoch


def test_gtf_whole_trajectory_and_deer_method_run():
    task_params = {"source": "generated", "length": 600, "test_length": 300, "eval_length": 300}
    final, reports = run(spec("lorenz63", task_params, "shplrnn", {"hidden_dim": 8}, "gtf",
                              {"seq_len": 100000, "alpha_mode": "constant", "alpha": 0.2}, steps=2))
    assert {v for _, n, v in diag_events(reports) if n == "alpha"} == {0.2}
    final, reports = run(spec("toy-sysid", {"length": 100}, "gru", {"hidden_size": 6}, "deer",
                              {"variant": "quasi", "seq_len": 60}, steps=4))
    events = diag_events(reports)
    assert all(v == 1.0 for _, n, v in events if n == "converged")
    assert final.steps == 4


def test_requirements_filter_pairs():
    from suite.contracts import LINEAR_RECURRENCE, STEP

    assert plugin("methods", "scan").requires == {LINEAR_RECURRENCE}
    assert plugin("methods", "deer").requires == {STEP}
    gtf_req = plugin("methods", "gtf_deer").requires
    assert not gtf_req <= plugin("models", "gru").capabilities  # GTF needs observation inversion
    assert gtf_req <= plugin("models", "shplrnn").capabilities
    assert not plugin("methods", "scan").requires <= plugin("models", "shplrnn").capabilities


def test_deer_warm_start_reuses_the_previous_trajectory():
    import suite.training.newton as deer
    cache = deer.WarmStartCache(100)
    H = torch.ones(1, 10, 5)
    cache.put(("a", 0), H)
    assert cache.get(("a", 0), H.shape) is not None and cache.get(("a", 0), torch.Size((1, 9, 5))) is None
    cache.put(("b", 0), torch.ones(1, 20, 5))  # over capacity: not stored
    assert cache.get(("b", 0), torch.Size((1, 20, 5))) is None
    torch.manual_seed(0)
    model = make_model("gru", 2, 1, hidden_size=4).double()
    x = torch.randn(1, 50, 2, dtype=torch.float64)
    _, H, cold = deer.deer_forward(model, x)
    _, _, warm = deer.deer_forward(model, x, init=H)
    assert warm.iterations < cold.iterations


def test_deer_nonconvergence_policy_is_counted_and_enforced():
    params = {"variant": "dense", "seq_len": 80, "max_iter": 1, "warm_start": False}
    record, _ = run(spec("toy-sysid", {"length": 80}, "elman", {"hidden_size": 6}, "deer", params, steps=3))
    assert record.nonconverged == 3  # one solve per update, none converged in 1 iteration
    record = execute_trial(spec("toy-sysid", {"length": 80}, "elman", {"hidden_size": 6}, "deer",
                                {**params, "on_nonconvergence": "error"}, steps=3), {}, lambda r: None)
    assert record.status == "error" and "did not converge" in record.error and "max_iter" in record.error
    converged, _ = run(spec("toy-sysid", {"length": 80}, "elman", {"hidden_size": 6}, "deer",
                            {**params, "max_iter": 200, "on_nonconvergence": "error"}, steps=2))
    assert converged.nonconverged == 0
