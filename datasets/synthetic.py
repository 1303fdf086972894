"""Generated tasks for unit tests and demos: no files, deterministic given a seed."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from suite.contracts import Params
from suite.tasklib.sysid import SysIdTask, sysid_metric_specs


class ToySysIdParams(Params):
    length: int = Field(400, ge=20, description="samples per split")
    seed: int = Field(0, description="generator seed (the data, not the trial)")
    noise: float = Field(0.01, ge=0.0, description="output noise standard deviation")


class ToySysId(SysIdTask):
    """A stable nonlinear single-input single-output system (Wiener-like), simulated."""

    name = "toy-sysid"
    summary = "generated nonlinear SISO system (second-order linear dynamics + tanh output), 3 splits"
    Params = ToySysIdParams
    metrics = sysid_metric_specs("")
    init_window = 5

    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        p = self.params
        rng = np.random.default_rng(p.seed)
        out = {}
        for split in ("train", "val", "test"):
            u = np.convolve(rng.standard_normal(p.length + 4), np.ones(5) / 5, mode="valid")
            x = np.zeros(2)
            y = np.empty(p.length)
            for t in range(p.length):
                x = np.array([1.5 * x[0] - 0.7 * x[1] + u[t], x[0]])
                y[t] = np.tanh(0.3 * x[0]) + p.noise * rng.standard_normal()
            out[split] = (u, y)
        return out
