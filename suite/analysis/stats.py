"""Statistics for a leaderboard that can go into a paper.

Pure functions over numpy arrays and pandas DataFrames; no I/O. They cover:

* uncertainty of one entry: :func:`bootstrap_ci`, :func:`iqm`;
* comparisons between entries on the same seeds: :func:`paired_test`, :func:`holm`, :func:`tie_groups`;
* aggregation over tasks: :func:`mean_ranks`, :func:`performance_profile`, :func:`stratified_bootstrap_iqm`;
* cost: :func:`time_to_target`, :func:`target_from_best`, :func:`pareto_front`, :func:`quality_at_fractions`.

Conventions: ``direction`` is ``"min"`` (lower is better: RMSE, perplexity) or ``"max"`` (higher is better:
accuracy). NaN marks a missing value (failed seed, missing method); each function says what it does with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

__all__ = [
    "bootstrap_ci",
    "iqm",
    "paired_test",
    "holm",
    "tie_groups",
    "mean_ranks",
    "performance_profile",
    "stratified_bootstrap_iqm",
    "time_to_target",
    "target_from_best",
    "pareto_front",
    "quality_at_fractions",
]

_DIRECTIONS = ("min", "max")


# --------------------------------------------------------------------------------------------- helpers


def _check_direction(direction: str) -> str:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be 'min' or 'max', not {direction!r}")
    return direction


def _direction_for(direction: str | Mapping[str, str], task: object) -> str:
    if isinstance(direction, Mapping):
        if task not in direction:
            raise ValueError(f"no direction given for task {task!r}")
        return _check_direction(direction[task])
    return _check_direction(direction)


def _finite_1d(values: object) -> np.ndarray:
    """``values`` as a 1-D float array with NaN entries dropped (infinities are kept)."""
    arr = np.asarray(values, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def _iqm_axis(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return scipy.stats.trim_mean(x, 0.25, axis=axis)


_STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "mean": lambda x, axis=-1: np.mean(x, axis=axis),
    "median": lambda x, axis=-1: np.median(x, axis=axis),
    "iqm": _iqm_axis,
}


def _clip(value: float, bounds: tuple[float | None, float | None]) -> float:
    low, high = bounds
    if np.isnan(value):
        return value
    if low is not None:
        value = max(value, float(low))
    if high is not None:
        value = min(value, float(high))
    return float(value)


# --------------------------------------------------------------------------------------------- one entry


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: str = "mean",
    confidence: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int = 0,
    bounds: tuple[float | None, float | None] = (None, None),
    min_n: int = 3,
) -> tuple[float, float]:
    """Two-sided bootstrap confidence interval ``(low, high)`` of a statistic of a 1-D sample.

    ``statistic`` is ``"mean"``, ``"median"`` or ``"iqm"`` (``scipy.stats.trim_mean(x, 0.25)``). The interval
    is ``scipy.stats.bootstrap((x,), stat, confidence_level=confidence, method=method,
    n_resamples=n_resamples, rng=np.random.default_rng(seed))`` on ``x`` = ``values`` with NaN entries dropped,
    so it is deterministic given ``seed``.

    * Fewer than ``min_n`` non-NaN values: ``(nan, nan)``.
    * All values equal: ``(v, v)`` (what every bootstrap resample gives; BCa is undefined there).
    * BCa degenerate (scipy warns ``DegenerateDataWarning`` or returns a non-finite bound): the percentile
      interval with the same seed is returned instead.

    Finally each bound is clipped to ``bounds = (lower, upper)`` (``None`` = unbounded), e.g. ``(0, None)`` for
    RMSE or perplexity, so a bound never leaves the metric's range. (Percentile and BCa intervals of the mean
    already stay inside the sample's range; the ``"basic"`` method can leave it.)
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, not {statistic!r}")
    x = _finite_1d(values)
    if len(x) < max(min_n, 1):
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        v = float(x[0])
        return (_clip(v, bounds), _clip(v, bounds))
    stat = _STATISTICS[statistic]

    def run(m: str) -> tuple[float, float, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = scipy.stats.bootstrap(
                (x,),
                stat,
                confidence_level=confidence,
                method=m,
                n_resamples=n_resamples,
                vectorized=True,
                rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        degenerate = any(issubclass(w.category, scipy.stats.DegenerateDataWarning) for w in caught)
        return lo, hi, degenerate or not (np.isfinite(lo) and np.isfinite(hi))

    lo, hi, bad = run(method)
    if bad and method.lower() == "bca":
        lo, hi, _ = run("percentile")
    return (_clip(lo, bounds), _clip(hi, bounds))


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` of the non-NaN values ``x`` (as rliable).

    ``floor(0.25 n)`` values are cut from each end of the sorted sample and the rest averaged, e.g.
    ``iqm([1, ..., 8]) = mean(3, 4, 5, 6) = 4.5``. NaN when there is no non-NaN value.
    """
    x = _finite_1d(values)
    if len(x) == 0:
        return float("nan")
    return float(scipy.stats.trim_mean(x, 0.25))


# --------------------------------------------------------------------------------------------- comparisons


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, test: str = "wilcoxon") -> float:
    """Two-sided p-value for "``a[i]`` and ``b[i]`` come from the same distribution" over paired samples.

    The pairs are the positions ``i`` (the same seed in both); pairs with a NaN on either side are dropped.

    * ``test="wilcoxon"``: ``scipy.stats.wilcoxon(a, b, zero_method="wilcox")`` (zero differences are
      discarded; exact distribution for small samples without ties).
    * ``test="ttest"``: ``scipy.stats.ttest_rel(a, b)``, i.e. ``t = mean(d) / (sd(d) / sqrt(n))`` with
      ``d = a - b`` and ``n - 1`` degrees of freedom. Constant non-zero differences give ``t = ±inf``, p = 0.

    Returns ``nan`` with fewer than 2 pairs and ``1.0`` when every difference is zero.

    Power note: with n pairs the exact two-sided Wilcoxon p-value can never go below ``2 / 2**n``
    (0.25 for n = 3, 0.125 for n = 4, 0.0625 for n = 5, 0.03125 for n = 6): with 5 seeds or fewer it never
    rejects at alpha = 0.05, whatever the data. After a Holm correction over m comparisons the smallest
    adjusted p-value is at least ``m * 2 / 2**n``.
    """
    if test not in ("wilcoxon", "ttest"):
        raise ValueError(f"test must be 'wilcoxon' or 'ttest', not {test!r}")
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples need the same length, got {len(x)} and {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return float("nan")
    d = x - y
    if np.all(d == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "wilcoxon":
            p = scipy.stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue
        else:
            p = scipy.stats.ttest_rel(x, y, alternative="two-sided").pvalue
    return float(p)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the order of the input.

    With the m non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of ``p_(i)`` is
    ``min(1, max_{j <= i} (m - j + 1) p_(j))`` (step-down, monotone, capped at 1). Rejecting where the
    adjusted value is below alpha controls the family-wise error rate at alpha. NaN inputs stay NaN and are
    not counted in m.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    factors = m - np.arange(m)  # m, m-1, ..., 1
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * factors))
    out[order] = adjusted
    return out


def tie_groups(
    entries: pd.DataFrame,
    *,
    value_col: str = "values",
    seed_col: str = "seeds",
    direction: str = "min",
    alpha: float = 0.05,
    test: str = "wilcoxon",
) -> pd.DataFrame:
    """Which entries of ONE task are statistically tied with the best one.

    ``entries`` has one row per method entry; ``value_col`` holds the list of its per-seed values and
    ``seed_col`` the list of the matching seeds (no seed twice in a row). The best entry is the one with the
    lowest (``direction="min"``) or highest (``"max"``) mean of its non-NaN values; on equal means the first
    row wins. Every other entry is paired with the best on the seeds both have (intersection) and compared with
    :func:`paired_test`; the p-values are Holm-corrected (:func:`holm`) across those comparisons.

    Returns a copy of ``entries`` with the columns

    * ``is_best`` (bool);
    * ``p_vs_best``: the raw paired p-value (NaN for the best itself);
    * ``p_vs_best_holm``: the Holm-adjusted one (NaN for the best);
    * ``tied_with_best`` (pandas ``boolean``): ``p_vs_best_holm >= alpha``; True for the best; ``pd.NA``
      (unknown, not tested) when the entry shares fewer than 2 seeds with the best, and then it is not counted
      in the Holm correction either.

    See :func:`paired_test` on the power of a Wilcoxon test with few seeds: with Holm over m comparisons and n
    common seeds no entry can be separated from the best unless ``m * 2 / 2**n < alpha``.
    """
    _check_direction(direction)
    out = entries.copy()
    n = len(out)
    values = [np.asarray(v, dtype=float).ravel() for v in out[value_col]]
    seeds = [list(s) for s in out[seed_col]]
    for i, (v, s) in enumerate(zip(values, seeds)):
        if len(v) != len(s):
            raise ValueError(f"row {out.index[i]!r}: {len(v)} values but {len(s)} seeds")
        if len(set(s)) != len(s):
            raise ValueError(f"row {out.index[i]!r}: a seed appears twice")

    means = np.array([np.nanmean(v) if np.any(~np.isnan(v)) else np.nan for v in values])
    is_best = np.zeros(n, dtype=bool)
    raw = np.full(n, np.nan)
    tied = pd.array([pd.NA] * n, dtype="boolean")
    if n and np.any(~np.isnan(means)):
        best = int(np.nanargmin(means) if direction == "min" else np.nanargmax(means))
        is_best[best] = True
        best_map = dict(zip(seeds[best], values[best]))
        for i in range(n):
            if i == best:
                continue
            common = [s for s in seeds[i] if s in best_map]
            if len(common) < 2:
                continue
            mine = dict(zip(seeds[i], values[i]))
            raw[i] = paired_test([mine[s] for s in common], [best_map[s] for s in common], test=test)
        adjusted = holm(raw)
        for i in range(n):
            if not np.isnan(adjusted[i]):
                tied[i] = bool(adjusted[i] >= alpha)
        tied[best] = True
    else:
        adjusted = np.full(n, np.nan)
    out["p_vs_best"] = raw
    out["p_vs_best_holm"] = adjusted
    out["tied_with_best"] = pd.Series(tied, index=out.index, dtype="boolean")
    out["is_best"] = is_best
    return out


# --------------------------------------------------------------------------------------------- across tasks


def mean_ranks(scores: pd.DataFrame, *, direction: str | dict[str, str] = "min") -> pd.Series:
    """Mean rank of each method over tasks, sorted ascending (best first).

    ``scores`` is a task × method table (index = tasks, columns = methods) of aggregate scores. On each task the
    methods are ranked 1 = best (lowest for ``"min"``, highest for ``"max"``; ``direction`` may be a dict
    task -> direction), tied scores share the average of their ranks, and NaN (method missing or failed on that
    task) ranks after every scored method (NaNs of one task share the average of the last ranks). The result
    is the mean of these ranks over all tasks, as a Series named ``"mean_rank"``.
    """
    ranks = {}
    for task, row in scores.iterrows():
        d = _direction_for(direction, task)
        r = row.astype(float)
        ranks[task] = (r if d == "min" else -r).rank(method="average", na_option="bottom")
    table = pd.DataFrame(ranks).T.reindex(columns=scores.columns)
    return table.mean(axis=0).sort_values(kind="mergesort").rename("mean_rank")


def performance_profile(
    scores: pd.DataFrame,
    *,
    direction: str | dict[str, str] = "min",
    taus: np.ndarray | None = None,
) -> pd.DataFrame:
    """Dolan–Moré performance profiles (as AlgoPerf), one column per method, indexed by ``tau``.

    ``scores`` is a task × method table. On each task the performance ratio of a method is
    ``r = score / best`` for ``"min"`` tasks and ``r = best / score`` for ``"max"`` tasks, where ``best`` is the
    best finite score of that task, so ``r >= 1`` and ``r = 1`` for the best method. A non-finite score (NaN =
    missing/failed, ±inf) gives ``r = inf``. ``rho_method(tau)`` is the fraction of all tasks with ``r <= tau``.
    ``taus`` defaults to ``np.linspace(1, 4, 61)``.

    Ratios only mean something for positive scores: a finite score ``<= 0`` raises ``ValueError`` naming the
    task (shift or transform such a metric first).
    """
    taus = np.linspace(1.0, 4.0, 61) if taus is None else np.asarray(taus, dtype=float).ravel()
    ratios = np.full(scores.shape, np.inf)
    for k, (task, row) in enumerate(scores.iterrows()):
        d = _direction_for(direction, task)
        s = row.to_numpy(dtype=float)
        ok = np.isfinite(s)
        if np.any(s[ok] <= 0):
            raise ValueError(f"performance ratios need positive scores; task {task!r} has a score <= 0")
        if not np.any(ok):
            continue
        if d == "min":
            ratios[k, ok] = s[ok] / np.min(s[ok])
        else:
            ratios[k, ok] = np.max(s[ok]) / s[ok]
    n_tasks = max(len(scores), 1)
    rho = (ratios[None, :, :] <= taus[:, None, None]).sum(axis=1) / n_tasks
    return pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=scores.columns)


def stratified_bootstrap_iqm(
    values_by_task: dict[str, np.ndarray],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    normalise: dict[str, tuple[float, float]] | None = None,
) -> tuple[float, float, float]:
    """rliable-style aggregate: ``(iqm, low, high)`` of all (task, seed) scores pooled.

    ``values_by_task`` maps a task to the 1-D array of one method's per-seed scores on it (NaN dropped). The
    point estimate is :func:`iqm` of the concatenation of all tasks' scores. The interval is a percentile
    stratified bootstrap: each of ``n_resamples`` replicates resamples, *within every task*, that task's seeds
    with replacement (keeping each task's count), recomputes the pooled IQM, and ``(low, high)`` are the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the replicates (``numpy.quantile``,
    linear). Deterministic given ``seed``.

    Scores of different tasks are on different scales and pooling them is only meaningful after
    normalisation: ``normalise`` maps each task to ``(low, high)`` and the scores become
    ``(x - low) / (high - low)`` (e.g. low = a random/trivial baseline, high = the best known score; for a
    "min" metric pass ``low`` = the bad end so that higher normalised scores are better). Without it the raw
    scores are pooled. Returns ``(nan, nan, nan)`` when there is no score at all.
    """
    groups = []
    for task, vals in values_by_task.items():
        x = _finite_1d(vals)
        if normalise is not None:
            if task not in normalise:
                raise ValueError(f"no normalisation range given for task {task!r}")
            lo, hi = normalise[task]
            if hi == lo:
                raise ValueError(f"normalisation range of task {task!r} is empty: low == high == {lo}")
            x = (x - lo) / (hi - lo)
        if len(x):
            groups.append(x)
    if not groups:
        return (float("nan"), float("nan"), float("nan"))
    point = float(scipy.stats.trim_mean(np.concatenate(groups), 0.25))
    rng = np.random.default_rng(seed)
    resampled = [g[rng.integers(0, len(g), size=(n_resamples, len(g)))] for g in groups]
    boots = scipy.stats.trim_mean(np.concatenate(resampled, axis=1), 0.25, axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boots, [alpha, 1.0 - alpha])
    return (point, float(low), float(high))


# --------------------------------------------------------------------------------------------- cost


def time_to_target(
    curve: pd.DataFrame,
    target: float,
    *,
    direction: str = "min",
    x: str = "train_time_s",
    value: str = "value",
) -> float:
    """First ``x`` at which one trial's curve reaches ``target``; ``inf`` if it never does.

    The rows are sorted by ``x`` (stable); the curve reaches the target at the first row with
    ``value <= target`` (``direction="min"``) or ``value >= target`` (``"max"``). NaN values never reach it.
    ``inf`` means the trial failed to reach the target within its budget (count it as a failure, not as a
    large time).
    """
    d = _check_direction(direction)
    c = curve.sort_values(x, kind="mergesort")
    v = c[value].to_numpy(dtype=float)
    hit = v <= target if d == "min" else v >= target
    if not np.any(hit):
        return float("inf")
    return float(c[x].to_numpy(dtype=float)[np.argmax(hit)])


def target_from_best(
    curves_final: pd.Series | np.ndarray,
    quantile: float,
    direction: str = "min",
) -> float:
    """A target value for :func:`time_to_target`, taken from reference runs' final values.

    ``curves_final`` holds the final values of the reference runs (e.g. the best configuration of every method,
    or the best seeds; AlgoPerf sets its targets from reference runs). Non-finite values are dropped. The values
    are ordered from best to worst (ascending for ``"min"``, descending for ``"max"``) and the target is the
    ``quantile`` of that ordering, with linear interpolation: ``np.quantile(v, quantile)`` for ``"min"`` and
    ``np.quantile(v, 1 - quantile)`` for ``"max"``. So ``quantile=0`` is the best final value (only the best
    run reaches it), ``0.5`` the median (about half of the reference runs reach it), ``1`` the worst (all
    reach it). Raises ``ValueError`` for a quantile outside [0, 1] or when no finite value is given.
    """
    d = _check_direction(direction)
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], not {quantile}")
    v = np.asarray(curves_final, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise ValueError("no finite final value to set a target from")
    return float(np.quantile(v, quantile if d == "min" else 1.0 - quantile))


def pareto_front(df: pd.DataFrame, cost: str, quality: str, *, direction: str = "min") -> pd.Series:
    """Boolean Series (index of ``df``, name ``"on_front"``): True for the rows on the cost–quality Pareto front.

    Lower ``cost`` is always better; ``quality`` is better when lower (``direction="min"``) or higher
    (``"max"``). A row is dominated when another row has cost ``<=`` and quality better-or-equal, with at least
    one of the two strictly better; the front is the rows no row dominates (identical points are all on it).
    Rows with NaN cost or quality are never on the front and never dominate.
    """
    d = _check_direction(direction)
    c = df[cost].to_numpy(dtype=float)
    q = df[quality].to_numpy(dtype=float)
    q = -q if d == "min" else q  # higher is better from here on
    ok = ~(np.isnan(c) | np.isnan(q))
    cj, qj = c[ok][None, :], q[ok][None, :]
    ci, qi = c[:, None], q[:, None]
    dominated = ((cj <= ci) & (qj >= qi) & ((cj < ci) | (qj > qi))).any(axis=1)
    return pd.Series(ok & ~dominated, index=df.index, name="on_front")


def quality_at_fractions(
    curves: pd.DataFrame,
    fractions: Iterable[float] = (0.25, 0.5, 0.75, 1.0),
    *,
    x: str = "train_time_s",
    value: str = "value",
    group: str = "trial_key",
    budget: float | None = None,
) -> pd.DataFrame:
    """Each trial's value at fractions of a common budget.

    For each group (trial) and fraction f: the ``value`` of the last row (after a stable sort by ``x``) with
    ``x <= f * budget``; NaN when the trial has no point that early. ``budget`` defaults to the largest ``x``
    over all groups. Rows with NaN ``x`` are ignored. Returns one row per group (index named ``group``) and one
    column per fraction, named ``f"f{float(f)}"`` (``"f0.25"``, ``"f0.5"``, ``"f0.75"``, ``"f1.0"``).
    """
    fractions = [float(f) for f in fractions]
    data = curves[~curves[x].isna()]
    if budget is None:
        budget = float(data[x].max()) if len(data) else float("nan")
    thresholds = np.array(fractions) * budget
    columns = [f"f{f}" for f in fractions]
    rows = {}
    for key, g in data.groupby(group, sort=True):
        g = g.sort_values(x, kind="mergesort")
        xs = g[x].to_numpy(dtype=float)
        vs = g[value].to_numpy(dtype=float)
        pos = np.searchsorted(xs, thresholds, side="right") - 1
        rows[key] = np.where(pos >= 0, vs[np.clip(pos, 0, None)], np.nan)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    out.index.name = group
    return out
