"""`rnnbench suite run` and `suite score` end to end (real Ray, real Parquet) against the small reference store
of the toy suite in tests/fixtures/suite-reference; the benchmark score recomputed by hand; rows of a changed
workload refused; the leaderboard site checked in headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from typer.testing import CliRunner

from suite.analysis.ranking import leaderboard
from suite.cli import app
from suite.registry import load_registry
from suite.store.results import ResultsStore
from suite.suites.score import TAUS, admit, score
from suite.suites.spec import load_suite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOY = FIXTURES / "suites" / "toy.yaml"
REFERENCE = FIXTURES / "suite-reference"
EXAMPLES = FIXTURES / "example_plugins"


def _reference_rows():
    suite, _ = load_suite(TOY)
    store = ResultsStore(REFERENCE)
    adm = admit(store.trials(), suite, str(REFERENCE))
    assert not adm.refused and len(adm.rows) == 15  # 2 workloads: (2 + 3 entries) x 3 seeds
    return suite, adm.rows, store.curves()


def test_benchmark_score_recomputed_by_hand():
    suite, rows, curves = _reference_rows()
    result = score(rows, curves, suite, load_registry())
    table = result.score["defaults"].set_index("label")
    assert set(table.index) == {"bptt", "tbptt-m0", "smt"}
    assert table.loc["smt", "workloads"] == 1 and table.loc["bptt", "workloads"] == 2  # smt: tokens only
    assert ("toy-sysid", "smt") in result.not_applicable
    # by hand: per workload the leaderboard of each label's rows, ranks by test mean, ratios to the best
    ranks, ratios, values = {}, {}, {}
    for w in suite.workloads:
        wr = rows[rows["workload"] == w.name]
        labelled = wr.assign(method=[{"bptt": "bptt", "tbptt": "tbptt-m0", "smt": "smt"}[m] for m in wr["method"]])
        board = leaderboard(labelled.drop(columns=["workload", "ruleset"])).set_index("method")
        means = board["test_mean"].astype(float)
        for label, r in means.rank().items():
            ranks.setdefault(label, []).append(r)
        for label, v in means.items():
            ratios.setdefault(label, []).append(v / means.min())
        best, worst = means.min(), means.max()
        unit = max(worst - best, 0.01 * abs(best))
        for label in means.index:
            vals = (np.asarray(board.loc[label, "test_values"], dtype=float) - best) / unit
            values.setdefault(label, []).append(vals)
    for label in table.index:
        assert table.loc[label, "mean_rank"] == pytest.approx(np.mean(ranks[label]))
        rho = [np.mean(np.asarray(ratios[label]) <= t) for t in TAUS]
        assert table.loc[label, "profile_area"] == pytest.approx(np.trapezoid(rho, TAUS) / 3.0)
        pooled = np.concatenate(values[label])
        assert table.loc[label, "iqm"] == pytest.approx(scipy.stats.trim_mean(pooled, 0.25))
        assert table.loc[label, "iqm_low"] <= table.loc[label, "iqm"] <= table.loc[label, "iqm_high"]
    # time to target: the first evaluation step at which a seed's validation metric reached the target
    ttt = result.ttt["defaults"]
    row = ttt[(ttt["workload"] == "toy-tokens") & (ttt["label"] == "bptt")].iloc[0]
    keys = rows[(rows["workload"] == "toy-tokens") & (rows["method"] == "bptt")]["trial_key"]
    val = curves[curves["trial_key"].isin(keys) & (curves["split"] == "val") & (curves["metric"] == "bpt")]
    firsts = [g.sort_values("step").query("value <= 1.9")["step"].min() for _, g in val.groupby("trial_key")]
    firsts = [math.inf if pd.isna(f) else float(f) for f in firsts]
    assert row["reached"] == sum(math.isfinite(f) for f in firsts) and row["median_steps"] == np.median(firsts)


def test_rows_of_a_changed_workload_are_refused(tmp_path):
    data = yaml.safe_load(TOY.read_text())
    data["workloads"][0]["budget"]["steps"] = 13
    changed = tmp_path / "toy.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    result = CliRunner().invoke(app, ["suite", "score", str(REFERENCE), "--reference", "none", "--suite", str(changed),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "refused" in result.output and "toy-sysid" in result.output and "earlier definition" in result.output
    payload = json.loads(result.stdout)
    assert {b["workload"] for k, rows in payload["workloads"].items() for b in rows} == {"toy-tokens"}
    other = dict(data, suite="another")
    (tmp_path / "another.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    none = CliRunner().invoke(app, ["suite", "score", str(REFERENCE), "--reference", "none", "--suite",
                                    str(tmp_path / "another.yaml")])
    assert none.exit_code == 2 and "belong to suite 'toy'" in none.output


@pytest.mark.ray
def test_a_new_method_is_run_and_scored_against_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    results = tmp_path / "results"
    try:
        _run_and_score(results)
    finally:
        import ray

        ray.shutdown()  # the CLI ran in this process: leave no Ray instance to the next test


def _run_and_score(results):
    run = CliRunner().invoke(app, ["suite", "run", str(TOY), "--method", "tbptt-annealed", "--plugins", str(EXAMPLES),
                                   "--results", str(results), "--wandb", "disabled", "--num-cpus", "2"])
    assert run.exit_code == 0, run.output
    assert (results / "suite-manifests").is_dir() and len(list((results / "suite-manifests").glob("*.yaml"))) == 2
    scored = CliRunner().invoke(app, ["suite", "score", str(results), "--reference", str(REFERENCE), "--suite", str(TOY),
                                      "--plugins", str(EXAMPLES), "--format", "json"])
    assert scored.exit_code == 0, scored.output
    payload = json.loads(scored.stdout)
    labels = {r["label"]: r for r in payload["score"]["defaults"]}
    assert set(labels) == {"bptt", "tbptt-m0", "smt", "tbptt-annealed"}
    assert labels["tbptt-annealed"]["workloads"] == 2 and labels["tbptt-annealed"]["ranked"] == 2
    # the table output names every number
    table = CliRunner().invoke(app, ["suite", "score", str(results), "--reference", str(REFERENCE), "--suite", str(TOY),
                                     "--plugins", str(EXAMPLES), "--format", "md"])
    assert table.exit_code == 0 and "| mean rank ↓ |" in table.output and "| n/a | smt |" in table.output
    assert "tbptt-annealed" in table.output
    # a second run with --resume runs nothing; without it, the rows are protected
    again = CliRunner().invoke(app, ["suite", "run", str(TOY), "--method", "tbptt-annealed", "--plugins", str(EXAMPLES),
                                     "--results", str(results), "--wandb", "disabled", "--num-cpus", "2"])
    assert again.exit_code == 2 and "--resume" in again.output


def test_site_is_self_contained_and_every_workload_page_is_linked(tmp_path):
    out = tmp_path / "site"
    result = CliRunner().invoke(app, ["suite", "report", str(REFERENCE), "--reference", "none", "--suite", str(TOY),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text()
    for name in ("toy-sysid", "toy-tokens"):
        assert f"href=workload-{name}.html" in index and (out / f"workload-{name}.html").is_file()
        page = (out / f"workload-{name}.html").read_text()
        assert "<svg" in page and not any(f in page for f in ('src="http', "src='http", 'href="http', "<link"))
    assert "not applicable" in (out / "workload-toy-sysid.html").read_text()
    assert (out / "score-defaults.csv").is_file()
    ids = [m for m in __import__("re").findall(r'id="([^"]+)"', index)]
    assert len(ids) == len(set(ids))  # no colliding ids across inlined figures


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_site_renders_in_chromium(tmp_path):
    from PIL import Image

    out = tmp_path / "site"
    assert CliRunner().invoke(app, ["suite", "report", str(REFERENCE), "--reference", "none", "--suite", str(TOY),
                                    "-o", str(out)]).exit_code == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", (out / "index.html").as_uri()], capture_output=True,
                         text=True, timeout=120)
    links = __import__("re").findall(r'href="(workload-[^"]+\.html)"', dom.stdout)
    assert sorted(set(links)) == ["workload-toy-sysid.html", "workload-toy-tokens.html"]
    for page in ["index.html", *sorted(set(links))]:
        shot = tmp_path / f"{page}.png"
        subprocess.run(["chromium", *flags, "--window-size=1200,1600", f"--screenshot={shot}", (out / page).as_uri()],
                       capture_output=True, timeout=120, check=True)
        colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50, page  # text, tables and plots, not a blank page


def test_targets_by_the_suites_rule():
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["suite", "targets", str(REFERENCE), "--suite", str(TOY)])
    assert result.exit_code == 0, result.output
    suite, rows, curves = _reference_rows()
    # toy-tokens by hand: per entry the median over seeds of each seed's best validation bpt, then the median
    wr = rows[rows["workload"] == "toy-tokens"]
    per_entry = []
    for method, g in wr.groupby("method"):
        val = curves[curves["trial_key"].isin(g["trial_key"]) & (curves["split"] == "val") & (curves["metric"] == "bpt")]
        per_entry.append(np.median(val.groupby("trial_key")["value"].min()))
    expected = float(f"{np.median(per_entry):.2g}")
    line = next(x for x in result.output.splitlines() if "toy-tokens" in x)
    assert f"{expected:g}" in line
