"""``rnnbench check`` fails a method that calls ``ctx.step`` but never changes a model parameter (issue 17a):
the smoke trial compares the model's parameters before and after ``method.train``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.conformance import check_method, failures
from suite.registry import load_registry
from suite.run.context import TrainContext

NO_UPDATE = Path(__file__).resolve().parent.parent / "fixtures" / "no_update_plugins"


def test_a_method_that_steps_without_updating_fails_the_updates_check():
    registry = load_registry([NO_UPDATE])
    assert not registry.failures, registry.failures
    start, stop = TrainContext.start_clock, TrainContext.stop_clock
    findings = check_method(registry.get("methods", "nc_no_update"), registry)
    failed = {f.check: f.message for f in failures(findings)}
    assert set(failed) == {"updates"}, findings  # the trial, its budget, reports and metrics all pass
    assert failed["updates"].startswith("train called ctx.step 2 times but no model parameter changed")
    assert "optimizer.step() (or suite.training.update) after backward" in failed["updates"]
    assert (TrainContext.start_clock, TrainContext.stop_clock) == (start, stop)  # the watch is undone


@pytest.mark.parametrize("name", ["tbptt", "bptt"])
def test_a_builtin_method_passes_the_updates_check(name):
    registry = load_registry()
    findings = check_method(registry.get("methods", name), registry)
    assert not failures(findings), [str(f) for f in failures(findings)]
    (updates,) = [f for f in findings if f.check == "updates"]
    assert updates.ok is True and "parameter tensors changed over 2 updates" in updates.message


def test_check_command_names_the_method_that_does_not_update():
    from typer.testing import CliRunner

    from suite.cli import app

    result = CliRunner().invoke(app, ["check", "--plugins", str(NO_UPDATE), "--kind", "methods", "--json"])
    assert result.exit_code == 1, result.output
    failed = [f for f in json.loads(result.output) if f["ok"] is False]
    assert [(f["name"], f["check"]) for f in failed] == [("nc_no_update", "updates")], failed
    assert "no model parameter changed" in failed[0]["message"]
