"""What a trial is, pinned: its key and config id, the plain data that crosses the Ray boundary and the row
written before it runs stay byte-identical for the same manifest (stored results and ``--resume`` depend on it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from suite.manifest import load_manifest
from suite.registry import load_registry
from suite.run.sweep import expand

#: every section of a trial set away from its default (the keys of the default sections are pinned too)
EXTRA = ["evaluation={checkpoint: best_val, to_disk_after_s: 30}",
         "diagnostics={gradient_fidelity: true, probe_sequences: 2}",
         "resources={cpu: 2, time_limit_s: 60}", "selection={split_weights: {train: 0.7, val: 0.3}}",
         "methods=[{name: bptt, budget: {epochs: 2}}, {name: tbptt, params: {window: {grid: [10, 30]}}}]"]

PINNED = {  # computed before the trial inputs became typed (issue 24 step 2)
    "default": ([("d1ef1292abe5ff54", "984874209ca9dc4f"), ("d1ef1292abe5ff54", "72891003b83c924e"),
                 ("8cb5b71d3b6d47b8", "1903f668ff3a9b73"), ("8cb5b71d3b6d47b8", "0bc60619f84675ad")],
                "11572190aef41299", "1b9abc0bed93cda2"),
    "every section": ([("6fcbe7145e75a0ab", "275e59832e2fb0ab"), ("6fcbe7145e75a0ab", "158717c75d7a5547"),
                       ("210d2719b770eabc", "ea52d16b21910832"), ("210d2719b770eabc", "8b83dc698c33bc93"),
                       ("5a70bb6c3143505d", "f78fa7eb355af7dc"), ("5a70bb6c3143505d", "64f2f01bb9f811d4")],
                      "8cd427b310a43852", "d398b9e528ea730d"),
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(spec) -> dict:
    """The plain data of a spec as it is handed to Ray."""
    return spec.to_config()


@pytest.mark.parametrize("case, extra", [("default", []), ("every section", EXTRA)])
def test_trial_keys_plain_data_and_rows_are_pinned(write_manifest, case, extra):
    trials = expand(load_manifest(write_manifest(name="pin"), load_registry, extra), load_registry()).trials
    ids, plain, rows = PINNED[case]
    assert [(t.config_id, t.key) for t in trials] == ids
    assert _digest(json.dumps([_plain(t) for t in trials], sort_keys=True)) == plain
    assert _digest(json.dumps([t.new_record("r").to_json() for t in trials])) == rows


def test_a_spec_is_typed_frozen_and_crosses_as_plain_data(write_manifest):
    import dataclasses

    from suite.run.budget import Budget
    from suite.run.spec import TrialSpec

    spec = expand(load_manifest(write_manifest(), load_registry, EXTRA), load_registry()).trials[0]
    assert spec.budget == Budget("epochs", 2) and spec.resources.time_limit_s == 60 and spec.evaluation.best_val
    assert spec.selection.split_weights == {"train": 0.7, "val": 0.3} and spec.diagnostics.probe_sequences == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.resources.cpu = 4  # type: ignore[misc]
    config = spec.to_config()
    assert config["budget"] == {"epochs": 2} and config["resources"]["cpu"] == 2.0
    assert json.loads(json.dumps(config)) == config  # plain data only
    assert TrialSpec.from_config(config) == spec


def test_sections_given_as_mappings_are_typed_with_the_manifests_defaults():
    from suite.run.spec import TrialDiagnostics, TrialEvaluation, TrialSpec

    spec = TrialSpec(experiment="e", task="t", task_params={}, model="m", model_params={}, method="x",
                     method_params={}, optimizer={}, seed=0, budget={"steps": 3}, eval_every={"steps": 1},
                     selection={"metric": None, "split_weights": {"val": 1.0}}, resources={"cpu": 1, "device": "cpu"})
    assert spec.budget.kind == "steps" and spec.budget.amount == 3 and spec.eval_every.amount == 1
    assert spec.resources.device == "cpu" and spec.resources.gpu == 0.0 and spec.resources.time_limit_s is None
    assert spec.evaluation == TrialEvaluation() and spec.diagnostics == TrialDiagnostics()
    with pytest.raises(ValueError, match="unknown keys \\['cpus'\\]"):
        TrialSpec.from_config({**spec.to_config(), "resources": {"cpus": 2}})
    with pytest.raises(ValueError, match="exactly one of"):
        TrialSpec.from_config({**spec.to_config(), "budget": {"steps": 3, "epochs": 1}})


def test_the_runtime_is_typed_and_crosses_as_the_plain_data_it_was(tmp_path):
    from suite.run import plugin_shipping
    from suite.run.runtime import TrialRuntime
    from suite.run.wandb_run import WandbSettings

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "p.py").write_text("x = 1\n")
    packs = tuple(plugin_shipping.pack([str(folder)]))
    runtime = TrialRuntime(data_dir="/data", plugin_dirs=(str(folder),), plugin_packs=packs, kill_on_overrun=True,
                           wandb=WandbSettings(mode="offline", dir="/w", tags=("a",)), log_dir="/r/logs/e",
                           checkpoint_dir="/r/checkpoints/e", log_root="/r")
    config = runtime.to_config()
    assert set(config) == {"data_dir", "plugin_dirs", "plugin_packs", "kill_on_overrun", "wandb", "log_dir",
                           "checkpoint_dir", "log_root"}
    assert config["plugin_packs"][0]["files"] == {"p.py": b"x = 1\n"} and config["wandb"]["tags"] == ["a"]
    assert TrialRuntime.from_config(config) == runtime
    (shipped,) = runtime.plugin_folders()
    assert "rnnbench-plugins" in shipped and (Path(shipped) / "p.py").read_text() == "x = 1\n"
    # in-process callers (tests, rnnbench check) give a part of it, or nothing
    assert TrialRuntime.of({"plugin_dirs": ["/p"]}).plugin_folders() == ("/p",)
    assert TrialRuntime.of(None) == TrialRuntime() and TrialRuntime.of(runtime) is runtime
    with pytest.raises(ValueError, match="unknown keys \\['datadir'\\]"):
        TrialRuntime.from_config({"datadir": "/x"})
