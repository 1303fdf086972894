import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from suite.metrics import (
    dsr_metrics,
    dstsp,
    hellinger_distance,
    normalized_power_spectrum,
    power_spectrum_hellinger,
    prediction_error,
    state_space_divergence,
    state_space_divergence_gmm,
)


def kl(p, q):
    p, q = np.asarray(p, float), np.asarray(q, float)
    return float(np.sum(np.where(p > 0, p * np.log(p / q), 0.0)))


# ----------------------------------------------------------------- D_stsp, binning


def test_dstsp_identical_is_zero():
    x = np.random.default_rng(0).normal(size=(5000, 3))
    assert abs(state_space_divergence(x, x)) < 1e-12
    # same proportions from a longer trajectory (without smoothing, which depends on the count)
    assert abs(state_space_divergence(x, np.concatenate([x, x[::-1]]), smoothing=0.0)) < 1e-12


def test_dstsp_1d_two_bins_by_hand():
    x_true = np.array([0.0, 0.0, 1.0])  # counts per bin: (2, 1)
    sigma = np.std(x_true, ddof=1)
    lo = 0.0 - 0.1 * sigma
    # lo lies in bin 0 and must be kept; 5.0 is outside the range and NaN is dropped
    x_gen = np.array([lo, 1.0, 1.0, 1.0, 5.0, np.nan])  # counts (1, 3)
    expected0 = kl([2 / 3, 1 / 3], [1 / 4, 3 / 4])
    assert state_space_divergence(x_true, x_gen, n_bins=2, smoothing=0.0) == pytest.approx(expected0)
    a = 1e-5
    p = [(2 + a) / (3 + 2 * a), (1 + a) / (3 + 2 * a)]
    q = [(1 + a) / (4 + 2 * a), (3 + a) / (4 + 2 * a)]
    assert state_space_divergence(x_true, x_gen, n_bins=2, smoothing=a) == pytest.approx(kl(p, q))


def test_dstsp_upper_edge_lands_in_last_bin():
    x_true = np.array([0.0, 0.0, 1.0])
    hi = 1.0 + 0.1 * np.std(x_true, ddof=1)
    x_gen = np.array([0.0, hi])  # counts (1, 1)
    expected = kl([2 / 3, 1 / 3], [1 / 2, 1 / 2])
    assert state_space_divergence(x_true, x_gen, n_bins=2, smoothing=0.0) == pytest.approx(expected)


def test_dstsp_more_than_uint16_points_in_one_bin():
    n = 70_000  # > 65535: a UInt16 histogram would wrap to 4464
    x_true = np.concatenate([np.zeros(n), np.ones(n)])
    x_gen = np.concatenate([np.zeros(n), np.ones(10_000)])
    expected = kl([0.5, 0.5], [7 / 8, 1 / 8])
    got = state_space_divergence(x_true, x_gen, n_bins=2, smoothing=0.0)
    assert got == pytest.approx(expected, rel=1e-12)
    wrapped = kl([0.5, 0.5], [4464 / 14464, 10000 / 14464])
    assert abs(got - wrapped) > 0.1


def test_dstsp_disjoint_supports_large():
    rng = np.random.default_rng(1)
    x_true = rng.uniform(0, 10, size=(20000, 1))
    near = rng.uniform(0, 10, size=(20000, 1))
    far = rng.uniform(0, 1, size=(20000, 1))  # misses 90 % of the true support
    assert state_space_divergence(x_true, near) < 0.01
    assert state_space_divergence(x_true, far) > 5.0


def test_dstsp_empty_generated_histogram_is_nan():
    x_true = np.random.default_rng(2).normal(size=(100, 2))
    assert math.isnan(state_space_divergence(x_true, x_true + 100.0))
    assert math.isnan(state_space_divergence(x_true, np.full((50, 2), np.nan)))


@pytest.mark.parametrize("n_dim,n_bins", [(1, 30), (2, 7), (3, 5), (5, 6)])
def test_dstsp_sparse_matches_dense_histogramdd(n_dim, n_bins):
    rng = np.random.default_rng(3)
    x_true = rng.normal(size=(3000, n_dim))
    x_gen = 1.3 * rng.normal(size=(2500, n_dim)) + 0.2
    sigma = x_true.std(0, ddof=1)
    lo, hi = x_true.min(0) - 0.1 * sigma, x_true.max(0) + 0.1 * sigma
    edges = [np.linspace(lo[d], hi[d], n_bins + 1) for d in range(n_dim)]
    h_t, _ = np.histogramdd(x_true, bins=edges)
    h_g, _ = np.histogramdd(x_gen, bins=edges)  # drops points outside, like ours
    a, m = 1e-5, n_bins**n_dim
    p = (h_t.ravel() + a) / (h_t.sum() + a * m)
    q = (h_g.ravel() + a) / (h_g.sum() + a * m)
    got = state_space_divergence(x_true, x_gen, n_bins=n_bins, smoothing=a)
    assert got == pytest.approx(kl(p, q), rel=1e-9)


def test_dstsp_five_dims_thirty_bins_is_sparse_and_fast():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20000, 5))
    assert abs(state_space_divergence(x, x)) < 1e-10
    assert state_space_divergence(x, x + 0.5) > state_space_divergence(x, x + 0.1) > 0


# ----------------------------------------------------------------- D_stsp, GMM


def test_gmm_identical_is_zero_and_grows_with_shift():
    x = np.random.default_rng(5).normal(size=(500, 6))
    assert state_space_divergence_gmm(x, x, rng=0) == 0.0
    # the same mixture from a trajectory of different length (1/T weights matter)
    assert abs(state_space_divergence_gmm(x, np.concatenate([x, x]), rng=0)) < 1e-10
    d = [state_space_divergence_gmm(x, x + s, rng=0) for s in (0.25, 0.5, 1.0, 2.0)]
    assert all(b > a for a, b in zip(d, d[1:]))
    assert d[0] > 0


@pytest.mark.parametrize("shift,sigma2,n", [(1.0, 1.0, 20000), (1.0, 0.25, 20000), (100.0, 1.0, 2000)])
def test_gmm_single_gaussian_matches_closed_form(shift, sigma2, n):
    # one component each: KL(N(a, s2 I) || N(b, s2 I)) = |a - b|^2 / (2 s2)
    a = np.zeros((1, 6))
    b = a.copy()
    b[0, 0] = shift
    expected = shift**2 / (2 * sigma2)
    got = state_space_divergence_gmm(a, b, sigma2=sigma2, n_samples=n, rng=1)
    assert np.isfinite(got)  # log-sum-exp: no underflow even for shift = 100
    assert got == pytest.approx(expected, rel=0.05)


def test_gmm_max_T_and_nan():
    x = np.random.default_rng(6).normal(size=(300, 6))
    y = np.concatenate([x[:100], x[100:] + 50.0])
    assert state_space_divergence_gmm(x, y, max_T=100, rng=0) == 0.0
    assert math.isnan(state_space_divergence_gmm(x, np.full_like(x, np.nan), rng=0))


def test_dstsp_dispatch_by_dimension():
    rng = np.random.default_rng(7)
    for n_dim in (1, 5):
        x, y = rng.normal(size=(400, n_dim)), rng.normal(size=(400, n_dim)) + 0.3
        assert dstsp(x, y) == state_space_divergence(x, y)
    x, y = rng.normal(size=(400, 6)), rng.normal(size=(400, 6)) + 0.3
    assert dstsp(x, y, rng=3) == state_space_divergence_gmm(x, y, rng=3)
    # and it is not the binning estimator
    assert dstsp(x, y, rng=3) != pytest.approx(state_space_divergence(x, y, n_bins=3))


# ----------------------------------------------------------------- D_H


def test_hellinger_helper_hand_computed():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    # sum sqrt(p q) = 0.5 -> H = sqrt(0.5)
    assert hellinger_distance(p, q) == pytest.approx(math.sqrt(0.5))
    # normalisation is part of the helper
    assert hellinger_distance(4 * p, [0.0, 3.0, 3.0]) == pytest.approx(math.sqrt(0.5))
    assert hellinger_distance(p, p) == 0.0
    assert hellinger_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    cols = hellinger_distance(np.stack([p, p], 1), np.stack([q, p], 1))
    np.testing.assert_allclose(cols, [math.sqrt(0.5), 0.0])
    # degenerate columns: one all-zero -> 1, both all-zero -> 0
    assert hellinger_distance([0.0, 0.0], [1.0, 1.0]) == 1.0
    assert hellinger_distance([0.0, 0.0], [0.0, 0.0]) == 0.0


def test_hellinger_forms_agree_on_random_distributions():
    rng = np.random.default_rng(8)
    p, q = rng.random((50, 4)), rng.random((50, 4))
    pn, qn = p / p.sum(0), q / q.sum(0)
    expected = np.sqrt(1 - np.sum(np.sqrt(pn * qn), 0))
    np.testing.assert_allclose(hellinger_distance(p, q), expected, rtol=1e-10)


def test_normalized_power_spectrum_matches_scipy_pipeline():
    rng = np.random.default_rng(9)
    x = np.cumsum(rng.normal(size=(600, 2)), axis=0)
    z = (x - x.mean(0)) / x.std(0)
    ps = np.abs(np.fft.rfft(z, axis=0)) ** 2
    ps = np.clip(gaussian_filter1d(ps, 20, axis=0, mode="reflect", truncate=4.0), 0, None)
    ps /= ps.sum(0)
    got = normalized_power_spectrum(x, 20)
    assert got.shape == (301, 2)
    np.testing.assert_allclose(got, ps, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.sum(0), 1.0)


def test_dh_identical_zero_and_frequency_sensitivity():
    t = np.arange(4000)
    rng = np.random.default_rng(10)
    base = np.sin(2 * np.pi * 0.01 * t)
    same_f = np.sin(2 * np.pi * 0.01 * t + 1.0) + 0.05 * rng.normal(size=t.size)
    other_f = np.sin(2 * np.pi * 0.05 * t)
    assert power_spectrum_hellinger(base, base) == 0.0
    d_same = power_spectrum_hellinger(base, same_f)
    d_other = power_spectrum_hellinger(base, other_f)
    assert d_same < 0.2 < 0.8 < d_other <= 1.0


def test_dh_averages_dimensions_and_handles_degenerate():
    t = np.arange(2000)
    a = np.sin(2 * np.pi * 0.01 * t)
    b = np.sin(2 * np.pi * 0.07 * t)
    x = np.stack([a, b], 1)
    y = np.stack([a, a], 1)
    assert power_spectrum_hellinger(x, y) == pytest.approx(power_spectrum_hellinger(b, a) / 2)
    assert power_spectrum_hellinger(x, np.stack([a, np.zeros_like(a)], 1)) == pytest.approx(0.5)
    bad = x.copy()
    bad[5, 0] = np.nan
    assert math.isnan(power_spectrum_hellinger(x, bad))
    m = dsr_metrics(x, y)
    assert set(m) == {"dstsp", "dh"}


# ----------------------------------------------------------------- PE(n)


def _linear_trajectory(A, x0, T):
    xs = [x0]
    for _ in range(T - 1):
        xs.append(A @ xs[-1])
    return torch.stack(xs)


A = torch.tensor([[0.9, -0.2], [0.2, 0.9]], dtype=torch.float64)


def test_pe_perfect_model_is_zero():
    x = _linear_trajectory(A, torch.tensor([1.0, 0.5], dtype=torch.float64), 100)
    assert prediction_error(lambda z: z @ A.T, x, n=20) == pytest.approx(0.0, abs=1e-24)
    # latent model with observation inversion: z = 2 x, decode z / 2
    pe = prediction_error(lambda z: z @ A.T, x, n=20, encode=lambda v: 2 * v, decode=lambda z: z / 2)
    assert pe == pytest.approx(0.0, abs=1e-24)


def test_pe_constant_offset_hand_computed():
    a = 0.5 * torch.eye(2, dtype=torch.float64)
    c = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x = _linear_trajectory(a, torch.tensor([3.0, -1.0], dtype=torch.float64), 30)
    # after 3 steps the error is (1 + 0.5 + 0.25) c for every start point
    expected = (1.75**2) * (1.0 + 4.0) / 2
    assert prediction_error(lambda z: z @ a.T + c, x, n=3) == pytest.approx(expected)


def test_pe_matches_loop_and_batching():
    torch.manual_seed(0)
    W = torch.randn(3, 3, dtype=torch.float64) * 0.5
    step = lambda z: torch.tanh(z @ W.T) + 0.1  # noqa: E731
    x = torch.randn(50, 3, dtype=torch.float64)
    n = 5
    errs = []
    for t in range(50 - n):
        z = x[t]
        for _ in range(n):
            z = step(z[None])[0]
        errs.append(((z - x[t + n]) ** 2).mean())
    expected = torch.stack(errs).mean().item()
    assert prediction_error(step, x, n=n) == pytest.approx(expected, rel=1e-12)
    assert prediction_error(step, x, n=n, batch=7) == pytest.approx(expected, rel=1e-12)
    # numpy input is converted to a tensor
    assert prediction_error(lambda z: z, np.ones((10, 2)), n=2) == 0.0
    with pytest.raises(ValueError):
        prediction_error(step, x, n=50)
