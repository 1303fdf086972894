"""The README's generated blocks (reference numbers) match what their commands print from the stored results."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.readme_blocks import BlockError, blocks, regenerate

ROOT = Path(__file__).resolve().parents[2]


def test_blocks_are_replaced_by_their_commands_output():
    text = "a\n<!-- generated: rnnbench x --y -->\nold\n<!-- end generated -->\nb\n"
    seen = []
    new = regenerate(text, lambda argv: seen.append(argv) or "new")
    assert seen == [["x", "--y"]] and new == "a\n<!-- generated: rnnbench x --y -->\nnew\n<!-- end generated -->\nb\n"
    assert blocks(new) == [("rnnbench x --y", "new\n")]
    with pytest.raises(BlockError, match="must start with rnnbench"):
        regenerate("<!-- generated: rm -rf / -->\n<!-- end generated -->", lambda argv: "")


def test_check_mode_fails_on_a_stale_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- generated: rnnbench suite cost tests/fixtures/suite-reference --suite "
                   "tests/fixtures/suites/toy.yaml --format md -->\nstale\n<!-- end generated -->\n")
    runner = CliRunner()
    assert runner.invoke(app, ["readme", str(doc), "--check"]).exit_code == 1
    assert runner.invoke(app, ["readme", str(doc)]).exit_code == 0
    assert "| defaults | toy-sysid | bptt | 3 |" in doc.read_text()
    assert runner.invoke(app, ["readme", str(doc), "--check"]).exit_code == 0


def test_readme_numbers_are_generated_from_the_stored_results(monkeypatch):
    monkeypatch.chdir(ROOT)
    text = (ROOT / "README.md").read_text()
    assert any("reference/v1-cpu" in cmd for cmd, _ in blocks(text))
    result = CliRunner().invoke(app, ["readme", "README.md", "--check"])
    assert result.exit_code == 0, result.output


def test_leaderboard_json_keeps_full_precision():
    import json

    from suite.analysis.ranking import leaderboard
    from suite.store.results import ResultsStore

    ref = ROOT / "tests" / "fixtures" / "suite-reference"
    result = CliRunner().invoke(app, ["leaderboard", str(ref), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {(r["experiment"], r["method"]): r for r in json.loads(result.stdout)}
    board = leaderboard(ResultsStore(ref))
    for _, b in board.iterrows():
        assert rows[(b["experiment"], b["method"])]["test_mean"] == b["test_mean"]  # exact, not 10 digits
