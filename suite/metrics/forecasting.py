"""Time-series forecasting metrics (Time-Series-Library ``utils/metrics.py`` convention).

Inputs are usually z-scored with training-split statistics and shaped
``[windows, horizon, channels]``; any shape works, as long as ``y`` and ``yhat``
match, because the metrics average over every element (windows, horizon and
channels alike).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ._array import as_numpy

__all__ = ["mse", "mae", "forecast_metrics"]


def _pair(y: Any, yhat: Any) -> tuple[np.ndarray, np.ndarray]:
    y_arr, yh_arr = as_numpy(y), as_numpy(yhat)
    if y_arr.shape != yh_arr.shape:
        raise ValueError(f"shape mismatch: y {y_arr.shape} vs yhat {yh_arr.shape}")
    if y_arr.size == 0:
        raise ValueError("empty input")
    return y_arr, yh_arr


def mse(y: Any, yhat: Any) -> float:
    """Mean squared error, 1/(W·H·C) Σ (y − ŷ)², over windows W, horizon H and channels C."""
    y_arr, yh_arr = _pair(y, yhat)
    return float(np.mean((y_arr - yh_arr) ** 2))


def mae(y: Any, yhat: Any) -> float:
    """Mean absolute error, 1/(W·H·C) Σ |y − ŷ|, over windows W, horizon H and channels C."""
    y_arr, yh_arr = _pair(y, yhat)
    return float(np.mean(np.abs(y_arr - yh_arr)))


def forecast_metrics(y: Any, yhat: Any) -> Dict[str, float]:
    """``{"mse": mse(y, ŷ), "mae": mae(y, ŷ)}``."""
    return {"mse": mse(y, yhat), "mae": mae(y, yhat)}
