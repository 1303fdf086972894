"""Manifest validation and the CLI's handling of bad input: exit 2, the field named, no traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.manifest import apply_override

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_valid_manifest_and_dry_run(write_manifest):
    path = write_manifest()
    res = invoke("validate", str(path))
    assert res.exit_code == 0, res.output
    assert "4 trials" in res.output
    res = invoke("run", str(path), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "4 trials" in res.output and "tbptt" in res.output


def test_set_overrides_fields(write_manifest):
    path = write_manifest()
    res = invoke("run", str(path), "--dry-run", "--set", "seeds=[0, 1, 2]", "--set", "methods[1].params.window={grid: [10, 20]}")
    assert res.exit_code == 0, res.output
    assert "9 trials" in res.output  # bptt x 3 seeds + tbptt x 2 windows x 3 seeds


@pytest.mark.parametrize(
    "edit, field, fragment",
    [
        (("  - name: bptt", "  - name: bptx"), "methods[0].name", "unknown method 'bptx'"),
        (("  - name: toy-sysid", "  - name: toy"), "tasks[0].name", "unknown task 'toy'"),
        (("budget: {steps: 6}", "budget: {steps: ten}"), "budget.steps", "integer"),
        (("budget: {steps: 6}", "budget: {steps: -5}"), "budget.steps", "greater than 0"),
        (("seeds: [0, 1]", "seeds: [0, 1]\nsurprise: 1"), "surprise", "unknown field"),
        (("params: {window: 30, batch_size: 8}", "params: {window: 30, batch_sise: 8}"),
         "methods[1].params.batch_sise", "unknown parameter"),
        (("params: {window: 30, batch_size: 8}", "params: {window: -3}"), "methods[1].params.window", "greater than 0"),
        (("name: toy", "name: !!python/object/apply:os.system ['echo pwned']"), "", "not allowed"),
    ],
)
def test_bad_input_exits_2_naming_the_field(write_manifest, toy_manifest_text, edit, field, fragment):
    old, new = edit
    assert old in toy_manifest_text
    path = write_manifest(toy_manifest_text.replace(old, new, 1))
    for command in (("validate", str(path)), ("run", str(path), "--dry-run")):
        res = invoke(*command)
        assert res.exit_code == 2, res.output
        assert fragment in res.output
        assert field in res.output
        assert "Traceback" not in res.output


def test_problems_carry_line_numbers(write_manifest, toy_manifest_text):
    path = write_manifest(toy_manifest_text.replace("budget: {steps: 6}", "budget: {steps: -1}"))
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1) if l.startswith("budget"))
    res = invoke("validate", str(path))
    assert f"budget.steps (line {line})" in res.output


def test_unknown_plugin_folder_and_missing_file(tmp_path):
    res = invoke("validate", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 2
    assert "cannot read manifest" in res.output
    assert "Traceback" not in res.output


def test_apply_override_errors():
    data = {"methods": [{"name": "bptt"}]}
    apply_override(data, "methods[0].params.window=5")
    assert data["methods"][0]["params"]["window"] == 5
    with pytest.raises(ValueError, match="does not exist"):
        apply_override(data, "methods[3].name=x")
    with pytest.raises(ValueError, match="path=value"):
        apply_override(data, "budget")


def test_method_budget_override_and_repeated_grid_values(write_manifest, toy_manifest_text):
    from suite.manifest import load_manifest
    from suite.registry import load_registry
    from suite.run.sweep import expand

    text = toy_manifest_text.replace("  - name: bptt\n", "  - name: bptt\n    budget: {steps: 50}\n").replace(
        "params: {window: 30, batch_size: 8}", "params: {window: {grid: [30, 30, 20]}, batch_size: 8}")
    trials = expand(load_manifest(write_manifest(text), load_registry), load_registry()).trials
    assert {t.method: t.budget.to_config() for t in trials} == {"bptt": {"steps": 50}, "tbptt": {"steps": 6}}
    assert len(trials) == 6  # bptt x 2 seeds + tbptt x {30, 20} x 2 seeds: the repeated 30 is one configuration


def test_shipped_manifests_validate():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "manifests").glob("*.yaml")):
        res = invoke("validate", str(path))
        assert res.exit_code == 0, f"{path.name}: {res.output}"


def test_dry_run_of_a_huge_grid_counts_without_building_it(write_manifest, toy_manifest_text, monkeypatch):
    import suite.run.sweep

    text = toy_manifest_text.replace("params: {window: 30, batch_size: 8}",
                                     "params: {window: {grid: " + str(list(range(2, 10_002))) + "}, "
                                     "batch_size: {grid: [4, 8, 16, 32, 64]}}")
    path = write_manifest(text)

    def no_expand(*a, **k):
        raise AssertionError("the dry run's summary must not build the trial matrix")

    monkeypatch.setattr(suite.run.sweep, "expand", no_expand)
    res = invoke("run", str(path), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "100002 trials" in res.output and "--show-trials" in res.output  # 10^4 x 5 x 2 seeds + bptt x 2


def test_run_options_are_one_object():
    """A run option lives in RunOptions; the old keyword names of run_sweep keep working, unknown ones are named."""
    from suite.run.options import RunOptions

    o = RunOptions.from_kwargs(results_dir="r", wandb_mode="disabled", retry=["error"], plugin_dirs=["p"])
    assert (o.results, o.wandb, o.retry, o.plugin_dirs) == ("r", "disabled", ("error",), ("p",))
    assert o.merged(resume=True).resume and not o.resume  # frozen: merged returns a new object
    with pytest.raises(TypeError, match="unknown run option 'colour'"):
        RunOptions.from_kwargs(colour="red")
