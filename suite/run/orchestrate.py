"""Run a trial matrix on Ray Tune: local Ray by default, or an existing cluster with ``address``.

The driver hands Tune only trial keys; the specs travel once through the object store
(``tune.with_parameters``). Driver-side callbacks (:mod:`suite.run.tune_callbacks`) write the Parquet rows in
batches and show progress; W&B logging happens in the trial workers (:mod:`suite.run.wandb_run`), off the
driver's critical path. ``resume`` skips every trial that already has a row, so an interrupted sweep is
completed without repeating finished work and without duplicating rows. At the end the experiment's
parts are compacted.
"""

from __future__ import annotations

import logging
import netrc
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from suite.manifest import Manifest
from suite.run import plugin_shipping
from suite.run.options import RunOptions
from suite.run.runtime import TrialRuntime
from suite.run.sweep import TrialSpec
from suite.run.wandb_run import WandbSettings, drain_loggers, start_loggers
from suite.store import layout
from suite.store.lock import ExperimentLock, LockedError
from suite.store.record import FAILED_STATUSES, flat_types_of
from suite.store.results import ResultsStore

# Tune warns about every driver callback slower than 0.5 s; a batched Parquet write can take that long.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")
# rnnbench's Parquet store is the record: Tune's own per-trial JSON/CSV/TensorBoard files only cost driver time
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# a failed trial's error goes to its row (and one line of progress), not as a traceback on the driver's stderr
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def wandb_api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str | None, manifest_mode: str) -> str:
    """disabled | offline | online. ``auto``: online only when an API key is configured."""
    mode = requested or manifest_mode
    if mode == "auto":
        return "online" if wandb_api_key_configured() else "offline"
    return mode


@dataclass
class SweepOutcome:
    ran: int  #: trials attempted in this run
    skipped_finished: int  #: trials that already had a row (resume)
    statuses: dict[str, str] = field(default_factory=dict)  #: trial key -> status of every row written
    wall_time_s: float = 0.0
    experiment_path: str | None = None
    interrupted: bool = False  #: Ctrl-C / SIGTERM: the trials without a row run again with --resume
    notes: list[str] = field(default_factory=list)  #: what the user should know (stale rows, restarts, rescue files)
    rescue: str | None = None  #: rows the store could not take were saved there (see the note)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in FAILED_STATUSES)


class SweepError(RuntimeError):
    """A sweep that cannot start (exit 2): the message names the problem and the fix."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM during a sweep (a BaseException, so no ``except Exception`` swallows it)."""


def _check_address(address: str) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` or ``ray://host:port`` address does not answer."""
    target = address.removeprefix("ray://")
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot reach a Ray cluster at --address {address} ({exc}). Start it with "
                         f"`ray start --head --port={port}` on that host, or check the address and the network.") from None


def _ensure_ray(address: str | None, num_cpus: int | None) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0; we show our own progress
    # Ctrl-C: Tune stops gracefully and rnnbench says to rerun with --resume (Tune's Tuner.restore hint and its
    # "Trials did not complete" list are silenced: the summary line and the rows say it)
    logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
    # the result grid looks for Tune's per-trial result files, which rnnbench turns off (its store is the record)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    if address:
        _check_address(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SweepError(f"cannot join the Ray cluster at --address {address}: {exc}. Is `ray start --head` "
                             "running there, with the same RAY_AUTH_MODE / RAY_AUTH_TOKEN as this shell?") from None
    else:
        # a private local instance: token auth would write to HOME and break extra nodes; say so explicitly
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.pop("RAY_ADDRESS", None)
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
            from suite.run import ray_watchdog

            ray_watchdog.start()  # the instance must not outlive a driver killed with SIGKILL
        except Exception as exc:  # noqa: BLE001  (Ray raises many kinds; the user needs one line and a way out)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise SweepError(f"could not start a local Ray instance ({first}). The machine may be loaded or short "
                             "of memory: run again, lower --num-cpus, or start one yourself with `ray start --head` "
                             "and pass --address auto") from None


def _fits(cpu: float, gpu: float) -> bool:
    import ray

    for node in ray.nodes():
        if node.get("Alive"):
            have = node.get("Resources", {})
            if have.get("CPU", 0) >= cpu and have.get("GPU", 0) >= gpu:
                return True
    return False


def check_resources(cpu: float, gpu: float, wait_s: float = 0.0, console: Console | None = None) -> None:
    """Fail before the start when no node can ever run a trial (it would wait forever); with ``wait_s``
    (autoscaling clusters) wait that long for such a node first."""
    import ray

    deadline = time.monotonic() + wait_s
    while not _fits(cpu, gpu):
        if time.monotonic() >= deadline:
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            biggest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
            raise SweepError(
                f"no node of the Ray cluster has the {cpu:g} CPU and {gpu:g} GPU a trial asks for "
                f"(resources.cpu / resources.gpu); the largest node has {biggest.get('CPU', 0):g} CPU and "
                f"{biggest.get('GPU', 0):g} GPU. Lower the request (e.g. --set resources.gpu=0), add nodes, or on "
                f"an autoscaling cluster pass --wait-for-resources SECONDS.")
        if console is not None and wait_s:
            console.print(f"waiting for a node with {cpu:g} CPU and {gpu:g} GPU ...")
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def _check_storage(path: str) -> None:
    if "://" in path:
        return
    target = Path(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".rnnbench-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SweepError(f"cannot write Ray Tune's storage at {path} ({exc.strerror or exc}); pass a writable "
                         "--storage folder (shared between the nodes on a cluster)") from None


MAX_TUNE_RESTARTS = 3  #: rounds of a fresh Tuner after Ray Tune itself failed (e.g. workers killed for memory)


def run_sweep(manifest: Manifest, trials: list[TrialSpec], options: RunOptions | None = None, *,
              console: Console | None = None, on_locked: Callable[[], Any] | None = None,
              **kwargs: Any) -> SweepOutcome:
    """Run ``trials`` on Ray Tune as ``options`` say (:class:`~suite.run.options.RunOptions`; keyword arguments
    such as ``results_dir=``, ``address=`` build one); rows land in ``options.results`` (a path or URI). Returns
    what ran and how it ended.

    ``resume`` skips trials that have a row, except those whose status is in ``retry`` (e.g. ``("error",
    "timeout")``). Raises :class:`SweepError` when the sweep cannot start (locked experiment, unreachable
    cluster, resources no node has, unwritable storage); once trials run, nothing a trial does stops the
    sweep, and a Ctrl-C keeps every finished row (``interrupted`` in the outcome). ``on_locked`` runs once the
    experiment's lock is held (the CLI stores its run record there, so a refused run leaves none)."""
    options = (options or RunOptions()).merged(**kwargs)
    console = console or Console(stderr=True)
    store = ResultsStore(options.results)
    lock = ExperimentLock(store, manifest.name)
    try:
        note = lock.acquire(force=options.force_unlock)
    except LockedError as exc:
        raise SweepError(str(exc)) from None
    notes = [note] if note else []
    try:
        if on_locked is not None:
            on_locked()
        return _run_locked(manifest, trials, store, console, notes, options)
    finally:
        lock.release()


def _run_locked(manifest: Manifest, trials: list[TrialSpec], store: ResultsStore, console: Console, notes: list[str],
                options: RunOptions) -> SweepOutcome:
    for note in notes:
        console.print(note)
    if store.has_legacy():
        console.print(f"migrating {store.root} from the version-1 layout (one file per trial)")
        store.compact()
    todo = _trials_to_run(manifest, trials, store, console, notes, options)
    skipped = len(trials) - len(todo)
    if not todo:
        return SweepOutcome(ran=0, skipped_finished=skipped, notes=notes)

    t0 = time.time()
    local_base = store.base if store.local else None
    storage_path = options.storage or (str(Path(local_base) / layout.RAY) if local_base
                                       else f"{store.root.rstrip('/')}/{layout.RAY}")
    _check_storage(storage_path)
    import ray as _ray

    if not _ray.is_initialized():
        console.print(f"joining the Ray cluster at {options.address} ..." if options.address else
                      "starting a local Ray instance (a few seconds) ...", highlight=False)
    _ensure_ray(options.address, options.num_cpus)
    check_resources(manifest.resources.cpu, manifest.resources.gpu, options.wait_for_resources_s, console)
    from suite.run.tune_callbacks import ProgressCallback, ResultsWriter

    runtime = _trial_runtime(manifest, local_base, options)
    specs = {t.key: t for t in todo}
    writer = ResultsWriter(store.root, specs, flat_types_of(t.new_record() for t in todo),
                           flush_every=options.flush_every, flush_s=options.flush_s)
    progress = ProgressCallback(len(todo), writer, console)
    fit = _tuner(manifest, specs, runtime, storage_path, [writer, progress], options)
    loggers = start_loggers() if runtime.wandb else {}
    interrupted, experiment_path = False, None
    previous = _install_interrupt_handlers()
    try:
        experiment_path, interrupted = _fit_with_restarts(fit, list(specs), writer, manifest.resources.retries,
                                                          console)
    except (Interrupted, KeyboardInterrupt):
        interrupted = True
    finally:
        _restore_interrupt_handlers(previous)
        progress.close()
        rescue = writer.close()
        if loggers:
            drain_loggers(loggers, dict(writer.runs_by_node))
    if options.compact and not rescue:
        store.compact(manifest.name)
    return SweepOutcome(ran=len(todo), skipped_finished=skipped, statuses=dict(writer.written),
                        wall_time_s=time.time() - t0, experiment_path=experiment_path, interrupted=interrupted,
                        notes=notes, rescue=rescue)


def _trials_to_run(manifest: Manifest, trials: list[TrialSpec], store: ResultsStore, console: Console,
                   notes: list[str], options: RunOptions) -> list[TrialSpec]:
    """The trials without a row (with ``--resume``; all of them otherwise), plus those whose row has a status
    in ``options.retry``; says what resume found, and notes rows of configurations no longer in the manifest."""
    resume, retry = options.resume, options.retry
    done = store.statuses(manifest.name) if resume else {}
    todo = [t for t in trials if t.key not in done or done[t.key] in retry]
    if resume and done:
        rerun = sum(1 for t in todo if t.key in done)
        console.print(f"resume: {len(trials) - len(todo)} of {len(trials)} trials already have a row; running "
                      f"{len(todo)}" + (f" ({rerun} rerun: {', '.join(retry)})" if rerun else ""))
        stale = set(done) - {t.key for t in trials}
        if stale:
            notes.append(f"{len(stale)} rows of experiment {manifest.name!r} belong to configurations no longer in "
                         "the manifest; they stay in the store and in its leaderboard (use a new experiment name, "
                         "--set name=..., to compare only the current ones)")
            console.print(f"[yellow]note:[/] {notes[-1]}")
    return todo


def _trial_runtime(manifest: Manifest, local_base: str | None, options: RunOptions) -> TrialRuntime:
    """Where the trials find data and plugins, and where their logs, checkpoints and W&B runs go."""
    wandb = None
    mode = resolve_wandb_mode(options.wandb, manifest.wandb.mode)
    if mode != "disabled":
        w = manifest.wandb
        wandb = WandbSettings(mode=mode, dir=str(Path(local_base or ".rnnbench").resolve() / layout.WANDB),
                              project=w.project, entity=w.entity, group=w.group or manifest.name, tags=tuple(w.tags))
    plugin_dirs = [str(Path(p).resolve()) for p in (options.plugin_dirs or [])]
    try:
        packs = plugin_shipping.pack(plugin_dirs)
    except (plugin_shipping.PluginShippingError, OSError) as exc:
        raise SweepError(str(exc)) from None
    return TrialRuntime(
        data_dir=str(Path(options.data_dir).resolve()) if options.data_dir else None,
        plugin_dirs=tuple(plugin_dirs),
        plugin_packs=tuple(packs),  # the folders themselves, for nodes that do not have the driver's paths
        kill_on_overrun=True,  # a worker blocked past its time limit is killed from outside (trial_killer)
        wandb=wandb,
        log_dir=str(Path(local_base) / layout.LOGS / manifest.name) if local_base else None,
        checkpoint_dir=str(Path(local_base) / layout.CHECKPOINTS / manifest.name) if local_base else None,
        log_root=local_base)


def _tuner(manifest: Manifest, specs: dict[str, TrialSpec], runtime: TrialRuntime, storage_path: str,
           callbacks: list[Any], options: RunOptions) -> Any:
    """``fit(keys)``: one Ray Tune run of the trials ``keys`` (a Tuner per call, so a restart can run the rest)."""
    from ray import tune

    from suite.run.trial import tune_trainable

    res = manifest.resources
    scheduler = None
    if manifest.scheduler is not None:
        s = manifest.scheduler
        scheduler = tune.schedulers.ASHAScheduler(time_attr="training_iteration", metric="objective", mode="min",
                                                  max_t=s.max_t, grace_period=s.grace_period,
                                                  reduction_factor=s.reduction_factor)
    names = _TrialNames({k: f"{t.method}-{k[:8]}-s{t.seed}" for k, t in specs.items()})

    def fit(keys: list[str]) -> Any:
        trainable = tune.with_parameters(tune_trainable, specs={k: specs[k].to_config() for k in keys},
                                         runtime=runtime.to_config())
        trainable = tune.with_resources(trainable, {"cpu": res.cpu, "gpu": res.gpu})
        tuner = tune.Tuner(
            trainable,
            param_space={"key": tune.grid_search(keys)},
            tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True,
                                        max_concurrent_trials=options.max_concurrent or manifest.max_concurrent,
                                        trial_name_creator=names, trial_dirname_creator=names),
            run_config=tune.RunConfig(name=f"{manifest.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                      storage_path=storage_path,
                                      failure_config=tune.FailureConfig(max_failures=res.retries),
                                      callbacks=callbacks, verbose=0),
        )
        return tuner.fit()

    return fit


def _fit_with_restarts(fit: Any, keys: list[str], writer: Any, retries: int, console: Console) -> tuple[Any, bool]:
    """Run ``fit`` until every trial has a row: when Ray Tune itself fails, the trials it was running get an
    error row once their ``retries`` are spent (the rest run again), and Tune restarts for the trials left, at
    most MAX_TUNE_RESTARTS times. Returns Tune's experiment path and whether the run was interrupted."""
    from suite.run.tune_callbacks import describe_lost_trial

    remaining = list(keys)
    lost_attempts: dict[str, int] = {k: 0 for k in keys}
    for round_ in range(MAX_TUNE_RESTARTS + 1):
        try:
            experiment_path = fit(remaining).experiment_path
            # trials without a row after a normal return: Tune stopped on Ctrl-C / SIGTERM
            return experiment_path, any(k not in writer.written for k in remaining)
        except Exception as exc:  # Ray Tune itself failed (a trial's fate must not end the sweep)
            if _caused_by_interrupt(exc):
                raise Interrupted() from exc
            lost = writer.running()
            again = []
            for key in lost:  # resources.retries holds here too (Tune's own restarts died with it)
                lost_attempts[key] += 1
                if lost_attempts[key] <= retries and round_ < MAX_TUNE_RESTARTS:
                    again.append(key)
                    continue
                writer.count_attempts(key, lost_attempts[key])
                writer.finish(key, status="error", error=describe_lost_trial(
                    f"Ray Tune stopped while this trial ran ({type(exc).__name__}: {str(exc)[:1000]}); "
                    f"{lost_attempts[key]} attempt(s)"))
            remaining = [k for k in remaining if k not in writer.written]
            last = round_ == MAX_TUNE_RESTARTS
            console.print(f"[yellow]warning:[/] Ray Tune stopped ({type(exc).__name__}: {str(exc)[:300]}); "
                          f"{len(lost) - len(again)} running trials got an error row, {len(again)} are retried; "
                          + ("giving up on the rest" if last else f"restarting for the {len(remaining)} left"),
                          soft_wrap=True)
            if last:
                for key in remaining:
                    writer.finish(key, status="error", error=f"not run: Ray Tune failed {round_ + 1} times "
                                  f"(last: {type(exc).__name__}: {str(exc)[:500]})")
                return None, False
            if not remaining:
                return None, False
    return None, False


def _caused_by_interrupt(exc: BaseException) -> bool:
    """A second Ctrl-C that surfaced through Ray's C code as another exception."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, Interrupted)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _install_interrupt_handlers() -> dict[int, Any]:
    """SIGTERM (e.g. a batch system ending the job) stops Tune as Ctrl-C does: Tune ends its run on SIGUSR1
    and SIGINT, keeping the finished rows (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        return {}

    def on_term(signum: int, frame: Any) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)

    return {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term)}


def _restore_interrupt_handlers(previous: dict[int, Any]) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


class _TrialNames:
    """Tune trial (and folder) names: ``<method>-<key prefix>-s<seed>``."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def __call__(self, trial: Any) -> str:
        return self.names.get(trial.config["key"], trial.trial_id)
