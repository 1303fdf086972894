"""Forecasting tasks: TSLib splits, train-statistics z-scoring, seq2seq targets, window evaluation."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from suite.contracts import DataFileError, RecurrentModel
from suite.registry import Registry, builtin_dir
from suite.tasklib.forecasting import ForecastParams, ForecastTask, ratio_split_sizes, seq2seq_targets


def _task_class(name: str):
    reg = Registry()  # only this plugin file: faster than discovering every plugin
    reg.add_file(builtin_dir("datasets") / "forecasting.py", "tasks")
    assert not reg.failures, reg.failures
    return reg.get("tasks", name)


def _task(name: str, root: Path, **params):
    cls = _task_class(name)
    return cls(cls.Params(**params), root)


from conftest import data_or_skip as _data_or_skip  # noqa: E402  (shared skip rule)

# --- generated data -------------------------------------------------------------------------

N_ROWS = 50  # 7:1:2 -> 35 / 5 / 10


class _Ramp(ForecastTask):
    """Generated table (not a plugin: the registry does not read test files): OT = t, A = 2t + 1."""

    name = "ramp-forecast-test"

    def raw(self):
        t = np.arange(N_ROWS, dtype=np.float64)
        return np.stack([2 * t + 1, t], axis=1), ["A", "OT"]

    @classmethod
    def split_sizes(cls, n_rows):
        return ratio_split_sizes(n_rows)


class _Persistence(RecurrentModel):
    """Forecasts the last look-back value for every horizon step (state = last input)."""

    name = "persistence-test"

    def __init__(self, input, output, horizon: int) -> None:
        super().__init__(input, output, None)
        self.state_size = input.size
        self.horizon = horizon
        self.dummy = nn.Parameter(torch.zeros(()))

    def step(self, h, u):
        return u

    def readout(self, h, u=None):
        return h.repeat(*([1] * (h.dim() - 1)), self.horizon)  # horizon-major [H, C] flattened


class _Zero(_Persistence):
    name = "zero-test"

    def readout(self, h, u=None):
        return h.new_zeros(*h.shape[:-1], self.output_spec.size)


def _ramp(**params) -> _Ramp:
    return _Ramp(ForecastParams(**params))


def test_ratio_split_sizes():
    assert ratio_split_sizes(50) == (35, 5, 10)
    assert ratio_split_sizes(7588) == (5311, 760, 1517)
    assert ratio_split_sizes(966) == (676, 97, 193)
    assert ratio_split_sizes(52696) == (36887, 5270, 10539)


def test_segments_start_lookback_before_the_boundary():
    task = _ramp(lookback=4, horizon=3, features="S")
    assert task.split_lengths() == {"train": 35, "val": 5, "test": 10}
    assert task.bounds == {"train": (0, 35), "val": (31, 40), "test": (36, 50)}
    inputs, targets = task.windows("val")
    assert inputs.shape == (3, 4, 1) and targets.shape == (3, 3, 1)  # N = 5 - H + 1
    # the first forecast target is the first row of the split (row 35)
    t_of = lambda z: z * task.std[0] + task.mean[0]  # noqa: E731
    assert t_of(targets[0, 0, 0]).item() == pytest.approx(35.0)
    assert t_of(inputs[0, :, 0]).tolist() == pytest.approx([31.0, 32.0, 33.0, 34.0])
    assert t_of(targets[-1, -1, 0]).item() == pytest.approx(39.0)  # the last row of val
    with pytest.raises(ValueError, match="too short"):
        _ramp(lookback=4, horizon=6)


def test_zscore_uses_training_statistics_and_features():
    task = _ramp(lookback=4, horizon=3, features="M")
    assert task.columns == ["A", "OT"] and task.input.size == 2 and task.output.size == 6
    t = np.arange(35.0)
    np.testing.assert_allclose(task.mean, [2 * t.mean() + 1, t.mean()])
    np.testing.assert_allclose(task.std, [2 * t.std(), t.std()])
    train = task.split("train")
    assert train.x.double().mean().abs() < 1e-6
    val = task.split("val")  # rows 31..39 scaled with the *training* statistics
    np.testing.assert_allclose(val.x[0, :, 1].numpy(), (np.arange(31, 40) - t.mean()) / t.std(), rtol=1e-6)
    s = _ramp(lookback=4, horizon=3, features="S")
    assert s.columns == ["OT"] and s.input.size == 1 and s.output.size == 3


@pytest.mark.parametrize("features", ["S", "M"])
def test_seq2seq_targets_alignment_and_mask(features):
    L, H = 4, 3
    task = _ramp(lookback=L, horizon=H, features=features)
    C = task.input.size
    for split, first in (("train", 0), ("val", L - 1), ("test", L - 1)):
        d = task.split(split)
        T = d.length
        assert d.y.shape == (1, T, H * C) and d.mask.shape == (1, T)
        for t in range(T):
            y_t = d.y[0, t].reshape(H, C)
            for h in range(H):
                expected = d.x[0, t + 1 + h] if t + 1 + h < T else torch.zeros(C)
                assert torch.equal(y_t[h], expected), (split, t, h)
        expected_mask = [first <= t < T - H for t in range(T)]
        assert d.mask[0].tolist() == expected_mask
        assert int(d.mask.sum()) == (T - H - first)
    train = task.split("train")
    assert not train.mask[0, -H:].any() and train.mask[0, : 35 - H].all()


def test_seq2seq_targets_view_matches_copy():
    x = torch.randn(2, 9, 3)
    y = seq2seq_targets(x, 4)
    ref = torch.zeros(2, 9, 12)
    for t in range(9):
        for h in range(4):
            if t + 1 + h < 9:
                ref[:, t, 3 * h : 3 * h + 3] = x[:, t + 1 + h]
    assert torch.equal(y, ref)


@pytest.mark.parametrize("features", ["S", "M"])
def test_persistence_metrics_hand_computed(features):
    # On a ramp, persistence misses by (h+1) rows at horizon step h; z-scored: (h+1) / std(train rows).
    # Channel A = 2t + 1 z-scores to the same values as OT = t, so S and M give the same numbers.
    L, H = 4, 3
    task = _ramp(lookback=L, horizon=H, features=features)
    model = _Persistence(task.input, task.output, H)
    s = np.arange(35.0).std()  # sqrt((35^2 - 1) / 12)
    for split in ("train", "val", "test"):
        m = task.evaluate(model, split)
        assert m["mse"] == pytest.approx((1 + 4 + 9) / 3 / s**2, rel=1e-5)
        assert m["mae"] == pytest.approx((1 + 2 + 3) / 3 / s, rel=1e-5)


def test_zero_model_metrics_and_chunking(monkeypatch):
    L, H = 4, 3
    task = _ramp(lookback=L, horizon=H, features="M")
    model = _Zero(task.input, task.output, H)
    t = np.arange(35.0)
    z = (np.arange(40, 50) - t.mean()) / t.std()  # test rows, z-scored (both channels equal)
    n = 10 - H + 1
    targets = np.stack([z[i : i + H] for i in range(n)])  # [N, H]
    want = task.evaluate(model, "test")
    assert want["mse"] == pytest.approx(np.mean(targets**2), rel=1e-9)
    assert want["mae"] == pytest.approx(np.mean(np.abs(targets)), rel=1e-9)
    monkeypatch.setattr(_Ramp, "eval_budget", 1)  # one window per chunk
    got = task.evaluate(model, "test")
    assert got["mse"] == pytest.approx(want["mse"], rel=1e-12) and got["mae"] == pytest.approx(want["mae"], rel=1e-12)


def test_metrics_and_defaults():
    task = _ramp(lookback=4, horizon=3)
    assert task.primary_metric == "mse" and task.metric("mse").direction == "min"
    assert task.metric("mae").direction == "min"
    assert (task.params.lookback, task.params.horizon) == (4, 3)
    assert _task_class("ili").Params().lookback == 36 and _task_class("ili").Params().horizon == 24
    assert _task_class("etth1").Params().horizon == 96


# --- CSV fixtures through the real loaders ---------------------------------------------------------


def _fixture_csv(root: Path, name: str, monkeypatch, header: str, rows: list[str], gz: bool = False) -> None:
    cls = _task_class(name)
    path = root / cls.file.path
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([header, *rows]) + "\n"
    data = text.encode("latin-1")
    path.write_bytes(gzip.compress(data) if gz else data)
    monkeypatch.setattr(cls, "file", replace(cls.file, sha256=hashlib.sha256(path.read_bytes()).hexdigest()))


def test_exchange_rate_csv_fixture(tmp_path, monkeypatch):
    rows = [f"1990/1/{i + 1} 0:00,{i},{10 * i},{100 - i}" for i in range(N_ROWS)]
    _fixture_csv(tmp_path, "exchange-rate", monkeypatch, "date,0,1,OT", rows)
    task = _task("exchange-rate", tmp_path, lookback=4, horizon=3, features="M")
    assert task.columns == ["0", "1", "OT"] and task.split_lengths() == {"train": 35, "val": 5, "test": 10}
    s = _task("exchange-rate", tmp_path, lookback=4, horizon=3, features="S")
    assert s.columns == ["OT"]
    # OT = 100 - t: persistence under-forecasts a decreasing ramp by the same (h+1) steps
    m = s.evaluate(_Persistence(s.input, s.output, 3), "test")
    assert m["mse"] == pytest.approx(14 / 3 / np.arange(35.0).std() ** 2, rel=1e-5)


def test_weather_gzip_latin1_fixture(tmp_path, monkeypatch):
    header = "date,p (mbar),SWDR (W/m\u00b2),OT"
    rows = [f"2020-01-01 00:{i:02d}:00,{1000 + i},{i % 7},{400 + 0.5 * i}" for i in range(N_ROWS)]
    _fixture_csv(tmp_path, "weather", monkeypatch, header, rows, gz=True)
    task = _task("weather", tmp_path, lookback=4, horizon=3, features="M")
    assert task.columns == ["p (mbar)", "SWDR (W/m\u00b2)", "OT"]
    assert task.input.size == 3 and task.output.size == 9


def test_checksum_mismatch_names_file_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_OFFLINE", "1")
    bad = tmp_path / "forecasting/ett/ETTh1.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("date,OT\n2016-07-01 00:00:00,1.0\n")
    with pytest.raises(DataFileError) as err:
        _task("etth1", tmp_path)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "forecasting/ett/ETTh1.csv" in msg
    assert "raw.githubusercontent.com/zhouhaoyi/ETDataset" in msg and "Informer" in msg


def test_missing_file_offline_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_OFFLINE", "1")
    with pytest.raises(DataFileError, match="missing data file forecasting/weather/weather.csv.gz"):
        _task("weather", tmp_path)


# --- real data ------------------------------------------------------------------------------

REAL = [
    ("etth1", (8640, 2880, 2880), 7),
    ("etth2", (8640, 2880, 2880), 7),
    ("ettm1", (34560, 11520, 11520), 7),
    ("ettm2", (34560, 11520, 11520), 7),
    ("weather", (36887, 5270, 10539), 21),
    ("exchange-rate", (5311, 760, 1517), 8),
    ("ili", (676, 97, 193), 7),
]


@pytest.mark.data
@pytest.mark.parametrize("name,lengths,channels", REAL, ids=[r[0] for r in REAL])
def test_real_splits_channels_and_zscore(name, lengths, channels):
    cls = _task_class(name)
    root = _data_or_skip(cls.file.path)
    m = cls(cls.Params(features="M"), root)
    assert m.split_lengths() == dict(zip(("train", "val", "test"), lengths))
    assert m.input.size == channels and m.columns[-1] == "OT"
    H, L = m.params.horizon, m.params.lookback
    assert m.output.size == H * channels
    train = m.split("train")
    assert train.x.shape == (1, lengths[0], channels)
    assert train.x.double().mean(1).abs().max() < 1e-4
    assert torch.allclose(train.x.double().std(1, unbiased=False), torch.ones(channels, dtype=torch.float64), atol=1e-4)
    test = m.split("test")
    assert test.length == lengths[2] + L and int(test.mask.sum()) == lengths[2] - H + 1
    assert torch.equal(test.y[0, L - 1].reshape(H, channels), test.x[0, L : L + H])
    s = cls(cls.Params(features="S"), root)
    assert s.input.size == 1 and s.output.size == H
    torch.testing.assert_close(s.split("val").x[0, :, 0], m.split("val").x[0, :, -1])


@pytest.mark.data
def test_forecasting_checksums_match_sha256sums():
    root = _data_or_skip("SHA256SUMS")
    sums = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, path = line.split()
            sums[path.removeprefix("./")] = digest
    for name, *_ in REAL:
        cls = _task_class(name)
        for f in cls.data_files(cls.Params()):
            assert sums[f.path] == f.sha256, f.path
            assert f.source, f.path
