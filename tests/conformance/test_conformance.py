"""Every built-in plugin conforms to its contract (suite.conformance), and deliberately broken plugins
(tests/fixtures/nonconforming_plugins) are caught, each with a failing finding that names the reason.

Tasks are checked with ``quick=True`` and the data directory of ``RNNBENCH_DATA``: tasks whose data files are
not there are skipped. The slowest checks carry the ``slow`` marker (``-m "not slow"`` leaves them out):
the ``smt`` smoke trial (about 20 s with its default teacher) and building ``lorenz63-slow`` with its
defaults (about 20-30 s: it integrates 2 x 100 000 steps).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suite.conformance import Finding, check_method, check_model, check_registry, check_task, failures
from suite.registry import load_registry

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NONCONFORMING = FIXTURES / "nonconforming_plugins"
SLOW = {("methods", "smt"), ("tasks", "lorenz63-slow")}

_REGISTRY = load_registry()


def _builtin(kind: str) -> list:
    """The built-in plugin names of ``kind`` (entry points of installed packages are not ours to test)."""
    names = [n for n in _REGISTRY.names(kind) if not str(_REGISTRY.plugins[kind][n].origin).startswith("entry point")]
    return [pytest.param(n, marks=pytest.mark.slow) if (kind, n) in SLOW else n for n in names]


def _data_dir() -> Path | None:
    value = os.environ.get("RNNBENCH_DATA")
    return Path(value) if value and Path(value).is_dir() else None


def _assert_conforms(findings: list[Finding]) -> None:
    assert findings, "no checks ran"
    failed = failures(findings)
    assert not failed, "nonconforming:\n" + "\n".join(str(f) for f in failed)


@pytest.mark.parametrize("name", _builtin("tasks"))
def test_builtin_task_conforms(name):
    findings = check_task(_REGISTRY.get("tasks", name), _data_dir(), quick=True, registry=_REGISTRY)
    _assert_conforms(findings)
    data = next(f for f in findings if f.check == "data_files")
    if data.ok is None:
        pytest.skip(data.message)


@pytest.mark.parametrize("name", _builtin("models"))
def test_builtin_model_conforms(name):
    _assert_conforms(check_model(_REGISTRY.get("models", name)))


@pytest.mark.parametrize("name", _builtin("methods"))
def test_builtin_method_conforms(name):
    _assert_conforms(check_method(_REGISTRY.get("methods", name), _REGISTRY))


# --- the checks catch what they are meant to catch ---------------------------------------------------

NC_NAMES = ["nc_bad_forward", "nc_bad_jacobian", "nc_no_jacobian", "nc_undeclared_metric", "nc_bad_primary",
            "nc_no_step", "nc_overrun"]


@pytest.fixture(scope="module")
def nonconforming() -> dict[str, list[Finding]]:
    registry = load_registry([NONCONFORMING])
    assert not registry.failures, registry.failures
    found = check_registry(registry, only=NC_NAMES)
    by_name: dict[str, list[Finding]] = {}
    for f in found:
        by_name.setdefault(f.name, []).append(f)
    return by_name


@pytest.mark.parametrize("name, check, fragment", [
    ("nc_bad_forward", "forward_matches_steps[real]", "outputs from the zero state: max |difference|"),
    ("nc_bad_forward", "forward_matches_steps[tokens]", "outputs from h0: max |difference|"),
    ("nc_bad_jacobian", "analytic_jacobian[real]", "jacobian(h, u) vs autograd: max |difference|"),
    ("nc_no_jacobian", "analytic_jacobian[real]", "declares analytic_jacobian but has no jacobian()"),
    ("nc_undeclared_metric", "evaluate", "returns undeclared metric(s) ['bonus']"),
    ("nc_bad_primary", "primary_metric", "primary_metric 'accuracy' is not among the declared metrics ['mse']"),
    ("nc_no_step", "trial", "returned without calling ctx.step"),
    ("nc_overrun", "budget", "3 updates for a budget of 2 steps"),
])
def test_nonconforming_plugin_fails_with_its_reason(nonconforming, name, check, fragment):
    failed = {f.check: f.message for f in nonconforming[name] if f.ok is False}
    assert check in failed, f"{name}: expected {check} to fail; failures: {failed}"
    assert fragment in failed[check], failed[check]


def test_nonconforming_plugins_fail_only_where_broken(nonconforming):
    """The rest of each broken plugin passes: the checks point at the fault, not at everything."""
    expected = {
        "nc_bad_forward": {"forward_matches_steps[real]", "forward_matches_steps[tokens]"},
        "nc_bad_jacobian": {"analytic_jacobian[real]", "analytic_jacobian[tokens]"},
        "nc_no_jacobian": {"analytic_jacobian[real]", "analytic_jacobian[tokens]"},
        "nc_undeclared_metric": {"evaluate"},
        "nc_bad_primary": {"primary_metric"},
        "nc_no_step": {"trial"},
        "nc_overrun": {"budget"},
    }
    for name, checks in expected.items():
        assert {f.check for f in nonconforming[name] if f.ok is False} == checks, nonconforming[name]
    no_step = {f.check: f for f in nonconforming["nc_no_step"]}
    assert all(no_step[c].ok is None for c in ("budget", "reports", "final_metrics"))


def test_check_registry_reports_plugin_files_that_fail_to_load():
    registry = load_registry([FIXTURES / "broken_plugins"])
    (loads,) = [f for f in check_registry(registry, kinds=("methods",), only=["broken"]) if f.check == "loads"]
    assert loads.ok is False and "this_module_does_not_exist" in loads.message and "broken.py" in loads.message


def test_missing_data_skips_with_the_file_named(tmp_path):
    findings = check_task(_REGISTRY.get("tasks", "cascaded-tanks"), tmp_path)
    assert not failures(findings)
    skipped = [f for f in findings if f.ok is None]
    assert {f.check for f in skipped} >= {"data_files", "instantiate", "evaluate"}
    assert all(f.message.startswith("needs data file sysid/") and "(set RNNBENCH_DATA)" in f.message for f in skipped)


# --- rnnbench check: what plugin authors run ----------------------------------------------------------

EXAMPLES = FIXTURES / "example_plugins"


def test_check_command_passes_on_the_example_plugins():
    from typer.testing import CliRunner

    from suite.cli import app

    result = CliRunner().invoke(app, ["check", "--plugins", str(EXAMPLES), "--all"])
    assert result.exit_code == 0, result.output
    assert "2 plugins" in result.output and "0 failed" in result.output
    assert "tbptt-annealed" in result.output and "damped-pendulum" in result.output


def test_check_command_fails_naming_the_reason():
    from typer.testing import CliRunner

    from suite.cli import app

    result = CliRunner().invoke(app, ["check", "--plugins", str(NONCONFORMING), "--kind", "models"])
    assert result.exit_code == 1, result.output
    assert "forward_matches_steps[real]" in result.output and "FAIL" in result.output
    assert "declares analytic_jacobian but has no jacobian()" in result.output
    missing = CliRunner().invoke(app, ["check", "--plugins", str(FIXTURES / "no_such_folder")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_warnings_for_identical_splits_and_a_maximised_error():
    registry = load_registry([NONCONFORMING])
    found = check_registry(registry, only=["nc_same_splits"], kinds=("tasks",))
    warnings = {f.check: f.message for f in found if f.ok is None and f.message.startswith("warning:")}
    assert "same data" in warnings["distinct_splits"] and "'max'" in warnings["metric_direction"]
    assert not [f for f in found if f.ok is False]  # warnings, not failures
    # the built-in tasks raise neither (their splits differ; their errors are minimised)
    for name in ("toy-sysid", "markov-tokens", "copy"):
        assert not [f for f in check_registry(only=[name], kinds=("tasks",), quick=False)
                    if f.ok is None and f.message.startswith("warning:")], name
