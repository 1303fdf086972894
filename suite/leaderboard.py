"""The leaderboard, derived from the ``trials`` table (never edited by hand), in duckdb SQL.

An *entry* is (experiment, task, model, method, budget), plus the values of any ``split_by`` parameters;
``pool=True`` drops the experiment from the key (the experiment of each selected configuration is shown).
Per entry:

1. pick the configuration with the best mean selection score over seeds; a configuration with a failed
   seed is never picked (failures count, they are not dropped);
2. aggregate the chosen configuration's *test* metric over its successful seeds (mean, std, a confidence
   interval, number of seeds);
3. rank the entries of each (experiment, task) by that mean; entries without a configuration whose seeds
   all succeeded are listed as ``failed`` and not ranked.

Steps 1 and 2 run as one SQL query over the store (or a DataFrame), so 10^6 trial rows rank in about a
second; only the selected configurations' seed values reach Python, for the statistics.
"""

from __future__ import annotations

import json
import math
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from suite.results import ResultsStore

COLUMNS = ["experiment", "task", "rank", "model", "method", "budget", "metric", "direction", "unit", "test_mean",
           "test_std", "ci95_low", "ci95_high", "n_ok", "n_seeds", "val_mean", "selection_score", "wall_time_s",
           "train_time_s", "peak_rss_mib", "method_params", "model_params", "optimizer", "config_id",
           "configs_tried", "status", "test_values", "seeds"]


class LeaderboardError(ValueError):
    """A leaderboard request that cannot be answered (unknown metric, parameter, task or experiment)."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split_column(name: str) -> str:
    """``burn_in`` -> ``method.burn_in``; qualified names (``model.hidden_size``) are kept."""
    return name if "." in name else f"method.{name}"


def _sql(columns: set[str], metric: str | None, split_cols: list[str], pool: bool, where: str) -> str:
    if metric is None:
        test, val = "test_primary", "val_primary"
        mdir = "direction"
        munit = "json_extract_string(metric_specs_json, '$.\"' || primary_metric || '\".unit')"
        mname = "primary_metric"
    else:
        test, val = _q(f"test.{metric}"), (_q(f"val.{metric}") if f"val.{metric}" in columns else "NULL")
        mdir = f"coalesce(json_extract_string(metric_specs_json, '$.\"{metric}\".direction'), 'min')"
        munit = f"json_extract_string(metric_specs_json, '$.\"{metric}\".unit')"
        mname = f"'{metric}'"
    keys = (["experiment"] if not pool else []) + ["task", "model", "method", "budget_json"]
    keys += [f"v{i}" for i in range(len(split_cols))]
    key_list = ", ".join(keys)
    splits = "".join(f", {_q(c)} AS v{i}" for i, c in enumerate(split_cols))
    return f"""
WITH base AS (
  SELECT experiment, task, model, method, budget_json, config_id, seed, status{splits},
         {test} AS test_value, {val} AS val_value, selection_score,
         CASE WHEN direction = 'max' THEN -selection_score ELSE selection_score END AS oriented,
         {mdir} AS metric_direction, {munit} AS unit, {mname} AS metric_name,
         wall_time_s, train_time_s, peak_rss_bytes, method_params_json, model_params_json, optimizer_json
  FROM trials {where}
),
configs AS (
  SELECT {key_list}, config_id, count(*) AS n_seeds,
         count(*) FILTER (WHERE status = 'ok') AS n_ok,
         bool_and(status = 'ok' AND oriented IS NOT NULL AND isfinite(oriented)) AS feasible,
         avg(oriented) AS score
  FROM base GROUP BY {key_list}, config_id
),
chosen AS (
  SELECT *, count(*) OVER w AS configs_tried,
         row_number() OVER (w ORDER BY feasible DESC, score ASC NULLS LAST, config_id) AS pick
  FROM configs WINDOW w AS (PARTITION BY {key_list})
)
SELECT c.* EXCLUDE (pick, score),
       any_value(b.experiment) AS selected_experiment,
       any_value(b.metric_name) AS metric, any_value(b.metric_direction) AS direction, any_value(b.unit) AS unit,
       avg(b.test_value) FILTER (WHERE b.status = 'ok') AS test_mean,
       stddev_samp(b.test_value) FILTER (WHERE b.status = 'ok') AS test_std,
       avg(b.val_value) FILTER (WHERE b.status = 'ok') AS val_mean,
       avg(b.selection_score) AS selection_score,
       avg(b.wall_time_s) AS wall_time_s, avg(b.train_time_s) AS train_time_s,
       max(b.peak_rss_bytes) / 1048576.0 AS peak_rss_mib,
       any_value(b.method_params_json) AS method_params, any_value(b.model_params_json) AS model_params,
       any_value(b.optimizer_json) AS optimizer,
       list(b.test_value ORDER BY b.seed) FILTER (WHERE b.status = 'ok' AND b.test_value IS NOT NULL) AS test_values,
       list(b.seed ORDER BY b.seed) FILTER (WHERE b.status = 'ok' AND b.test_value IS NOT NULL) AS seeds
FROM chosen c JOIN base b ON b.config_id = c.config_id
WHERE c.pick = 1
GROUP BY ALL
"""


def _ci95(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (float("nan"), float("nan"))
    arr = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, n - 1) * arr.std(ddof=1) / math.sqrt(n)
    return (arr.mean() - half, arr.mean() + half)


def _format_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "None"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _connection(source: ResultsStore | pd.DataFrame, experiment: str | None) -> duckdb.DuckDBPyConnection:
    if isinstance(source, ResultsStore):
        return source.connect(experiment)
    con = duckdb.connect()
    frame = source if experiment is None else source[source["experiment"] == experiment]
    con.register("trials", frame)
    return con


def leaderboard(source: ResultsStore | pd.DataFrame, task: str | None = None, split_by: list[str] | None = None,
                *, experiment: str | None = None, metric: str | None = None, pool: bool = False) -> pd.DataFrame:
    """One row per entry: the selected configuration and its test aggregate (see the module docstring).

    ``source`` is a :class:`ResultsStore` (queried in place) or a ``trials`` DataFrame. ``split_by`` names
    parameters that make separate entries (``burn_in`` means ``method.burn_in``; ``model.hidden_size``
    works too); the method column then reads ``tbptt[burn_in=0]``. ``metric`` reports another recorded
    metric than the selection metric (selection itself is unchanged)."""
    split_by = list(split_by or [])
    con = _connection(source, experiment)
    try:
        columns = {row[0] for row in con.sql("DESCRIBE trials").fetchall()}
        split_cols = [_split_column(s) for s in split_by]
        for name, col in zip(split_by, split_cols):
            if col not in columns:
                have = sorted(c for c in columns if c.split(".", 1)[0] in ("method", "model", "task", "optimizer"))
                raise LeaderboardError(f"no parameter {name!r} (column {col!r}) in these trials; parameters: {have}")
        if metric is not None and f"test.{metric}" not in columns:
            have = sorted(c.split(".", 1)[1] for c in columns if c.startswith("test."))
            raise LeaderboardError(f"no test metric {metric!r} in these trials; recorded test metrics: {have}")
        where = ""
        if task is not None:
            where = "WHERE task = " + "'" + task.replace("'", "''") + "'"
        board = con.sql(_sql(columns, metric, split_cols, pool, where)).df()
    finally:
        con.close()
    if board.empty:
        return pd.DataFrame(columns=COLUMNS)
    return _finish(board, split_by, pool)


def _finish(board: pd.DataFrame, split_by: list[str], pool: bool) -> pd.DataFrame:
    """Labels, confidence intervals and ranks on the (small) table of selected configurations."""
    if pool:
        board["experiment"] = board["selected_experiment"]
    if split_by:
        labels = [name + "=" + board[f"v{i}"].map(_format_value) for i, name in enumerate(split_by)]
        board["method"] = board["method"] + "[" + pd.concat(labels, axis=1).agg(",".join, axis=1) + "]"
    board["budget"] = board["budget_json"].map(lambda b: ",".join(f"{k}={_format_value(v)}" for k, v in json.loads(b).items()))
    board["test_values"] = board["test_values"].map(lambda v: [float(x) for x in v] if _is_list(v) else [])
    board["seeds"] = board["seeds"].map(lambda v: [int(x) for x in v] if _is_list(v) else [])
    cis = board["test_values"].map(_ci95)
    board["ci95_low"], board["ci95_high"] = cis.map(lambda c: c[0]), cis.map(lambda c: c[1])
    board["status"] = np.where(board["feasible"], "ranked", "failed")
    sign = np.where(board["direction"] == "max", -1.0, 1.0)
    key = pd.Series(np.where(board["feasible"], board["test_mean"] * sign, np.nan), index=board.index)
    group = ["task"] if pool else ["experiment", "task"]
    board["rank"] = key.groupby([board[g] for g in group]).rank(method="min").astype("Int64")
    board["unit"] = board["unit"].fillna("")
    for col in ("n_ok", "n_seeds", "configs_tried"):
        board[col] = board[col].astype(int)
    board = board.sort_values(group + ["rank", "method"], na_position="last")
    return board[COLUMNS].reset_index(drop=True)


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def display_rows(board: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Compact human-readable columns for table and markdown output."""
    headers = ["experiment", "task", "rank", "model", "method", "budget", "metric", "test mean ± std", "95% CI",
               "seeds ok", "wall s", "peak MiB", "params"]
    rows = []
    for r in board.itertuples():
        params = json.loads(r.method_params) if r.method_params else {}
        arrow = "↓" if r.direction == "min" else "↑"
        metric = f"{r.metric} {arrow}" + (f" [{r.unit}]" if r.unit else "")
        if r.n_ok == 0:
            value = "—"
        elif math.isnan(r.test_std):  # one seed has no spread: show the value alone instead of "± nan"
            value = _fmt(r.test_mean)
        else:
            value = f"{_fmt(r.test_mean)} ± {_fmt(r.test_std, 2)}"
        rows.append([
            r.experiment, r.task, "failed" if pd.isna(r.rank) else str(r.rank), r.model, r.method, r.budget, metric,
            value, "—" if math.isnan(r.ci95_low) else f"[{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}]",
            f"{r.n_ok}/{r.n_seeds}", f"{r.wall_time_s:.1f}",
            "-" if pd.isna(r.peak_rss_mib) else f"{r.peak_rss_mib:.0f}",
            ", ".join(f"{k}={v}" for k, v in params.items()),
        ])
    return headers, rows


def to_markdown(board: pd.DataFrame) -> str:
    headers, rows = display_rows(board)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
