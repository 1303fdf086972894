"""Evaluation metrics of rnnbench (methods.md §5).

Pure functions on numpy arrays (torch tensors accepted) grouped by task family:

* :mod:`.sysid`        rmse, nrmse, fit, r2, mse_std (system identification)
* :mod:`.forecasting`  mse, mae (time-series forecasting)
* :mod:`.language`     ce, ppl, bpc/bpp, acc (language / pixel modelling, classification)
* :mod:`.dynamics`     dstsp, dh, pe20 (dynamical-systems reconstruction)

``METRICS`` maps every metric name to a :class:`MetricInfo` (unit and whether
lower or higher is better), so tasks can declare what they report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal

from .dynamics import (
    dsr_metrics,
    dstsp,
    hellinger_distance,
    normalized_power_spectrum,
    power_spectrum_hellinger,
    prediction_error,
    state_space_divergence,
    state_space_divergence_gmm,
)
from .forecasting import forecast_metrics, mae, mse
from .language import (
    CrossEntropyAccumulator,
    accuracy,
    bits_per_character,
    bits_per_pixel,
    bits_per_token,
    nats_per_token,
    perplexity,
)
from .sysid import fit_percent, nrmse, r2, rmse, standardized_mse, sysid_metrics

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class MetricInfo:
    """Static description of a metric: ``direction`` is "min" (lower is better) or "max"."""

    name: str
    unit: str
    direction: Direction
    description: str

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {self.direction!r}")

    def better(self, a: float, b: float) -> bool:
        """True if value ``a`` is strictly better than ``b`` for this metric."""
        return a < b if self.direction == "min" else a > b


_INFOS = (
    # system identification
    MetricInfo("rmse", "output units", "min", "root-mean-square simulation error, init window skipped, mean over channels"),
    MetricInfo("nrmse", "1", "min", "RMSE / std(y), per channel then averaged, init window skipped"),
    MetricInfo("fit", "%", "max", "fit index 100 (1 - NRMSE), init window skipped"),
    MetricInfo("r2", "1", "max", "R^2 = 1 - NRMSE^2 (y_true first), init window skipped"),
    MetricInfo("r2_full", "1", "max", "R^2 over the whole sequence (burn-in paper convention)"),
    MetricInfo("mse_std", "1 (standardized)", "min", "MSE of standardized signals over the whole sequence (burn-in paper)"),
    # forecasting
    MetricInfo("mse", "1 (z-scored)", "min", "forecast MSE averaged over windows, horizon and channels"),
    MetricInfo("mae", "1 (z-scored)", "min", "forecast MAE averaged over windows, horizon and channels"),
    # language / sequence modelling
    MetricInfo("ce", "nats/token", "min", "mean cross-entropy per token"),
    MetricInfo("ppl", "1", "min", "perplexity exp(CE)"),
    MetricInfo("bpc", "bits/char", "min", "bits per character or byte, CE / ln 2"),
    MetricInfo("bpp", "bits/pixel", "min", "bits per pixel (bits/dim), CE / ln 2"),
    MetricInfo("acc", "fraction", "max", "classification accuracy in [0, 1]"),
    # dynamical systems reconstruction
    MetricInfo("dstsp", "nats", "min", "state-space divergence KL(p_true || p_gen); binning for N < 6, GMM otherwise"),
    MetricInfo("dh", "1", "min", "power-spectrum Hellinger distance, mean over dimensions, in [0, 1]"),
    MetricInfo("pe20", "squared obs. units", "min", "20-step-ahead prediction MSE"),
)

#: registry name -> MetricInfo
METRICS: Dict[str, MetricInfo] = {m.name: m for m in _INFOS}


def get_metric_info(name: str) -> MetricInfo:
    """Look up a metric by name; raises ``KeyError`` listing the known names."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)}") from None


__all__ = [
    "MetricInfo",
    "METRICS",
    "get_metric_info",
    # sysid
    "rmse",
    "nrmse",
    "fit_percent",
    "r2",
    "standardized_mse",
    "sysid_metrics",
    # forecasting
    "mse",
    "mae",
    "forecast_metrics",
    # language
    "nats_per_token",
    "perplexity",
    "bits_per_token",
    "bits_per_character",
    "bits_per_pixel",
    "accuracy",
    "CrossEntropyAccumulator",
    # dynamics
    "state_space_divergence",
    "state_space_divergence_gmm",
    "dstsp",
    "normalized_power_spectrum",
    "hellinger_distance",
    "power_spectrum_hellinger",
    "prediction_error",
    "dsr_metrics",
]
