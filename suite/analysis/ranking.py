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
   all succeeded are listed as ``failed`` and not ranked; entries whose seeds succeeded but whose test metric
   is not finite on some seed (a free run that left the state space: D_H or PE of inf or NaN) are listed as
   ``not finite`` and not ranked either, and left out of step 4, so they change no other entry's p-value;
4. compare every ranked entry with the best one on the seeds both have: a paired test (paired t by default,
   or Wilcoxon signed-rank), Holm-corrected over the comparisons of the task; an entry whose adjusted
   p-value is at least 0.05 is *tied with the best* (``≈`` in the rank column). With fewer than 2 common
   seeds the comparison is unknown. With n seeds an exact two-sided Wilcoxon p-value is at least 2/2^n
   (0.25 for 3 seeds), so with few seeds only the t-test can separate entries at all.

Steps 1 and 2 run as one SQL query over the store (or a DataFrame), so 10^6 trial rows rank in about a
second; only the selected configurations' seed values reach Python, for the statistics.

:func:`leaderboard` returns a DataFrame; :func:`leaderboard_rows` computes the same table as plain rows without
importing pandas (nor SciPy: see :mod:`suite.analysis.stats`), which is what ``rnnbench leaderboard`` prints.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb
import numpy as np

from suite.analysis.stats import _ties_with_best, bootstrap_ci
from suite.store.results import ResultsStore

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["experiment", "task", "rank", "tied_with_best", "p_vs_best", "model", "method", "budget", "metric",
           "direction", "unit", "checkpoint", "test_mean", "test_std", "ci95_low", "ci95_high", "n_ok", "n_seeds",
           "val_mean", "selection_score", "wall_time_s", "train_time_s", "steps", "samples", "peak_rss_mib",
           "method_params", "model_params", "optimizer", "config_id", "configs_tried", "status", "test_values",
           "seeds"]
TESTS = ("ttest", "wilcoxon")
#: the status of an entry whose seeds all succeeded but whose test metric is inf or NaN on some of them
NOT_FINITE = "not finite"
MIN_SEEDS_FOR_CI = 3

#: one entry of :func:`leaderboard_rows`: the columns of :func:`leaderboard`, missing values as None (NaN for
#: the float columns, as in the DataFrame)
BoardRow = NamedTuple("BoardRow", [(c, Any) for c in COLUMNS])

_FLOAT_COLUMNS = ("p_vs_best", "test_mean", "test_std", "ci95_low", "ci95_high", "val_mean", "selection_score",
                  "wall_time_s", "train_time_s", "steps", "samples", "peak_rss_mib")


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
    where_chosen = f"{where} AND" if where else "WHERE"
    # Two passes over the trials: the selection reads the few columns it needs of every row (grouped per
    # configuration, which is most of the work at 10^6 rows); the table's other columns (JSON metric specs,
    # parameters, times, per-seed values) are read and parsed for the rows of the selected configurations only.
    # Their means add the seeds in seed order, so the last bits do not depend on the order rows are read in.
    return f"""
WITH base AS (
  SELECT experiment, task, model, method, budget_json, config_id, status{splits},
         CASE WHEN direction = 'max' THEN -selection_score ELSE selection_score END AS oriented
  FROM trials {where}
),
configs AS (
  SELECT {key_list}, config_id, count(*) AS n_seeds,
         count(*) FILTER (WHERE status = 'ok') AS n_ok,
         bool_and(status = 'ok' AND oriented IS NOT NULL AND isfinite(oriented)) AS feasible,
         avg(oriented) AS score
  FROM base GROUP BY {key_list}, config_id
),
chosen AS (  -- per entry the first configuration by (feasible first, best score, NULL score last, config_id)
  SELECT {key_list}, count(*) AS configs_tried,
         arg_min({{'config_id': config_id, 'n_seeds': n_seeds, 'n_ok': n_ok, 'feasible': feasible}},
                 (CASE WHEN feasible THEN 0 WHEN NOT feasible THEN 1 ELSE 2 END, score IS NULL,
                  coalesce(score, 0), config_id)) AS pick
  FROM configs GROUP BY {key_list}
),
picked AS (
  SELECT experiment, config_id, seed, status, {test} AS test_value, {val} AS val_value, selection_score,
         {mdir} AS metric_direction, {munit} AS unit, {mname} AS metric_name, {mlow} AS low, {mhigh} AS high,
         checkpoint, steps, samples,
         wall_time_s, train_time_s, peak_rss_bytes, method_params_json, model_params_json, optimizer_json
  FROM trials {where_chosen} config_id IN (SELECT pick.config_id FROM chosen)
)
SELECT c.* EXCLUDE (pick), c.pick.config_id AS config_id, c.pick.n_seeds AS n_seeds, c.pick.n_ok AS n_ok,
       c.pick.feasible AS feasible,
       any_value(b.experiment) AS selected_experiment,
       any_value(b.metric_name) AS metric, any_value(b.metric_direction) AS direction, any_value(b.unit) AS unit,
       min(b.low) AS low, max(b.high) AS high, string_agg(DISTINCT b.checkpoint, '/') AS checkpoint,
       avg(b.steps ORDER BY b.seed) AS steps, avg(b.samples ORDER BY b.seed) AS samples,
       avg(b.test_value ORDER BY b.seed) FILTER (WHERE b.status = 'ok') AS test_mean,
       stddev_samp(b.test_value ORDER BY b.seed) FILTER (WHERE b.status = 'ok') AS test_std,
       avg(b.val_value ORDER BY b.seed) FILTER (WHERE b.status = 'ok') AS val_mean,
       avg(b.selection_score ORDER BY b.seed) AS selection_score,
       avg(b.wall_time_s ORDER BY b.seed) AS wall_time_s, avg(b.train_time_s ORDER BY b.seed) AS train_time_s,
       max(b.peak_rss_bytes) / 1048576.0 AS peak_rss_mib,
       any_value(b.method_params_json) AS method_params, any_value(b.model_params_json) AS model_params,
       any_value(b.optimizer_json) AS optimizer,
       list(b.test_value ORDER BY b.seed) FILTER (WHERE b.status = 'ok' AND b.test_value IS NOT NULL) AS test_values,
       list(b.seed ORDER BY b.seed) FILTER (WHERE b.status = 'ok' AND b.test_value IS NOT NULL) AS seeds
FROM chosen c JOIN picked b ON b.config_id = c.pick.config_id
GROUP BY ALL
ORDER BY {key_list}
"""


def _format_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "None"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _missing(v: Any) -> bool:
    """None, NaN or ``pd.NA`` (without importing pandas)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NAType", "NaTType")


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
    import pandas as pd

    board = _select(source, task, split_by, experiment, metric, pool, test, lambda rel: rel.df())
    if board.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = [{k: (None if _missing(v) else v) for k, v in r.items()} for r in board.to_dict("records")]
    order = _finish(rows, list(split_by or []), pool, test, alpha)
    for col in ("method", "experiment", "budget", "status"):
        board[col] = [r[col] for r in rows]
    for col in ("test_values", "seeds"):
        board[col] = pd.Series([r[col] for r in rows], index=board.index, dtype=object)
    for col in ("ci95_low", "ci95_high", "p_vs_best"):
        board[col] = np.array([r[col] for r in rows], dtype=float)
    board["rank"] = pd.array([r["rank"] for r in rows], dtype="Int64")
    board["tied_with_best"] = pd.array([pd.NA if r["tied_with_best"] is None else r["tied_with_best"] for r in rows],
                                       dtype="boolean")
    board["unit"] = board["unit"].fillna("")
    for col in ("n_ok", "n_seeds", "configs_tried"):
        board[col] = board[col].astype(int)
    return board.iloc[order][COLUMNS].reset_index(drop=True)


def leaderboard_rows(source: ResultsStore | pd.DataFrame, task: str | None = None,
                     split_by: list[str] | None = None, *, experiment: str | None = None, metric: str | None = None,
                     pool: bool = False, test: str = "ttest", alpha: float = 0.05) -> list[BoardRow]:
    """:func:`leaderboard` as a list of :class:`BoardRow` (the same values, in the same order), computed without
    pandas: what the ``rnnbench leaderboard`` command prints."""
    def fetch(rel: duckdb.DuckDBPyRelation) -> list[dict[str, Any]]:
        names = rel.columns
        return [dict(zip(names, r)) for r in rel.fetchall()]

    rows = _select(source, task, split_by, experiment, metric, pool, test, fetch)
    if not rows:
        return []
    order = _finish(rows, list(split_by or []), pool, test, alpha)
    out = []
    for i in order:
        r = rows[i]
        r["unit"] = "" if r["unit"] is None else r["unit"]
        for col in _FLOAT_COLUMNS:
            r[col] = math.nan if r[col] is None else float(r[col])
        out.append(BoardRow(*(r[c] for c in COLUMNS)))
    return out


def _select(source: ResultsStore | pd.DataFrame, task: str | None, split_by: list[str] | None,
            experiment: str | None, metric: str | None, pool: bool, test: str, fetch: Any) -> Any:
    """Steps 1 and 2: the selected configuration of every entry with its aggregates, fetched by ``fetch``."""
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
        return fetch(con.sql(_sql(columns, metric, split_cols, pool, where)))
    finally:
        con.close()


def _ci(values: list[float], low: float | None, high: float | None) -> tuple[float, float]:
    bounds = (None if low is None or math.isnan(low) else low, None if high is None or math.isnan(high) else high)
    return bootstrap_ci(values, bounds=bounds, min_n=MIN_SEEDS_FOR_CI)


def _finish(rows: list[dict[str, Any]], split_by: list[str], pool: bool, test: str, alpha: float) -> list[int]:
    """Labels, confidence intervals, ranks and ties on the (small) table of selected configurations, in place
    (``rows``: the query's rows, missing values None); returns the row order of the table (by experiment, task,
    rank, method)."""
    for r in rows:
        if pool:
            r["experiment"] = r["selected_experiment"]
        if split_by:  # method[p=v,...], leaving out the parameters a method does not have
            parts = [f"{name}={_format_value(r[f'v{i}'])}" for i, name in enumerate(split_by) if not _missing(r[f"v{i}"])]
            r["method"] = r["method"] + (f"[{','.join(parts)}]" if parts else "")
        r["budget"] = ",".join(f"{k}={_format_value(v)}" for k, v in json.loads(r["budget_json"]).items())
        r["test_values"] = [float(x) for x in r["test_values"]] if _is_list(r["test_values"]) else []
        r["seeds"] = [int(x) for x in r["seeds"]] if _is_list(r["seeds"]) else []
        r["status"] = "ranked" if bool(r["feasible"]) and r["n_ok"] > 0 else "failed"
        if r["status"] == "ranked" and not all(math.isfinite(v) for v in r["test_values"]):
            r["status"] = NOT_FINITE
        r["ci95_low"], r["ci95_high"] = (_ci(r["test_values"], r["low"], r["high"]) if r["status"] != NOT_FINITE
                                         else (math.nan, math.nan))
    group = ["task"] if pool else ["experiment", "task"]
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(tuple(r[g] for g in group), []).append(i)
    for members in groups.values():
        keys = {}
        for i in members:
            r = rows[i]
            mean = r["test_mean"]
            if r["status"] == "ranked" and not _missing(mean):
                keys[i] = -float(mean) if r["direction"] == "max" else float(mean)
        for i in members:
            rows[i]["rank"] = 1 + sum(k < keys[i] for k in keys.values()) if i in keys else None
        _ties(rows, [i for i in members if rows[i]["status"] == "ranked"], test, alpha)

    def order(i: int) -> tuple:
        r = rows[i]
        return (*(r[g] for g in group), r["rank"] is None, r["rank"] or 0, r["method"])

    return sorted(range(len(rows)), key=order)


def _ties(rows: list[dict[str, Any]], ranked: list[int], test: str, alpha: float) -> None:
    """``tied_with_best`` and the Holm-adjusted ``p_vs_best`` of the ranked entries of one group (task)."""
    for r in rows:
        r.setdefault("tied_with_best", None)
        r.setdefault("p_vs_best", math.nan)
    if len(ranked) == 1:
        rows[ranked[0]]["tied_with_best"] = True
    if len(ranked) < 2:
        return
    values = [np.asarray(rows[i]["test_values"], dtype=float) for i in ranked]
    seeds = [rows[i]["seeds"] for i in ranked]
    for i, s in zip(ranked, seeds):
        if len(set(s)) != len(s):
            raise ValueError(f"row {i!r}: a seed appears twice")
    _, _, adjusted, tied = _ties_with_best(values, seeds, rows[ranked[0]]["direction"], alpha, test)
    for k, i in enumerate(ranked):
        rows[i]["tied_with_best"] = tied[k]
        rows[i]["p_vs_best"] = float(adjusted[k])


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def _rank_label(r: Any) -> str:
    if _missing(r.rank):
        return NOT_FINITE if r.status == NOT_FINITE else "failed"
    tied = r.tied_with_best
    return f"{r.rank}" + (" ≈" if not _missing(tied) and bool(tied) and r.rank != 1 else "")


#: the columns of :func:`display_rows` (what ``rnnbench leaderboard --columns`` picks from)
DISPLAY_COLUMNS = ("experiment", "task", "rank", "model", "method", "budget", "metric", "test mean ± std", "95% CI",
                   "p vs best", "seeds ok", "at", "wall s", "peak MiB", "params", "per seed", "updates", "train s")
#: shown only when picked: the successful seeds' test values, and the updates and training seconds that an
#: equal-time comparison needs beside its scores (means over the configuration's trials, as "wall s")
ON_REQUEST_COLUMNS = ("per seed", "updates", "train s")
#: the columns shown when none are picked
DEFAULT_COLUMNS = tuple(c for c in DISPLAY_COLUMNS if c not in ON_REQUEST_COLUMNS)


def not_finite_text(values: Any) -> str | None:
    """``not finite in k of n`` for test values of which k are inf or NaN; None when all are finite."""
    values = list(values) if _is_list(values) else []
    bad = sum(not math.isfinite(float(v)) for v in values)
    return f"not finite in {bad} of {len(values)}" if bad else None


def _per_seed(r: Any) -> str:
    """The test values of the successful seeds, in seed order: ``1.013 / 1.016 / 1.016``."""
    values = list(r.test_values) if _is_list(r.test_values) else []
    return " / ".join(_fmt(float(v)) for v in values) or "—"


def display_rows(board: pd.DataFrame | list[BoardRow]) -> tuple[list[str], list[list[str]]]:
    """Compact human-readable columns for table and markdown output, of a :func:`leaderboard` DataFrame or
    :func:`leaderboard_rows`. The rank of an entry statistically tied with the best is marked ``≈``;
    ``p vs best`` is the Holm-adjusted paired p-value."""
    headers = list(DISPLAY_COLUMNS)
    rows = []
    for r in (board.itertuples() if hasattr(board, "itertuples") else board):
        params = json.loads(r.method_params) if not _missing(r.method_params) and r.method_params else {}
        arrow = "↓" if r.direction == "min" else "↑"
        metric = f"{r.metric} {arrow}" + (f" [{r.unit}]" if r.unit else "")
        nonfinite = not_finite_text(r.test_values)
        if r.n_ok == 0:
            value = "—"
        elif nonfinite:
            value = nonfinite
        elif math.isnan(r.test_std):  # one seed has no spread: show the value alone instead of "± nan"
            value = _fmt(r.test_mean)
        else:
            value = f"{_fmt(r.test_mean)} ± {_fmt(r.test_std, 2)}"
        if r.n_ok == 0 or nonfinite:
            ci = "—"
        elif r.n_ok < MIN_SEEDS_FOR_CI:
            ci = f"n<{MIN_SEEDS_FOR_CI}"
        else:
            ci = "—" if math.isnan(r.ci95_low) else f"[{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}]"
        ranked = not _missing(r.rank)
        p = "best" if ranked and r.rank == 1 else ("—" if _missing(r.p_vs_best) else _fmt(float(r.p_vs_best), 2))
        rows.append([
            r.experiment, r.task, _rank_label(r), r.model, r.method, r.budget, metric, value, ci, p,
            f"{r.n_ok}/{r.n_seeds}", "final" if _missing(r.checkpoint) or not r.checkpoint else str(r.checkpoint),
            "-" if _missing(r.wall_time_s) else f"{r.wall_time_s:.1f}",
            "-" if _missing(r.peak_rss_mib) else f"{r.peak_rss_mib:.0f}",
            ", ".join(f"{k}={v}" for k, v in params.items()), _per_seed(r),
            "-" if _missing(r.steps) else f"{r.steps:.0f}",
            "-" if _missing(r.train_time_s) else f"{r.train_time_s:.1f}",
        ])
    return headers, rows


def to_markdown(board: pd.DataFrame | list[BoardRow], columns: list[str] | None = None) -> str:
    """A Markdown table of :func:`display_rows`, of ``columns`` only (by name, in that order) when given."""
    headers, rows = display_rows(board)
    columns = list(DEFAULT_COLUMNS) if columns is None else columns
    pick = [headers.index(c) for c in columns]
    headers, rows = columns, [[r[i] for i in pick] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
