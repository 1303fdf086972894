"""Optuna search (``search: {algorithm: optuna}``): ask/tell on the driver, trials on Ray Tune.

Each (task, model, method) combination gets its own TPE study. Configurations are asked in
rounds of ``batch`` (the number of trials that can run at once), run as ordinary rnnbench trials
(every seed of a configuration), and told the mean oriented selection score over the seeds (a
failed seed makes the configuration worst). Because every configuration is a normal trial with a
content key, ``--resume`` re-tells the finished rows to a fresh study and asks only for the rest.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from suite.manifest import Manifest, is_space
from suite.registry import Registry
from suite.run.budget import FAILED_SCORE, orient
from suite.run.sweep import TrialSpec, _with_seeds
from suite.store.results import ResultsStore


def _distribution(optuna: Any, value: Any) -> Any:
    (kind, arg), = value.items()
    if kind in ("grid", "choice"):
        return optuna.distributions.CategoricalDistribution(arg)
    if kind == "uniform":
        return optuna.distributions.FloatDistribution(arg[0], arg[1])
    if kind == "loguniform":
        return optuna.distributions.FloatDistribution(arg[0], arg[1], log=True)
    return optuna.distributions.IntDistribution(arg[0], arg[1] - 1)  # randint: high exclusive


def _score(rows: Any) -> float:
    """The configuration's oriented mean selection score over its seeds; a failed seed makes it
    :data:`~suite.run.budget.FAILED_SCORE` (the one failed-score rule of :mod:`suite.run.budget`)."""
    if rows.empty or (rows["status"] != "ok").any() or rows["selection_score"].isna().any():
        return FAILED_SCORE
    value = orient(float(rows["selection_score"].mean()), rows["direction"].iloc[0])
    return value if math.isfinite(value) else FAILED_SCORE


def _outcome(optuna: Any, score: float) -> dict[str, Any]:
    """How a score is told to the study: a failed configuration is a FAIL trial (never the best)."""
    if score == FAILED_SCORE:
        return {"state": optuna.trial.TrialState.FAIL}
    return {"values": [score]}


def run_optuna(manifest: Manifest, registry: Registry, store: ResultsStore, batch: int,
               run_batch: Callable[[list[TrialSpec]], None], log: Callable[[str], None] = print) -> int:
    """Run the Optuna search; returns the number of configurations evaluated (old and new)."""
    try:
        import optuna
    except ImportError:
        raise RuntimeError("search.algorithm 'optuna' needs optuna: pip install 'rnnbench[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base_opt = manifest.optimizer.model_dump()
    total = 0
    for task in manifest.tasks:
        for model in manifest.models:
            for method in manifest.methods:
                space = {"method": method.params, "model": model.params, "optimizer": {**base_opt, **(method.optimizer or {})},
                         "task": task.params}
                dists = {f"{g}.{k}": _distribution(optuna, v) for g, d in space.items() for k, v in d.items() if is_space(v)}
                fixed = {g: {k: v for k, v in d.items() if not is_space(v)} for g, d in space.items()}

                def specs_for(params: dict[str, Any]) -> list[TrialSpec]:
                    groups = {g: dict(fixed[g]) for g in fixed}
                    for name, value in params.items():
                        g, k = name.split(".", 1)
                        groups[g][k] = value
                    schemas = [registry.get(kind, ref.name).Params for kind, ref in
                               (("tasks", task), ("models", model), ("methods", method))]
                    t, m, me = (cls.model_validate(groups[g]).model_dump(mode="json")
                                for cls, g in zip(schemas, ("task", "model", "method")))
                    ids = tuple(cls.identity(d) for cls, d in zip(schemas, (t, m, me)))
                    return _with_seeds(manifest, task.name, t, model.name, m, method.name, me, groups["optimizer"],
                                       method.budget, ids)

                done = store.trials(manifest.name)
                if not done.empty:
                    done = done[(done["task"] == task.name) & (done["model"] == model.name) & (done["method"] == method.name)]
                # the sampler's seed moves with the history, so a resumed study does not re-ask old points
                n_old = done["config_id"].nunique() if not done.empty else 0
                study = optuna.create_study(direction="minimize",
                                            sampler=optuna.samplers.TPESampler(seed=manifest.search.seed + n_old))
                for cid, rows in done.groupby("config_id") if not done.empty else []:
                    first = rows.iloc[0]
                    stored = {"method": json.loads(first["method_params_json"]), "model": json.loads(first["model_params_json"]),
                              "optimizer": json.loads(first["optimizer_json"]), "task": json.loads(first["task_params_json"])}
                    params = {name: stored[name.split(".", 1)[0]].get(name.split(".", 1)[1]) for name in dists}
                    try:
                        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                                  **_outcome(optuna, _score(rows))))
                    except ValueError:
                        continue  # a row from another search space
                if study.trials:
                    log(f"optuna: re-told {len(study.trials)} finished configurations of {method.name} on {task.name}")
                while len(study.trials) < manifest.search.num_samples:
                    asked = [study.ask(dists) for _ in range(min(batch, manifest.search.num_samples - len(study.trials)))]
                    specs = [specs_for(t.params) for t in asked]
                    run_batch([s for group in specs for s in group])
                    finished = store.trials(manifest.name)
                    for trial, group in zip(asked, specs):
                        rows = finished[finished["trial_key"].isin([s.key for s in group])]
                        study.tell(trial, **_outcome(optuna, _score(rows)))
                total += len(study.trials)
                if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                    log(f"optuna: best {method.name} on {task.name}: {study.best_trial.params} (score {study.best_value:.4g})")
    return total
