"""System identification protocol: standardised input/output signals, free-run simulation.

A :class:`SysIdTask` provides raw signals per split; inputs and outputs are z-scored with the
training statistics; evaluation simulates the model over the whole split from a zero state
(driven by inputs only), excludes the benchmark's initialisation window from RMSE / NRMSE /
fit % / R^2 (in the output's physical units), and also reports the burn-in paper's standardised
MSE over the whole sequence (``mse_std``).
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch

from suite.contracts import IOSpec, MetricSpec, RecurrentModel, SequenceData, Task, model_device_dtype
from suite.metrics.sysid import sysid_metrics


def sysid_metric_specs(unit: str) -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("rmse", "min", unit, "simulation RMSE, initialisation window excluded", low=0.0),
        MetricSpec("nrmse", "min", "", "RMSE / std(y)", low=0.0),
        MetricSpec("fit", "max", "%", "100 (1 - NRMSE)", high=100.0),
        MetricSpec("r2", "max", "", "1 - NRMSE^2", high=1.0),
        MetricSpec("mse_std", "min", "", "MSE of standardised signals over the whole sequence (burn-in paper)", low=0.0),
        MetricSpec("r2_full", "max", "", "R^2 over the whole sequence, no window excluded (burn-in paper)", high=1.0),
    )


class SysIdTask(Task):
    """Base class: subclasses implement :meth:`signals` and set ``init_window`` and ``unit``."""

    family = "sysid"
    primary_metric = "rmse"
    init_window: ClassVar[int] = 0
    unit: ClassVar[str] = ""

    @abstractmethod
    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Raw ``(u [T, nu], y [T, ny])`` arrays for every split in :attr:`splits`."""

    @cached_property
    def _signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for split, (u, y) in self.signals().items():
            u = np.asarray(u, dtype=np.float64).reshape(len(u), -1)
            y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
            if len(u) != len(y):
                raise ValueError(f"{self.name}/{split}: input length {len(u)} != output length {len(y)}")
            out[split] = (u, y)
        return out

    @cached_property
    def stats(self) -> dict[str, np.ndarray]:
        u, y = self._signals["train"]
        return {"u_mean": u.mean(0), "u_std": u.std(0) + 1e-12, "y_mean": y.mean(0), "y_std": y.std(0) + 1e-12}

    def __init__(self, params: Any, data_dir: Any = None) -> None:
        super().__init__(params, data_dir)
        u, y = self._signals["train"]
        self.input = IOSpec("real", u.shape[1])
        self.output = IOSpec("real", y.shape[1])


    def split_lengths(self) -> dict[str, int]:
        return {s: len(u) for s, (u, _) in self._signals.items()}

    def split(self, name: str) -> SequenceData:
        u, y = self._signals[name]
        s = self.stats
        x = torch.as_tensor((u - s["u_mean"]) / s["u_std"], dtype=torch.float32)[None]
        t = torch.as_tensor((y - s["y_mean"]) / s["y_std"], dtype=torch.float32)[None]
        return SequenceData(x, t)

    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        device, dtype = model_device_dtype(model)
        data = self.split(split).to(device, dtype)
        y_hat, _ = model(data.x)  # free run from the zero state, inputs only
        s = self.stats
        y_hat = y_hat[0].double().cpu().numpy() * s["y_std"] + s["y_mean"]
        y = self._signals[split][1]
        return sysid_metrics(y, y_hat, self.init_window, s["y_mean"], s["y_std"])
