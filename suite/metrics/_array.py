"""Small array helpers shared by the metric modules (not part of the public API)."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """Convert ``x`` (numpy array, torch tensor, list, scalar) to a numpy array.

    Torch tensors are detached and moved to the CPU first. Floating point data is
    promoted to ``dtype`` (float64 by default) so that metrics are computed in
    double precision regardless of the training dtype (bf16/fp16/fp32).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        t = x.detach().cpu()
        if getattr(t, "is_floating_point", lambda: False)() and t.dtype != _torch_float64():
            t = t.double()  # bf16 cannot be viewed by numpy directly
        x = t.numpy()
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def _torch_float64() -> Any:
    import torch

    return torch.float64


def as_time_by_channel(x: Any, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float64 array of shape [T, C] (a [T] input becomes [T, 1])."""
    arr = as_numpy(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape [T] or [T, C], got {arr.shape}")
    return arr
