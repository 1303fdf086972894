"""Evaluation metrics of rnnbench (the conventions of each field's canonical code, cited per module).

Pure functions on numpy arrays (torch tensors accepted) grouped by task family:

* :mod:`.sysid`        rmse, nrmse, fit, r2, mse_std (system identification)
* :mod:`.forecasting`  mse, mae (time-series forecasting)
* :mod:`.language`     ce, ppl, bpc/bpp, acc (language / pixel modelling, classification)
* :mod:`.dynamics`     dstsp, dh, pe20 (dynamical-systems reconstruction)

What a task reports (names, units, directions) is declared by the task's ``metrics``
(:class:`suite.contracts.MetricSpec`), not here.
"""

from __future__ import annotations

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

__all__ = [
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
