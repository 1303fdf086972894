"""Run a trial matrix on Ray Tune: local Ray by default, or an existing cluster with ``address``.

Driver-side callbacks write the Parquet rows (:class:`ResultsWriter`), show progress
(:class:`ProgressCallback`) and log to W&B (Ray's ``WandbLoggerCallback``, offline unless an API
key is configured). ``resume`` skips every trial that already has a row, so an interrupted sweep
is completed without repeating finished work and without duplicating rows.
"""

from __future__ import annotations

import logging
import netrc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from suite.manifest import Manifest
from suite.results import CurveBuffer, ResultsStore, trial_row
from suite.sweep import TrialSpec

# Tune warns about every driver callback slower than 0.5 s; starting a trial's W&B logging actor takes
# about that long, so the default threshold fills sweep logs with noise. Read when ray.tune is imported.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")

try:  # Ray is imported lazily by run_sweep; the callbacks need its base class at import time
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class ResultsWriter(Callback):
    """Writes one ``trials`` row and the ``curves`` of each trial when it ends (driver only)."""

    def __init__(self, results_dir: str) -> None:
        self.results_dir = results_dir
        self._curves = CurveBuffer()
        self._final: dict[str, dict[str, Any]] = {}
        self.written: dict[str, str] = {}
        self.last_row: dict[str, Any] | None = None

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(self.results_dir)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        spec = trial.config["trial"]
        if result.get("final"):
            self._final[spec["key"]] = dict(result)
            if result.get("diag_events"):  # diagnostics logged after the last progress report
                self._curves.add(spec, {k: result.get(k) for k in ("step", "samples", "epoch", "train_time_s",
                                                                   "wall_time_s", "diag_events")})
        else:
            self._curves.add(spec, result)

    def _write(self, trial: Any, status: str | None = None, error: str | None = None) -> None:
        spec = trial.config["trial"]
        final = self._final.pop(spec["key"], None)
        if final is None and status is None:
            status, error = "pruned", "stopped early by the scheduler"
        row = trial_row(spec, final or _last_progress(trial), status=status, error=error, trial_id=trial.trial_id)
        self.store.write_trial(row, self._curves.pop(spec["key"]))
        self.written[spec["key"]] = row["status"]
        self.last_row = row

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        message = "trial failed outside the method (worker lost or crashed)"
        try:
            err = trial.get_error()
            if err is not None:
                message = f"{type(err).__name__}: {err}"[:4000]
        except Exception:
            pass
        self._write(trial, status="error", error=message)


def _last_progress(trial: Any) -> dict[str, Any]:
    last = dict(getattr(trial, "last_result", None) or {})
    return {k: last.get(k) for k in ("step", "samples", "epoch", "train_time_s", "wall_time_s")}


class ProgressCallback(Callback):
    """A rich progress bar: trials finished out of the total, with counts by status."""

    def __init__(self, total: int, writer: ResultsWriter) -> None:
        self.total, self.writer = total, writer
        self._progress: Progress | None = None
        self._task: Any = None
        self._running = 0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment
        return {**self.__dict__, "_progress": None, "_task": None}

    def setup(self, **info: Any) -> None:
        self._progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task("trials", total=self.total, status="")

    def _update(self) -> None:
        if self._progress is None:
            return
        counts: dict[str, int] = {}
        for status in self.writer.written.values():
            counts[status] = counts.get(status, 0) + 1
        text = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        self._progress.update(self._task, completed=len(self.writer.written), status=f"running={self._running} {text}")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running += 1
        self._update()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running = max(0, self._running - 1)
        row = self.writer.last_row
        if self._progress is not None and row is not None:  # one line per finished trial (also in batch logs)
            self._progress.console.print(trial_summary(row, len(self.writer.written), self.total), highlight=False)
        self._update()

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._progress is not None:
            self._update()
            self._progress.stop()
            self._progress = None


def trial_summary(row: dict[str, Any], done: int, total: int) -> str:
    """One line for a finished trial: ``[3/12] tbptt/lstm/silverbox seed 0 key: ok  val mse=... test mse=...``."""

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}"

    text = (f"[{done}/{total}] {row['method']}/{row['model']}/{row['task']} seed {row['seed']} "
            f"{row['trial_key'][:8]}: {row['status']}")
    if row.get("status") in ("ok", "timeout") and row.get("primary_metric"):
        text += f"  val {row['primary_metric']}={fmt(row.get('val_primary'))} test={fmt(row.get('test_primary'))}"
    if row.get("wall_time_s") is not None:
        text += f"  ({row['wall_time_s']:.0f} s)"
    if row.get("error") and row.get("status") not in ("ok",):
        text += f"  {str(row['error']).splitlines()[0][:160]}"
    return text


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
    ran: int
    skipped_finished: int
    statuses: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    experiment_path: str | None = None


def _ensure_ray(address: str | None, num_cpus: int | None) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0; we show our own progress
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        # a private local instance: token auth would write to HOME and break extra nodes; say so explicitly
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)


def run_sweep(manifest: Manifest, trials: list[TrialSpec], *, results_dir: str | Path, storage: str | None = None,
              address: str | None = None, resume: bool = False, max_concurrent: int | None = None,
              wandb_mode: str | None = None, data_dir: str | None = None, plugin_dirs: list[str] | None = None,
              console: Console | None = None, num_cpus: int | None = None) -> SweepOutcome:
    """Run ``trials`` on Ray Tune; rows land in ``results_dir``. Returns what ran and how it ended."""
    console = console or Console(stderr=True)
    results_dir = Path(results_dir).resolve()
    store = ResultsStore(results_dir)
    done = store.finished_keys(manifest.name) if resume else set()
    todo = [t for t in trials if t.key not in done]
    skipped = len(trials) - len(todo)
    if skipped:
        console.print(f"resume: {skipped} of {len(trials)} trials already have a row; running {len(todo)}")
    if not todo:
        return SweepOutcome(ran=0, skipped_finished=skipped)

    t0 = time.time()
    mode = resolve_wandb_mode(wandb_mode, manifest.wandb.mode)
    if mode != "disabled":
        _wandb_environment(mode, results_dir)  # before ray.init: W&B's logging actors inherit it
    _ensure_ray(address, num_cpus)
    from ray import tune

    runtime = {"data_dir": str(Path(data_dir).resolve()) if data_dir else None,
               "plugin_dirs": [str(Path(p).resolve()) for p in (plugin_dirs or [])]}
    writer = ResultsWriter(str(results_dir))
    callbacks: list[Any] = [writer, ProgressCallback(len(todo), writer)]
    if mode != "disabled":
        callbacks.append(_wandb_callback(manifest, mode, results_dir))

    from suite.trial import tune_trainable

    res = manifest.resources
    trainable = tune.with_resources(tune_trainable, {"cpu": res.cpu, "gpu": res.gpu})
    scheduler = None
    if manifest.scheduler is not None:
        s = manifest.scheduler
        scheduler = tune.schedulers.ASHAScheduler(time_attr="training_iteration", metric="objective", mode="min",
                                                  max_t=s.max_t, grace_period=s.grace_period,
                                                  reduction_factor=s.reduction_factor)
    storage_path = storage or str(results_dir / "ray")
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([t.to_dict() for t in todo]), "runtime": runtime},
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True,
                                    max_concurrent_trials=max_concurrent or manifest.max_concurrent,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=f"{manifest.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage_path,
                                  failure_config=tune.FailureConfig(max_failures=res.retries),
                                  callbacks=callbacks, verbose=0),
    )
    grid = tuner.fit()
    return SweepOutcome(ran=len(todo), skipped_finished=skipped, statuses=dict(writer.written),
                        wall_time_s=time.time() - t0, experiment_path=grid.experiment_path)


def _trial_name(trial: Any) -> str:
    spec = trial.config["trial"]
    return f"{spec['method']}-{spec['key'][:8]}-s{spec['seed']}"


def _wandb_environment(mode: str, results_dir: Path) -> None:
    """W&B settings in the driver's environment: Ray's callback checks WANDB_MODE there (anchors 2.4)."""
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    (results_dir / "wandb").mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_DIR"] = str(results_dir / "wandb")


def _wandb_callback(manifest: Manifest, mode: str, results_dir: Path) -> Any:
    from ray.air.integrations.wandb import WandbLoggerCallback

    w = manifest.wandb
    return WandbLoggerCallback(project=w.project, group=w.group or manifest.name, entity=w.entity, tags=w.tags or None,
                               excludes=["env_json", "metrics_json", "best_val_json", "diag_events", "error"],
                               log_config=False, mode=mode, dir=str(results_dir / "wandb"))
