"""The leaderboard's statistics are computed without importing SciPy (its import costs about a second of the
command's start); these tests hold them to SciPy's own results."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats

from suite.analysis import stats
from suite.analysis.stats import bootstrap_ci, iqm, paired_test

STATISTICS = {"mean": lambda x, axis=-1: np.mean(x, axis=axis),
              "median": lambda x, axis=-1: np.median(x, axis=axis),
              "iqm": lambda x, axis=-1: scipy.stats.trim_mean(x, 0.25, axis=axis)}


def _scipy_interval(x, statistic, method, seed, confidence=0.95):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap((x,), STATISTICS[statistic], confidence_level=confidence, method=method,
                                    n_resamples=9999, vectorized=True, rng=np.random.default_rng(seed))
    return float(np.squeeze(res.confidence_interval.low)), float(np.squeeze(res.confidence_interval.high))


def _samples(count, rng):
    for i in range(count):
        n = int(rng.integers(2, 12))
        kind = i % 4
        if kind == 0:
            yield rng.standard_normal(n)
        elif kind == 1:
            yield rng.exponential(size=n)
        elif kind == 2:
            yield np.round(rng.random(n), 1)  # ties
        else:
            yield 5 + 1e-3 * rng.random(n)  # a narrow spread far from 0


def test_normal_distribution_functions_match_scipy_special():
    rng = np.random.default_rng(1)
    xs = np.concatenate([3 * rng.standard_normal(5000), 20 * rng.standard_normal(500),
                         [0.0, -0.0, 1.0, -1.0, 8.0, -8.0, 40.0, -40.0, np.inf, -np.inf]])
    # the standard library (math.erfc, NormalDist.inv_cdf) agrees with SciPy's Cephes to a few ulp near the
    # centre and within 1e-12 relative in the far tails; the bootstrap intervals below come out bit for bit
    np.testing.assert_allclose([stats._ndtr(float(x)) for x in xs], scipy.special.ndtr(xs), rtol=1e-12, atol=1e-300)
    ps = np.concatenate([rng.random(5000), 10.0 ** -rng.uniform(0, 300, 500), 1 - 10.0 ** -rng.uniform(0, 16, 500),
                         np.arange(0, 19999) / 19998, [0.025000000000000022]])
    np.testing.assert_allclose([stats._ndtri(float(p)) for p in ps], scipy.special.ndtri(ps), rtol=1e-12, atol=0)
    assert np.isnan(stats._ndtri(1.5)) and np.isnan(stats._ndtri(float("nan"))) and np.isnan(stats._ndtr(float("nan")))


@pytest.mark.parametrize("method", ["BCa", "percentile", "basic"])
def test_bootstrap_intervals_match_scipy_bootstrap(method):
    """The same resamples from the same seed and the same arithmetic as ``scipy.stats.bootstrap``."""
    rng = np.random.default_rng(2)
    for i, x in enumerate(_samples(60, rng)):
        for statistic in (("mean", "median", "iqm") if i % 6 == 0 else ("mean",)):
            got = stats._bootstrap(x, stats._STATISTICS[statistic], 0.95, method.lower(), 9999, i)
            expected = _scipy_interval(x, statistic, method, i)
            assert got == pytest.approx(expected, rel=1e-12, abs=0, nan_ok=True), (statistic, method, x)


def test_bootstrap_ci_with_infinite_values_and_other_confidence_levels():
    for x in (np.array([1.0, 2.0, np.inf, 3.0]), np.array([1.0, -np.inf, np.inf, 3.0])):  # inf / nan resample means
        for method in ("BCa", "percentile"):
            assert stats._bootstrap(x, stats._STATISTICS["mean"], 0.95, method.lower(), 9999, 0) == pytest.approx(
                _scipy_interval(x, "mean", method, 0), nan_ok=True)
    assert bootstrap_ci([1.0, 2.0, np.inf, 3.0]) == (1.5, np.inf)
    y = np.array([0.3, 0.1, 0.25, 0.9, 0.4])
    for confidence in (0.5, 0.9, 0.99):
        assert stats._bootstrap(y, stats._STATISTICS["mean"], confidence, "bca", 9999, 0) == pytest.approx(
            _scipy_interval(y, "mean", "BCa", 0, confidence), rel=1e-12)


def test_iqm_matches_scipy_trim_mean():
    rng = np.random.default_rng(3)
    for n in range(1, 30):
        x = rng.standard_normal(n)
        assert iqm(x) == scipy.stats.trim_mean(x, 0.25)
    block = rng.standard_normal((50, 7))
    np.testing.assert_array_equal(stats._trim_mean(block, 0.25, axis=1), scipy.stats.trim_mean(block, 0.25, axis=1))


def test_paired_t_test_matches_scipy_ttest_rel():
    rng = np.random.default_rng(4)
    for _ in range(300):
        n = int(rng.integers(2, 40))
        a = rng.standard_normal(n)
        b = a + rng.standard_normal(n) * rng.uniform(0.01, 2) + rng.uniform(-3, 3)
        assert paired_test(a, b, test="ttest") == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue, rel=1e-13)
    assert paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], test="ttest") == 0.0  # constant differences: t = inf


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10, 29, 104, 199, 500])
def test_student_t_tail_matches_scipy_stdtr(df):
    for t in 10.0 ** np.linspace(-3, 2.5, 56):
        expected = 2 * scipy.special.stdtr(df, -t)
        if expected < 1e-30:
            continue
        assert stats._student_t_two_sided(float(t), float(df)) == pytest.approx(expected, rel=1e-12), t
