"""``rnnbench suite ...``: validate a suite, run methods on it, score results against the reference, write a site."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

suite_app = typer.Typer(add_completion=False, no_args_is_help=True, help="the benchmark of record: suites of fixed "
                        "workloads, rulesets, reference results, scoring")
# full width when not a terminal (logs, CI): a table folded at 80 columns splits numbers
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 240)

SuiteArg = typer.Argument(..., help="suite name (v1-cpu) or suite file")
PluginsOpt = typer.Option([], "--plugins", help="extra plugin folder (repeatable)")
DEFAULT_REFERENCE = "reference/{suite}"


class RulesetChoice(str, Enum):
    defaults = "defaults"
    tuned = "tuned"
    both = "both"


class ScoreFormat(str, Enum):
    table = "table"
    md = "md"
    json = "json"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _load(suite_name: str, plugins: list[str], rulesets: tuple[str, ...] = ("defaults", "tuned")):
    """The suite file and a registry, validated (plugins included); exit 2 listing every problem."""
    from suite.manifest_yaml import ManifestError
    from suite.registry import load_registry
    from suite.suites.compile import check_suite
    from suite.suites.spec import load_suite, resolve_suite_path

    for folder in plugins:
        if not Path(folder).is_dir():
            raise _fail(f"--plugins {folder}: no such folder (a plugin folder holds *.py files defining plugins)")
    try:
        path = resolve_suite_path(suite_name)
        suite, lines = load_suite(path)
        registry = load_registry(plugins)
        check_suite(suite, lines, registry, str(path), rulesets)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    except ManifestError as exc:
        raise _fail(str(exc)) from None
    return suite, registry, path


@suite_app.command("validate")
def validate_cmd(suite_name: str = SuiteArg, plugins: list[str] = PluginsOpt) -> None:
    """Validate a suite file and every workload's compiled manifest; print every problem (exit 2 on errors)."""
    suite, registry, path = _load(suite_name, plugins)
    from suite.suites.compile import workload_manifest

    table = Table(title=f"suite {suite.suite} v{suite.version} ({path})")
    for col in ("workload", "task", "model", "updates", "target", "hash", "not applicable"):
        table.add_column(col, overflow="fold")
    for w in suite.workloads:
        na = workload_manifest(suite, w, "defaults", suite.methods, registry).not_applicable
        table.add_row(w.name, w.task.name, w.model.name, str(w.budget.steps), f"{w.target:g}", w.hash[:8],
                      ", ".join(sorted(na)) or "-")
    out.print(table)
    out.print(f"[green]ok[/]: {path} is valid: {len(suite.workloads)} workloads, {len(suite.methods)} reference "
              f"entries, {len(suite.seeds)} seeds, tuned N = {suite.rulesets.tuned.configs}")


@suite_app.command("run")
def run_cmd(suite_name: str = SuiteArg,
            method: Optional[str] = typer.Option(None, "--method", help="the method plugin to score (runs only it)"),
            reference: bool = typer.Option(False, "--reference", help="run every reference entry of the suite"),
            only: list[str] = typer.Option([], "--only", help="with --reference: only this entry label (repeatable)"),
            ruleset: RulesetChoice = typer.Option(RulesetChoice.defaults, "--ruleset", help="defaults, tuned or both"),
            workload: list[str] = typer.Option([], "--workload", help="only this workload (repeatable)"),
            results: str = typer.Option("results", "--results", help="results directory or URI"),
            resume: bool = typer.Option(False, "--resume", help="run only the trials that have no row yet"),
            max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="trials at once"),
            wandb: Optional[str] = typer.Option(None, "--wandb", help="W&B mode: offline, online or disabled"),
            data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="benchmark data directory"),
            address: Optional[str] = typer.Option(None, "--address", help="join a Ray cluster"),
            num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray instance"),
            plugins: list[str] = PluginsOpt) -> None:
    """Run a method (or the reference entries) on every workload of a suite, one experiment per workload.

    Exit status: 0 when every trial has a row and none failed, 2 on bad input, 3 when trials failed,
    130 when interrupted (rerun the same command with --resume)."""
    if (method is None) == (not reference):
        raise _fail("give exactly one of --method NAME (score a method) or --reference (run the suite's entries)")
    rulesets = ["defaults", "tuned"] if ruleset == RulesetChoice.both else [ruleset.value]
    suite, registry, _ = _load(suite_name, plugins, tuple(rulesets))
    from suite.api import UsageError
    from suite.api import run as run_api
    from suite.manifest_yaml import ManifestError
    from suite.registry import UnknownPluginError
    from suite.suites.compile import entry_for_method
    from suite.suites.runner import MANIFEST_FOLDER, plan, run_plan

    unknown = [w for w in workload if w not in {x.name for x in suite.workloads}]
    if unknown:
        raise _fail(f"unknown workload(s) {', '.join(unknown)}; {suite.suite} has: "
                    f"{', '.join(w.name for w in suite.workloads)}")
    try:
        if reference:
            entries = [e for e in suite.methods if not only or e.label in only]
            missing = sorted(set(only) - {e.label for e in suite.methods})
            if missing:
                raise _fail(f"unknown entry label(s) {', '.join(missing)}; labels: {', '.join(e.label for e in suite.methods)}")
        else:
            entries = [entry_for_method(method, registry)]
            cls = registry.get("methods", method)
            if "tuned" in rulesets and cls.search_space is None:
                raise _fail(f"method {method!r} declares no search_space, so it cannot run under the tuned ruleset; "
                            f"add one to the class (see README: Adding a plugin) or use --ruleset defaults")
        compiled = plan(suite, entries, rulesets, registry, workload or None)
    except UnknownPluginError as exc:
        raise _fail(str(exc)) from None
    except ManifestError as exc:
        raise _fail(str(exc)) from None
    local = "://" not in results
    manifest_dir = Path(results) / MANIFEST_FOLDER if local else Path(".rnnbench-suite-manifests")
    err.print(f"suite {suite.suite}: {len(compiled)} experiments ({', '.join(rulesets)}) -> {results}")
    try:
        outcome = run_plan(compiled, results, manifest_dir, run_api, lambda m: err.print(escape(m), soft_wrap=True),
                           resume=resume, plugins=plugins, data_dir=data_dir, address=address,
                           max_concurrent=max_concurrent, wandb=wandb, num_cpus=num_cpus, console=err, log=err.print)
    except UsageError as exc:
        raise _fail(str(exc)) from None
    counts: dict[str, int] = {}
    for status in outcome.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    err.print(f"ran {outcome.ran} trials in {outcome.wall_time_s:.0f} s "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'}); results in {results}/",
              soft_wrap=True)
    if outcome.interrupted:
        err.print("[bold red]interrupted:[/] finished rows are stored; rerun the same command with --resume")
        raise typer.Exit(130)
    if counts.get("error", 0) + counts.get("timeout", 0):
        raise _fail("some trials failed; their rows hold the error. Fix the cause, then rerun with --resume "
                    "(failed rows rerun with `rnnbench run <manifest> --resume --retry-failed`, manifests in "
                    f"{manifest_dir})", code=3)
    if not reference:
        err.print(f"next: rnnbench suite score {results} --suite {suite_name}", soft_wrap=True)


def collect(results: list[str], suite, registry):
    """Admitted trials and curves of several stores (the first wins a repeated trial key)."""
    import pandas as pd

    from suite.store.results import ResultsStore
    from suite.suites.score import admit

    trials, curves, refused = [], [], []
    for source in results:
        store = ResultsStore(source)
        if not store.exists():
            raise _fail(f"no results store at {source} (nothing was run there, or the path is wrong)")
        t = store.trials()
        adm = admit(t, suite, source)
        refused += adm.refused
        if not adm.rows.empty:
            trials.append(adm.rows)
            exps = sorted(set(adm.rows["experiment"]))
            curves.append(pd.concat([store.curves(e) for e in exps], ignore_index=True))
    if not trials:
        return pd.DataFrame(), pd.DataFrame(), refused
    all_trials = pd.concat(trials, ignore_index=True).drop_duplicates("trial_key", keep="first")
    all_curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return all_trials, all_curves, refused


def _scored(results: str, reference: Optional[str], suite, registry, show_refused: bool):
    """Admit and score the rows of ``results`` and the reference store (``reference``; default reference/<suite>,
    'none': only RESULTS): ``(SuiteScore, curves, sources)``; exit 2 when nothing can be scored."""
    from suite.store.results import StoreError
    from suite.suites.score import ScoreError, score

    sources = [results]
    ref = reference if reference is not None else DEFAULT_REFERENCE.format(suite=suite.suite)
    if ref != "none" and Path(ref).resolve() != Path(results).resolve():
        sources.append(ref)
    try:
        trials, curves, refused = collect(sources, suite, registry)
        if show_refused:
            for line in refused:
                err.print(f"[yellow]refused:[/] {escape(line)}", soft_wrap=True)
        if trials.empty:
            hint = "" if refused or not show_refused else \
                f" (run one: rnnbench suite run {suite.suite} --method NAME --results {results})"
            raise _fail(f"no rows of suite {suite.suite} in {', '.join(sources)}{hint}")
        return score(trials, curves, suite, registry, refused), curves, sources
    except (StoreError, ScoreError) as exc:
        raise _fail(str(exc)) from None


@suite_app.command("score")
def score_cmd(results: str = typer.Argument(..., help="results of `rnnbench suite run`"),
              reference: Optional[str] = typer.Option(None, "--reference", help="reference store (default reference/<suite>; 'none': only RESULTS)"),
              suite_name: str = typer.Option("v1-cpu", "--suite", help="suite name or file"),
              fmt: ScoreFormat = typer.Option(ScoreFormat.table, "--format", help="table, md or json"),
              plugins: list[str] = PluginsOpt) -> None:
    """Per workload the leaderboard (CIs, ties with the best), and across workloads the benchmark score:
    mean rank, performance-profile area, IQM with its stratified bootstrap interval, time to target in updates."""
    suite, registry, _ = _load(suite_name, plugins, ("defaults",))
    result, _, _ = _scored(results, reference, suite, registry, show_refused=True)
    render_score(result, suite, fmt)


def render_score(result, suite, fmt: ScoreFormat) -> None:
    from suite.suites.report_tables import board_table, score_table, to_markdown

    if fmt == ScoreFormat.json:
        payload = {"suite": suite.suite, "version": suite.version,
                   "score": {r: t.to_dict(orient="records") for r, t in result.score.items()},
                   "workloads": {f"{r}/{w}": b.drop(columns=["test_values", "seeds"], errors="ignore").to_dict(orient="records")
                                 for (r, w), b in result.boards.items()},
                   "not_applicable": [{"workload": w, "label": label, "reason": why}
                                      for (w, label), why in sorted(result.not_applicable.items())],
                   "refused": result.refused}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    for ruleset, table in result.score.items():
        if fmt == ScoreFormat.md:
            sys.stdout.write(f"\n### {suite.suite}, ruleset {ruleset}: benchmark score\n\n")
            sys.stdout.write(to_markdown(score_table(table)) + "\n")
            continue
        t = Table(title=f"{suite.suite} v{suite.version}, ruleset {ruleset}: benchmark score over {len(suite.workloads)} workloads")
        frame = score_table(table)
        for c in frame.columns:
            t.add_column(c, overflow="fold")
        for _, r in frame.iterrows():
            t.add_row(*(escape(str(v)) for v in r))
        out.print(t)
    if fmt == ScoreFormat.md:
        for (ruleset, workload), board in result.boards.items():
            sys.stdout.write(f"\n#### {workload} ({ruleset})\n\n" + to_markdown(board_table(board, result.not_applicable, workload)) + "\n")
        return
    for (ruleset, workload), board in result.boards.items():
        frame = board_table(board, result.not_applicable, workload)
        t = Table(title=f"{workload} ({ruleset}); ≈: tied with the best (paired t, Holm, 5 %)")
        for c in frame.columns:
            t.add_column(c, overflow="fold")
        for _, r in frame.iterrows():
            t.add_row(*(escape(str(v)) for v in r))
        out.print(t)


@suite_app.command("report")
def report_cmd(results: str = typer.Argument(..., help="results of `rnnbench suite run`"),
               output: Path = typer.Option(Path("site"), "-o", "--output", help="folder of the site"),
               reference: Optional[str] = typer.Option(None, "--reference", help="reference store (default reference/<suite>; 'none': only RESULTS)"),
               suite_name: str = typer.Option("v1-cpu", "--suite", help="suite name or file"),
               plugins: list[str] = PluginsOpt) -> None:
    """Write a static leaderboard site: index (benchmark score, profiles) and a page per workload."""
    suite, registry, _ = _load(suite_name, plugins, ("defaults",))
    from suite.suites.site import write_site

    result, curves, sources = _scored(results, reference, suite, registry, show_refused=False)
    pages = write_site(result, curves, suite, output, sources)
    out.print(f"site: {pages[0]} and {len(pages) - 1} workload pages")


@suite_app.command("cost")
def cost_cmd(results: str = typer.Argument(..., help="results of `rnnbench suite run` (e.g. reference/v1-cpu)"),
             suite_name: str = typer.Option("v1-cpu", "--suite", help="suite name or file"),
             fmt: ScoreFormat = typer.Option(ScoreFormat.table, "--format", help="table, md or json"),
             plugins: list[str] = PluginsOpt) -> None:
    """What a run cost: trials, failures and wall time per ruleset, workload and entry (sums over trials,
    i.e. core-seconds with one core per trial), and the totals."""
    suite, registry, _ = _load(suite_name, plugins, ("defaults",))
    from suite.store.results import StoreError
    from suite.suites.report_tables import cost_table, to_markdown
    from suite.suites.score import label_rows, reference_labels

    try:
        trials, _, refused = collect([results], suite, registry)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    for line in refused:
        err.print(f"[yellow]refused:[/] {escape(line)}", soft_wrap=True)
    if trials.empty:
        raise _fail(f"no rows of suite {suite.suite} in {results}")
    frame = cost_table(label_rows(trials, reference_labels(suite, registry)), [w.name for w in suite.workloads])
    if fmt == ScoreFormat.json:
        from suite.cli import records_json

        sys.stdout.write(records_json(frame) + "\n")
    elif fmt == ScoreFormat.md:
        sys.stdout.write(to_markdown(frame) + "\n")
    else:
        t = Table(title=f"{suite.suite}: cost of {results}")
        for c in frame.columns:
            t.add_column(c, overflow="fold")
        for _, r in frame.iterrows():
            t.add_row(*(escape(str(v)) for v in r))
        out.print(t)


@suite_app.command("targets")
def targets_cmd(results: str = typer.Argument(..., help="the reference store (e.g. reference/v1-cpu)"),
                suite_name: str = typer.Option("v1-cpu", "--suite", help="suite name or file"),
                plugins: list[str] = PluginsOpt) -> None:
    """The validation targets the suite's rule gives from a reference store (ruleset defaults): per workload,
    the median over entries of the median over seeds of the best validation value of the entry's selected
    configuration, to two significant digits. Targets are not part of a workload's hash: updating them keeps
    every stored row."""
    suite, registry, _ = _load(suite_name, plugins, ("defaults",))
    import numpy as np

    result, curves, _ = _scored(results, "none", suite, registry, show_refused=False)
    t = Table(title=f"{suite.suite}: validation targets by the suite's rule, from {results}")
    for c in ("workload", "metric", "entries", "target (rule)", "in the suite file"):
        t.add_column(c)
    for w in suite.workloads:
        board = result.boards.get(("defaults", w.name))
        if board is None:
            t.add_row(w.name, "", "0", "— (no rows)", f"{w.target:g}")
            continue
        bests = []
        for _, entry in board[board["status"] == "ranked"].iterrows():
            keys = result.rows.loc[result.rows["config_id"] == entry["config_id"], "trial_key"]
            c = curves[curves["trial_key"].isin(keys) & (curves["split"] == "val") & (curves["metric"] == entry["metric"])]
            per_seed = c.groupby("trial_key")["value"].agg("min" if entry["direction"] == "min" else "max")
            if len(per_seed):
                bests.append(float(np.median(per_seed)))
        value = float(f"{np.median(bests):.2g}") if bests else float("nan")
        t.add_row(w.name, str(board["metric"].iloc[0]), str(len(bests)), f"{value:g}", f"{w.target:g}")
    out.print(t)
