"""The trial without Ray: final record, evaluation frequency, budgets, diagnostics."""

from __future__ import annotations

import json

import pytest

from suite.manifest import load_manifest
from suite.registry import load_registry
from suite.sweep import expand
from suite.trial import execute_trial


def trials_of(path, *overrides):
    manifest = load_manifest(path, load_registry, list(overrides))
    return expand(manifest, load_registry()).trials


def run(spec):
    reports = []
    final = execute_trial(spec, {}, reports.append)
    return final, reports


def test_final_record_and_reports(write_manifest):
    spec = trials_of(write_manifest(), "methods=[{name: tbptt, params: {window: 30, batch_size: 8}}]")[0]
    final, reports = run(spec)
    assert final["status"] == "ok" and final["final"] is True and reports[-1] is final
    assert [r["step"] for r in reports[:-1]] == [3, 6]
    assert final["step"] == 6 and final["samples"] > 0
    metrics = json.loads(final["metrics_json"])
    assert set(metrics) == {"val", "test"} and metrics["test"]["rmse"] > 0
    assert final["test/rmse"] == metrics["test"]["rmse"]


def test_epoch_and_time_budgets(write_manifest):
    spec = trials_of(write_manifest(), "budget={epochs: 2}", "eval_every={epochs: 1}", "methods=[{name: bptt}]")[0]
    final, reports = run(spec)
    assert final["epoch"] == 2 and final["step"] == 2 and len(reports) == 3
    spec = trials_of(write_manifest(), "budget={time_s: 0.5}", "eval_every={seconds: 0.2}", "methods=[{name: bptt}]")[0]
    final, _ = run(spec)
    assert final["status"] == "ok" and 0.5 <= final["train_time_s"] < 5.0


def test_gradient_fidelity_diagnostic(write_manifest):
    spec = trials_of(write_manifest(), "diagnostics={gradient_fidelity: true, probe_sequences: 1}",
                     "methods=[{name: tbptt, params: {window: 200}}, {name: tbptt, params: {window: 5}}]")
    by_window = {}
    for s in spec[::2]:  # one seed per configuration
        _, reports = run(s)
        events = [e for r in reports[:-1] for e in json.loads(r.get("diag_events", "[]"))]
        by_window[s.method_params["window"]] = {name: v for _, name, v in events}
    assert by_window[200]["grad_cos"] == pytest.approx(1.0, abs=1e-5)  # a window covering the sequence is BPTT
    assert by_window[5]["grad_cos"] < 0.999


def test_diagnostics_logged_after_the_last_step_reach_the_final_record(write_manifest):
    from pathlib import Path

    plugins = str(Path(__file__).resolve().parent.parent / "fixtures" / "plugins")
    manifest = load_manifest(write_manifest(), lambda extra: load_registry([plugins, *extra]), ["methods=[{name: late_log}]"])
    spec = expand(manifest, load_registry([plugins])).trials[0]
    final = execute_trial(spec, {"plugin_dirs": [plugins]}, lambda r: None)
    assert final["status"] == "ok" and final["diag/after_training"] == 42.0
    assert json.loads(final["diag_events"]) == [[final["step"], "after_training", 42.0]]


def test_plugin_error_becomes_error_status(write_manifest):
    spec = trials_of(write_manifest(), "methods=[{name: tbptt, params: {window: 30}}]", "tasks=[{name: toy-sysid, params: {length: 120}}]")[0]
    broken = spec.__class__(**{**spec.to_dict(), "model": "no-such-model"})
    final, _ = run(broken)
    assert final["status"] == "error" and "no-such-model" in final["error"]
