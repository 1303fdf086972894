"""W&B logging, off the driver's and the trials' critical path.

Each trial gets one W&B run: its progress reports go to the run's history, and its end sets a summary
with the trial's status, its selection metric and direction, and the final metrics; the tags are the
task, model and method. Runs are offline unless an API key is configured; offline runs land in
``RESULTS/wandb/wandb/offline-run-*`` and upload later with ``wandb sync``.

Where the W&B work happens: the driver starts one long-lived logging actor per Ray node
(:func:`start_loggers`, no CPU reserved); a trial sends its reports to the actor of its node without
waiting (:class:`RemoteRun`), and the actor opens, fills and closes the runs. At the end of the sweep the
driver waits until every trial's run is closed (:func:`drain_loggers`). A trial on a node without an
actor (one that joined later), or outside Ray, logs from its own process (:class:`WandbRun`).

The API key is never passed through Ray (no runtime environment, no config): workers and actors read it
from their own environment or ``~/.netrc``, as ``wandb login`` leaves it. Logging never fails a trial: a
W&B error is printed to the trial's (or actor's) log and that run is dropped.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from suite.store.record import TrialRecord

ACTOR_PREFIX = "rnnbench-wandb-"


@dataclass(frozen=True)
class WandbSettings:
    """What a run needs (plain data; travels to the workers in the trial's runtime settings)."""

    mode: str  #: "offline" or "online"
    dir: str  #: the folder W&B writes its run directories to
    project: str = "rnnbench"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    actors: bool = True  #: log through the node's logging actor when there is one

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "dir": self.dir, "project": self.project, "entity": self.entity,
                "group": self.group, "tags": list(self.tags), "actors": self.actors}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> WandbSettings | None:
        return None if not d else cls(**{**d, "tags": tuple(d.get("tags") or ())})


_SKIP = ("diag_events", "record", "run_id", "final")


def _values(report: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in report.items() if k not in _SKIP and isinstance(v, (int, float))}


def _summary(record: TrialRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"status": record.status, "primary_metric": record.primary_metric,
                           "direction": record.direction, "selection_score": record.selection_score,
                           "steps": record.steps, "train_time_s": record.train_time_s,
                           "wall_time_s": record.wall_time_s}
    for split, values in record.metrics.items():
        for name, v in values.items():
            out[f"{split}/{name}"] = v
    if record.error:
        out["error"] = record.error.splitlines()[0][:500]
    return out


class WandbRun:
    """One trial's W&B run in this process; every method is a no-op when logging is off or failed."""

    def __init__(self, settings: WandbSettings | None, record: TrialRecord) -> None:
        self._run: Any = None
        if settings is None:
            return
        try:
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            os.makedirs(settings.dir, exist_ok=True)
            self._run = wandb.init(
                project=settings.project, entity=settings.entity, group=settings.group or record.experiment,
                name=f"{record.method}-{record.trial_key[:8]}-s{record.seed}", job_type=record.method,
                tags=[record.task, record.model, record.method, *settings.tags], dir=settings.dir,
                config={"experiment": record.experiment, "trial_key": record.trial_key, "config_id": record.config_id,
                        "task": record.task, "model": record.model, "method": record.method, "seed": record.seed,
                        "task_params": record.task_params, "model_params": record.model_params,
                        "method_params": record.method_params, "optimizer": record.optimizer, "budget": record.budget},
                reinit="create_new",
                settings=wandb.Settings(mode=settings.mode, silent=True, console="off", x_disable_stats=True,
                                        disable_git=True, save_code=False, disable_job_creation=True,
                                        x_disable_meta=True, x_disable_machine_info=True,
                                        x_save_requirements=False),  # 90 % of a run's CPU cost; versions are in the record
            )
        except Exception as exc:  # logging is a view: never the reason a trial fails
            print(f"rnnbench: W&B logging disabled for trial {record.trial_key[:8]}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            self._run = None

    def log(self, report: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.log(_values(report), step=int(report.get("step") or 0))
        except Exception as exc:
            self._drop(exc)

    def finish(self, record: TrialRecord) -> None:
        if self._run is None:
            return
        try:
            self._run.summary.update(_summary(record))
            self._run.finish(exit_code=0 if record.status == "ok" else 1)
        except Exception as exc:
            self._drop(exc)
        self._run = None

    def abandon(self) -> None:
        """Close a run whose trial never ended (its worker was lost)."""
        if self._run is not None:
            try:
                self._run.finish(exit_code=1)
            except Exception:
                pass
            self._run = None

    def _drop(self, exc: Exception) -> None:
        print(f"rnnbench: W&B logging stopped for a trial: {type(exc).__name__}: {exc}", file=sys.stderr)
        self.abandon()


class WandbLogger:
    """The body of a node's logging actor: opens, fills and closes the runs of that node's trials.

    Its W&B calls run one at a time, in arrival order (Ray's default concurrency group of one thread);
    ``drain`` runs in a second group so it can wait while they proceed. (An asyncio actor is ~15x slower
    here: W&B's client runs its own event loop.)"""

    def __init__(self) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb  # noqa: F401  (import and start W&B's service before the first trial needs it)

        self.runs: dict[str, WandbRun] = {}  #: open runs
        self.seen: set[str] = set()

    def start(self, run_id: str, settings: dict[str, Any], record_json: str) -> None:
        self.seen.add(run_id)
        self.runs[run_id] = WandbRun(WandbSettings.from_dict(settings), TrialRecord.from_json(record_json))

    def log(self, run_id: str, report: dict[str, Any]) -> None:
        if run_id in self.runs:
            self.runs[run_id].log(report)

    def finish(self, run_id: str, record_json: str) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            run.finish(TrialRecord.from_json(record_json))
            self.runs.pop(run_id, None)  # only now: ``drain`` takes an empty ``runs`` to mean "all written"

    def close(self) -> None:
        """Shut W&B's service down cleanly (it flushes what it still holds) before the actor is killed."""
        try:
            import wandb

            wandb.teardown()
        except Exception as exc:
            print(f"rnnbench: W&B teardown failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def drain(self, run_ids: list[str], timeout_s: float = 60.0, unseen_grace_s: float = 5.0) -> int:
        """Wait until the runs of the trials ``run_ids`` that ran on this node are closed (their last messages
        may still be on the way), then close whatever is still open; returns the runs that had to be
        abandoned. A run never seen here gets ``unseen_grace_s`` to arrive (its trial may have logged
        from its own process). Open runs of trials not in ``run_ids`` (interrupted or lost: they will never
        finish) are abandoned without waiting, so a sweep stopped by SIGTERM ends within a batch system's
        grace period."""
        wanted = set(run_ids)
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            unseen = wanted - self.seen
            if not wanted & self.runs.keys() and (not unseen or time.monotonic() - start > unseen_grace_s):
                break
            time.sleep(0.05)
        abandoned = 0
        for run_id in list(self.runs):
            run = self.runs.pop(run_id, None)
            if run is not None:
                run.abandon()
                abandoned += 1
        return abandoned


def _actor_class() -> type:
    import ray

    class _Actor(WandbLogger):
        @ray.method(concurrency_group="control")
        def drain(self, run_ids: list[str], timeout_s: float = 60.0, unseen_grace_s: float = 5.0) -> int:
            return WandbLogger.drain(self, run_ids, timeout_s, unseen_grace_s)

    return _Actor


class RemoteRun:
    """A trial's run, logged by its node's logging actor; the trial never waits for W&B."""

    def __init__(self, actor: Any, settings: WandbSettings, record: TrialRecord) -> None:
        self._actor, self._run_id = actor, record.run_id
        actor.start.remote(record.run_id, settings.to_dict(), record.to_json())

    def log(self, report: dict[str, Any]) -> None:
        self._actor.log.remote(self._run_id, _values(report) | {"step": report.get("step")})

    def finish(self, record: TrialRecord) -> None:
        self._actor.finish.remote(self._run_id, record.to_json())


def open_run(settings: WandbSettings | None, record: TrialRecord) -> WandbRun | RemoteRun:
    """The W&B run of a trial starting in this process: through the node's logging actor if there is one."""
    if settings is not None and settings.actors:
        actor = _node_actor()
        if actor is not None:
            try:
                return RemoteRun(actor, settings, record)
            except Exception as exc:
                print(f"rnnbench: W&B logging actor unavailable ({exc}); logging from the trial", file=sys.stderr)
    return WandbRun(settings, record)


_ACTOR_CACHE: dict[str, Any] = {}


def _node_actor() -> Any:
    try:
        import ray

        if not ray.is_initialized():
            return None
        name = ACTOR_PREFIX + ray.get_runtime_context().get_node_id()
        if name not in _ACTOR_CACHE:
            try:
                _ACTOR_CACHE[name] = ray.get_actor(name)
            except ValueError:  # no actor on this node (it joined after the sweep started)
                _ACTOR_CACHE[name] = None
        return _ACTOR_CACHE[name]
    except Exception:  # no Ray here: log from this process
        return None


def start_loggers() -> dict[str, Any]:
    """Start one logging actor on every alive node (driver); ``{node_id: actor handle}``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor_cls = ray.remote(num_cpus=0, concurrency_groups={"control": 1})(_actor_class())
    handles = {}
    for node in ray.nodes():
        if node.get("Alive"):
            node_id = node["NodeID"]
            handles[node_id] = actor_cls.options(
                name=ACTOR_PREFIX + node_id, get_if_exists=True,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)).remote()
    return handles


def drain_loggers(handles: dict[str, Any], run_ids_by_node: dict[str, list[str]], timeout_s: float = 60.0) -> int:
    """Wait until every trial's run is closed and W&B has shut down, then stop the actors (driver); returns
    the runs abandoned."""
    import ray

    refs = [h.drain.remote(run_ids_by_node.get(node_id, []), timeout_s) for node_id, h in handles.items()]
    abandoned = 0
    try:
        abandoned = sum(ray.get(refs, timeout=timeout_s + 30))
        ray.get([h.close.remote() for h in handles.values()], timeout=60)
    except Exception as exc:
        print(f"rnnbench: W&B logging actors did not finish cleanly: {exc}", file=sys.stderr)
    for h in handles.values():
        try:
            ray.kill(h)
        except Exception:
            pass
    return abandoned
