"""Statistics for a leaderboard that can go into a paper.

Pure functions over numpy arrays and pandas DataFrames; no I/O. They cover:

* uncertainty of one entry: :func:`bootstrap_ci`, :func:`iqm`;
* comparisons between entries on the same seeds: :func:`paired_test`, :func:`holm`, :func:`tie_groups`;
* aggregation over tasks: :func:`mean_ranks`, :func:`performance_profile`, :func:`stratified_bootstrap_iqm`;
* cost: :func:`time_to_target`, :func:`target_from_best`, :func:`pareto_front`, :func:`quality_at_fractions`.

Conventions: ``direction`` is ``"min"`` (lower is better: RMSE, perplexity) or ``"max"`` (higher is better:
accuracy). NaN marks a missing value (failed seed, missing method); each function says what it does with it.

Only numpy is imported with this module (the leaderboard command imports it and starts in a fraction of a
second): the bootstrap, the trimmed mean and the paired t-test are computed here with the algorithms of
``scipy.stats.bootstrap``, ``scipy.stats.trim_mean`` and ``scipy.stats.ttest_rel`` (the same resamples from the
same seed, the same arithmetic, and the same normal-distribution functions as ``scipy.special.ndtr``/``ndtri``,
ported from Cephes as SciPy ships them); ``tests/analysis/test_stats_scipy_parity.py`` holds them to SciPy.
SciPy is imported only for the Wilcoxon test, pandas only by the functions that take or return DataFrames.
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

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


def _trim_mean(a: np.ndarray, proportiontocut: float, axis: int = 0) -> np.ndarray:
    """``scipy.stats.trim_mean`` for a non-empty float array: ``int(p * n)`` values cut from each end, the rest
    averaged (the same partition and mean as SciPy, so the same bits)."""
    nobs = a.shape[axis]
    lowercut = int(proportiontocut * nobs)
    uppercut = nobs - lowercut
    if lowercut > uppercut:
        raise ValueError("Proportion too big.")
    atmp = np.partition(a, (lowercut, uppercut - 1), axis)
    sl = [slice(None)] * atmp.ndim
    sl[axis] = slice(lowercut, uppercut)
    return np.mean(atmp[tuple(sl)], axis=axis)


def _iqm_axis(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return _trim_mean(x, 0.25, axis=axis)


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
    if method.lower() not in ("percentile", "basic", "bca"):
        raise ValueError(f"method must be 'percentile', 'basic' or 'BCa', not {method!r}")
    lo, hi = _bootstrap(x, stat, confidence, method.lower(), n_resamples, seed)
    if not (np.isfinite(lo) and np.isfinite(hi)) and method.lower() == "bca":
        lo, hi = _bootstrap(x, stat, confidence, "percentile", n_resamples, seed)
    return (_clip(lo, bounds), _clip(hi, bounds))


def _bootstrap(x: np.ndarray, stat: Callable[..., np.ndarray], confidence: float, method: str, n_resamples: int,
               seed: int) -> tuple[float, float]:
    """The two-sided interval of ``scipy.stats.bootstrap((x,), stat, vectorized=True, method=method,
    confidence_level=confidence, n_resamples=n_resamples, rng=np.random.default_rng(seed))`` for a 1-D sample of
    at least 2 values: the same resample indices, statistic calls, BCa jackknife and quantiles, step by step.
    NaN bounds where SciPy's are NaN (it then warns ``DegenerateDataWarning``)."""
    with np.errstate(all="ignore"):
        theta_hat_b = stat(x[..., _resample_indices(seed, x.shape[-1], n_resamples)], axis=-1)
        alpha = (1 - confidence) / 2
        if method == "bca":
            p = np.stack(_bca_interval(x, stat, alpha, theta_hat_b), axis=-1)
        else:
            a = np.asarray(alpha, dtype=theta_hat_b.dtype)
            p = np.stack((a, 1 - a), axis=-1)
        ci = _quantile_linear(theta_hat_b, p)
        lo, hi = ci[..., 0], ci[..., 1]
        if method == "basic":
            theta_hat = stat(x, axis=-1)
            lo, hi = 2 * theta_hat - hi, 2 * theta_hat - lo
    return float(lo), float(hi)


@functools.lru_cache(maxsize=16)
def _resample_indices(seed: int, n: int, n_resamples: int) -> np.ndarray:
    """The bootstrap's resamples of ``n`` values: ``np.random.default_rng(seed).integers(0, n, (n_resamples, n))``
    as SciPy draws them. The same for every entry with ``n`` values (a leaderboard draws them once)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n), dtype="int64")
    idx.flags.writeable = False
    return idx


def _bca_interval(x: np.ndarray, stat: Callable[..., np.ndarray], alpha: float,
                  theta_hat_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.stats._resampling._bca_interval`` for one sample: the two quantile levels of the BCa interval."""
    theta_hat = np.expand_dims(stat(x, axis=-1), axis=-1)
    below = np.count_nonzero(theta_hat_b < theta_hat, axis=-1) + np.count_nonzero(theta_hat_b <= theta_hat, axis=-1)
    percentile = np.asarray(below.astype(theta_hat.dtype) / (2 * theta_hat_b.shape[-1]), dtype=theta_hat.dtype)
    z0_hat = _ndtri(float(percentile))
    n = x.shape[-1]
    keep = np.ones((n, n), dtype=bool)
    np.fill_diagonal(keep, False)
    jackknife = x[..., np.broadcast_to(np.arange(n), (n, n))[keep].reshape((n, n - 1))]
    theta_hat_i = stat(jackknife, axis=-1)
    n_j = float(theta_hat_i.shape[-1])
    u = (n_j - 1) * (np.mean(theta_hat_i, axis=-1, keepdims=True) - theta_hat_i)
    num = np.sum(u**3, axis=-1) / n_j**3
    den = np.sum(u**2, axis=-1) / n_j**2
    a_hat = 1 / 6 * (0 + num) / (0 + den) ** (3 / 2)
    z_alpha = _ndtri(alpha)
    z0 = np.float64(z0_hat)
    num1 = z0 + z_alpha
    num2 = z0 + -z_alpha
    return (np.float64(_ndtr(float(z0 + num1 / (1 - a_hat * num1)))),
            np.float64(_ndtr(float(z0 + num2 / (1 - a_hat * num2)))))


def _quantile_linear(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``scipy.stats.quantile(x, p, method="linear")`` of a 1-D ``x`` at the levels ``p`` (NaN outside [0, 1])."""
    y = np.sort(x, axis=-1)
    p = np.asarray(p, dtype=y.dtype)
    bad = (p > 1) | (p < 0) | np.isnan(p)
    p = np.where(bad, 0.5, p)
    n = np.asarray(y.shape[-1], dtype=y.dtype)
    jg = p * n + (1 - p)
    jp1 = jg // 1
    j = jp1 - 1
    g = jg % 1
    g = np.where(j < 0, 0, g)
    j = np.clip(j, 0.0, n - 1)
    jp1 = np.clip(jp1, 0.0, n - 1)
    res = (1 - g) * y[j.astype(np.int64)] + g * y[jp1.astype(np.int64)]
    return np.where(bad | np.isnan(y).any(), np.nan, res)  # SciPy's nan_policy="propagate"


_STANDARD_NORMAL = statistics.NormalDist()


def _ndtr(a: float) -> float:
    """The standard normal CDF (``scipy.special.ndtr``), from the standard library's ``math.erfc``."""
    return 0.5 * math.erfc(-a / math.sqrt(2.0))


def _ndtri(p: float) -> float:
    """The inverse of the standard normal CDF (``scipy.special.ndtri``): ``statistics.NormalDist().inv_cdf``
    (Wichura's AS 241, about 1e-16 relative), with SciPy's values at 0, 1 and outside [0, 1]."""
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if not 0.0 < p < 1.0:  # also NaN
        return math.nan
    return _STANDARD_NORMAL.inv_cdf(p)


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` of the non-NaN values ``x`` (as rliable).

    ``floor(0.25 n)`` values are cut from each end of the sorted sample and the rest averaged, e.g.
    ``iqm([1, ..., 8]) = mean(3, 4, 5, 6) = 4.5``. NaN when there is no non-NaN value.
    """
    x = _finite_1d(values)
    if len(x) == 0:
        return float("nan")
    return float(_trim_mean(x, 0.25))


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
    if test == "ttest":
        return _ttest_rel_pvalue(x, y)
    import scipy.stats  # only the Wilcoxon test needs SciPy (about a second to import)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = scipy.stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue
    return float(p)


def _ttest_rel_pvalue(x: np.ndarray, y: np.ndarray) -> float:
    """The two-sided p-value of ``scipy.stats.ttest_rel(x, y)`` (1-D, no NaN, at least 2 pairs): the same
    statistic, bit for bit, and ``2 * stdtr(n - 1, -|t|)`` from :func:`_student_t_two_sided`."""
    d = x - y
    n = d.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.mean(d, axis=0)
        dev = d - np.mean(d, axis=0, keepdims=True)
        nf = np.asarray(n, dtype=d.dtype)
        var = np.mean(dev**2, axis=0) * (nf / (nf - 1))
        t = np.divide(mean, np.sqrt(var / n))
    return _student_t_two_sided(float(t), float(n - 1))


def _student_t_two_sided(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom: the regularized incomplete beta
    ``I_x(df/2, 1/2)`` with ``x = df / (df + t^2)``. Agrees with SciPy's ``2 * stdtr(df, -|t|)`` (Boost) to
    about 1e-14 relative for the degrees of freedom of a seed count, small p-values included."""
    if math.isnan(t) or math.isnan(df):
        return math.nan
    if math.isinf(t):
        return 0.0
    if t == 0:
        return 1.0
    t2 = t * t
    return _betainc(df / 2, 0.5, df / (df + t2), t2 / (df + t2))


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` for ``b = 1/2`` or ``a = 1/2``, with ``y = 1 - x``
    given separately (accurately): Lentz's continued fraction (Numerical Recipes 6.4), on the side of the
    distribution's mean where it converges fast."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x < (a + 1) / (a + b + 2):
        return _beta_front(a, b, x, y) * _betacf(a, b, x) / a
    return 1.0 - _beta_front(b, a, y, x) * _betacf(b, a, y) / b


def _beta_front(a: float, b: float, x: float, y: float) -> float:
    """``x^a y^b / B(a, b)`` (one of ``a``, ``b`` is 1/2)."""
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    return math.exp(a * log_x + b * log_y) * _inv_beta_half(b if a == 0.5 else a)


def _inv_beta_half(a: float) -> float:
    """``1 / B(a, 1/2) = Gamma(a + 1/2) / (Gamma(a) Gamma(1/2))``; beyond the range of ``math.gamma`` by the
    recurrence ``r(a + 1) = r(a) (a + 1/2) / a`` of ``r(a) = Gamma(a + 1/2) / Gamma(a)``."""
    if a < 160:
        return math.gamma(a + 0.5) / (math.gamma(a) * math.sqrt(math.pi))
    k = int(a - 159)
    if k > 100_000:
        return math.exp(math.lgamma(a + 0.5) - math.lgamma(a) - 0.5 * math.log(math.pi))
    a0 = a - k
    r = math.gamma(a0 + 0.5) / math.gamma(a0)
    for j in range(k):
        r *= (a0 + j + 0.5) / (a0 + j)
    return r / math.sqrt(math.pi)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (modified Lentz), converged to the last bit."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) >= tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) >= tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) >= tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) >= tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) <= 2.3e-16:
            break
    return h


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
    import pandas as pd

    _check_direction(direction)
    out = entries.copy()
    values = [np.asarray(v, dtype=float).ravel() for v in out[value_col]]
    seeds = [list(s) for s in out[seed_col]]
    for i, (v, s) in enumerate(zip(values, seeds)):
        if len(v) != len(s):
            raise ValueError(f"row {out.index[i]!r}: {len(v)} values but {len(s)} seeds")
        if len(set(s)) != len(s):
            raise ValueError(f"row {out.index[i]!r}: a seed appears twice")
    is_best, raw, adjusted, tied = _ties_with_best(values, seeds, direction, alpha, test)
    out["p_vs_best"] = raw
    out["p_vs_best_holm"] = adjusted
    out["tied_with_best"] = pd.Series(pd.array([pd.NA if t is None else t for t in tied], dtype="boolean"),
                                      index=out.index, dtype="boolean")
    out["is_best"] = is_best
    return out


def _ties_with_best(values: list[np.ndarray], seeds: list[list], direction: str, alpha: float,
                    test: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bool | None]]:
    """:func:`tie_groups` on plain lists (checked inputs): ``(is_best, p_vs_best, p_vs_best_holm, tied)`` with
    ``tied[i]`` True, False or None (unknown)."""
    n = len(values)
    means = np.array([np.nanmean(v) if np.any(~np.isnan(v)) else np.nan for v in values])
    is_best = np.zeros(n, dtype=bool)
    raw = np.full(n, np.nan)
    tied: list[bool | None] = [None] * n
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
    return is_best, raw, adjusted, tied


# --------------------------------------------------------------------------------------------- across tasks


def mean_ranks(scores: pd.DataFrame, *, direction: str | dict[str, str] = "min") -> pd.Series:
    """Mean rank of each method over tasks, sorted ascending (best first).

    ``scores`` is a task × method table (index = tasks, columns = methods) of aggregate scores. On each task the
    methods are ranked 1 = best (lowest for ``"min"``, highest for ``"max"``; ``direction`` may be a dict
    task -> direction), tied scores share the average of their ranks, and NaN (method missing or failed on that
    task) ranks after every scored method (NaNs of one task share the average of the last ranks). The result
    is the mean of these ranks over all tasks, as a Series named ``"mean_rank"``.
    """
    import pandas as pd

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
    import pandas as pd

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
    point = float(_trim_mean(np.concatenate(groups), 0.25))
    rng = np.random.default_rng(seed)
    resampled = [g[rng.integers(0, len(g), size=(n_resamples, len(g)))] for g in groups]
    boots = _trim_mean(np.concatenate(resampled, axis=1), 0.25, axis=1)
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
    import pandas as pd

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
    import pandas as pd

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
