"""The leaderboard, derived from the ``trials`` table (never edited by hand).

Per (task, model, method): pick the configuration with the best mean selection score over seeds
(a configuration with a failed seed scores worst: failures count, they are not dropped), then
aggregate the *test* primary metric of that configuration's successful seeds: mean, std, 95 %
confidence interval (Student t), number of seeds. Methods are ranked per task by that mean, with
wall time and peak memory beside the quality.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ["task", "rank", "model", "method", "metric", "test_mean", "test_std", "ci95_low", "ci95_high",
           "n_ok", "n_seeds", "val_mean", "selection_score", "wall_time_s", "peak_rss_mib", "method_params",
           "model_params", "optimizer", "config_id", "configs_tried"]


def _ci95(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (float("nan"), float("nan"))
    mean, sem = values.mean(), values.std(ddof=1) / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * sem
    return (mean - half, mean + half)


def _config_score(group: pd.DataFrame) -> float:
    """Mean selection score (oriented: lower is better) over seeds; any failed seed -> inf."""
    if (group["status"] != "ok").any():
        return math.inf
    scores = group["selection_score"].astype(float)
    if scores.isna().any():
        return math.inf
    direction = group["direction"].iloc[0]
    mean = scores.mean()
    return mean if direction == "min" else -mean


def _variant(params_json: str, keys: list[str]) -> str:
    params = json.loads(params_json or "{}")
    return ",".join(f"{k}={params.get(k)}" for k in keys)


def leaderboard(trials: pd.DataFrame, task: str | None = None, split_by: list[str] | None = None) -> pd.DataFrame:
    """One row per (task, model, method): the selected configuration and its test aggregate.

    ``split_by`` names method parameters that make separate entries (e.g. ``burn_in`` to show
    every burn-in length instead of selecting one); the method column then reads ``tbptt[burn_in=0]``.
    """
    if task is not None:
        trials = trials[trials["task"] == task]
    trials = trials.copy()
    if split_by:
        variants = trials["method_params_json"].map(lambda p: _variant(p, split_by))
        trials["method"] = trials["method"] + "[" + variants + "]"
    rows: list[dict[str, Any]] = []
    for (task_name, model, method), group in trials.groupby(["task", "model", "method"], sort=True):
        by_config = {cid: g for cid, g in group.groupby("config_id")}
        scores = {cid: _config_score(g) for cid, g in by_config.items()}
        best_id = min(scores, key=lambda c: (scores[c], c))
        chosen = by_config[best_id]
        ok = chosen[chosen["status"] == "ok"]
        test = ok["test_primary"].dropna().to_numpy(dtype=float)
        low, high = _ci95(test)
        first = chosen.iloc[0]
        rows.append({
            "task": task_name, "model": model, "method": method,
            "metric": first["primary_metric"] or "", "direction": first["direction"] or "min",
            "test_mean": float(test.mean()) if len(test) else float("nan"),
            "test_std": float(test.std(ddof=1)) if len(test) > 1 else float("nan"),
            "ci95_low": low, "ci95_high": high, "n_ok": int(len(ok)), "n_seeds": int(len(chosen)),
            "val_mean": float(ok["val_primary"].mean()) if len(ok) else float("nan"),
            "selection_score": float(chosen["selection_score"].mean()),
            "wall_time_s": float(chosen["wall_time_s"].mean()),
            "peak_rss_mib": float(chosen["peak_rss_bytes"].max()) / 2**20,
            "method_params": first["method_params_json"], "model_params": first["model_params_json"],
            "optimizer": first["optimizer_json"], "config_id": best_id, "configs_tried": len(by_config),
            "feasible": math.isfinite(scores[best_id]),
        })
    board = pd.DataFrame(rows)
    if board.empty:
        return pd.DataFrame(columns=COLUMNS)
    ranks = []
    for _, g in board.groupby("task"):
        sign = np.where(g["direction"] == "max", -1.0, 1.0)
        key = pd.Series(np.where(g["feasible"], g["test_mean"] * sign, np.inf), index=g.index).fillna(np.inf)
        ranks.append(key.rank(method="min"))
    board["rank"] = pd.concat(ranks).astype(int)
    return board.sort_values(["task", "rank", "method"])[COLUMNS].reset_index(drop=True)


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def display_rows(board: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Compact human-readable columns for table and markdown output."""
    headers = ["task", "rank", "model", "method", "metric", "test mean ± std", "95% CI", "seeds ok",
               "wall s", "peak MiB", "params"]
    rows = []
    for r in board.itertuples():
        params = json.loads(r.method_params) if r.method_params else {}
        rows.append([
            r.task, str(r.rank), r.model, r.method, r.metric,
            # one seed has no spread: show the value alone instead of "± nan"
            _fmt(r.test_mean) if math.isnan(r.test_std) else f"{_fmt(r.test_mean)} ± {_fmt(r.test_std, 2)}",
            "—" if math.isnan(r.ci95_low) else f"[{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}]",
            f"{r.n_ok}/{r.n_seeds}", f"{r.wall_time_s:.1f}", f"{r.peak_rss_mib:.0f}",
            ", ".join(f"{k}={v}" for k, v in params.items()),
        ])
    return headers, rows


def to_markdown(board: pd.DataFrame) -> str:
    headers, rows = display_rows(board)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
