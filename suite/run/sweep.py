"""Expand a validated manifest into the trial matrix.

tasks x models x methods x hyperparameter configurations x seeds. Grid spaces are enumerated,
random spaces sampled with the manifest's search seed, so the matrix is deterministic: a trial
is identified by a content hash (``key``) of everything that defines it, which is what makes
``--resume`` and re-runs idempotent. Method/model pairs whose capabilities do not fit are skipped
with a reason.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from suite.manifest import Manifest, is_space
from suite.registry import Registry
from suite.run.budget import Budget, EvalEvery
from suite.run.spec import TrialDiagnostics, TrialEvaluation, TrialResources, TrialSelection, TrialSpec


@dataclass
class TrialMatrix:
    trials: list[TrialSpec]
    skipped: list[str] = field(default_factory=list)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sample(value: Any, rng: np.random.Generator) -> Any:
    (kind, arg), = value.items()
    if kind == "choice":
        return arg[int(rng.integers(len(arg)))]
    if kind == "uniform":
        return float(rng.uniform(arg[0], arg[1]))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))
    if kind == "randint":
        return int(rng.integers(arg[0], arg[1]))
    raise ValueError(kind)


def _configurations(space: dict[str, Any], algorithm: str, num_samples: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Grid axes are crossed; in random search the other spaces are drawn num_samples times per grid point."""
    grid_axes = {k: v["grid"] if "grid" in v else v["choice"] for k, v in space.items()
                 if is_space(v) and ("grid" in v or (algorithm == "grid" and "choice" in v))}
    fixed = {k: v for k, v in space.items() if not is_space(v)}
    sampled = {k: v for k, v in space.items() if is_space(v) and k not in grid_axes}
    out = []
    for combo in itertools.product(*grid_axes.values()) if grid_axes else [()]:
        point = {**fixed, **dict(zip(grid_axes, combo))}
        for _ in range(num_samples if sampled else 1):
            out.append({**point, **{k: _sample(v, rng) for k, v in sampled.items()}})
    return out


def expand(manifest: Manifest, registry: Registry) -> TrialMatrix:
    """The deterministic trial matrix of a validated manifest."""
    rng = np.random.default_rng(manifest.search.seed)
    n = manifest.search.num_samples if manifest.search.algorithm == "random" else 1
    trials: list[TrialSpec] = []
    skipped: list[str] = []
    base_opt = manifest.optimizer.model_dump()
    for task in manifest.tasks:
        task_cls = registry.get("tasks", task.name)
        for task_params in _configurations(task.params, manifest.search.algorithm, n, rng):
            task_params = task_cls.Params.model_validate(task_params).model_dump(mode="json")
            for model in manifest.models:
                model_cls = registry.get("models", model.name)
                for method in manifest.methods:
                    method_cls = registry.get("methods", method.name)
                    missing = set(method_cls.requires) - set(model_cls.capabilities)
                    if missing:
                        skipped.append(f"{method.name} x {model.name}: model lacks {sorted(missing)}")
                        continue
                    opt_space = {**base_opt, **(method.optimizer or {})}
                    for model_params in _configurations(model.params, manifest.search.algorithm, n, rng):
                        model_params = model_cls.Params.model_validate(model_params).model_dump(mode="json")
                        for method_params in _configurations(method.params, manifest.search.algorithm, n, rng):
                            method_params = method_cls.Params.model_validate(method_params).model_dump(mode="json")
                            for opt in _configurations(opt_space, manifest.search.algorithm, n, rng):
                                # a parameter added later (``added_in``) names a trial only when it is set
                                ids = (task_cls.Params.identity(task_params), model_cls.Params.identity(model_params),
                                       method_cls.Params.identity(method_params))
                                trials += _with_seeds(manifest, task.name, task_params, model.name, model_params,
                                                      method.name, method_params, opt, method.budget, ids)
    unique = list({t.key: t for t in trials}.values())  # a repeated grid value is one trial, not two
    return TrialMatrix(unique, skipped)


def _with_seeds(m: Manifest, task: str, task_params: dict, model: str, model_params: dict,
                method: str, method_params: dict, opt: dict, budget_override: Any = None,
                ids: tuple[dict, dict, dict] | None = None) -> list[TrialSpec]:
    budget = (budget_override or m.budget).model_dump(exclude_none=True)
    eval_every = m.eval_every.model_dump(exclude_none=True)
    selection = m.selection.model_dump()
    evaluation = m.evaluation.model_dump()
    # the selection rule and the evaluation checkpoint are part of a trial's identity: its scores depend on them
    id_task, id_model, id_method = ids or (task_params, model_params, method_params)
    identity = dict(task=task, task_params=id_task, model=model, model_params=id_model, method=method,
                    method_params=id_method, optimizer=opt, budget=budget, eval_every=eval_every,
                    dtype=m.resources.dtype, selection=selection)
    if evaluation["checkpoint"] != "final":  # the default leaves the keys of earlier sweeps as they were
        identity["evaluation"] = evaluation
    config_id = _digest({"experiment": m.name, **identity})
    # the typed sections, shared by the seeds (frozen); their plain data is the dumps above, key for key
    sections = dict(budget=Budget.from_config(budget), eval_every=EvalEvery.from_config(eval_every),
                    selection=TrialSelection.from_config(selection),
                    resources=TrialResources.from_config(m.resources.model_dump()),
                    evaluation=TrialEvaluation.from_config(evaluation),
                    diagnostics=TrialDiagnostics.from_config(m.diagnostics.model_dump()))
    out = []
    for seed in m.seeds:
        out.append(TrialSpec(
            experiment=m.name, task=task, task_params=task_params, model=model, model_params=model_params,
            method=method, method_params=method_params, optimizer=opt, seed=seed, **sections,
            config_id=config_id, key=_digest({"experiment": m.name, **identity, "seed": seed}),
        ))
    return out


def matrix_summary(manifest: Manifest, registry: Registry) -> list[dict[str, Any]]:
    """The trial matrix counted per (task, model, method) entry without building it (seconds for 10^6 trials):
    configurations and trials of each, or the reason a method/model pair is skipped. An upper bound where a
    grid repeats a value (repeats are one trial in :func:`expand`)."""
    from suite.manifest import _space_size

    algo = manifest.search.algorithm
    n = manifest.search.num_samples if algo == "random" else 1

    def size(values: dict[str, Any]) -> int:
        total = 1
        for v in values.values():
            total *= _space_size(v, algo, n)
        return total

    base_opt = manifest.optimizer.model_dump()
    rows = []
    for task in manifest.tasks:
        for model in manifest.models:
            model_cls = registry.get("models", model.name)
            for method in manifest.methods:
                method_cls = registry.get("methods", method.name)
                missing = set(method_cls.requires) - set(model_cls.capabilities)
                configs = size(task.params) * size(model.params) * size(method.params) * size(
                    {**base_opt, **(method.optimizer or {})})
                rows.append({"task": task.name, "model": model.name, "method": method.name,
                             "configurations": 0 if missing else configs,
                             "trials": 0 if missing else configs * len(manifest.seeds),
                             "skipped": f"model lacks {sorted(missing)}" if missing else ""})
    return rows
