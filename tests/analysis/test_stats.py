"""Hand-computed cases for suite.analysis.stats (leaderboard statistics)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from suite.analysis.stats import (
    bootstrap_ci,
    holm,
    iqm,
    mean_ranks,
    paired_test,
    pareto_front,
    performance_profile,
    quality_at_fractions,
    stratified_bootstrap_iqm,
    target_from_best,
    tie_groups,
    time_to_target,
)

SAMPLE = np.array([1.2, 0.8, 1.5, 1.1, 0.9, 1.3, 1.0, 1.4])


# ------------------------------------------------------------------------------------------ bootstrap_ci


def _direct(x, stat, method, seed=0, n_resamples=9999, confidence=0.95):
    res = scipy.stats.bootstrap((np.asarray(x, dtype=float),), stat, confidence_level=confidence, method=method,
                                n_resamples=n_resamples, vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def test_bootstrap_ci_matches_scipy_and_contains_mean():
    low, high = bootstrap_ci(SAMPLE, seed=0)
    exp_low, exp_high = _direct(SAMPLE, np.mean, "BCa", seed=0)
    assert (low, high) == pytest.approx((exp_low, exp_high), abs=0, rel=1e-12)
    assert low < SAMPLE.mean() < high
    assert low < high


def test_bootstrap_ci_deterministic_given_seed():
    assert bootstrap_ci(SAMPLE, seed=3) == bootstrap_ci(SAMPLE, seed=3)
    assert bootstrap_ci(SAMPLE, seed=3) != bootstrap_ci(SAMPLE, seed=4)


def test_bootstrap_ci_other_statistics_match_scipy():
    assert bootstrap_ci(SAMPLE, statistic="median", method="percentile") == pytest.approx(
        _direct(SAMPLE, lambda x, axis=-1: np.median(x, axis=axis), "percentile"))
    assert bootstrap_ci(SAMPLE, statistic="iqm", method="percentile") == pytest.approx(
        _direct(SAMPLE, lambda x, axis=-1: scipy.stats.trim_mean(x, 0.25, axis=axis), "percentile"))


def test_bootstrap_ci_clips_to_bounds():
    x = np.array([0.01, 0.02, 0.01, 5.0])
    # The percentile and BCa intervals of a mean never leave the sample's range, so they cannot go negative on
    # positive data; the "basic" interval (2·mean - quantiles) does here.
    raw_low, raw_high = _direct(x, np.mean, "basic")
    assert raw_low < 0
    low, high = bootstrap_ci(x, method="basic", bounds=(0, None))
    assert low >= 0
    assert low == 0.0
    assert high == pytest.approx(raw_high)
    low2, high2 = bootstrap_ci(x, method="basic", bounds=(0, 1.0))
    assert (low2, high2) == (0.0, 1.0)


def test_bootstrap_ci_too_few_values_is_nan():
    assert all(math.isnan(v) for v in bootstrap_ci([1.0, 2.0]))
    assert all(math.isnan(v) for v in bootstrap_ci([1.0, float("nan"), 2.0]))  # NaN does not count
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert not any(math.isnan(v) for v in bootstrap_ci([1.0, 2.0], min_n=2))


def test_bootstrap_ci_degenerate_falls_back():
    assert bootstrap_ci([2.0, 2.0, 2.0, 2.0]) == (2.0, 2.0)
    # The jackknife medians of [1, 1, 1, 5] are all 1: BCa is undefined (scipy returns nan) -> percentile.
    x = [1.0, 1.0, 1.0, 5.0]
    got = bootstrap_ci(x, statistic="median")
    assert all(np.isfinite(got))
    assert got == pytest.approx(_direct(x, lambda v, axis=-1: np.median(v, axis=axis), "percentile"))


# ------------------------------------------------------------------------------------------ iqm


def test_iqm_by_hand():
    assert iqm(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # order does not matter
    assert iqm([1.0, 2.0, 3.0, 100.0]) == 2.5  # mean of 2, 3: the outlier is cut
    assert iqm([1.0, 2.0, float("nan"), 3.0, 100.0]) == 2.5
    assert math.isnan(iqm([]))


# ------------------------------------------------------------------------------------------ paired tests


def test_wilcoxon_all_positive_exact():
    a = np.array([1.5, 2.7, 3.1, 4.9, 5.2])
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # All 5 differences positive: W- = 0, the most extreme of 2**5 sign patterns; two-sided p = 2 / 32.
    assert paired_test(a, b) == pytest.approx(2 / 32)
    assert paired_test(b, a) == pytest.approx(2 / 32)
    a6 = np.append(a, 7.0)
    b6 = np.append(b, 6.0)
    assert paired_test(a6, b6) == pytest.approx(2 / 64)


def test_wilcoxon_mixed_signs_by_hand():
    # d = [1, -2, 3, 4]: ranks 1..4, W+ = 1 + 3 + 4 = 8, W- = 2; P(W- <= 2) = #{subsets of {1,2,3,4} with sum
    # <= 2} / 16 = |{}, {1}, {2}| / 16 = 3/16; two-sided p = 6/16.
    a = np.array([1.0, 0.0, 3.0, 4.0])
    b = np.zeros(4)
    b[1] = 2.0
    assert paired_test(a, b) == pytest.approx(6 / 16)


def test_ttest_matches_formula():
    a = np.array([1.0, 2.0, 3.5, 4.0, 6.0])
    b = np.array([0.5, 2.5, 2.0, 3.0, 4.0])
    # d = [0.5, -0.5, 1.5, 1.0, 2.0]: mean 0.9, sum of squared deviations 3.7, variance 3.7 / 4.
    t = 0.9 / math.sqrt((3.7 / 4) / 5)
    expected = 2 * scipy.stats.t.sf(abs(t), df=4)
    assert paired_test(a, b, test="ttest") == pytest.approx(expected, rel=1e-12)
    assert 0.05 < expected < 0.2


def test_paired_edge_cases():
    assert paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], test="ttest") == 1.0
    assert math.isnan(paired_test([1.0], [2.0]))
    assert math.isnan(paired_test([1.0, float("nan")], [2.0, 3.0]))  # one usable pair
    # The NaN pair is dropped: same as the 5 clean pairs.
    a = [1.5, 2.7, float("nan"), 3.1, 4.9, 5.2]
    b = [1.0, 2.0, 0.0, 3.0, 4.0, 5.0]
    assert paired_test(a, b) == pytest.approx(2 / 32)
    with pytest.raises(ValueError):
        paired_test([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        paired_test([1.0, 2.0], [1.0, 2.0], test="sign")


# ------------------------------------------------------------------------------------------ holm


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> running max 0.06
    got = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])


def test_holm_nan_and_cap():
    got = holm([0.01, float("nan"), 0.04, 0.5])  # m = 3
    assert math.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2, 3]], [0.03, 0.08, 0.5])
    np.testing.assert_allclose(holm([0.4, 0.6]), [0.8, 0.8])
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])
    assert len(holm([])) == 0


# ------------------------------------------------------------------------------------------ tie groups


BEST = [1.0, 1.1, 0.9, 1.2, 1.0, 1.05]
CLOSE = [1.02, 1.08, 0.93, 1.18, 1.01, 1.06]
WORSE = [2.0, 2.3, 1.8, 2.5, 2.1, 2.0]


def _entries():
    # The worse entry lists its seeds in another order and has one seed (9) the best does not have.
    return pd.DataFrame({
        "method": ["close", "best", "worse"],
        "values": [CLOSE, BEST, WORSE[::-1] + [50.0]],
        "seeds": [list(range(6)), list(range(6)), list(range(5, -1, -1)) + [9]],
    })


def test_tie_groups_ttest():
    out = tie_groups(_entries(), test="ttest")
    assert out["is_best"].tolist() == [False, True, False]
    assert out["tied_with_best"].tolist() == [True, True, False]
    assert math.isnan(out.loc[1, "p_vs_best"]) and math.isnan(out.loc[1, "p_vs_best_holm"])
    # Paired on seeds, not positions: the worse entry's p-value is that of the seed-aligned pairs.
    assert out.loc[2, "p_vs_best"] == pytest.approx(paired_test(WORSE, BEST, test="ttest"))
    assert out.loc[0, "p_vs_best"] == pytest.approx(paired_test(CLOSE, BEST, test="ttest"))
    np.testing.assert_allclose(out["p_vs_best_holm"].to_numpy()[[0, 2]], holm(out["p_vs_best"].to_numpy()[[0, 2]]))
    assert out.loc[2, "p_vs_best_holm"] < 1e-4
    assert out.loc[0, "p_vs_best_holm"] > 0.5
    assert list(out["method"]) == ["close", "best", "worse"]  # a copy with the input's columns
    assert "p_vs_best" not in _entries().columns


def test_tie_groups_wilcoxon_power_limit():
    out = tie_groups(_entries())
    # The worse entry loses on all 6 seeds: p = 2/64; Holm over 2 comparisons doubles it to 0.0625 >= 0.05,
    # so with 6 seeds and two rivals the Wilcoxon test cannot separate it from the best.
    assert out.loc[2, "p_vs_best"] == pytest.approx(2 / 64)
    assert out.loc[2, "p_vs_best_holm"] == pytest.approx(2 / 32)
    assert out["tied_with_best"].tolist() == [True, True, True]
    # Against the best alone (one comparison), it is separated.
    alone = tie_groups(_entries().iloc[1:])
    assert alone["tied_with_best"].tolist() == [True, False]


def test_tie_groups_max_direction_and_unknown():
    e = _entries()
    e["values"] = [[-v for v in vals] for vals in e["values"]]
    extra = pd.DataFrame({"method": ["lone"], "values": [[-5.0, -6.0]], "seeds": [[0, 7]]})
    e = pd.concat([e, extra], ignore_index=True)
    out = tie_groups(e, direction="max", test="ttest")
    assert out["is_best"].tolist() == [False, True, False, False]
    assert out["tied_with_best"].dtype == "boolean"
    assert out["tied_with_best"].iloc[:3].tolist() == [True, True, False]
    assert out["tied_with_best"].iloc[3] is pd.NA  # one common seed: not tested
    assert math.isnan(out.loc[3, "p_vs_best"])
    # The untested entry is not counted in the Holm correction: m = 2 as before.
    before = tie_groups(_entries(), test="ttest")
    assert out.loc[2, "p_vs_best_holm"] == pytest.approx(before.loc[2, "p_vs_best_holm"])


def test_tie_groups_rejects_bad_rows():
    bad = pd.DataFrame({"values": [[1.0, 2.0]], "seeds": [[0, 0]]})
    with pytest.raises(ValueError):
        tie_groups(bad)
    bad = pd.DataFrame({"values": [[1.0, 2.0]], "seeds": [[0]]})
    with pytest.raises(ValueError):
        tie_groups(bad)


# ------------------------------------------------------------------------------------------ ranks and profiles


DIRS = {"A": "min", "B": "min", "C": "max"}


def _scores():
    return pd.DataFrame(
        {"m1": [1.0, 3.0, 4.0], "m2": [2.0, 1.5, 2.0], "m3": [np.nan, 3.0, 4.5]},
        index=pd.Index(["A", "B", "C"], name="task"),
    )


def test_mean_ranks_by_hand():
    # A (min): m1 1, m2 2, m3 NaN -> 3.  B (min): m2 1, m1 and m3 tied -> 2.5 each.  C (max): m3 1, m1 2, m2 3.
    got = mean_ranks(_scores(), direction=DIRS)
    assert list(got.index) == ["m1", "m2", "m3"]
    np.testing.assert_allclose(got.to_numpy(), [5.5 / 3, 6 / 3, 6.5 / 3])
    # All "min": C becomes m2 1, m1 2, m3 3.
    got_min = mean_ranks(_scores())
    np.testing.assert_allclose(got_min[["m1", "m2", "m3"]].to_numpy(), [5.5 / 3, 4 / 3, 8.5 / 3])
    assert list(got_min.index) == ["m2", "m1", "m3"]


def test_mean_ranks_two_failures_share_last_ranks():
    s = pd.DataFrame({"a": [1.0], "b": [np.nan], "c": [np.nan]}, index=["T"])
    np.testing.assert_allclose(mean_ranks(s)[["a", "b", "c"]].to_numpy(), [1.0, 2.5, 2.5])
    with pytest.raises(ValueError):
        mean_ranks(s, direction={"other": "min"})


def test_performance_profile_by_hand():
    # ratios: A: m1 1, m2 2, m3 inf.  B: m1 2, m2 1, m3 2.  C (max, best 4.5): m1 1.125, m2 2.25, m3 1.
    taus = np.array([1.0, 1.5, 2.0, 2.25, 4.0])
    got = performance_profile(_scores(), direction=DIRS, taus=taus)
    assert got.index.name == "tau"
    np.testing.assert_allclose(got.index.to_numpy(), taus)
    np.testing.assert_allclose(got["m1"].to_numpy(), [1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(got["m2"].to_numpy(), [1 / 3, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(got["m3"].to_numpy(), [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])


def test_performance_profile_defaults_and_errors():
    got = performance_profile(_scores(), direction=DIRS)
    assert got.shape == (61, 3)
    assert got.index[0] == 1.0 and got.index[-1] == 4.0
    assert (got.diff().dropna() >= 0).all().all()  # a profile never decreases
    bad = _scores()
    bad.loc["B", "m2"] = 0.0
    with pytest.raises(ValueError, match="'B'"):
        performance_profile(bad, direction=DIRS)


# ------------------------------------------------------------------------------------------ stratified IQM


def test_stratified_bootstrap_iqm_point_and_interval():
    data = {"A": np.array([1.0, 2.0, 3.0, 4.0]), "B": np.array([10.0, 20.0, 30.0, 40.0])}
    point, low, high = stratified_bootstrap_iqm(data, seed=0)
    # pooled sorted [1, 2, 3, 4, 10, 20, 30, 40]: cut 2 each end -> mean(3, 4, 10, 20) = 9.25
    assert point == 9.25
    assert low <= point <= high and low < high
    assert stratified_bootstrap_iqm(data, seed=0) == (point, low, high)
    # With only 4 distinct values per task the replicates' quantiles can coincide across seeds; a continuous
    # sample shows that the seed does drive the resampling.
    rng = np.random.default_rng(0)
    cont = {"A": rng.normal(size=7), "B": rng.normal(size=9)}
    assert stratified_bootstrap_iqm(cont, seed=1) == stratified_bootstrap_iqm(cont, seed=1)
    assert stratified_bootstrap_iqm(cont, seed=1) != stratified_bootstrap_iqm(cont, seed=2)


def test_stratified_bootstrap_iqm_normalise():
    data = {"A": np.array([1.0, 2.0, 3.0, 4.0]), "B": np.array([10.0, 20.0, 30.0, 40.0])}
    point, low, high = stratified_bootstrap_iqm(data, normalise={"A": (0.0, 4.0), "B": (0.0, 40.0)})
    # both tasks become [0.25, 0.5, 0.75, 1]; pooled middle four: 0.5, 0.5, 0.75, 0.75
    assert point == pytest.approx(0.625)
    assert low <= point <= high
    with pytest.raises(ValueError):
        stratified_bootstrap_iqm(data, normalise={"A": (0.0, 4.0)})


def test_stratified_bootstrap_keeps_task_counts():
    # Resampling within each task keeps 4 zeros and 4 ones in every replicate, so the pooled IQM is always 0.5;
    # an unstratified resample of the 8 pooled values would vary.
    data = {"A": np.zeros(4), "B": np.ones(4)}
    assert stratified_bootstrap_iqm(data, n_resamples=500) == (0.5, 0.5, 0.5)


# ------------------------------------------------------------------------------------------ time to target


def _curve():
    # rows deliberately out of order
    return pd.DataFrame({"train_time_s": [20.0, 0.0, 30.0, 10.0], "value": [0.4, 1.0, 0.3, 0.6]})


def test_time_to_target_min():
    c = _curve()
    assert time_to_target(c, 0.5) == 20.0  # reached mid-way
    assert time_to_target(c, 0.4) == 20.0  # equal counts as reached
    assert time_to_target(c, 1.0) == 0.0  # reached at the first point
    assert time_to_target(c, 0.1) == math.inf  # never


def test_time_to_target_max_and_columns():
    c = pd.DataFrame({"step": [3, 1, 2, 4], "acc": [0.7, 0.1, 0.5, 0.9]})
    assert time_to_target(c, 0.6, direction="max", x="step", value="acc") == 3
    assert time_to_target(c, 0.95, direction="max", x="step", value="acc") == math.inf
    assert time_to_target(c, 0.6, direction="min", x="step", value="acc") == 1


def test_target_from_best():
    v = np.array([0.3, 0.1, 0.5, 0.2, 0.4, np.nan])
    assert target_from_best(v, 0.5) == pytest.approx(0.3)
    assert target_from_best(v, 0.0) == pytest.approx(0.1)
    assert target_from_best(v, 0.25) == pytest.approx(0.2)
    # "max": best is highest, quantile counted from the best end
    assert target_from_best(pd.Series(v), 0.0, direction="max") == pytest.approx(0.5)
    assert target_from_best(v, 0.25, direction="max") == pytest.approx(0.4)
    with pytest.raises(ValueError):
        target_from_best(v, 1.5)
    with pytest.raises(ValueError):
        target_from_best([np.nan], 0.5)


# ------------------------------------------------------------------------------------------ Pareto front


def test_pareto_front_min_quality():
    df = pd.DataFrame({
        "cost": [1.0, 2.0, 3.0, 4.0, 3.0],
        "rmse": [5.0, 3.0, 3.0, 1.0, 4.0],
    }, index=list("abcde"))
    # c: same quality as b at higher cost; e: worse and dearer than b
    got = pareto_front(df, "cost", "rmse")
    assert got.to_dict() == {"a": True, "b": True, "c": False, "d": True, "e": False}


def test_pareto_front_max_quality_nan_and_duplicates():
    df = pd.DataFrame({
        "cost": [1.0, 2.0, 3.0, 4.0, 3.0, np.nan, 0.5, 2.0],
        "acc": [0.5, 0.7, 0.7, 0.9, 0.6, 1.0, np.nan, 0.7],
    })
    got = pareto_front(df, "cost", "acc", direction="max")
    # rows 1 and 7 are identical: neither dominates the other; NaN rows are off and dominate nothing
    assert got.tolist() == [True, True, False, True, False, False, False, True]
    # with "min", row 0 is both the cheapest and the lowest: it dominates every other finite row
    got_min = pareto_front(df, "cost", "acc", direction="min")
    assert got_min.tolist() == [True, False, False, False, False, False, False, False]


# ------------------------------------------------------------------------------------------ quality at fractions


def _two_trials():
    a = pd.DataFrame({"trial_key": "a", "train_time_s": [0.0, 2.0, 4.0, 6.0, 8.0, 10.0],
                      "value": [9.0, 8.0, 7.0, 6.0, 5.0, 4.0]})
    b = pd.DataFrame({"trial_key": "b", "train_time_s": [6.0, 3.0], "value": [1.0, 2.0]})
    return pd.concat([b, a], ignore_index=True).sample(frac=1.0, random_state=0)


def test_quality_at_fractions_default_budget():
    got = quality_at_fractions(_two_trials())  # budget 10: thresholds 2.5, 5, 7.5, 10
    assert list(got.columns) == ["f0.25", "f0.5", "f0.75", "f1.0"]
    assert got.index.name == "trial_key"
    np.testing.assert_allclose(got.loc["a"].to_numpy(), [8.0, 7.0, 6.0, 4.0])
    np.testing.assert_allclose(got.loc["b"].to_numpy(), [np.nan, 2.0, 1.0, 1.0])


def test_quality_at_fractions_explicit_budget():
    got = quality_at_fractions(_two_trials(), fractions=(0.25, 0.5, 0.75, 1.0), budget=6.0)
    # thresholds 1.5, 3, 4.5, 6; the point at x == threshold counts
    np.testing.assert_allclose(got.loc["a"].to_numpy(), [9.0, 8.0, 7.0, 6.0])
    np.testing.assert_allclose(got.loc["b"].to_numpy(), [np.nan, 2.0, 2.0, 1.0])
