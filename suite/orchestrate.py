"""Run a trial matrix on Ray Tune: local Ray by default, or an existing cluster with ``address``.

The driver hands Tune only trial keys; the specs travel once through the object store
(``tune.with_parameters``). Driver-side callbacks (:mod:`suite.tune_callbacks`) write the Parquet rows in
batches and show progress; W&B logging happens in the trial workers (:mod:`suite.wandb_run`), off the
driver's critical path. ``resume`` skips every trial that already has a row, so an interrupted sweep is
completed without repeating finished work and without duplicating rows. At the end the experiment's
parts are compacted.
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

from suite.manifest import Manifest
from suite.record import flat_types_of
from suite.results import ResultsStore
from suite.sweep import TrialSpec
from suite.wandb_run import WandbSettings, drain_loggers, start_loggers

# Tune warns about every driver callback slower than 0.5 s; a batched Parquet write can take that long.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")
# rnnbench's Parquet store is the record: Tune's own per-trial JSON/CSV/TensorBoard files only cost driver time
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


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
    # the result grid looks for Tune's per-trial result files, which rnnbench turns off (its store is the record)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
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
              console: Console | None = None, num_cpus: int | None = None, flush_every: int = 200,
              flush_s: float = 5.0, compact: bool = True) -> SweepOutcome:
    """Run ``trials`` on Ray Tune; rows land in ``results_dir`` (a path or URI). Returns what ran and how it ended."""
    console = console or Console(stderr=True)
    store = ResultsStore(results_dir)
    if store.has_legacy():
        console.print(f"migrating {results_dir} from the version-1 layout (one file per trial)")
        store.compact()
    done = store.statuses(manifest.name) if resume else {}
    todo = [t for t in trials if t.key not in done]
    skipped = len(trials) - len(todo)
    if skipped:
        console.print(f"resume: {skipped} of {len(trials)} trials already have a row; running {len(todo)}")
    if not todo:
        return SweepOutcome(ran=0, skipped_finished=skipped)

    t0 = time.time()
    mode = resolve_wandb_mode(wandb_mode, manifest.wandb.mode)
    _ensure_ray(address, num_cpus)
    from ray import tune

    from suite.trial import tune_trainable
    from suite.tune_callbacks import ProgressCallback, ResultsWriter

    local_base = store.base if store.local else None
    wandb = None
    if mode != "disabled":
        w = manifest.wandb
        wandb = WandbSettings(mode=mode, dir=str(Path(local_base or ".rnnbench").resolve() / "wandb"),
                              project=w.project, entity=w.entity, group=w.group or manifest.name, tags=tuple(w.tags))
    runtime = {"data_dir": str(Path(data_dir).resolve()) if data_dir else None,
               "plugin_dirs": [str(Path(p).resolve()) for p in (plugin_dirs or [])],
               "wandb": wandb.to_dict() if wandb else None}
    specs = {t.key: t for t in todo}
    writer = ResultsWriter(str(results_dir), specs, flat_types_of(t.new_record() for t in todo),
                           flush_every=flush_every, flush_s=flush_s)
    progress = ProgressCallback(len(todo), writer, console)
    res = manifest.resources
    trainable = tune.with_parameters(tune_trainable, specs={k: t.to_dict() for k, t in specs.items()}, runtime=runtime)
    trainable = tune.with_resources(trainable, {"cpu": res.cpu, "gpu": res.gpu})
    scheduler = None
    if manifest.scheduler is not None:
        s = manifest.scheduler
        scheduler = tune.schedulers.ASHAScheduler(time_attr="training_iteration", metric="objective", mode="min",
                                                  max_t=s.max_t, grace_period=s.grace_period,
                                                  reduction_factor=s.reduction_factor)
    storage_path = storage or (str(Path(local_base) / "ray") if local_base else f"{str(results_dir).rstrip('/')}/ray")
    names = _TrialNames({k: f"{t.method}-{k[:8]}-s{t.seed}" for k, t in specs.items()})
    tuner = tune.Tuner(
        trainable,
        param_space={"key": tune.grid_search(list(specs))},
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True,
                                    max_concurrent_trials=max_concurrent or manifest.max_concurrent,
                                    trial_name_creator=names, trial_dirname_creator=names),
        run_config=tune.RunConfig(name=f"{manifest.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage_path,
                                  failure_config=tune.FailureConfig(max_failures=res.retries),
                                  callbacks=[writer, progress], verbose=0),
    )
    loggers = start_loggers() if wandb else {}
    try:
        grid = tuner.fit()
    finally:
        progress.close()
        writer.flush()
        if loggers:
            drain_loggers(loggers, dict(writer.runs_by_node))
    if compact:
        store.compact(manifest.name)
    return SweepOutcome(ran=len(todo), skipped_finished=skipped, statuses=dict(writer.written),
                        wall_time_s=time.time() - t0, experiment_path=grid.experiment_path)


class _TrialNames:
    """Tune trial (and folder) names: ``<method>-<key prefix>-s<seed>``."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def __call__(self, trial: Any) -> str:
        return self.names.get(trial.config["key"], trial.trial_id)
