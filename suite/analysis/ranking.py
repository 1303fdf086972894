"""The leaderboard, derived from the ``trials`` table (never edited by hand), in duckdb SQL.

An *entry* is (experiment, task, model, method, budget), plus the values of any ``split_by`` parameters;
``pool=True`` drops the experiment from the key (the experiment of each selected configuration is shown).
Per entry:

1. pick the configuration with the best mean selection score over seeds; a configuration with a failed
   seed is never picked (failures count, they are not dropped);
2. aggregate the chosen configuration's *test* metric over its successful seeds: mean, std, and a 95 %
   bootstrap confidence interval of the mean (BCa, 9999 resamples, fixed seed; clipped to the metric's range,
   e.g. RMSE >= 0, perplexity >= 1), given only with at least 3 seeds (fewer: ``n<3``);
3. rank the entries of each (experiment, task) by that mean; entries without a configuration whose seeds
   all succeeded are listed as ``failed`` and not ranked;
4. compare every ranked entry with the best one on the seeds both have: a paired test (paired t by default,
   or Wilcoxon signed-rank), Holm-corrected over the comparisons of the task; an entry whose adjusted
   p-value is at least 0.05 is *tied with the best* (``≈`` in the rank column). With fewer than 2 common
   seeds the comparison is unknown. With n seeds an exact two-sided Wilcoxon p-value is at least 2/2^n
   (0.25 for 3 seeds), so with few seeds only the t-test can separate entries at all.

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

from suite.analysis.stats import bootstrap_ci, tie_groups
from suite.store.results import ResultsStore

COLUMNS = ["experiment", "task", "rank", "tied_with_best", "p_vs_best", "model", "method", "budget", "metric",
           "direction", "unit", "checkpoint", "test_mean", "test_std", "ci95_low", "ci95_high", "n_ok", "n_seeds",
           "val_mean", "selection_score", "wall_time_s", "train_time_s", "steps", "samples", "peak_rss_mib",
           "method_params", "model_params", "optimizer", "config_id", "configs_tried", "status", "test_values",
           "seeds"]
TESTS = ("ttest", "wilcoxon")
MIN_SEEDS_FOR_CI = 3


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
        mlow = "TRY_CAST(json_extract(metric_specs_json, '$.\"' || primary_metric || '\".low') AS DOUBLE)"
        mhigh = "TRY_CAST(json_extract(metric_specs_json, '$.\"' || primary_metric || '\".high') AS DOUBLE)"
        mname = "primary_metric"
    else:
        test, val = _q(f"test.{metric}"), (_q(f"val.{metric}") if f"val.{metric}" in columns else "NULL")
        mdir = f"coalesce(json_extract_string(metric_specs_json, '$.\"{metric}\".direction'), 'min')"
        munit = f"json_extract_string(metric_specs_json, '$.\"{metric}\".unit')"
        mlow = f"TRY_CAST(json_extract(metric_specs_json, '$.\"{metric}\".low') AS DOUBLE)"
        mhigh = f"TRY_CAST(json_extract(metric_specs_json, '$.\"{metric}\".high') AS DOUBLE)"
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
         {mdir} AS metric_direction, {munit} AS unit, {mname} AS metric_name, {mlow} AS low, {mhigh} AS high,
         checkpoint, steps, samples,
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
       min(b.low) AS low, max(b.high) AS high, string_agg(DISTINCT b.checkpoint, '/') AS checkpoint,
       avg(b.steps) AS steps, avg(b.samples) AS samples,
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
                *, experiment: str | None = None, metric: str | None = None, pool: bool = False,
                test: str = "ttest", alpha: float = 0.05) -> pd.DataFrame:
    """One row per entry: the selected configuration and its test aggregate (see the module docstring).

    ``source`` is a :class:`ResultsStore` (queried in place) or a ``trials`` DataFrame. ``split_by`` names
    parameters that make separate entries (``burn_in`` means ``method.burn_in``; ``model.hidden_size``
    works too); the method column then reads ``tbptt[burn_in=0]``. ``metric`` reports another recorded
    metric than the selection metric (selection itself is unchanged). ``test`` is the paired test behind the
    ties with the best ("ttest" or "wilcoxon"), at level ``alpha`` after Holm's correction."""
    if test not in TESTS:
        raise LeaderboardError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
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
    return _finish(board, split_by, pool, test, alpha)


def _ci(values: list[float], low: float | None, high: float | None) -> tuple[float, float]:
    bounds = (None if low is None or math.isnan(low) else low, None if high is None or math.isnan(high) else high)
    return bootstrap_ci(values, bounds=bounds, min_n=MIN_SEEDS_FOR_CI)


def _ties(board: pd.DataFrame, group: list[str], test: str, alpha: float) -> pd.DataFrame:
    """``tied_with_best`` and the Holm-adjusted ``p_vs_best`` of the ranked entries, per group (task)."""
    board["tied_with_best"] = pd.array([pd.NA] * len(board), dtype="boolean")
    board["p_vs_best"] = np.nan
    for _, g in board[board["status"] == "ranked"].groupby(group, sort=False):
        if len(g) < 2:
            board.loc[g.index, "tied_with_best"] = True
            continue
        t = tie_groups(g.rename(columns={"test_values": "values"}), direction=g["direction"].iloc[0],
                       alpha=alpha, test=test)
        board.loc[g.index, "tied_with_best"] = t["tied_with_best"].to_numpy()
        board.loc[g.index, "p_vs_best"] = t["p_vs_best_holm"].to_numpy()
    return board


def _finish(board: pd.DataFrame, split_by: list[str], pool: bool, test: str, alpha: float) -> pd.DataFrame:
    """Labels, confidence intervals and ranks on the (small) table of selected configurations."""
    if pool:
        board["experiment"] = board["selected_experiment"]
    if split_by:  # method[p=v,...], leaving out the parameters a method does not have
        def label(row: pd.Series) -> str:
            parts = [f"{name}={_format_value(row[f'v{i}'])}" for i, name in enumerate(split_by)
                     if not (row[f"v{i}"] is None or (isinstance(row[f"v{i}"], float) and math.isnan(row[f"v{i}"])))]
            return row["method"] + (f"[{','.join(parts)}]" if parts else "")

        board["method"] = board.apply(label, axis=1)
    board["budget"] = board["budget_json"].map(lambda b: ",".join(f"{k}={_format_value(v)}" for k, v in json.loads(b).items()))
    board["test_values"] = board["test_values"].map(lambda v: [float(x) for x in v] if _is_list(v) else [])
    board["seeds"] = board["seeds"].map(lambda v: [int(x) for x in v] if _is_list(v) else [])
    cis = [_ci(v, lo, hi) for v, lo, hi in zip(board["test_values"], board["low"], board["high"])]
    board["ci95_low"], board["ci95_high"] = [c[0] for c in cis], [c[1] for c in cis]
    board["status"] = np.where(board["feasible"] & (board["n_ok"] > 0), "ranked", "failed")
    sign = np.where(board["direction"] == "max", -1.0, 1.0)
    key = pd.Series(np.where(board["status"] == "ranked", board["test_mean"] * sign, np.nan), index=board.index)
    group = ["task"] if pool else ["experiment", "task"]
    board["rank"] = key.groupby([board[g] for g in group]).rank(method="min").astype("Int64")
    board = _ties(board, group, test, alpha)
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


def _rank_label(r: Any) -> str:
    if pd.isna(r.rank):
        return "failed"
    tied = r.tied_with_best
    return f"{r.rank}" + (" ≈" if not pd.isna(tied) and bool(tied) and r.rank != 1 else "")


def display_rows(board: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Compact human-readable columns for table and markdown output. The rank of an entry statistically tied
    with the best is marked ``≈``; ``p vs best`` is the Holm-adjusted paired p-value."""
    headers = ["experiment", "task", "rank", "model", "method", "budget", "metric", "test mean ± std", "95% CI",
               "p vs best", "seeds ok", "at", "wall s", "peak MiB", "params"]
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
        if r.n_ok == 0:
            ci = "—"
        elif r.n_ok < MIN_SEEDS_FOR_CI:
            ci = f"n<{MIN_SEEDS_FOR_CI}"
        else:
            ci = "—" if math.isnan(r.ci95_low) else f"[{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}]"
        ranked = not pd.isna(r.rank)
        p = "best" if ranked and r.rank == 1 else ("—" if pd.isna(r.p_vs_best) else _fmt(float(r.p_vs_best), 2))
        rows.append([
            r.experiment, r.task, _rank_label(r), r.model, r.method, r.budget, metric, value, ci, p,
            f"{r.n_ok}/{r.n_seeds}", str(r.checkpoint or "final"),
            "-" if pd.isna(r.wall_time_s) else f"{r.wall_time_s:.1f}",
            "-" if pd.isna(r.peak_rss_mib) else f"{r.peak_rss_mib:.0f}",
            ", ".join(f"{k}={v}" for k, v in params.items()),
        ])
    return headers, rows


def to_markdown(board: pd.DataFrame) -> str:
    headers, rows = display_rows(board)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
