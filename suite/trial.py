"""One trial: seed, build task/model/method, train through the context, evaluate, report.

:func:`execute_trial` is plain Python (usable without Ray, e.g. in tests and for debugging) and returns the
trial's :class:`~suite.record.TrialRecord`; :func:`tune_trainable` is the Ray Tune function trainable that
wraps it. Whatever happens -- success, a diverging loss, an exception in the method, a time limit -- the
trial ends with one final report (``final: True``) carrying the record as JSON, so the driver always
writes a row. Progress reports carry the trial's ``run_id``, so the driver keeps the curves of the last
attempt only.
"""

from __future__ import annotations

import json
import random
import time
import traceback
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.context import Reporter, Selection, TrainContext, TrialStop
from suite.contracts import Task
from suite.envinfo import PeakMemory, environment
from suite.record import TrialRecord
from suite.registry import load_registry
from suite.sweep import TrialSpec
from suite.wandb_run import WandbSettings, open_run

ERROR_MESSAGE_LIMIT = 4000  #: characters of an error message (with its traceback) kept in the trial row


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


def build_task(spec: TrialSpec, runtime: dict[str, Any]) -> Task:
    """The task of ``spec``, cached per process (and so per node, with reused workers)."""
    return _cached_task(spec.task, json.dumps(spec.task_params, sort_keys=True), runtime.get("data_dir"),
                        tuple(runtime.get("plugin_dirs", ())))


def _device(resources: dict[str, Any]) -> torch.device:
    wanted = resources.get("device", "auto")
    if wanted == "cuda" or (wanted == "auto" and resources.get("gpu", 0) > 0 and torch.cuda.is_available()):
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


def execute_trial(spec: TrialSpec, runtime: dict[str, Any], reporter: Reporter) -> TrialRecord:
    """Run one trial to its end; report its progress and its final record, and return the record."""
    t_start = time.time()
    run_id = uuid.uuid4().hex
    record = spec.new_record(run_id)
    record.started_at = t_start
    resources = spec.resources
    torch.set_num_threads(max(1, int(resources.get("cpu", 1))))
    dtype = torch.float64 if resources.get("dtype") == "float64" else torch.float32
    device = _device(resources)
    wandb = open_run(WandbSettings.from_dict(runtime.get("wandb")), record)

    def report(progress: dict[str, Any]) -> None:
        wandb.log(progress)
        reporter({**progress, "run_id": run_id})

    record.status = "ok"
    metrics: dict[str, dict[str, float]] = {}
    ctx: TrainContext | None = None
    with PeakMemory() as mem:
        try:
            seed_everything(spec.seed)
            registry = load_registry(tuple(runtime.get("plugin_dirs", ())))
            task = build_task(spec, runtime)
            model_cls = registry.get("models", spec.model)
            method_cls = registry.get("methods", spec.method)
            seed_everything(spec.seed)  # the task build must not shift the model's initialisation
            model = model_cls(task.input, task.output, model_cls.Params.model_validate(spec.model_params))
            model = model.to(device=device, dtype=dtype)
            method = method_cls(method_cls.Params.model_validate(spec.method_params))
            metric = spec.selection.get("metric") or task.primary_metric
            selection = Selection(metric, task.metric(metric).direction, dict(spec.selection["split_weights"]))
            record.primary_metric, record.direction = selection.metric, selection.direction
            record.metric_specs = {m.name: {"direction": m.direction, "unit": m.unit} for m in task.metrics}
            ctx = TrainContext(task=task, model=model, optimizer_spec=spec.optimizer, budget=spec.budget,
                               eval_every=spec.eval_every, selection=selection, reporter=report, device=device,
                               dtype=dtype, seed=spec.seed, time_limit_s=resources.get("time_limit_s"),
                               diagnostics=dict(spec.diagnostics))
            train = task.train_data()
            train.train = train.train.to(device, dtype)
            ctx.method, ctx.train_data = method, train
            _warm_up(model, ctx)
            record.setup_time_s = time.time() - t_start
            ctx.start_clock()
            method.train(model, train, ctx)
        except TrialStop as exc:
            record.status, record.error = exc.status, str(exc)
        except Exception as exc:  # the method or a plugin failed: an `error` row, never a lost sweep
            record.status, record.error = "error", _error_text(exc)
        if ctx is not None:
            ctx.stop_clock()
        if ctx is not None and record.status in ("ok", "timeout"):
            try:
                splits = ["val", "test"] + (["train"] if ctx.selection.split_weights.get("train") else [])
                for split in splits:
                    metrics[split] = _final_evaluate(ctx, split)
            except Exception as exc:
                record.status, record.error = "error", f"final evaluation failed: {_error_text(exc)}"
    _finish_record(record, ctx, metrics, mem, t_start)
    final: dict[str, Any] = {"final": True, "run_id": run_id, "objective": record.objective,
                             "record": record.to_json()}
    if ctx is not None:  # diagnostics logged after the last evaluation (e.g. at the end of training)
        final.update(ctx.pop_diagnostics())
    wandb.log({**final, "step": record.steps or 0})
    reporter(final)
    wandb.finish(record)
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


def tune_trainable(config: dict[str, Any], specs: dict[str, dict[str, Any]] | None = None,
                   runtime: dict[str, Any] | None = None) -> None:
    """Ray Tune function trainable. ``config["key"]`` names the trial; its spec comes from ``specs``
    (shared once through the object store by ``tune.with_parameters``), or from ``config["trial"]``."""
    from ray import tune

    spec = TrialSpec.from_dict(specs[config["key"]] if specs is not None else config["trial"])
    execute_trial(spec, runtime if runtime is not None else config.get("runtime", {}), tune.report)
