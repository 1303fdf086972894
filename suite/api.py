"""The Python API: what the CLI does, as functions (``import suite``; ``suite.run``, ``suite.load_results``,
``suite.leaderboard``).

:func:`run` applies the same guards as ``rnnbench run``: the manifest is validated (every problem at once),
the benchmark data are checked before any trial starts, and an experiment that already has rows is not
overwritten unless ``resume=True``. Bad input raises :class:`UsageError` (or :class:`~suite.manifest.ManifestError`)
before anything runs; the sweep's outcome is returned as a :class:`~suite.run.orchestrate.SweepOutcome`.

    import suite
    outcome = suite.run("manifests/quickstart.yaml", results="results")
    board = suite.leaderboard("results")               # a DataFrame, one row per entry
    trials = suite.load_results("results").trials()    # every trial row
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import pandas as pd

    from suite.manifest import Manifest
    from suite.registry import Registry
    from suite.run.options import RunOptions
    from suite.run.orchestrate import SweepOutcome
    from suite.run.sweep import TrialMatrix
    from suite.store.results import ResultsStore


class UsageError(ValueError):
    """Bad input found before anything ran (the CLI exits 2): the message names the problem and the fix."""


@dataclass
class PreparedRun:
    """A validated sweep, ready to run: the manifest, its registry and trial matrix, the data directory."""

    file: Path
    manifest: Manifest
    registry: Registry
    matrix: TrialMatrix | None  #: None when prepared without expanding
    manifest_text: str
    overrides: list[str]
    plugins: list[str]


def load_results(path: str | Path) -> ResultsStore:
    """The results store at ``path`` (a folder or a URI): ``.trials()``, ``.curves()``, ``.connect()`` (duckdb)."""
    from suite.store.results import ResultsStore

    return ResultsStore(path)


def leaderboard(results: str | Path | ResultsStore | pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """The leaderboard of a store, a path to one, or a trials DataFrame (see :func:`suite.analysis.ranking.leaderboard`)."""
    from suite.analysis.ranking import leaderboard as board
    from suite.store.results import ResultsStore

    source = results if isinstance(results, ResultsStore) or hasattr(results, "columns") else ResultsStore(results)
    return board(source, **kwargs)


def prepare(file: str | Path, *, plugins: list[str] = (), overrides: list[str] = (), expand_matrix: bool = True) -> PreparedRun:
    """Validate a manifest (with ``--set`` style ``overrides``) and expand its trial matrix (unless
    ``expand_matrix`` is False: then ``matrix`` is None, e.g. for a dry run's summary of a huge grid)."""
    from suite.manifest import load_manifest
    from suite.registry import load_registry
    from suite.run.sweep import expand

    file = Path(file)
    for folder in plugins:
        if not Path(folder).is_dir():
            raise UsageError(f"--plugins {folder}: no such folder (a plugin folder holds *.py files defining plugins)")
    holder: dict[str, Registry] = {}

    def registry_for(manifest_plugins: list[str]) -> Registry:
        holder["r"] = load_registry([*plugins, *[p for p in manifest_plugins if isinstance(p, str)]])
        return holder["r"]

    manifest = load_manifest(file, registry_for, list(overrides))
    if not expand_matrix:
        return PreparedRun(file, manifest, holder["r"], None, file.read_text(errors="replace"), list(overrides),
                           list(plugins))
    matrix = expand(manifest, holder["r"])
    if not matrix.trials:
        raise UsageError("the manifest expands to no trials: " + ("; ".join(matrix.skipped) or "nothing to run"))
    return PreparedRun(file, manifest, holder["r"], matrix, file.read_text(errors="replace"), list(overrides),
                       list(plugins))


def data_dir_of(prepared: PreparedRun, cli_value: str | Path | None) -> Path:
    """``--data-dir``, else the manifest's ``data_dir`` (relative to the manifest), else ``$RNNBENCH_DATA``."""
    from suite.datafiles import default_data_dir

    if cli_value is not None:
        return Path(cli_value).resolve()
    if prepared.manifest.data_dir:
        p = Path(prepared.manifest.data_dir).expanduser()
        return (p if p.is_absolute() else prepared.file.resolve().parent / p).resolve()
    return default_data_dir().resolve()


def check_data(prepared: PreparedRun, data_dir: Path) -> None:
    """Fail before any trial starts if a task's data file is missing or corrupt."""
    from suite.datafiles import DataFileError, resolve

    seen: set[str] = set()
    for spec in prepared.matrix.trials:
        cls = prepared.registry.get("tasks", spec.task)
        for f in cls.data_files(cls.Params.model_validate(spec.task_params)):
            if f.path in seen:
                continue
            seen.add(f.path)
            try:
                resolve(f, data_dir)
            except DataFileError as exc:
                raise UsageError(f"task {spec.task!r}: {exc}") from None


def record_invocation(store: ResultsStore, prepared: PreparedRun, arguments: dict[str, Any]) -> str:
    """Store what ran with the experiment, for reports and re-runs: ``RESULTS/experiments/<name>/run-<time>.json``
    holding the manifest file's text, the resolved manifest (after ``--set``), the options and where it ran."""
    from suite._version import __version__
    from suite.run.envinfo import git_state
    from suite.store import layout

    commit, dirty = git_state()
    doc = {"experiment": prepared.manifest.name, "started_at": time.time(), "host": socket.gethostname(),
           "cwd": os.getcwd(), "argv": sys.argv, "suite_version": __version__, "git_commit": commit,
           "git_dirty": dirty, "manifest_path": str(prepared.file.resolve()), "manifest_text": prepared.manifest_text,
           "overrides": prepared.overrides, "plugins": prepared.plugins, "arguments": arguments,
           "resolved": prepared.manifest.model_dump(mode="json"), "trials": len(prepared.matrix.trials)}
    folder = store.path(layout.EXPERIMENTS, prepared.manifest.name)
    store.fs.create_dir(folder, recursive=True)
    path = f"{folder}/run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    with store.fs.open_output_stream(path) as f:
        f.write(json.dumps(doc, indent=2, default=str).encode())
    return path


def invocations(store: ResultsStore, experiment: str) -> list[dict[str, Any]]:
    """The stored invocations of ``experiment``, oldest first (see :func:`record_invocation`;
    :func:`suite.store.results.run_records` reads them)."""
    from suite.store.results import run_records

    return run_records(store, experiment)


def run(file: str | Path, *, options: RunOptions | None = None, overrides: list[str] = (), plugins: list[str] = (),
        retry_failed: bool = False, retry_diverged: bool = False, console: Any = None,
        prepared: PreparedRun | None = None, log: Callable[[str], None] | None = None, **option_kwargs: Any) -> SweepOutcome:
    """Run a manifest's sweep (as ``rnnbench run``); raises :class:`UsageError` on bad input before any trial.

    How to run it is a :class:`~suite.run.options.RunOptions` (``options=``) or its fields as keyword arguments
    (``results=``, ``resume=``, ``address=``, ``max_concurrent=``, ``wandb=``, ``data_dir=``, ...)."""
    from suite.run.options import RunOptions
    from suite.run.orchestrate import SweepError, SweepOutcome, run_sweep
    from suite.store.results import ResultsStore, StoreError

    try:
        opts = (options or RunOptions()).merged(**option_kwargs)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    prepared = prepared or prepare(file, plugins=list(plugins), overrides=list(overrides))
    manifest = prepared.manifest
    if (retry_failed or retry_diverged) and not opts.resume:
        raise UsageError("--retry-failed / --retry-diverged rerun rows of an earlier run: add --resume")
    results = opts.results
    if "://" not in results and Path(results).expanduser().exists() and not Path(results).expanduser().is_dir():
        raise UsageError(f"--results {results} is a file; give a directory for the results (it is created if missing)")
    store = ResultsStore(results)
    try:
        existing = store.finished_keys(manifest.name)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    if existing and not opts.resume:
        raise UsageError(f"{results} already holds {len(existing)} trial rows of experiment {manifest.name!r}. "
                         f"Use --resume to run only the missing trials, choose another --results directory, "
                         f"or rename the experiment (--set name=...).")
    ddir = data_dir_of(prepared, opts.data_dir)
    check_data(prepared, ddir)
    retry = opts.retry + (("error", "timeout") if retry_failed else ()) + (("diverged",) if retry_diverged else ())
    opts = opts.merged(retry=retry, data_dir=str(ddir), plugin_dirs=[*prepared.plugins, *manifest.plugins])
    arguments = {"results": results, "resume": opts.resume, "retry": list(retry), "data_dir": str(ddir),
                 "storage": opts.storage, "address": opts.address, "max_concurrent": opts.max_concurrent,
                 "wandb": opts.wandb, "num_cpus": opts.num_cpus}
    max_concurrent, num_cpus = opts.max_concurrent, opts.num_cpus

    recorded: list[str] = []

    def record() -> None:  # once per invocation, and only when it holds the lock (a refused run leaves no record)
        if not recorded:
            recorded.append(record_invocation(store, prepared, arguments))

    def sweep(specs: list, resume_flag: bool) -> SweepOutcome:
        return run_sweep(manifest, specs, opts.merged(resume=resume_flag), console=console, on_locked=record)

    try:
        if manifest.search.algorithm != "optuna":
            return sweep(prepared.matrix.trials, opts.resume)
        from suite.run.optuna_search import run_optuna

        batch = max_concurrent or manifest.max_concurrent or max(
            1, int((num_cpus or os.cpu_count() or 1) / manifest.resources.cpu))
        outcomes: list[SweepOutcome] = []
        run_optuna(manifest, prepared.registry, store, batch, lambda specs: outcomes.append(sweep(specs, True)),
                   log=log or print)
        return SweepOutcome(ran=sum(o.ran for o in outcomes), skipped_finished=0,
                            statuses={k: v for o in outcomes for k, v in o.statuses.items()},
                            wall_time_s=sum(o.wall_time_s for o in outcomes),
                            interrupted=any(o.interrupted for o in outcomes),
                            notes=[n for o in outcomes for n in o.notes],
                            rescue=next((o.rescue for o in outcomes if o.rescue), None))
    except (SweepError, StoreError) as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:
        if "optuna" in str(exc):
            raise UsageError(str(exc)) from None
        raise
