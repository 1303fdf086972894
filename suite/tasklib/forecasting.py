"""Time-series forecasting protocol: look-back windows, H-step forecasts, z-scored MSE / MAE.

A :class:`ForecastTask` provides one raw table ``[T, C]`` (rows in time order, the target column
``OT`` among the channels) and its split sizes. Everything else is shared:

Splits (Time-Series-Library convention)
    ``(n_train, n_val, n_test)`` consecutive rows; ETTh: 8640 / 2880 / 2880 (12 / 4 / 4 months),
    ETTm: 34560 / 11520 / 11520, others 7:1:2 (``int(0.7 n)``, the rest, ``int(0.2 n)``). The val
    and test *segments* start ``lookback`` rows before their boundary, so the first forecast
    target of a split is its first row. Channels are z-scored with the mean and (population)
    std of the training rows.

Features
    ``S``: univariate, the target ``OT`` in and out. ``M``: all channels in, all channels out.

Training data (the burn-in paper's seq2seq mapping, ``create_seq2seq_mapping``)
    One long sequence per split: ``x [1, T, C_in]`` and ``y [1, T, H * C_out]`` with
    ``y_t = (x_{t+1}, ..., x_{t+H})`` of the output channels, flattened horizon-major
    (``y_t[h * C_out + c] = x_{t+1+h, c}``). ``mask`` is False where the target runs past the end
    of the segment (the last ``H`` positions; those targets are zero-padded) and, for val/test,
    for the first ``L - 1`` positions whose targets start before the split boundary. ``y`` is a
    strided view of the (padded) ``x``, so it costs no memory beyond ``x``.

Evaluation (``evaluate(model, split)``)
    For every window start ``i`` of the split segment (``N = len - L - H + 1`` windows) the model
    reads ``L`` look-back rows from the zero state; its *last* output, reshaped ``[H, C_out]``, is
    the forecast of rows ``i+L .. i+L+H-1``. ``mse`` and ``mae`` are averaged over windows, horizon
    steps and channels on the z-scored scale (Time-Series-Library). Windows run through ``model(x)`` as
    a batch ``[n, L, C_in]``, in chunks that bound the size of the model's output.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from suite.contracts import IOSpec, MetricSpec, Params, RecurrentModel, SequenceData, Task, model_device_dtype

SPLITS = ("train", "val", "test")


class ForecastParams(Params):
    lookback: int = Field(96, ge=1, description="look-back window L fed to the model from the zero state")
    horizon: int = Field(96, ge=1, description="forecast horizon H (steps ahead predicted at once)")
    features: Literal["S", "M"] = Field(
        "S", description="S: univariate target OT in and out; M: all channels in and out",
    )


def forecast_metric_specs() -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("mse", "min", "", "forecast MSE on the z-scored scale, mean over windows, horizon, channels", low=0.0),
        MetricSpec("mae", "min", "", "forecast MAE on the z-scored scale, mean over windows, horizon, channels", low=0.0),
    )


def ratio_split_sizes(n: int, train: float = 0.7, test: float = 0.2) -> tuple[int, int, int]:
    """Time-Series-Library's 7:1:2 split of ``n`` rows: ``int(0.7 n)``, the rest, ``int(0.2 n)``."""
    n_train, n_test = int(n * train), int(n * test)
    return n_train, n - n_train - n_test, n_test


def seq2seq_targets(x: Tensor, horizon: int) -> Tensor:
    """``y[b, t] = x[b, t+1 : t+1+H]`` flattened horizon-major, zero past the end: ``[B, T, H*C]``.

    A strided view of a zero-padded copy of ``x`` (no ``H``-fold memory).
    """
    b, t, c = x.shape
    padded = torch.cat([x, x.new_zeros(b, horizon, c)], dim=1).contiguous()
    return padded.as_strided(
        size=(b, t, horizon * c), stride=((t + horizon) * c, c, 1), storage_offset=c,
    )


class ForecastTask(Task):
    """Base class: subclasses implement :meth:`raw` and :meth:`split_sizes`."""

    family = "forecasting"
    Params = ForecastParams
    metrics = forecast_metric_specs()
    primary_metric = "mse"
    target: ClassVar[str] = "OT"
    #: model-output elements per evaluation chunk (bounds memory); at most ``eval_max_batch`` windows
    eval_budget: ClassVar[int] = 1 << 25
    eval_max_batch: ClassVar[int] = 1024

    @abstractmethod
    def raw(self) -> tuple[np.ndarray, list[str]]:
        """The whole table ``[T, C]`` (float) in time order, and its channel names."""

    @classmethod
    @abstractmethod
    def split_sizes(cls, n_rows: int) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)`` rows; the splits are consecutive from row 0."""

    def __init__(self, params: Any, data_dir: Any = None) -> None:
        super().__init__(params, data_dir)
        values, columns = self.raw()
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(columns):
            raise ValueError(f"{self.name}: table shape {values.shape} does not match {len(columns)} columns")
        if params.features == "S":
            if self.target not in columns:
                raise ValueError(f"{self.name}: target column {self.target!r} not in {list(columns)}")
            values, columns = values[:, [list(columns).index(self.target)]], [self.target]
        n_train, n_val, n_test = self.split_sizes(len(values))
        if n_train + n_val + n_test > len(values):
            raise ValueError(f"{self.name}: splits {n_train}+{n_val}+{n_test} exceed the {len(values)} rows")
        self.columns = list(columns)  #: the channels in and out, in order
        self.mean = values[:n_train].mean(0)  #: training statistics of the z-scoring
        std = values[:n_train].std(0)
        self.std = np.where(std > 0, std, 1.0)
        self._table = (values - self.mean) / self.std  # z-scored, [T, C]
        c = self._table.shape[1]
        self.input = IOSpec("real", c)
        self.output = IOSpec("real", params.horizon * c)
        self.bounds  # noqa: B018 (fail early when a split is too short for lookback + horizon)

    # --- data ----------------------------------------------------------------------------
    @cached_property
    def bounds(self) -> dict[str, tuple[int, int]]:
        """Row range ``[start, stop)`` of every split *segment* (val/test include the look-back)."""
        n_train, n_val, n_test = self.split_sizes(len(self._table))
        L, H = self.params.lookback, self.params.horizon
        edges = {"train": (0, n_train), "val": (n_train, n_train + n_val),
                 "test": (n_train + n_val, n_train + n_val + n_test)}
        out = {}
        for split, (a, b) in edges.items():
            start = a if split == "train" else a - L
            if start < 0 or b - start < L + H:
                raise ValueError(
                    f"{self.name}: split {split!r} ({b - a} rows) is too short for lookback {L} + horizon {H}"
                )
            out[split] = (start, b)
        return out

    def split_lengths(self) -> dict[str, int]:
        """Rows of every split proper (without the val/test look-back prefix)."""
        return dict(zip(SPLITS, self.split_sizes(len(self._table))))

    def segment(self, split: str) -> np.ndarray:
        a, b = self.bounds[split]
        return self._table[a:b]


    def split(self, name: str) -> SequenceData:
        if name not in SPLITS:
            raise KeyError(f"task {self.name!r} has no split {name!r}; it has {SPLITS}")
        L, H = self.params.lookback, self.params.horizon
        x = torch.as_tensor(self.segment(name), dtype=torch.float32)[None]
        y = seq2seq_targets(x, H)
        t = x.shape[1]
        mask = torch.zeros(1, t, dtype=torch.bool)
        first = 0 if name == "train" else L - 1  # val/test: targets start inside the split
        mask[:, first : t - H] = True
        return SequenceData(x, y, mask)

    # --- evaluation ----------------------------------------------------------------------
    def windows(self, split: str) -> tuple[Tensor, Tensor]:
        """All evaluation windows as views: inputs ``[N, L, C]`` and targets ``[N, H, C]``."""
        L, H = self.params.lookback, self.params.horizon
        seg = torch.as_tensor(self.segment(split))
        n = seg.shape[0] - L - H + 1
        inputs = seg.unfold(0, L, 1)[:n].transpose(1, 2)
        targets = seg[L:].unfold(0, H, 1)[:n].transpose(1, 2)
        return inputs, targets

    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        device, dtype = model_device_dtype(model)
        L, H = self.params.lookback, self.params.horizon
        inputs, targets = self.windows(split)
        n, c_out = inputs.shape[0], targets.shape[2]
        per_window = L * (inputs.shape[2] + H * c_out)
        chunk = max(1, min(self.eval_max_batch, self.eval_budget // per_window))
        sq = ab = 0.0
        with torch.no_grad():
            for a in range(0, n, chunk):
                x = inputs[a : a + chunk].to(device=device, dtype=dtype).contiguous()
                y_hat, _ = model(x)
                pred = y_hat[:, -1].reshape(x.shape[0], H, c_out).double()
                err = pred - targets[a : a + chunk].to(device=device, dtype=torch.float64)
                sq += float(err.pow(2).sum())
                ab += float(err.abs().sum())
        count = n * H * c_out
        return {"mse": sq / count, "mae": ab / count}
