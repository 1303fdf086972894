"""One trial: seed, build task/model/method, train through the context, evaluate, report.

:func:`execute_trial` is plain Python (usable without Ray, e.g. in tests and for debugging) and returns the
trial's :class:`~suite.store.record.TrialRecord`; :func:`tune_trainable` is the Ray Tune function trainable that
wraps it. Whatever happens -- success, a diverging loss, an exception in the method, a time limit -- the
trial ends with one final report (``final: True``) carrying the record as JSON, so the driver always
writes a row. Progress reports carry the trial's ``run_id``, so the driver keeps the curves of the last
attempt only.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.contracts import Task
from suite.registry import load_registry
from suite.run import trial_killer
from suite.run.context import Reporter, TrainContext, TrialStop
from suite.run.envinfo import PeakMemory, environment
from suite.run.runtime import TrialRuntime
from suite.run.spec import TrialResources, TrialSpec
from suite.run.trial_guard import GRACE_S, Interruptible, capture_output, supervise
from suite.run.wandb_run import open_run
from suite.store.record import ERROR_MESSAGE_LIMIT, TrialRecord

#: ``observer(event, model)`` of :func:`execute_trial`: events "train_start" and "train_end"
Observer = Callable[[str, torch.nn.Module], None]


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@lru_cache(maxsize=8)
def _cached_task(name: str, params_json: str, data_dir: str | None, plugin_dirs: tuple[str, ...]) -> Task:
    registry = load_registry(plugin_dirs)
    cls = registry.get("tasks", name)
    return cls(cls.Params.model_validate(json.loads(params_json)), Path(data_dir) if data_dir else None)


def build_task(spec: TrialSpec, runtime: TrialRuntime) -> Task:
    """The task of ``spec``, cached per process (and so per node, with reused workers)."""
    return _cached_task(spec.task, json.dumps(spec.task_params, sort_keys=True), runtime.data_dir,
                        runtime.plugin_folders())


def _device(resources: TrialResources) -> torch.device:
    wanted = resources.device
    if wanted == "cuda" or (wanted == "auto" and resources.gpu > 0 and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _error_text(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc()))[:ERROR_MESSAGE_LIMIT]


def _warm_up(model: torch.nn.Module, ctx: TrainContext) -> None:
    """First-use costs of a fresh process (optimizer and autograd set-up, thread pools) before the budget
    clock starts; the model's parameters and the random state are left as they were."""
    with torch.random.fork_rng(devices=[]):
        dummy = torch.zeros(1, device=ctx.device, dtype=ctx.dtype, requires_grad=True)
        opt = ctx.make_optimizer([dummy])
        (dummy * 2).sum().backward()
        opt.step()


def execute_trial(spec: TrialSpec, runtime: TrialRuntime | Mapping[str, Any] | None,
                  reporter: Reporter, observer: Observer | None = None) -> TrialRecord:
    """Run one trial to its end; report its progress and its final record, and return the record.

    ``runtime`` (:class:`~suite.run.runtime.TrialRuntime`, or its plain data, or None for the defaults) says
    where the data and the plugins are, where the trial's output and checkpoints go, and W&B. ``observer``
    (in-process callers such as ``rnnbench check``) is called with ``("train_start", model)`` right before
    ``method.train`` and ``("train_end", model)`` right after it returns, before any checkpoint restore."""
    runtime = TrialRuntime.of(runtime)
    log_file = Path(runtime.log_dir) / f"{spec.key}.log" if runtime.log_dir else None
    limit = spec.resources.log_limit_mib
    with capture_output(log_file, int(limit * 2**20) if limit else None) as captured:
        trial = _Trial(spec, runtime, reporter, observer)
        if captured is not None:
            root = runtime.log_root
            trial.record.log_path = str(captured.relative_to(root)) if root else str(captured)
        time_limit = spec.resources.time_limit_s
        killed = trial_killer.take_marker(spec.key)
        if killed:  # a restart after the worker was killed at its time limit: end as timeout, do not block again
            return trial.give_up(killed)
        # only in a Ray worker of a sweep (runtime says so): in-process callers (rnnbench check, tests) are not killed
        killer = (trial_killer.start(spec.key, time_limit + GRACE_S + trial_killer.MARGIN_S)
                  if time_limit and runtime.kill_on_overrun else None)
        try:
            return supervise(trial.run, trial.give_up, time_limit, trial.guard)
        finally:
            trial_killer.stop(killer)


class _Trial:
    """The state of one running trial (see :func:`execute_trial`)."""

    def __init__(self, spec: TrialSpec, runtime: TrialRuntime, reporter: Reporter,
                 observer: Observer | None = None) -> None:
        self.spec, self.runtime, self.reporter, self.observer = spec, runtime, reporter, observer
        self.t_start = time.time()
        self.record = spec.new_record(uuid.uuid4().hex)
        self.record.started_at = self.t_start
        self.ctx: TrainContext | None = None
        self.mem = PeakMemory()
        self.wandb = open_run(runtime.wandb, self.record)
        self.guard = Interruptible()
        self._final_lock = threading.Lock()
        self._final_sent = False

    def report(self, progress: dict[str, Any]) -> None:
        if self.guard.given_up:
            return
        self.wandb.log(progress)
        self.reporter({**progress, "run_id": self.record.run_id})

    def run(self) -> TrialRecord:
        spec, record = self.spec, self.record
        resources = spec.resources
        torch.set_num_threads(max(1, int(resources.cpu)))
        dtype = torch.float64 if resources.dtype == "float64" else torch.float32
        device = _device(resources)
        record.status = "ok"
        metrics: dict[str, dict[str, float]] = {}
        with self.mem:
            try:
                self._train(device, dtype)
            except TrialStop as exc:
                record.status = exc.status
                record.error = str(exc) or (f"trial exceeded its time limit of {resources.time_limit_s:g} s "
                                            "(interrupted)")
            except Exception as exc:  # the method or a plugin failed: an `error` row, never a lost sweep
                record.status, record.error = "error", _error_text(exc)
            ctx = self.ctx
            if ctx is not None:
                ctx.stop_clock()
                if record.status == "ok" and ctx.steps == 0:
                    record.status, budget = "error", spec.budget.to_config()  # as the manifest writes it
                    if ctx.done:  # a time budget spent before the first update
                        record.error = (f"the method made no update within its budget {budget}: its score would "
                                        "be the untrained model's; raise the budget")
                    else:  # train returned with budget left and no update counted
                        record.error = (f"the method's train returned without calling ctx.step (no update was counted; "
                                        f"budget {budget} left): call ctx.step once per parameter update, until it "
                                        "returns True")
            if ctx is not None and record.status in ("ok", "timeout"):
                self._restore_best(ctx)
                try:
                    splits = ["val", "test"] + (["train"] if ctx.selection.uses_train() else [])
                    for split in splits:
                        metrics[split] = _final_evaluate(ctx, split)
                except Exception as exc:
                    record.status, record.error = "error", f"final evaluation failed: {_error_text(exc)}"
        _finish_record(record, self.ctx, metrics, self.mem, self.t_start)
        self._final_report(record)
        return record

    def _train(self, device: torch.device, dtype: torch.dtype) -> None:
        spec, runtime, record = self.spec, self.runtime, self.record
        seed_everything(spec.seed)
        registry = load_registry(runtime.plugin_folders())
        task = build_task(spec, runtime)
        model_cls = registry.get("models", spec.model)
        method_cls = registry.get("methods", spec.method)
        seed_everything(spec.seed)  # the task build must not shift the model's initialisation
        model = model_cls(task.input, task.output, model_cls.Params.model_validate(spec.model_params))
        model = model.to(device=device, dtype=dtype)
        method = method_cls(method_cls.Params.model_validate(spec.method_params))
        selection = spec.selection.rule(task)
        record.primary_metric, record.direction = selection.metric, selection.direction
        record.metric_specs = {m.name: {"direction": m.direction, "unit": m.unit, "low": m.low, "high": m.high}
                               for m in task.metrics}
        self.ctx = ctx = TrainContext(task=task, model=model, optimizer_spec=spec.optimizer,
                                      budget=spec.budget, eval_every=spec.eval_every,
                                      selection=selection, reporter=self.report,
                                      device=device, dtype=dtype, seed=spec.seed,
                                      time_limit_s=spec.resources.time_limit_s, diagnostics=spec.diagnostics)
        train = task.train_data()
        train.train = train.train.to(device, dtype)
        ctx.method, ctx.train_data = method, train
        if spec.evaluation.best_val:
            ctx.keep_best = True
            ctx.on_new_best = self._checkpoint_writer(float(spec.evaluation.to_disk_after_s))
        _warm_up(model, ctx)
        record.setup_time_s = time.time() - self.t_start
        if self.observer:
            self.observer("train_start", model)
        ctx.start_clock()
        with self.guard.span(ready=lambda: ctx.steps > 0):
            method.train(model, train, ctx)
        if self.observer:
            self.observer("train_end", model)

    def _checkpoint_writer(self, after_s: float) -> Any:
        """Writes the best-validation parameters to ``checkpoints/<experiment>/<trial_key>.pt`` once the trial
        has trained ``after_s`` seconds (short trials keep them in memory only)."""
        folder = self.runtime.checkpoint_dir
        if not folder:
            return None

        def write(state: dict[str, torch.Tensor]) -> None:
            if self.ctx is None or self.ctx.train_time_s < after_s:
                return
            path = Path(folder) / f"{self.spec.key}.pt"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".pt.tmp")
                torch.save({"state_dict": state, "step": self.ctx.steps, "score": self.ctx.best.get("score")}, tmp)
                tmp.replace(path)
            except OSError as exc:  # a checkpoint on disk is a convenience, never the reason a trial fails
                print(f"rnnbench: could not write the best-validation checkpoint {path}: {exc}", file=sys.stderr)

        return write

    def _restore_best(self, ctx: TrainContext) -> None:
        """``evaluation: best_val``: the final metrics are measured at the best evaluation's parameters."""
        if ctx.keep_best and ctx.best_state is not None:
            ctx.model.load_state_dict(ctx.best_state)
            self.record.checkpoint, self.record.checkpoint_step = "best_val", ctx.best.get("step")
        else:
            self.record.checkpoint, self.record.checkpoint_step = "final", ctx.steps

    def _final_report(self, record: TrialRecord) -> None:
        """Send the final report, once: by the trial, or by the supervisor that gave it up."""
        with self._final_lock:
            if self._final_sent:
                return
            self._final_sent = True
        final: dict[str, Any] = {"final": True, "run_id": record.run_id, "objective": record.objective,
                                 "record": record.to_json()}
        if self.ctx is not None:  # diagnostics logged after the last evaluation (e.g. at the end of training)
            final.update(self.ctx.pop_diagnostics())
        self.wandb.log({**final, "step": record.steps or 0})
        self.reporter(final)
        self.wandb.finish(record)

    def give_up(self, message: str) -> TrialRecord:
        """The trial overran its time limit and does not stop: its ``timeout`` record, reported in its place."""
        record = dataclasses.replace(self.record, status="timeout", error=message)
        if self.ctx is not None:
            self.ctx.stop_clock()
        _finish_record(record, self.ctx, {}, self.mem, self.t_start)
        self._final_report(record)
        return record


def _final_evaluate(ctx: TrainContext, split: str) -> dict[str, float]:
    ctx.model.eval()
    with torch.no_grad():
        return {k: float(v) for k, v in ctx.task.evaluate(ctx.model, split).items()}


def _finish_record(record: TrialRecord, ctx: TrainContext | None, metrics: dict[str, dict[str, float]],
                   mem: PeakMemory, t_start: float) -> None:
    env = environment()
    record.finished_at = time.time()
    record.wall_time_s = record.finished_at - t_start
    record.peak_rss_bytes = int(mem.peak_increase)
    record.peak_cuda_bytes = mem.cuda_peak()
    for key in ("gpu_model", "hostname", "suite_version", "python", "torch_version", "ray_version", "numpy_version",
                "git_commit", "git_dirty"):
        setattr(record, key, env.get(key))
    try:
        import ray

        record.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        record.node_id = None
    if ctx is None:
        return
    record.metrics = metrics
    record.selection_score = ctx.selection.score(metrics) if metrics else float("nan")
    record.steps, record.samples, record.epochs = ctx.steps, ctx.samples, ctx.epochs
    record.train_time_s, record.evaluations = ctx.train_time_s, ctx.evaluations
    record.best_val, record.best_step = dict(ctx.best.get("val", {})), ctx.best.get("step")
    record.nonconverged = ctx.counters.get("nonconverged")


def tune_trainable(config: dict[str, Any], specs: dict[str, dict[str, Any]] | None = None,
                   runtime: dict[str, Any] | None = None) -> None:
    """Ray Tune function trainable. ``config["key"]`` names the trial; its spec comes from ``specs``
    (shared once through the object store by ``tune.with_parameters``), or from ``config["trial"]``; both the
    spec and the runtime arrive as plain data and are typed here."""
    from ray import tune

    spec = TrialSpec.from_config(specs[config["key"]] if specs is not None else config["trial"])
    execute_trial(spec, TrialRuntime.from_config(runtime if runtime is not None else config.get("runtime")),
                  tune.report)
