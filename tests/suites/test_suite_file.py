"""Suite files: validation (every problem at once, path and line, exit 2), workload hashes, the rulesets'
quasi-random configurations, applicability, and the search-space check of `rnnbench check`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from suite.cli import app
from suite.conformance import check_search_space
from suite.registry import load_registry
from suite.suites.compile import quasi_random_configs, tuned_entries, workload_manifest
from suite.suites.spec import experiment_name, load_suite, parse_experiment

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "fixtures" / "suites" / "toy.yaml"


def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(TOY.read_text())
    edit(data)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _validate(path: Path):
    return CliRunner().invoke(app, ["suite", "validate", str(path)])


def test_builtin_suites_validate():
    for name in ("v1-cpu", "v1-gpu"):
        result = CliRunner().invoke(app, ["suite", "validate", name])
        assert result.exit_code == 0, result.output
        assert "is valid" in result.output


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d["workloads"][0]["task"].update(name="no-such-task"), "no-such-task"),
    (lambda d: d["workloads"][0].pop("target"), "target"),
    (lambda d: d.update(seeds=[0, 1]), "seeds"),
    (lambda d: d["workloads"].append(dict(d["workloads"][0])), "duplicate workload"),
    (lambda d: d["workloads"][0].update(budget={"epochs": 5}), "budget"),
    (lambda d: d["workloads"][0].update(budget={"steps": 10**30}), "budget"),
    (lambda d: d["methods"][0].update(method="nope"), "nope"),
    (lambda d: d["workloads"][1]["selection"].update(metric="rmse") if "selection" in d["workloads"][1]
     else d["workloads"][1].update(selection={"metric": "rmse"}), "rmse"),
])
def test_bad_suite_files_exit_2(tmp_path, edit, needle):
    result = _validate(_variant(tmp_path, edit))
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_every_problem_at_once_with_lines(tmp_path):
    def edit(d):
        d["seeds"] = [0]
        d["workloads"][0].pop("target")
    result = _validate(_variant(tmp_path, edit))
    assert result.exit_code == 2
    assert "seeds" in result.output and "target" in result.output and "line" in result.output


def test_unknown_suite_name_lists_the_known_ones():
    result = CliRunner().invoke(app, ["suite", "validate", "v9-nothing"])
    assert result.exit_code == 2 and "v1-cpu" in result.output


def test_workload_hash_ties_rows_to_the_definition(tmp_path):
    suite, _ = load_suite(TOY)
    w = suite.workloads[0]
    changed, _ = load_suite(_variant(tmp_path, lambda d: d["workloads"][0]["budget"].update(steps=13)))
    assert changed.workloads[0].hash != w.hash and changed.workloads[1].hash == suite.workloads[1].hash
    described, _ = load_suite(_variant(tmp_path, lambda d: d["workloads"][0].update(description="other", target=0.1)))
    assert described.workloads[0].hash == w.hash  # prose and target are not part of what the trials depend on
    exp = suite.experiment(w, "tuned")
    assert exp == experiment_name("toy", w.name, "tuned", w.hash) and parse_experiment(exp) == ("toy", w.name, "tuned", w.hash[:8])
    assert parse_experiment("quickstart") is None and parse_experiment("a.b.nightly.12345678") is None


def test_quasi_random_configs_are_deterministic_and_inside_their_spaces():
    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "w": {"choice": [16, 32, 64]}, "m": {"uniform": [0.0, 0.5]},
             "k": {"randint": [2, 5]}}
    a, b = quasi_random_configs(space, 16, 0), quasi_random_configs(space, 16, 0)
    assert a == b and a != quasi_random_configs(space, 16, 1)
    for cfg in a:
        assert 1e-4 <= cfg["lr"] <= 1e-1 and cfg["w"] in (16, 32, 64) and 0 <= cfg["m"] <= 0.5 and cfg["k"] in (2, 3, 4)
    # quasi-random: 16 draws cover every choice and both halves of every range
    assert {c["w"] for c in a} == {16, 32, 64} and {c["k"] for c in a} == {2, 3, 4}
    assert min(c["m"] for c in a) < 0.25 < max(c["m"] for c in a)


def test_tuned_ruleset_respects_fixed_parameters_and_draws_the_learning_rate():
    suite, _ = load_suite(TOY)
    registry = load_registry()
    m0 = next(e for e in suite.methods if e.label == "tbptt-m0")
    configs = tuned_entries(m0, registry.get("methods", "tbptt"), suite)
    assert len(configs) == suite.rulesets.tuned.configs
    assert all(c["params"]["burn_in"] == 0 for c in configs)  # fixed: never drawn
    assert len({c["params"]["window"] for c in configs} | {c["optimizer"]["lr"] for c in configs}) > 1
    assert all(1e-3 <= c["optimizer"]["lr"] <= 3e-2 for c in configs)


def test_not_applicable_entries_are_left_out_with_a_reason():
    suite, _ = load_suite(TOY)
    registry = load_registry()
    compiled = workload_manifest(suite, suite.workload("toy-sysid"), "defaults", suite.methods, registry)
    assert "smt" in compiled.not_applicable and "tokens" in compiled.not_applicable["smt"]
    assert compiled.labels == ["bptt", "tbptt-m0"] and [m["name"] for m in compiled.data["methods"]] == ["bptt", "tbptt"]
    tokens = workload_manifest(suite, suite.workload("toy-tokens"), "defaults", suite.methods, registry)
    assert not tokens.not_applicable and tokens.labels == ["bptt", "tbptt-m0", "smt"]


def test_check_rejects_a_method_without_search_space_for_tuned(tmp_path):
    from suite.contracts import Method

    class NoSpace(Method):
        name = "no-space"

        def train(self, model, data, ctx):  # pragma: no cover
            pass

    assert check_search_space(NoSpace, "tuned")[0].ok is False
    assert check_search_space(NoSpace)[0].ok is None  # skipped outside the tuned ruleset

    class BadSpace(NoSpace):
        name = "bad-space"
        search_space = {"window": {"uniform": [1, 2]}}

    found = check_search_space(BadSpace, "tuned")
    assert found[0].ok is False and "not a parameter" in found[0].message
    # the CLI: a plugin folder whose method declares no space fails `rnnbench check --ruleset tuned`
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(ROOT / "tests" / "fixtures" / "example_plugins" / "tbptt_annealed.py", folder / "annealed.py")
    text = (folder / "annealed.py").read_text()
    start = text.index("    search_space = ")
    end = text.index("\n\n", start)
    (folder / "annealed.py").write_text(text[:start] + text[end + 1:])
    result = CliRunner().invoke(app, ["check", "--plugins", str(folder), "--ruleset", "tuned", "--kind", "methods"])
    assert result.exit_code == 1 and "search_space" in result.output
    for name in load_registry().names("methods"):  # every built-in method can enter the tuned ruleset
        assert all(f.ok for f in check_search_space(load_registry().get("methods", name), "tuned")), name
