"""The trial without Ray: final record, evaluation frequency, budgets, diagnostics."""

from __future__ import annotations

import dataclasses
import json

import pytest

from suite.manifest import load_manifest
from suite.registry import load_registry
from suite.run.sweep import expand
from suite.run.trial import execute_trial
from suite.store.record import TrialRecord


def trials_of(path, *overrides):
    manifest = load_manifest(path, load_registry, list(overrides))
    return expand(manifest, load_registry()).trials


def run(spec):
    reports = []
    final = execute_trial(spec, {}, reports.append)
    return final, reports


def test_final_record_and_reports(write_manifest):
    spec = trials_of(write_manifest(), "methods=[{name: tbptt, params: {window: 30, batch_size: 8}}]")[0]
    record, reports = run(spec)
    assert record.status == "ok" and reports[-1]["final"] is True
    assert TrialRecord.from_json(reports[-1]["record"]) == record  # the record travels whole to the driver
    assert [r["step"] for r in reports[:-1]] == [3, 6]
    assert {r["run_id"] for r in reports} == {record.run_id} and len(record.run_id) == 32
    assert record.steps == 6 and record.samples > 0
    assert set(record.metrics) == {"val", "test"} and record.metrics["test"]["rmse"] > 0
    assert record.metric("test") == record.metrics["test"]["rmse"]
    assert record.metric_specs["rmse"] == {"direction": "min", "unit": "", "low": 0.0, "high": None}
    assert record.primary_metric == "rmse" and record.direction == "min" and record.objective == record.selection_score
    assert record.wall_time_s >= record.train_time_s + record.setup_time_s - 1e-6  # training never counts evaluation
    assert record.peak_rss_bytes >= 0 and record.torch_version


def test_epoch_and_time_budgets(write_manifest):
    spec = trials_of(write_manifest(), "budget={epochs: 2}", "eval_every={epochs: 1}", "methods=[{name: bptt}]")[0]
    record, reports = run(spec)
    assert record.epochs == 2 and record.steps == 2 and len(reports) == 3
    spec = trials_of(write_manifest(), "budget={time_s: 0.5}", "eval_every={seconds: 0.2}", "methods=[{name: bptt}]")[0]
    record, _ = run(spec)
    assert record.status == "ok" and 0.5 <= record.train_time_s < 5.0
    assert record.train_time_s <= record.wall_time_s


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
    reports = []
    record = execute_trial(spec, {"plugin_dirs": [plugins]}, reports.append)
    final = reports[-1]
    assert record.status == "ok" and final["diag/after_training"] == 42.0
    assert json.loads(final["diag_events"]) == [[record.steps, "after_training", 42.0]]


def test_plugin_error_becomes_error_status(write_manifest):
    spec = trials_of(write_manifest(), "methods=[{name: tbptt, params: {window: 30}}]", "tasks=[{name: toy-sysid, params: {length: 120}}]")[0]
    broken = dataclasses.replace(spec, model="no-such-model")
    record, _ = run(broken)
    assert record.status == "error" and "no-such-model" in record.error
    assert record.objective == float("inf")


def test_wandb_offline_run_from_the_trial_process(write_manifest, tmp_path):
    from conftest import read_wandb_run

    spec = trials_of(write_manifest(), "methods=[{name: bptt}]")[0]
    settings = {"mode": "offline", "dir": str(tmp_path / "wandb"), "project": "p", "tags": ["extra"]}
    record = execute_trial(spec, {"wandb": settings}, lambda r: None)  # no Ray: the trial logs itself
    (run_file,) = (tmp_path / "wandb").rglob("offline-run-*/run-*.wandb")
    run = read_wandb_run(run_file)
    assert run["summary"]["status"] == "ok" and run["summary"]["test/rmse"] == record.metric("test")
    assert {"val/rmse", "train/loss"} <= {k for row in run["history"] for k in row}
    assert set(run["tags"]) == {"toy-sysid", "gru", "bptt", "extra"} and run["config"]["seed"] == spec.seed


@pytest.mark.parametrize("method, fragment", [("spinning", "time limit of 4 s"), ("blocking", "given up")])
def test_time_limit_ends_a_trial_that_never_returns(write_manifest, method, fragment):
    import time
    from pathlib import Path

    plugins = str(Path(__file__).resolve().parent.parent / "fixtures" / "plugins")
    manifest = load_manifest(write_manifest(), lambda extra: load_registry([plugins, *extra]),
                             [f"methods=[{{name: {method}}}]", "resources={cpu: 1, time_limit_s: 4}"])
    spec = expand(manifest, load_registry([plugins])).trials[0]
    reports = []
    t0 = time.monotonic()
    record = execute_trial(spec, {"plugin_dirs": [plugins]}, reports.append)
    elapsed = time.monotonic() - t0
    assert record.status == "timeout" and fragment in record.error and "time limit of 4 s" in record.error
    assert elapsed < 4 + 5 + 3  # the limit, the grace period, slack
    assert reports[-1]["final"] and TrialRecord.from_json(reports[-1]["record"]).status == "timeout"
    assert sum(1 for r in reports if r.get("final")) == 1


def test_best_val_checkpoint_evaluates_at_the_best_validation_point(write_manifest, tmp_path):
    from pathlib import Path

    import torch

    plugins = str(Path(__file__).resolve().parent.parent / "fixtures" / "plugins")
    common = ["methods=[{name: degrading, params: {good_steps: 6}}]", "budget={steps: 12}", "eval_every={steps: 3}",
              "optimizer={name: adam, lr: 0.02}"]
    registry = lambda extra: load_registry([plugins, *extra])  # noqa: E731
    final_spec = expand(load_manifest(write_manifest(), registry, common), load_registry([plugins])).trials[0]
    best_spec = expand(load_manifest(write_manifest(), registry, [*common, "evaluation={checkpoint: best_val, to_disk_after_s: 0.000001}"]),
                       load_registry([plugins])).trials[0]
    assert final_spec.key != best_spec.key  # the protocol is part of the trial's identity
    runtime = {"plugin_dirs": [plugins], "checkpoint_dir": str(tmp_path / "ckpt")}
    final = execute_trial(final_spec, runtime, lambda r: None)
    best = execute_trial(best_spec, runtime, lambda r: None)
    assert final.checkpoint == "final" and final.checkpoint_step == 12
    assert best.checkpoint == "best_val" and best.checkpoint_step == best.best_step <= 6
    # measured at the best evaluation's parameters: the final validation metric is the best one seen
    assert best.metric("val") == pytest.approx(best.best_val["rmse"], rel=1e-6)
    assert best.metric("test") < final.metric("test") and best.metric("val") < final.metric("val")
    saved = torch.load(tmp_path / "ckpt" / f"{best_spec.key}.pt")
    assert saved["step"] == best.checkpoint_step


def test_a_trial_log_is_capped_to_its_head_and_tail(tmp_path):
    """A trial that prints far more than resources.log_limit_mib leaves a log of about that size: its first and
    last halves around a line that says how much was dropped."""
    import os

    from suite.run.trial_guard import cap_log, capture_output

    log = tmp_path / "t.log"
    with capture_output(log, limit_bytes=4096):
        os.write(1, b"HEAD" + b"x" * 100_000 + b"TAIL\n")
    text = log.read_bytes()
    assert len(text) < 4096 + 300 and text.startswith(b"HEAD") and text.endswith(b"TAIL\n")
    assert b"bytes of this trial's output dropped here" in text
    short = tmp_path / "s.log"
    short.write_bytes(b"ok\n")
    assert cap_log(short, 4096) == 0 and short.read_bytes() == b"ok\n"
