"""Dynamical-systems-reconstruction metrics (the conventions of Hess et al., ICML 2023,
GTF-shPLRNN ``src/measures``, and DynaMix-python ``metrics.py``).

* ``state_space_divergence``      D_stsp, binning KL(p_true || p_gen), for N < 6
* ``state_space_divergence_gmm``  D_stsp, Gaussian-mixture Monte-Carlo KL, for N >= 6
* ``dstsp``                       dispatch on the dimension, as GTF's ``decide_on_measure``
* ``power_spectrum_hellinger``    D_H, Hellinger distance of smoothed power spectra
* ``prediction_error``            PE(n), n-step-ahead prediction MSE of a model

Trajectories are ``[T, N]`` (a ``[T]`` input is treated as ``N = 1``); numpy
arrays and torch tensors are both accepted.

Pinned choices (where the Julia and Python references disagree or are buggy):

* bin range per dimension = [min − 0.1σ, max + 0.1σ] of the ground truth
  (σ with ddof = 1, as Julia's ``std``); generated points outside it (or
  non-finite) are dropped; bin index = floor(m · (x − lo) / (hi − lo)) clipped to
  [0, m − 1], so points in bin 0 are kept (the Python reference drops them) and
  a point exactly at ``hi`` lands in the last bin;
* counts are int64 (the Julia reference uses UInt16 and overflows above 65535);
* histograms are sparse (``np.unique`` over flattened bin indices); the
  contribution of the bins that are empty in both histograms is added in closed
  form, so 30^5 bins never need a dense array.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.special import logsumexp, xlogy

from ._array import as_time_by_channel

__all__ = [
    "state_space_divergence",
    "state_space_divergence_gmm",
    "dstsp",
    "normalized_power_spectrum",
    "hellinger_distance",
    "power_spectrum_hellinger",
    "prediction_error",
    "dsr_metrics",
    "GMM_DIM_THRESHOLD",
]

#: dimension from which ``dstsp`` switches from binning to the GMM estimator
GMM_DIM_THRESHOLD = 6

RngLike = Union[None, int, np.random.Generator]


# --------------------------------------------------------------------------- D_stsp (binning)


def _bin_range(x_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension range [min − 0.1σ, max + 0.1σ] of the ground truth (σ: ddof = 1)."""
    sigma = np.std(x_true, axis=0, ddof=1) if x_true.shape[0] > 1 else np.zeros(x_true.shape[1])
    lo = np.min(x_true, axis=0) - 0.1 * sigma
    hi = np.max(x_true, axis=0) + 0.1 * sigma
    return lo, hi


def _flat_bin_index(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_bins: int) -> np.ndarray:
    """Flattened (C-order) bin index of every point of ``x`` inside [lo, hi]; others are dropped."""
    inside = np.all((x >= lo) & (x <= hi), axis=1)  # NaN/inf compare False -> dropped
    x = x[inside]
    width = hi - lo
    width = np.where(width > 0, width, 1.0)  # constant dimension: everything in bin 0
    idx = np.floor((x - lo) / width * n_bins).astype(np.int64)
    np.clip(idx, 0, n_bins - 1, out=idx)
    flat = np.zeros(idx.shape[0], dtype=np.int64)
    for d in range(idx.shape[1]):  # Horner scheme = np.ravel_multi_index in C order
        flat = flat * n_bins + idx[:, d]
    return flat


def _sparse_smoothed_kl(
    flat_true: np.ndarray, flat_gen: np.ndarray, n_total_bins: int, alpha: float
) -> float:
    """KL(p || q) of Laplace-smoothed histograms given as lists of flat bin indices.

    p_b = (h_b + α) / (Σh + α·M) for all M bins. Bins empty in both histograms all
    share the same (p, q) pair, so their total contribution is computed once.
    """
    u_t, c_t = np.unique(flat_true, return_counts=True)
    u_g, c_g = np.unique(flat_gen, return_counts=True)
    occupied = np.union1d(u_t, u_g)
    h_t = np.zeros(occupied.shape[0], dtype=np.int64)
    h_g = np.zeros(occupied.shape[0], dtype=np.int64)
    h_t[np.searchsorted(occupied, u_t)] = c_t
    h_g[np.searchsorted(occupied, u_g)] = c_g

    m = float(n_total_bins)
    z_t = float(flat_true.shape[0]) + alpha * m
    z_g = float(flat_gen.shape[0]) + alpha * m
    p = (h_t + alpha) / z_t
    q = (h_g + alpha) / z_g
    kl = float(np.sum(xlogy(p, p) - xlogy(p, q)))

    n_empty = n_total_bins - occupied.shape[0]
    if n_empty > 0 and alpha > 0:
        p0, q0 = alpha / z_t, alpha / z_g
        kl += n_empty * p0 * (math.log(p0) - math.log(q0))
    return kl


def state_space_divergence(
    x_true: Any, x_gen: Any, n_bins: int = 30, smoothing: float = 1e-5
) -> float:
    """D_stsp by binning: KL(p_true || p_gen) = Σ_b p_b log(p_b / q_b) over m^N bins.

    Histograms use ``n_bins`` bins per dimension over the ground-truth range
    [min − 0.1σ, max + 0.1σ]; both are Laplace-smoothed,
    p = (h + α) / (Σh + α·m^N) with α = ``smoothing``. Generated points outside
    the range (and non-finite ones) are dropped. Returns NaN if no generated
    point falls inside the range. Intended for N < 6.
    """
    xt = as_time_by_channel(x_true, "x_true")
    xg = as_time_by_channel(x_gen, "x_gen")
    if xt.shape[1] != xg.shape[1]:
        raise ValueError(f"dimension mismatch: {xt.shape[1]} vs {xg.shape[1]}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if xt.shape[0] == 0 or not np.all(np.isfinite(xt)):
        raise ValueError("x_true must be non-empty and finite")
    n_dim = xt.shape[1]
    n_total = n_bins**n_dim  # python int, exact
    if n_total >= 2**62:
        raise ValueError(f"{n_bins}^{n_dim} bins overflow int64; use the GMM version")

    lo, hi = _bin_range(xt)
    flat_true = _flat_bin_index(xt, lo, hi, n_bins)
    flat_gen = _flat_bin_index(xg, lo, hi, n_bins)
    if flat_gen.shape[0] == 0:
        return float("nan")
    return _sparse_smoothed_kl(flat_true, flat_gen, n_total, float(smoothing))


# --------------------------------------------------------------------------- D_stsp (GMM)


def _gmm_logpdf(samples: np.ndarray, means: np.ndarray, sigma2: float, chunk: int = 256) -> np.ndarray:
    """log of (1/T) Σ_t N(s; μ_t, σ² I) for every sample s, via log-sum-exp."""
    n_t, n_dim = means.shape
    const = -math.log(n_t) - 0.5 * n_dim * math.log(2.0 * math.pi * sigma2)
    mu_sq = np.sum(means**2, axis=1)
    out = np.empty(samples.shape[0])
    for start in range(0, samples.shape[0], chunk):
        s = samples[start : start + chunk]
        sq = np.sum(s**2, axis=1)[:, None] + mu_sq[None, :] - 2.0 * s @ means.T
        np.maximum(sq, 0.0, out=sq)
        out[start : start + chunk] = logsumexp(-0.5 * sq / sigma2, axis=1) + const
    return out


def state_space_divergence_gmm(
    x_true: Any,
    x_gen: Any,
    sigma2: float = 1.0,
    n_samples: int = 1000,
    max_T: int = 10000,
    rng: RngLike = None,
) -> float:
    """D_stsp by Gaussian mixtures (Hershey & Olsen Monte-Carlo KL), for N >= 6.

    p(s) = (1/T) Σ_t N(s; x_t, σ² I) and q likewise on the generated trajectory
    (first ``max_T`` steps of each). With s_i ~ p (i = 1..n_samples),
    D ≈ (1/n) Σ_i [log p(s_i) − log q(s_i)], log-densities via log-sum-exp so
    nothing underflows. Non-finite terms are filtered out (as the reference
    filters non-positive densities); non-finite generated points are dropped.
    Returns NaN if nothing is left. ``rng``: seed or Generator; ``None`` means a
    fixed seed 0, so results are reproducible.
    """
    if sigma2 <= 0:
        raise ValueError(f"sigma2 must be > 0, got {sigma2}")
    xt = as_time_by_channel(x_true, "x_true")[:max_T]
    xg = as_time_by_channel(x_gen, "x_gen")[:max_T]
    if xt.shape[1] != xg.shape[1]:
        raise ValueError(f"dimension mismatch: {xt.shape[1]} vs {xg.shape[1]}")
    if xt.shape[0] == 0 or not np.all(np.isfinite(xt)):
        raise ValueError("x_true must be non-empty and finite")
    xg = xg[np.all(np.isfinite(xg), axis=1)]
    if xg.shape[0] == 0:
        return float("nan")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)

    center = xt.mean(axis=0)  # centring improves the |s|^2 + |mu|^2 - 2 s.mu expansion
    xt_c, xg_c = xt - center, xg - center
    picks = gen.integers(0, xt_c.shape[0], size=n_samples)
    samples = xt_c[picks] + math.sqrt(sigma2) * gen.standard_normal((n_samples, xt_c.shape[1]))

    d = _gmm_logpdf(samples, xt_c, sigma2) - _gmm_logpdf(samples, xg_c, sigma2)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    return float(np.mean(d))


def dstsp(
    x_true: Any,
    x_gen: Any,
    n_bins: int = 30,
    smoothing: float = 1e-5,
    sigma2: float = 1.0,
    n_samples: int = 1000,
    max_T: int = 10000,
    rng: RngLike = None,
) -> float:
    """D_stsp with the estimator chosen by dimension: binning for N < 6, GMM for N >= 6."""
    n_dim = as_time_by_channel(x_true, "x_true").shape[1]
    if n_dim < GMM_DIM_THRESHOLD:
        return state_space_divergence(x_true, x_gen, n_bins=n_bins, smoothing=smoothing)
    return state_space_divergence_gmm(
        x_true, x_gen, sigma2=sigma2, n_samples=n_samples, max_T=max_T, rng=rng
    )


# --------------------------------------------------------------------------- D_H


def normalized_power_spectrum(x: Any, smoothing_sigma: float = 20.0) -> np.ndarray:
    """Smoothed, normalised power spectrum per dimension, shape [T//2 + 1, N].

    Per dimension: z-score, P = |rfft(z)|², Gaussian smoothing with
    ``scipy.ndimage.gaussian_filter1d`` (σ = ``smoothing_sigma``, reflect padding,
    truncate 4σ; skipped if σ <= 0), negatives clipped to 0, P / Σ P.
    A dimension with zero total power (constant signal) gives a column of zeros.
    """
    xx = as_time_by_channel(x, "x")
    mean = xx.mean(axis=0)
    std = xx.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (xx - mean) / std
    power = np.abs(np.fft.rfft(z, axis=0)) ** 2
    if smoothing_sigma > 0:
        power = gaussian_filter1d(power, smoothing_sigma, axis=0, mode="reflect", truncate=4.0)
    power = np.clip(power, 0.0, None)
    total = power.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, power / np.where(total > 0, total, 1.0), 0.0)


def hellinger_distance(p: Any, q: Any) -> Union[float, np.ndarray]:
    """Hellinger distance H(p, q) = sqrt(1 − Σ_f sqrt(p_f q_f)) = ‖√p − √q‖₂ / √2, along axis 0.

    ``p`` and ``q`` (shape [F] or [F, N], non-negative) are first normalised to
    sum 1 along axis 0; the (equal, cancellation-free) norm form is evaluated and
    clipped at 0 before the square root. Conventions for degenerate
    columns: both all-zero -> 0, exactly one all-zero -> 1; NaN propagates.
    Returns a float for 1-D input, else an array of N distances.
    """
    pp = np.asarray(p, dtype=np.float64)
    qq = np.asarray(q, dtype=np.float64)
    if pp.shape != qq.shape:
        raise ValueError(f"shape mismatch: {pp.shape} vs {qq.shape}")
    if np.any(pp < 0) or np.any(qq < 0):
        raise ValueError("distributions must be non-negative")
    sp, sq = pp.sum(axis=0), qq.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # ‖√p − √q‖² / 2 = 1 − Σ√(pq) for normalised p, q; the left form has no
        # cancellation (identical inputs give exactly 0 instead of ~1e-8).
        half_sq = 0.5 * np.sum((np.sqrt(pp / sp) - np.sqrt(qq / sq)) ** 2, axis=0)
    h = np.sqrt(np.clip(half_sq, 0.0, 1.0))
    h = np.where((sp == 0) & (sq == 0), 0.0, h)
    h = np.where((sp == 0) ^ (sq == 0), 1.0, h)
    if h.ndim == 0:
        return float(h)
    return h


def power_spectrum_hellinger(x_true: Any, x_gen: Any, smoothing_sigma: float = 20.0) -> float:
    """D_H: mean over dimensions of H(P_true, P_gen), P = ``normalized_power_spectrum``.

    Both trajectories must have the same shape [T, N]. Returns NaN if either
    contains non-finite values.
    """
    xt = as_time_by_channel(x_true, "x_true")
    xg = as_time_by_channel(x_gen, "x_gen")
    if xt.shape != xg.shape:
        raise ValueError(f"shape mismatch: {xt.shape} vs {xg.shape}")
    if not (np.all(np.isfinite(xt)) and np.all(np.isfinite(xg))):
        return float("nan")
    p = normalized_power_spectrum(xt, smoothing_sigma)
    q = normalized_power_spectrum(xg, smoothing_sigma)
    return float(np.mean(hellinger_distance(p, q)))


# --------------------------------------------------------------------------- PE(n)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def prediction_error(
    step: Callable[[torch.Tensor], torch.Tensor],
    x: Any,
    n: int = 20,
    encode: Callable[[torch.Tensor], torch.Tensor] = _identity,
    decode: Callable[[torch.Tensor], torch.Tensor] = _identity,
    batch: Optional[int] = None,
) -> float:
    """PE(n): n-step-ahead prediction MSE.

    For every start t = 0 .. T−n−1: z = encode(x_t) (observation inversion),
    z ← step(z) n times, PE = mean over t and dimensions of (decode(z) − x_{t+n})².
    All start points are propagated together as one batch [T−n, N]
    (or in chunks of ``batch`` start points to bound memory). Runs under
    ``torch.no_grad``. A numpy ``x`` is converted to torch's default dtype.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    xt = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.get_default_dtype())
    if xt.ndim == 1:
        xt = xt[:, None]
    if xt.ndim != 2:
        raise ValueError(f"x must be [T, N] or [T], got {tuple(xt.shape)}")
    n_starts = xt.shape[0] - n
    if n_starts < 1:
        raise ValueError(f"trajectory of length {xt.shape[0]} too short for n = {n}")
    chunk = n_starts if batch is None else int(batch)
    if chunk < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")

    sq_sum = 0.0
    count = 0
    with torch.no_grad():
        for s in range(0, n_starts, chunk):
            e = min(s + chunk, n_starts)
            z = encode(xt[s:e])
            for _ in range(n):
                z = step(z)
            pred = torch.as_tensor(decode(z))
            target = xt[s + n : e + n]
            diff = pred.to(torch.float64) - target.to(device=pred.device, dtype=torch.float64)
            if diff.shape != target.shape:
                raise ValueError(f"decoded prediction {tuple(diff.shape)} != target {tuple(target.shape)}")
            sq_sum += float((diff**2).sum())
            count += diff.numel()
    return sq_sum / count


# --------------------------------------------------------------------------- convenience


def dsr_metrics(x_true: Any, x_gen: Any, smoothing_sigma: float = 20.0, **dstsp_kw: Any) -> Dict[str, float]:
    """``{"dstsp": dstsp(x_true, x_gen, **dstsp_kw), "dh": power_spectrum_hellinger(...)}``.

    PE(n) needs the model itself; call ``prediction_error`` for ``pe20``.
    """
    return {
        "dstsp": dstsp(x_true, x_gen, **dstsp_kw),
        "dh": power_spectrum_hellinger(x_true, x_gen, smoothing_sigma=smoothing_sigma),
    }
