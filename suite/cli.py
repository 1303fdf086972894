"""The ``rnnbench`` command line: list, check, validate, run, leaderboard, curves, report, compact.

Bad input (a wrong manifest, an unknown plugin, a missing data file) exits with status 2 and a
message naming the problem and the fix, never a traceback. The module imports only what every command
needs; torch, Ray and the plugins are imported by the commands that use them, so ``--help``,
``leaderboard``, ``curves`` and ``compact`` start fast.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from suite._version import SCHEMA_VERSION, __version__

if TYPE_CHECKING:
    from suite.manifest import Manifest
    from suite.run.sweep import TrialMatrix

DATA_ENV = "RNNBENCH_DATA"


def _version(value: bool) -> None:
    if value:
        print(f"rnnbench {__version__} (results schema {SCHEMA_VERSION})")
        raise typer.Exit()


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rnnbench: benchmark the ways recurrent networks are trained (Ray Tune sweeps -> Parquet leaderboards).")


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """rnnbench: benchmark the ways recurrent networks are trained (Ray Tune sweeps -> Parquet leaderboards)."""
def _console(stderr: bool = False) -> Console:
    """Full-width output in logs: a console that is not a terminal does not fold tables at 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 240)


out = _console()
err = _console(stderr=True)

PluginsOpt = typer.Option([], "--plugins", help="extra plugin folder (repeatable)")
SetOpt = typer.Option([], "--set", help="override a manifest field: path=value (repeatable), e.g. budget.epochs=5")


class Kind(str, Enum):
    methods = "methods"
    tasks = "tasks"
    models = "models"


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


class CostAxis(str, Enum):
    wall_time_s = "wall_time_s"
    train_time_s = "train_time_s"
    steps = "steps"
    samples = "samples"
    peak_rss_mib = "peak_rss_mib"


class PairedTest(str, Enum):
    ttest = "ttest"
    wilcoxon = "wilcoxon"


class WandbMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


def _plain(value: object) -> str:
    """A table cell shown as it is: brackets (``tbptt[mode=stateless]``, ``[Errno 2]``) are not rich markup."""
    return escape(str(value))


def records_json(frame) -> str:
    """A DataFrame as JSON records with every float at full precision (pandas' to_json rounds to 10 digits);
    NaN and infinities become null."""
    import math

    import pandas as pd

    def clean(v):
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        try:
            if pd.isna(v):
                return None
        except (TypeError, ValueError):
            pass
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            try:
                return clean(v.item())
            except (ValueError, AttributeError):
                return str(v)
        return v

    rows = [{k: clean(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    return json.dumps(rows, indent=2, default=str)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command("list")
def list_plugins(kind: Kind = typer.Argument(..., help="methods, tasks or models"),
                 as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
                 plugins: list[str] = PluginsOpt) -> None:
    """Show plugins: name, summary, parameters with defaults, capabilities; broken ones with their error."""
    from suite.registry import load_registry

    registry = load_registry(plugins)
    infos = [i.describe() for i in registry.listing(kind.value)]
    if as_json:
        out.print_json(json.dumps(infos, default=str))
        return
    table = Table(title=f"rnnbench {kind.value}", show_lines=True)
    for col in ("name", "summary", "parameters (default)", "capabilities" if kind != Kind.tasks else "metrics"):
        table.add_column(col, overflow="fold")
    for info in infos:
        if "error" in info:
            table.add_row(f"[red]{_plain(info['name'])}[/]", f"[red]failed to load: {_plain(info['error'])}[/]",
                          _plain(info["origin"]), "")
            continue
        params = "\n".join(f"{p['name']}: {p['type']} = {p['default']!r}" + (f" — {p['description']}" if p["description"] else "")
                           for p in info["params"]) or "-"
        extra = info.get("capabilities") or info.get("requires") or [
            f"{m['name']} ({m['direction']}{', ' + m['unit'] if m['unit'] else ''})" for m in info.get("metrics", [])]
        if kind == Kind.methods:
            space = info.get("search_space")
            extra = ["requires: " + (", ".join(extra) or "-"),
                     "tuned: " + (", ".join(f"{k} {v}" for k, v in space.items()) or "learning rate only" if space is not None
                                  else "no search space (defaults ruleset only)")]
        table.add_row(info["name"], _plain(info["summary"]), _plain(params), _plain("\n".join(extra)))
    out.print(table)


@app.command("check")
def check_plugins(names: Optional[list[str]] = typer.Argument(None, help="plugin names to check (default: see below)"),
                  plugins: list[str] = PluginsOpt,
                  kind: list[Kind] = typer.Option([], "--kind", help="only this kind (repeatable)"),
                  builtin: bool = typer.Option(False, "--builtin", help="with --plugins: check the built-in plugins too"),
                  data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=f"benchmark data directory (default ${DATA_ENV})"),
                  full: bool = typer.Option(False, "--full", help="every split, and evaluation of large validation splits"),
                  show_all: bool = typer.Option(False, "--all", help="print passed checks too"),
                  as_json: bool = typer.Option(False, "--json", help="machine-readable findings"),
                  ruleset: Optional[str] = typer.Option(None, "--ruleset", help="tuned: a method must declare a search space (suites' tuned ruleset)")) -> None:
    """Check plugins against their contracts (tasks: splits, metrics; models: step under torch.func equals
    forward, capabilities truthful; methods: a 2-step trial that stops on budget, reports and changes the parameters). Without names:
    the plugins of the --plugins folders, or every built-in plugin when no folder is given. Exit status 1
    when a check failed."""
    from suite.conformance import KINDS, check_registry, failures
    from suite.registry import load_registry

    registry = load_registry(plugins)
    folders = [str(Path(d).expanduser().resolve()) for d in plugins]
    wanted: set[str] | None = set(names) if names else None
    if wanted is None and folders and not builtin:  # the user's own plugins (and the files that failed to load)
        mine = lambda origin: any(str(origin).startswith(f) for f in folders)
        wanted = {n for k in KINDS for n, info in registry.plugins[k].items() if mine(info.origin)}
        wanted |= {f.name for f in registry.failures if mine(f.origin)}
        if not wanted:
            raise _fail(f"no plugins found in {', '.join(plugins)}: a plugin is a .py file defining a Task, "
                        "RecurrentModel or Method subclass with a `name` (files starting with _ or test_ are skipped)")
    kinds = tuple(k.value for k in kind) or KINDS
    if ruleset not in (None, "defaults", "tuned"):
        raise _fail(f"--ruleset must be defaults or tuned, not {ruleset!r}")
    found = check_registry(registry, kinds, data_dir, quick=not full, only=wanted, plugin_dirs=plugins or None,
                           ruleset=ruleset)
    failed = failures(found)
    if as_json:
        out.print_json(json.dumps([f.__dict__ for f in found], default=str))
    else:
        table = Table(title="rnnbench check", show_lines=False)
        for col in ("kind", "plugin", "check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for f in found:
            if show_all or f.ok is not True:
                result = {True: "[green]ok[/]", False: "[red]FAIL[/]", None: "[yellow]skipped[/]"}[f.ok]
                if f.ok is None and str(f.message).startswith("warning:"):
                    result = "[yellow]warning[/]"
                table.add_row(f.kind, _plain(f.name), _plain(f.check), result, _plain(f.message))
        if table.row_count:
            out.print(table)
        checked = sorted({(f.kind, f.name) for f in found})
        out.print(f"{len(checked)} plugins, {len(found)} checks: {sum(f.ok is True for f in found)} ok, "
                  f"[{'red' if failed else 'green'}]{len(failed)} failed[/], {sum(f.ok is None for f in found)} skipped")
    if failed:
        raise typer.Exit(1)


@app.command()
def validate(file: Path = typer.Argument(..., help="manifest YAML"), plugins: list[str] = PluginsOpt,
             overrides: list[str] = SetOpt) -> None:
    """Validate a manifest; print every problem with its field path and line (exit 2 on errors)."""
    from suite.api import UsageError, prepare
    from suite.manifest import ManifestError

    try:
        prepared = prepare(file, plugins=plugins, overrides=overrides)
    except (UsageError, ManifestError) as exc:
        raise _fail(str(exc)) from None
    out.print(f"[green]ok[/]: {file} is valid: {len(prepared.matrix.trials)} trials")


EXIT_BAD_INPUT = 2  #: a wrong manifest, option, store or cluster: nothing ran
EXIT_TRIALS_FAILED = 3  #: the sweep ran, and some trials ended `error` or `timeout` (or every trial failed)
EXIT_INTERRUPTED = 130  #: Ctrl-C / SIGTERM: finished rows kept, `--resume` continues


@app.command()
def run(file: Path = typer.Argument(..., help="manifest YAML"),
        results: str = typer.Option("results", "--results", help="results directory or URI (file://, s3://, ...)"),
        storage: Optional[str] = typer.Option(None, "--storage", help="Ray Tune storage path or URI (shared on clusters)"),
        address: Optional[str] = typer.Option(None, "--address", help="join a Ray cluster (auto, ray://..., host:port)"),
        resume: bool = typer.Option(False, "--resume", help="run only the trials that have no row yet"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="with --resume: also rerun `error` and `timeout` rows"),
        retry_diverged: bool = typer.Option(False, "--retry-diverged", help="with --resume: also rerun `diverged` rows"),
        max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1, help="trials at once"),
        wandb: Optional[WandbMode] = typer.Option(None, "--wandb", help="W&B mode (default: manifest; offline without API key)"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=f"benchmark data directory (default ${DATA_ENV})"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the trial matrix (counts per task x model x method) and exit"),
        show_trials: bool = typer.Option(False, "--show-trials", help="with --dry-run: one line per trial (slow for huge grids)"),
        num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray instance"),
        force_unlock: bool = typer.Option(False, "--force-unlock", help="take over the experiment's lock left by a driver that is gone"),
        wait_for_resources: float = typer.Option(0.0, "--wait-for-resources", min=0.0,
                                                 help="seconds to wait for a node with the resources a trial needs (autoscaling clusters)"),
        plugins: list[str] = PluginsOpt, overrides: list[str] = SetOpt) -> None:
    """Run a sweep on Ray Tune; every trial lands as a row in RESULTS/trials.

    Exit status: 0 when every trial has a row and none failed, 2 on bad input (nothing ran), 3 when trials
    ended `error` or `timeout` (or all of them failed), 130 when interrupted (rerun with --resume)."""
    from suite.api import UsageError, prepare
    from suite.api import run as run_api
    from suite.manifest import ManifestError
    from suite.run.options import RunOptions

    try:
        if dry_run:
            prepared = prepare(file, plugins=plugins, overrides=overrides, expand_matrix=show_trials)
            if show_trials:
                _print_matrix(prepared.manifest, prepared.matrix)
            else:
                _print_summary(prepared.manifest, prepared.registry)
            if prepared.manifest.search.algorithm == "optuna":
                out.print(f"optuna: {prepared.manifest.search.num_samples} configurations per (task, model, method), "
                          f"asked adaptively; the matrix above shows one draw")
            return
        prepared = prepare(file, plugins=plugins, overrides=overrides)
        options = RunOptions(results=results, storage=storage, address=address, resume=resume,
                             max_concurrent=max_concurrent, wandb=wandb.value if wandb else None,
                             data_dir=str(data_dir) if data_dir else None, num_cpus=num_cpus,
                             force_unlock=force_unlock, wait_for_resources_s=wait_for_resources)
        outcome = run_api(file, options=options, retry_failed=retry_failed, retry_diverged=retry_diverged,
                          console=err, prepared=prepared, log=err.print)
    except (UsageError, ManifestError) as exc:
        raise _fail(str(exc)) from None
    _finish_run(outcome, results)


def _finish_run(outcome, results: str) -> None:
    counts: dict[str, int] = {}
    for status in outcome.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    err.print(f"ran {outcome.ran} trials in {outcome.wall_time_s:.1f} s "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'}); "
              f"{outcome.skipped_finished} already finished; results in {results}/", soft_wrap=True)
    for note in outcome.notes[-3:]:
        err.print(f"[yellow]note:[/] {note}", soft_wrap=True, highlight=False)
    missing = outcome.ran - len(outcome.statuses)
    if outcome.rescue:
        raise _fail(outcome.rescue, code=EXIT_TRIALS_FAILED)
    if outcome.interrupted:
        err.print(f"[bold red]interrupted:[/] {len(outcome.statuses)} trials finished and are stored; {missing} did "
                  f"not finish. Run the same command with --resume to run only those.", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if missing > 0:
        raise _fail(f"{missing} trials produced no row: run again with --resume", code=EXIT_TRIALS_FAILED)
    failed = counts.get("error", 0) + counts.get("timeout", 0)
    all_failed = outcome.statuses and not counts.get("ok")
    if failed or all_failed:
        raise _fail(f"{failed or len(outcome.statuses)} of {len(outcome.statuses)} trials failed; their rows hold the "
                    f"error (and `log_path` the trial's output). Fix the cause, then rerun them with "
                    f"--resume --retry-failed", code=EXIT_TRIALS_FAILED)


@app.command("import-rows")
def import_rows(results: str = typer.Argument(..., help="results directory or URI"),
                rescue: Path = typer.Argument(..., help="a rnnbench-rescue-*.jsonl file written by a sweep that could not store its rows")) -> None:
    """Store the rows a sweep saved to a rescue file when the results store could not be written."""
    from suite.store.results import ResultsStore

    try:
        n = ResultsStore(results).import_rescue(rescue)
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot import {rescue}: {exc}") from None
    out.print(f"imported {n} trial rows into {results}")


def _varying(dicts: list[dict]) -> list[str]:
    """Keys whose values differ across ``dicts`` (the ones worth showing)."""
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({json.dumps(d.get(k), sort_keys=True) for d in dicts}) > 1]


def _print_summary(manifest: Manifest, registry) -> None:
    """The dry run's default: the matrix counted per task x model x method, without building it."""
    from suite.run.sweep import matrix_summary

    rows = matrix_summary(manifest, registry)
    total = sum(r["trials"] for r in rows)
    table = Table(title=f"{manifest.name}: {total} trials (at most: a repeated grid value is one trial)")
    for col in ("task", "model", "method", "configurations", "trials", "skipped"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["task"], r["model"], r["method"], str(r["configurations"]), str(r["trials"]), _plain(r["skipped"]))
    out.print(table)
    out.print(f"{total} trials x {len(manifest.seeds)} seeds included; budget {manifest.budget.model_dump(exclude_none=True)}; "
              f"evaluation every {manifest.eval_every.model_dump(exclude_none=True)}; per trial "
              f"{manifest.resources.cpu:g} CPU, {manifest.resources.gpu:g} GPU. --show-trials lists every trial.")


def _print_matrix(manifest: Manifest, matrix: TrialMatrix) -> None:
    trials = matrix.trials
    table = Table(title=f"{manifest.name}: {len(trials)} trials")
    for col in ("#", "task", "model", "method", "configuration", "seed", "key"):
        table.add_column(col, overflow="fold")
    varying: dict[str, list[tuple[str, Any, list[str]]]] = {}  # per method, once (not per trial: 10^5 trials)
    by_method: dict[str, list] = {}
    for t in trials:
        by_method.setdefault(t.method, []).append(t)
    for method, group in by_method.items():
        getters = (("", lambda u: u.method_params), ("model.", lambda u: u.model_params),
                   ("task.", lambda u: u.task_params), ("opt.", lambda u: u.optimizer))
        varying[method] = [(label, getter, _varying([getter(u) for u in group]) if len(group) > 1 else [])
                           for label, getter in getters]
    for i, t in enumerate(trials):
        parts = []
        for label, getter, keys in varying[t.method]:
            for k in keys:
                parts.append(f"{label}{k}={getter(t).get(k)}")
        table.add_row(str(i), t.task, t.model, t.method, _plain(" ".join(parts) or "-"), str(t.seed), t.key[:8])
    out.print(table)
    for reason in matrix.skipped:
        out.print(f"[yellow]skipped[/] {reason}")
    out.print(f"{len(trials)} trials; budget {manifest.budget.model_dump(exclude_none=True)}; "
              f"evaluation every {manifest.eval_every.model_dump(exclude_none=True)}; "
              f"per trial {manifest.resources.cpu:g} CPU, {manifest.resources.gpu:g} GPU")


@app.command("leaderboard")
def show_leaderboard(results: str = typer.Argument("results", help="results directory or URI"),
                     task: Optional[str] = typer.Option(None, "--task", help="only this task"),
                     experiment: Optional[str] = typer.Option(None, "--experiment", help="only this experiment"),
                     metric: Optional[str] = typer.Option(None, "--metric", help="report this test metric (default: the selection metric)"),
                     pool: bool = typer.Option(False, "--pool", help="pool experiments: one entry per (task, model, method, budget)"),
                     fmt: Format = typer.Option(Format.table, "--format", help="table, md, csv or json"),
                     split_by: list[str] = typer.Option([], "--split-by", help="parameter that makes separate entries (repeatable), e.g. burn_in or model.hidden_size"),
                     test: PairedTest = typer.Option(PairedTest.ttest, "--test", help="paired test behind 'tied with the best' (Holm-corrected)"),
                     columns: Optional[str] = typer.Option(None, "--columns", help="table and md: these columns, comma-separated, in this order (e.g. 'method,test mean ± std,95% CI,p vs best')")) -> None:
    """Rank methods per task: configuration selected on validation, test metric over seeds, bootstrap CIs,
    entries tied with the best marked (≈)."""
    from suite.analysis.ranking import DISPLAY_COLUMNS
    from suite.store.results import ResultsStore

    picked = None
    if columns is not None:
        picked = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in picked if c not in DISPLAY_COLUMNS]
        if unknown or not picked:
            raise _fail(f"--columns: unknown column(s) {', '.join(map(repr, unknown))}; the columns are: "
                        f"{', '.join(DISPLAY_COLUMNS)}")
        if fmt in (Format.csv, Format.json):
            raise _fail("--columns applies to --format table and md (csv and json keep every column)")
    store = ResultsStore(results)
    _store_guard(lambda: _leaderboard(store, results, task, experiment, metric, pool, fmt, split_by, test.value,
                                      picked))


def _store_guard(fn) -> None:
    """Run a reading command; an unreadable store is bad input (exit 2, the files named), not a traceback."""
    from suite.store.results import StoreError

    try:
        fn()
    except StoreError as exc:
        raise _fail(str(exc)) from None


def _leaderboard(store, results, task, experiment, metric, pool, fmt, split_by, test, columns=None) -> None:
    from suite.analysis.ranking import (
        DEFAULT_COLUMNS,
        LeaderboardError,
        display_rows,
        leaderboard,
        leaderboard_rows,
        to_markdown,
    )

    experiments = store.experiments()
    if not experiments:
        raise _fail(f"no trial rows under {results}/trials (run a sweep first: rnnbench run manifests/quickstart.yaml)")
    if experiment is not None and experiment not in experiments:
        raise _fail(f"no experiment {experiment!r} under {results}; it has: {', '.join(experiments)}")
    # csv and json print the DataFrame's columns; the table and markdown need no pandas (a faster start)
    rank = leaderboard if fmt in (Format.csv, Format.json) else leaderboard_rows
    try:
        board = rank(store, task, split_by, experiment=experiment, metric=metric, pool=pool, test=test)
    except LeaderboardError as exc:
        raise _fail(str(exc)) from None
    if len(board) == 0:
        tasks = sorted(t for (t,) in store.connect(experiment).sql("SELECT DISTINCT task FROM trials").fetchall())
        raise _fail(f"no trials of task {task!r}" + (f" in experiment {experiment!r}" if experiment else "")
                    + f"; tasks: {', '.join(tasks)}")
    if fmt == Format.csv:
        sys.stdout.write(board.to_csv(index=False))
    elif fmt == Format.json:
        sys.stdout.write(records_json(board) + "\n")
    elif fmt == Format.md:
        sys.stdout.write(to_markdown(board, columns) + "\n")
    else:
        headers, rows = display_rows(board)
        named = [dict(zip(headers, r)) for r in rows]  # by column name: a new column never shifts another
        shown = [h for h in DEFAULT_COLUMNS if h != "params"] if columns is None else columns
        if out.width < 150 and columns is None:  # a narrow terminal: drop the columns a reader misses least, never split a number
            shown = [h for h in shown if h not in ("experiment", "budget", "at", "peak MiB", "wall s", "p vs best")]
        numeric = {"rank", "test mean ± std", "95% CI", "p vs best", "seeds ok", "wall s", "peak MiB"}
        table = Table(title=f"rnnbench leaderboard ({results}); ≈: tied with the best (paired {test}, Holm, 5 %)")
        for h in shown:
            table.add_column(h, overflow="fold", no_wrap=h in numeric)
        for r in named:
            table.add_row(*(_plain(r[h]) for h in shown))
        out.print(table)
        if columns is None:  # picked columns: the table alone
            for r in named:
                out.print(_plain(f"  {r['method']} ({r['task']}, {r['model']}): {r['params'] or 'defaults'}"),
                          highlight=False, soft_wrap=True)
        counts = store.connect(experiment).sql("SELECT status, count(*) FROM trials GROUP BY 1 ORDER BY 1").fetchall()
        out.print("trials: " + ", ".join(f"{k} {v}" for k, v in counts), soft_wrap=True)


@app.command("compact")
def compact(results: str = typer.Argument("results", help="results directory or URI"),
            experiment: Optional[str] = typer.Option(None, "--experiment", help="only this experiment")) -> None:
    """Rewrite each experiment into a few large Parquet files (superseded rows dropped, old stores migrated)."""
    from suite.store.lock import is_locked
    from suite.store.results import ResultsStore

    store = ResultsStore(results)
    if not store.exists():
        raise _fail(f"no results store at {results}")
    for name in ([experiment] if experiment else store.experiments()):
        owner = is_locked(store, name)
        if owner is not None:
            raise _fail(f"experiment {name!r} is being run by a driver (host {owner.get('host')}, pid "
                        f"{owner.get('pid')}); compact it when the sweep has ended")
    reports = []
    _store_guard(lambda: reports.extend(store.compact(experiment)))
    for r in reports:
        out.print(f"{r.table}/{r.experiment}: {r.files_before} files, {r.rows_before} rows -> "
                  f"{r.files_after} files, {r.rows_after} rows", highlight=False)
    if not reports:
        out.print("nothing to compact: every experiment is one file")


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Axis(str, Enum):
    step = "step"
    train_time_s = "train_time_s"
    samples = "samples"
    wall_time_s = "wall_time_s"


@app.command("curves")
def show_curves(results: str = typer.Argument("results", help="results directory or URI"),
                metric: str = typer.Option(..., "--metric", help="curve metric, e.g. K, newton_iters, ppl, loss"),
                split: Optional[str] = typer.Option(None, "--split", help="diag, val, train (default: any)"),
                task: Optional[str] = typer.Option(None, "--task", help="only this task"),
                experiment: Optional[str] = typer.Option(None, "--experiment", help="only this experiment"),
                points: int = typer.Option(8, "--points", min=1, help="evenly spaced points per row"),
                axis: Axis = typer.Option(Axis.step, "--x", help="position axis"),
                fmt: Format = typer.Option(Format.table, "--format", help="table, md, csv or json"),
                plot: Optional[Path] = typer.Option(None, "--plot", help="also save a line plot (PNG) here")) -> None:
    """A metric's trajectory per trial (e.g. adaptive TBPTT's K, DEER's Newton iterations, val ppl)."""
    from suite.analysis.trajectories import metric_curves, plot_trajectories, trajectory_table
    from suite.store.results import ResultsStore

    store = ResultsStore(results)
    loaded: list = []
    _store_guard(lambda: loaded.extend((store.trials(experiment), store.curves(experiment))))
    trials, curves = loaded
    if trials.empty or curves.empty:
        raise _fail(f"no trial or curve rows under {results} (run a sweep first: rnnbench run manifests/quickstart.yaml)")
    try:
        long = metric_curves(trials, curves, metric, split, task)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    table = trajectory_table(long, points, axis.value)
    cells = [[_fmt(v) for v in r] for r in table.itertuples(index=False)]
    if fmt == Format.csv:
        sys.stdout.write(table.to_csv(index=False))
    elif fmt == Format.json:
        sys.stdout.write(records_json(table) + "\n")
    elif fmt == Format.md:
        lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
        sys.stdout.write("\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells]) + "\n")
    else:
        rich_table = Table(title=f"{metric} by {axis.value} ({results})")
        for col in table.columns:
            rich_table.add_column(str(col), overflow="fold")
        for r in cells:
            rich_table.add_row(*(_plain(c) for c in r))
        out.print(rich_table)
    if plot is not None:
        out.print(f"plot: {plot_trajectories(long, plot, metric, axis.value)}")


@app.command("report")
def report(results: str = typer.Argument("results", help="results directory or URI"),
           output: Path = typer.Option(Path("report.html"), "-o", "--output", help="the HTML file to write"),
           experiment: Optional[str] = typer.Option(None, "--experiment", help="only this experiment"),
           split_by: list[str] = typer.Option([], "--split-by", help="parameter that makes separate entries (repeatable)"),
           test: PairedTest = typer.Option(PairedTest.ttest, "--test", help="paired test behind 'tied with the best'"),
           target: list[str] = typer.Option([], "--target", help="time-to-target threshold per task: task=value (repeatable)"),
           target_quantile: float = typer.Option(0.5, "--target-quantile", min=0.0, max=1.0,
                                                 help="without --target: the quantile of the best validation values"),
           cost: CostAxis = typer.Option(CostAxis.wall_time_s, "--cost", help="cost axis of the Pareto plot"),
           export: Optional[Path] = typer.Option(None, "--export", help="also write every figure (SVG, PDF) and table (CSV, LaTeX) into this folder")) -> None:
    """Write one self-contained HTML page: leaderboards, cross-task aggregates, curves, cost, diagnostics, manifest."""
    from suite.analysis.compare import parse_targets
    from suite.analysis.report import ReportOptions, render
    from suite.store.results import ResultsStore

    store = ResultsStore(results)
    experiments = store.experiments() if store.exists() else []
    if not experiments:
        raise _fail(f"no trial rows under {results}/trials (run a sweep first: rnnbench run manifests/quickstart.yaml)")
    if experiment is not None and experiment not in experiments:
        raise _fail(f"no experiment {experiment!r} under {results}; it has: {', '.join(experiments)}")
    try:
        opts = ReportOptions(experiment=experiment, split_by=split_by, test=test.value, targets=parse_targets(target),
                             target_quantile=target_quantile, cost=cost.value,
                             export_dir=str(export) if export else None)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    page: list[str] = []
    _store_guard(lambda: page.append(render(results, opts)))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page[0])
    out.print(f"report: {output} ({output.stat().st_size // 1024} KiB)")


@app.command("readme")
def readme(file: Path = typer.Argument(Path("README.md"), help="the Markdown file with generated blocks"),
           check: bool = typer.Option(False, "--check", help="change nothing; exit 1 if a block is out of date")) -> None:
    """Regenerate the blocks between `<!-- generated: rnnbench ... -->` and `<!-- end generated -->` from
    their commands (the README's reference and reproduction numbers)."""
    from typer.testing import CliRunner

    from suite.readme_blocks import BlockError, regenerate

    if not file.is_file():
        raise _fail(f"{file}: no such file")
    text = file.read_text()

    def run(argv: list[str]) -> str:
        result = CliRunner(env={"COLUMNS": "200"}).invoke(app, argv)
        if result.exit_code != 0:
            raise BlockError(f"`rnnbench {' '.join(argv)}` failed (exit {result.exit_code}): {result.output[-500:]}")
        return result.stdout

    try:
        new = regenerate(text, run)
    except BlockError as exc:
        raise _fail(str(exc)) from None
    if check:
        if new != text:
            raise _fail(f"{file} has generated blocks that are out of date: run `rnnbench readme {file}`", code=1)
        out.print(f"{file}: generated blocks are up to date")
        return
    file.write_text(new)
    out.print(f"{file}: {'updated' if new != text else 'already up to date'}")


def _register_suite_commands() -> None:
    from suite.suites.cli import suite_app

    app.add_typer(suite_app, name="suite")


_register_suite_commands()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
