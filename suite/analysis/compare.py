"""Comparisons beyond one task's leaderboard: across tasks, and quality against cost.

Everything starts from a leaderboard (:func:`suite.analysis.ranking.leaderboard`: one selected configuration per entry,
with its per-seed test values) and, for the cost views, from the ``curves`` table of those configurations'
trials. An entry's *label* is ``model/method`` (with ``--split-by`` values); entries of different tasks
with the same label are the same contender.

Across the tasks of an experiment (:func:`across_tasks`):

* **mean rank** over tasks (a failed or missing entry ranks last on that task);
* **performance profile** (Dolan & Moré; AlgoPerf): for each task the ratio of an entry's mean to the best
  mean (``min`` metrics; best / value for ``max``), and rho(tau) = the fraction of tasks within tau of the best;
* **IQM** of the per-seed scores pooled over tasks, with a stratified bootstrap 95 % interval (seeds
  resampled within each task, as rliable does). Scores of different tasks are put on one scale first: per
  task, 0 = the best entry's mean and 1 = the worst entry's mean, oriented so that lower is better.

Quality against cost (:func:`cost_table`, :func:`time_to_target`, :func:`quality_at_budget`), per task:

* each entry's mean test metric against its mean wall time, training time, updates, samples and peak memory,
  with the **Pareto front** (no other entry is at most as costly and at least as good, one of them strictly);
* **time to target** (AlgoPerf): the first training time at which a trial's *validation* metric reaches a
  target; the target is given per task or set as a quantile of the best validation values the task's trials
  reached; a trial that never reaches it counts as a failure (its time is infinite);
* **quality at equal fractions** of the task's largest training time (25/50/75/100 %): the last validation
  value each trial had reported by then, averaged over seeds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from suite.analysis.stats import (
    mean_ranks,
    pareto_front,
    performance_profile,
    quality_at_fractions,
    stratified_bootstrap_iqm,
    target_from_best,
)
from suite.analysis.stats import time_to_target as _first_time

COSTS = {"wall_time_s": "wall time (s)", "train_time_s": "training time (s)", "steps": "updates",
         "samples": "samples", "peak_rss_mib": "peak memory (MiB)"}


def label_of(board: pd.DataFrame) -> pd.Series:
    return board["model"] + "/" + board["method"]


def _scores(board: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """task x label table of test means (NaN: failed or missing) and each task's direction."""
    b = board.assign(label=label_of(board))
    b = b.assign(score=np.where(b["status"] == "ranked", b["test_mean"], np.nan))
    table = b.pivot_table(index="task", columns="label", values="score", aggfunc="first", dropna=False)
    directions = b.groupby("task")["direction"].first().to_dict()
    return table, directions


def across_tasks(board: pd.DataFrame, taus: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """Mean ranks, performance profiles and stratified-bootstrap IQMs over the tasks of ``board`` (one
    experiment, or a pooled board). Returns ``{"scores", "mean_rank", "profile", "iqm"}`` DataFrames."""
    scores, directions = _scores(board)
    ranks = mean_ranks(scores, direction=directions).rename("mean_rank")
    positive = (scores.fillna(1.0) > 0).all().all()
    profile = performance_profile(scores, direction=directions, taus=taus) if positive else pd.DataFrame()
    iqm_rows = []
    b = board.assign(label=label_of(board))
    for label, g in b[b["status"] == "ranked"].groupby("label"):
        values, normalise = {}, {}
        for task, entry in g.groupby("task"):
            col = scores.loc[task].dropna()
            best, worst = (col.min(), col.max()) if directions[task] == "min" else (col.max(), col.min())
            v = np.asarray(entry["test_values"].iloc[0], dtype=float)
            if directions[task] == "max":  # orient: lower is better
                v, best, worst = -v, -best, -worst
            values[task] = v
            # a task with one ranked entry (best == worst): |best| is the unit, so rescaling the metric (seconds to
            # milliseconds, MSE x 100) leaves the IQM and its interval unchanged; 1.0 only when best is 0
            unit = abs(best) if best != 0 else 1.0
            normalise[task] = (best, worst if worst != best else best + unit)
        point, low, high = stratified_bootstrap_iqm(values, normalise=normalise, seed=seed)
        iqm_rows.append({"label": label, "iqm": point, "ci95_low": low, "ci95_high": high, "tasks": len(values)})
    iqm = pd.DataFrame(iqm_rows, columns=["label", "iqm", "ci95_low", "ci95_high", "tasks"]).sort_values("iqm")
    return {"scores": scores, "mean_rank": ranks, "profile": profile, "iqm": iqm.reset_index(drop=True)}


def cost_table(board: pd.DataFrame, cost: str = "wall_time_s") -> pd.DataFrame:
    """Per task: each entry's quality (test mean) against ``cost``, with ``on_front`` for the Pareto front."""
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, not {cost!r}")
    rows = []
    for task, g in board[board["status"] == "ranked"].groupby("task"):
        g = g.assign(label=label_of(g))
        front = pareto_front(g, cost, "test_mean", direction=g["direction"].iloc[0])
        rows.append(g.assign(on_front=front.to_numpy())[["experiment", "task", "label", "metric", "direction",
                                                          "test_mean", cost, "on_front"]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def validation_curves(board: pd.DataFrame, trials: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Long rows (task, label, seed, trial_key, step, train_time_s, value) of the selected configurations'
    validation curves of the entry's metric."""
    b = board[board["status"] == "ranked"]
    b = b.assign(label=label_of(b))
    t = trials[trials["config_id"].isin(b["config_id"])][["trial_key", "config_id", "seed"]]
    t = t.merge(b[["config_id", "task", "label", "metric", "direction"]].rename(columns={"metric": "entry_metric"}),
                on="config_id")
    c = curves[curves["split"] == "val"].merge(t, on="trial_key")
    c = c[c["metric"] == c["entry_metric"]]
    return c[["task", "label", "seed", "trial_key", "step", "samples", "train_time_s", "wall_time_s", "metric",
              "direction", "value"]].sort_values(["task", "label", "seed", "train_time_s"]).reset_index(drop=True)


def time_to_target(board: pd.DataFrame, trials: pd.DataFrame, curves: pd.DataFrame, *,
                   targets: dict[str, float] | None = None, quantile: float = 0.5,
                   x: str = "train_time_s") -> pd.DataFrame:
    """Per entry: the target, the fraction of seeds that reached it and the median time to it (inf when
    not every seed did: a failure counts). Targets are ``targets[task]`` or the ``quantile`` of the best
    validation values of the task's selected trials (0: the best run's best value; 0.5: the median one)."""
    long = validation_curves(board, trials, curves)
    rows = []
    for task, g in long.groupby("task"):
        direction = g["direction"].iloc[0]
        best = g.groupby("trial_key")["value"].agg("min" if direction == "min" else "max")
        if targets and task in targets:
            target = float(targets[task])
        else:
            target = target_from_best(best.to_numpy(), quantile, direction=direction)
        for label, e in g.groupby("label"):
            times = [_first_time(run, target, direction=direction, x=x) for _, run in e.groupby("trial_key")]
            reached = [t for t in times if math.isfinite(t)]
            rows.append({"task": task, "label": label, "target": target, "reached": len(reached), "seeds": len(times),
                         f"median_{x}": float(np.median(times)) if times else math.inf,
                         f"median_{x}_reached": float(np.median(reached)) if reached else math.inf})
    return pd.DataFrame(rows)


def quality_at_budget(board: pd.DataFrame, trials: pd.DataFrame, curves: pd.DataFrame,
                      fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0), x: str = "train_time_s") -> pd.DataFrame:
    """Per entry: the mean over seeds of the last validation value by each fraction of the task's largest ``x``,
    and (``n_f0.25``, ...) how many seeds had a point by then: early fractions may average fewer seeds."""
    long = validation_curves(board, trials, curves)
    rows = []
    for task, g in long.groupby("task"):
        table = quality_at_fractions(g, fractions, x=x, group="trial_key")
        labels = g.drop_duplicates("trial_key").set_index("trial_key")["label"]
        table = table.join(labels)
        cols = [f"f{float(f)}" for f in fractions]
        means = table.groupby("label")[cols].mean()
        counts = table.groupby("label")[cols].count().rename(columns=lambda c: f"n_{c}")  # seeds with a point yet
        rows.append(means.join(counts).reset_index().assign(task=task))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def diagnostics_summary(trials: pd.DataFrame, curves: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Method diagnostics of the selected configurations (adaptive K, Newton iterations, alpha, ...): per
    entry and diagnostic, the mean of the trials' first, last and mean values."""
    b = board[board["status"] == "ranked"]
    b = b.assign(label=label_of(b))
    t = trials[trials["config_id"].isin(b["config_id"])][["trial_key", "config_id"]]
    t = t.merge(b[["config_id", "task", "label"]], on="config_id")
    d = curves[curves["split"] == "diag"].merge(t, on="trial_key")
    if d.empty:
        return pd.DataFrame(columns=["task", "label", "metric", "first", "last", "mean"])
    d = d.sort_values("step")
    per_trial = d.groupby(["task", "label", "metric", "trial_key"])["value"].agg(["first", "last", "mean"])
    return per_trial.groupby(["task", "label", "metric"]).mean().reset_index()


def parse_targets(items: list[str]) -> dict[str, float]:
    """``["task=value", ...]`` -> ``{task: value}`` (the ``--target`` option)."""
    out = {}
    for item in items:
        task, _, value = item.partition("=")
        try:
            out[task.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--target expects task=value, got {item!r}") from None
    return out
