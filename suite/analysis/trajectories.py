"""Trajectories of one curve metric per trial: a compact table (values at evenly spaced points) and a plot.

Used by ``rnnbench curves`` to show, e.g., adaptive TBPTT's truncation K over training
(``--metric K``), a validation metric over time (``--metric ppl --split val``) or DEER's Newton
iterations. Rows are labelled by the method and the parameters that vary between the trials shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

AXES = ("step", "train_time_s", "samples", "wall_time_s")


def _labels(trials: pd.DataFrame) -> pd.Series:
    """``method model[ k=v ...]`` with the method/model parameters that differ between the trials that have
    them: a parameter only one method has (SMT's thirty) is not shown for that alone, the method's name tells
    the rows apart."""
    params = [{**json.loads(m), **{f"model.{k}": v for k, v in json.loads(mo).items()}}
              for m, mo in zip(trials["method_params_json"], trials["model_params_json"])]
    keys = sorted({k for p in params for k in p})
    varying = [k for k in keys if len({json.dumps(p[k], sort_keys=True) for p in params if k in p}) > 1]
    labels = []
    for (_, row), p in zip(trials.iterrows(), params):
        extra = " ".join(f"{k}={p.get(k)}" for k in varying if k in p)
        labels.append(f"{row['method']} {row['model']}" + (f" {extra}" if extra else ""))
    return pd.Series(labels, index=trials.index)


def metric_curves(trials: pd.DataFrame, curves: pd.DataFrame, metric: str, split: str | None = None,
                  task: str | None = None) -> pd.DataFrame:
    """Long rows ``trial_key, label, task, seed, step, train_time_s, ..., value`` of one metric."""
    sel = curves[curves["metric"] == metric].drop(columns=["experiment"], errors="ignore")
    if split is not None:
        sel = sel[sel["split"] == split]
    if sel.empty:
        have = sorted(set(zip(curves["split"], curves["metric"])))
        raise ValueError(f"no curve rows for metric {metric!r}" + (f" in split {split!r}" if split else "")
                         + f"; the curves hold (split, metric): {have[:30]}")
    trials = trials[trials["trial_key"].isin(sel["trial_key"])]
    if task is not None:
        trials = trials[trials["task"] == task]
    info = trials[["trial_key", "experiment", "task", "seed", "status"]].assign(label=_labels(trials))
    return sel.merge(info, on="trial_key").sort_values(["label", "seed", "step"]).reset_index(drop=True)


def trajectory_table(long: pd.DataFrame, points: int = 8, axis: str = "step") -> pd.DataFrame:
    """One row per trial: the metric's last value at or before ``points`` evenly spaced ``axis``
    positions (0 .. the largest position any trial reached), plus the final value and the mean."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, not {axis!r}")
    top = float(long[axis].max())
    grid = np.linspace(top / points, top, points)
    rows = []
    for key, g in long.groupby("trial_key", sort=False):
        g = g.sort_values(axis)
        xs, vs = g[axis].to_numpy(dtype=float), g["value"].to_numpy(dtype=float)
        row = {"label": g["label"].iloc[0], "task": g["task"].iloc[0], "seed": g["seed"].iloc[0], "trial_key": key}
        for x in grid:
            i = np.searchsorted(xs, x, side="right") - 1
            row[f"{axis}<={x:.4g}"] = vs[i] if i >= 0 else np.nan
        row["final"], row["mean"], row["n"] = vs[-1], float(np.mean(vs)), len(vs)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "label", "seed"]).reset_index(drop=True)


def plot_trajectories(long: pd.DataFrame, path: Path, metric: str, axis: str = "step") -> Path:
    """One panel per (experiment, task), one colour per method configuration: the mean over seeds with the
    range over seeds as a band, titled with the split; the legend outside the data. Saved at ``path``."""
    from suite.analysis import plots

    split = ", ".join(sorted(set(long["split"]))) if "split" in long else ""
    fig = plots.mean_band(long, x=axis, facet=("experiment", "task"), label="label", ylabel=metric,
                          title=f"{split} {metric}".strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.save(fig, path)
    return path
