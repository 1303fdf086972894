"""System-identification metrics (simulation / free-run error).

Conventions (nonlinearbenchmark.org's ``nonlinear_benchmarks.error_metrics``, Beintema et al.):

* arrays are ``[T]`` or ``[T, C]`` (a leading batch axis ``[B, T, C]`` is also
  accepted: statistics are then pooled over batch and time);
* ``skip`` removes the first ``skip`` time steps (state-initialisation window)
  before anything is computed, including ``std(y)``;
* every metric is computed per output channel and then averaged over channels;
* ``std`` is the population standard deviation (ddof = 0), which makes
  ``r2 == 1 - nrmse**2`` identical to ``sklearn.metrics.r2_score(y, yhat)``.

Argument order is always ``(y_true, y_pred)``. (The burn-in reference code calls
``r2_score(preds, y)``, i.e. swapped; R² is not symmetric.)
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ._array import as_numpy

__all__ = [
    "rmse",
    "nrmse",
    "fit_percent",
    "r2",
    "standardized_mse",
    "sysid_metrics",
]


def _prepare(y: Any, yhat: Any, skip: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (y, yhat) as float64 arrays of shape [M, C] with the first ``skip`` steps removed."""
    y_arr = as_numpy(y)
    yh_arr = as_numpy(yhat)
    if y_arr.shape != yh_arr.shape:
        raise ValueError(f"shape mismatch: y {y_arr.shape} vs yhat {yh_arr.shape}")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    if y_arr.ndim == 1:
        y_arr, yh_arr = y_arr[:, None], yh_arr[:, None]
    if y_arr.ndim == 2:  # [T, C]
        y_arr, yh_arr = y_arr[skip:], yh_arr[skip:]
    elif y_arr.ndim == 3:  # [B, T, C] -> pool batch and time
        c = y_arr.shape[-1]
        y_arr = y_arr[:, skip:].reshape(-1, c)
        yh_arr = yh_arr[:, skip:].reshape(-1, c)
    else:
        raise ValueError(f"expected [T], [T, C] or [B, T, C], got shape {y_arr.shape}")
    if y_arr.shape[0] == 0:
        raise ValueError(f"no time steps left after skipping {skip}")
    return y_arr, yh_arr


def _reduce(per_channel_values: np.ndarray, per_channel: bool) -> Any:
    if per_channel:
        return per_channel_values
    return float(np.mean(per_channel_values))


def _rmse_c(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((y - yhat) ** 2, axis=0))


def _nrmse_c(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _rmse_c(y, yhat) / np.std(y, axis=0)


def rmse(y: Any, yhat: Any, skip: int = 0, per_channel: bool = False) -> Any:
    """Root-mean-square error, RMSE_c = sqrt( 1/T Σ_t (y_tc − ŷ_tc)² ), averaged over channels c.

    The first ``skip`` time steps are excluded. ``per_channel=True`` returns the
    array of per-channel values instead of their mean.
    """
    y_, yh_ = _prepare(y, yhat, skip)
    return _reduce(_rmse_c(y_, yh_), per_channel)


def nrmse(y: Any, yhat: Any, skip: int = 0, per_channel: bool = False) -> Any:
    """Normalised RMSE, NRMSE_c = RMSE_c / std(y_c) (population std), averaged over channels."""
    y_, yh_ = _prepare(y, yhat, skip)
    return _reduce(_nrmse_c(y_, yh_), per_channel)


def fit_percent(y: Any, yhat: Any, skip: int = 0, per_channel: bool = False) -> Any:
    """Fit index in percent, FIT_c = 100 · (1 − NRMSE_c), averaged over channels."""
    y_, yh_ = _prepare(y, yhat, skip)
    return _reduce(100.0 * (1.0 - _nrmse_c(y_, yh_)), per_channel)


def r2(y_true: Any, y_pred: Any, skip: int = 0, per_channel: bool = False) -> Any:
    """Coefficient of determination, R²_c = 1 − NRMSE_c² = 1 − Σ(y−ŷ)² / Σ(y−ȳ)², averaged over channels.

    Argument order is (y_true, y_pred), as in ``sklearn.metrics.r2_score``.
    """
    y_, yh_ = _prepare(y_true, y_pred, skip)
    return _reduce(1.0 - _nrmse_c(y_, yh_) ** 2, per_channel)


def standardized_mse(y: Any, yhat: Any, mean: Any, std: Any) -> float:
    """MSE of standardised signals, mean over all time steps and channels of ((y−μ)/σ − (ŷ−μ)/σ)².

    ``mean``/``std`` are the standardisation statistics (scalars or per-channel
    arrays, usually from the training split). No initialisation window is skipped:
    this is the burn-in paper's convention (whole sequence).
    """
    y_arr = as_numpy(y)
    yh_arr = as_numpy(yhat)
    if y_arr.shape != yh_arr.shape:
        raise ValueError(f"shape mismatch: y {y_arr.shape} vs yhat {yh_arr.shape}")
    mu = as_numpy(mean)
    sd = as_numpy(std)
    with np.errstate(divide="ignore", invalid="ignore"):
        ys = (y_arr - mu) / sd
        yhs = (yh_arr - mu) / sd
    return float(np.mean((ys - yhs) ** 2))


def sysid_metrics(
    y: Any,
    yhat: Any,
    init_window: int = 0,
    y_mean: Any = 0.0,
    y_std: Any = 1.0,
) -> Dict[str, float]:
    """All system-identification metrics in one dict.

    * ``rmse``, ``nrmse``, ``fit``, ``r2``: first ``init_window`` steps excluded
      (nonlinear_benchmarks convention, e.g. 50 for Silverbox / Wiener–Hammerstein);
    * ``mse_std``: standardised MSE over the whole sequence (burn-in paper);
    * ``r2_full``: R² over the whole sequence (burn-in paper's second number),
      with the correct (y_true, y_pred) order.
    """
    y_, yh_ = _prepare(y, yhat, init_window)
    n_c = _nrmse_c(y_, yh_)
    yf, yhf = _prepare(y, yhat, 0)
    return {
        "rmse": float(np.mean(_rmse_c(y_, yh_))),
        "nrmse": float(np.mean(n_c)),
        "fit": float(np.mean(100.0 * (1.0 - n_c))),
        "r2": float(np.mean(1.0 - n_c**2)),
        "mse_std": standardized_mse(y, yhat, y_mean, y_std),
        "r2_full": float(np.mean(1.0 - _nrmse_c(yf, yhf) ** 2)),
    }
