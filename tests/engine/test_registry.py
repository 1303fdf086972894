"""Plugin discovery: built-ins, user folders, broken files listed with their error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.registry import UnknownPluginError, load_registry

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


def test_builtins_are_discovered():
    reg = load_registry()
    assert {"bptt", "tbptt"} <= set(reg.names("methods"))
    assert {"lstm", "gru", "elman"} <= set(reg.names("models"))
    assert {"cascaded-tanks", "toy-sysid"} <= set(reg.names("tasks"))


def test_list_json_shows_schema_defaults_and_capabilities():
    res = runner.invoke(app, ["list", "methods", "--json"])
    assert res.exit_code == 0, res.output
    infos = {i["name"]: i for i in json.loads(res.output)}
    window = next(p for p in infos["tbptt"]["params"] if p["name"] == "window")
    assert window["default"] == 100 and window["type"] == "int" and window["description"]
    mode = next(p for p in infos["tbptt"]["params"] if p["name"] == "mode")
    # a Literal's values
    assert mode["choices"] == ["stateless", "stateful", "stateful_phased"] and "'stateful'" in mode["type"]
    assert infos["tbptt"]["search_space"]["burn_in"] == {"uniform": [0.0, 0.5]}
    table = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["list", "methods"])
    assert "window length N" in table.output and "one of 'stateless', 'stateful', 'stateful_phased'" in table.output
    res = runner.invoke(app, ["list", "models", "--json"])
    models = {i["name"]: i for i in json.loads(res.output)}
    assert "fused_sequence" in models["lstm"]["capabilities"]


def test_user_folder_plugins_and_broken_files():
    reg = load_registry([FIXTURES / "plugins", FIXTURES / "broken_plugins"])
    assert "raising" in reg.names("methods")
    broken = [f for f in reg.failures if f.name == "broken"]
    assert broken and "this_module_does_not_exist" in broken[0].error
    res = runner.invoke(app, ["list", "methods", "--plugins", str(FIXTURES / "broken_plugins")])
    assert res.exit_code == 0, res.output
    assert "broken" in res.output and "failed to load" in res.output and "bptt" in res.output
    with pytest.raises(UnknownPluginError, match="failed to load"):
        reg.get("methods", "broken")


def test_unknown_plugin_message_suggests_a_fix():
    with pytest.raises(UnknownPluginError) as info:
        load_registry().get("methods", "tbtt")
    text = str(info.value)
    assert "Did you mean 'tbptt'" in text and "--plugins" in text
