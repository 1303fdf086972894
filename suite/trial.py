"""One trial: seed, build task/model/method, train through the context, evaluate, report.

:func:`execute_trial` is plain Python (usable without Ray, e.g. in tests and for debugging);
:func:`tune_trainable` is the Ray Tune function trainable that wraps it. Whatever happens --
success, a diverging loss, an exception in the method, a time limit -- the trial ends with one
final report carrying ``final: True`` and a status, so the driver always writes a row.
"""

from __future__ import annotations

import json
import math
import random
import time
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.context import Reporter, Selection, TrainContext, TrialStop
from suite.contracts import Task
from suite.envinfo import PeakMemory, environment
from suite.registry import load_registry
from suite.sweep import TrialSpec

ERROR_MESSAGE_LIMIT = 4000


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


def execute_trial(spec: TrialSpec, runtime: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run one trial to its end and return (and report) its final record."""
    t_start = time.time()
    resources = spec.resources
    torch.set_num_threads(max(1, int(resources.get("cpu", 1))))
    dtype = torch.float64 if resources.get("dtype") == "float64" else torch.float32
    device = _device(resources)
    record: dict[str, Any] = {"final": True, "status": "ok", "error": None, "started_at": t_start}
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
            ctx = TrainContext(task=task, model=model, optimizer_spec=spec.optimizer, budget=spec.budget,
                               eval_every=spec.eval_every, selection=selection, reporter=reporter, device=device,
                               dtype=dtype, seed=spec.seed, time_limit_s=resources.get("time_limit_s"),
                               diagnostics=dict(spec.diagnostics))
            train = task.train_data()
            train.train = train.train.to(device, dtype)
            ctx.method, ctx.train_data = method, train
            method.train(model, train, ctx)
        except TrialStop as exc:
            record["status"], record["error"] = exc.status, str(exc)
        except Exception as exc:  # the method or a plugin failed: an `error` row, never a lost sweep
            record["status"] = "error"
            record["error"] = (f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc()))[:ERROR_MESSAGE_LIMIT]
        if ctx is not None and record["status"] in ("ok", "timeout"):
            try:
                splits = ["val", "test"] + (["train"] if ctx.selection.split_weights.get("train") else [])
                for split in splits:
                    metrics[split] = _final_evaluate(ctx, split)
            except Exception as exc:
                record["status"] = "error"
                record["error"] = f"final evaluation failed: {type(exc).__name__}: {exc}"[:ERROR_MESSAGE_LIMIT]
    record.update(_final_fields(spec, ctx, metrics, mem, t_start))
    if ctx is not None:  # diagnostics logged after the last evaluation (e.g. at the end of training)
        record.update(ctx.pop_diagnostics())
    reporter(record)
    return record


def _final_evaluate(ctx: TrainContext, split: str) -> dict[str, float]:
    ctx.model.eval()
    with torch.no_grad():
        return {k: float(v) for k, v in ctx.task.evaluate(ctx.model, split).items()}


def _final_fields(spec: TrialSpec, ctx: TrainContext | None, metrics: dict[str, dict[str, float]],
                  mem: PeakMemory, t_start: float) -> dict[str, Any]:
    env = environment()
    out: dict[str, Any] = {
        "wall_time_s": time.time() - t_start,
        "finished_at": time.time(),
        "peak_rss_bytes": int(mem.peak_rss),
        "peak_cuda_bytes": mem.cuda_peak(),
        "env_json": json.dumps(env),
        "metrics_json": json.dumps(metrics),
    }
    try:
        import ray

        out["node_id"] = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:
        out["node_id"] = None
    if ctx is not None:
        score = ctx.selection.score(metrics) if metrics else float("nan")
        out.update({
            "step": ctx.steps, "samples": ctx.samples, "epoch": ctx.epochs,
            "train_time_s": ctx.train_time_s, "evaluations": ctx.evaluations,
            "primary_metric": ctx.selection.metric, "direction": ctx.selection.direction,
            "selection_score": score, "objective": ctx.selection.oriented(score),
            "best_val_json": json.dumps(ctx.best.get("val", {})), "best_step": ctx.best.get("step"),
        })
        for split, values in metrics.items():
            for name, v in values.items():
                out[f"{split}/{name}"] = v
    else:
        out["objective"] = math.inf
    return out


def tune_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: ``config = {"trial": TrialSpec dict, "runtime": {...}}``."""
    from ray import tune

    spec = TrialSpec.from_dict(config["trial"])
    execute_trial(spec, config.get("runtime", {}), tune.report)
