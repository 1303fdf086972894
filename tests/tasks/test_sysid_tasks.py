"""System-identification tasks: official / paper splits, z-scoring, data files, evaluation."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torch import nn

from suite.contracts import DataFileError, RecurrentModel
from suite.registry import Registry, builtin_dir


def _task_class(name: str):
    reg = Registry()  # only this plugin file: faster than discovering every plugin
    reg.add_file(builtin_dir("datasets") / "sysid.py", "tasks")
    assert not reg.failures, reg.failures
    return reg.get("tasks", name)


def _task(name: str, root: Path, **params):
    cls = _task_class(name)
    return cls(cls.Params(**params), root)


from conftest import data_or_skip as _data_or_skip  # noqa: E402  (shared skip rule)


def _files(name: str, **params) -> list[str]:
    cls = _task_class(name)
    return [f.path for f in cls.data_files(cls.Params(**params))]


class _ConstantModel(RecurrentModel):
    """Outputs zeros (the training mean once de-standardised), whatever the input."""

    name = "constant-test"
    state_size = 1

    def __init__(self, input, output, params=None) -> None:
        super().__init__(input, output, params)
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def step(self, h, u):
        return h

    def readout(self, h, u=None):
        return h.new_zeros(*h.shape[:-1], self.output_spec.size)


# --- real data: split lengths, sizes, z-scoring -----------------------------------------------

SPLIT_CASES = [
    ("cascaded-tanks", {}, (819, 205, 1024), 1, 1),
    ("silverbox", {}, (52050, 13012, 21688), 1, 1),
    ("silverbox", {"test": "arrow"}, (52050, 13012, 40475), 1, 1),
    ("silverbox", {"test": "arrow-no-extrapolation"}, (52050, 13012, 32000), 1, 1),
    ("emps", {}, (19873, 4968, 24841), 1, 1),
    ("bouc-wen", {}, (32768, 8192, 8192), 1, 1),
    ("bouc-wen", {"test": "sinesweep"}, (32768, 8192, 153000), 1, 1),
    ("silverbox-paper", {}, (20000, 10000, 10000), 1, 1),
    ("wiener-hammerstein-paper", {}, (20000, 10000, 10000), 1, 1),
    ("rlc-paper", {}, (6667, 3333, 3333), 1, 2),
]


@pytest.mark.data
@pytest.mark.parametrize("name,params,lengths,n_in,n_out", SPLIT_CASES,
                         ids=[f"{c[0]}-{c[1].get('test', 'default')}" for c in SPLIT_CASES])
def test_split_lengths_sizes_and_train_zscore(name, params, lengths, n_in, n_out):
    task = _task(name, _data_or_skip(*_files(name, **params)), **params)
    assert task.split_lengths() == dict(zip(("train", "val", "test"), lengths))
    assert task.input.size == n_in and task.output.size == n_out
    train = task.split("train")
    assert train.x.shape == (1, lengths[0], n_in) and train.y.shape == (1, lengths[0], n_out)
    # z-scored with the training statistics: train has mean 0 / std 1, the other splits need not
    assert train.x.double().mean().abs() < 1e-5 and train.y.double().mean(1).abs().max() < 1e-5
    assert torch.allclose(train.y.double().std(1, unbiased=False), torch.ones(n_out, dtype=torch.float64), atol=1e-4)
    test = task.split("test")
    u_test, y_test = task._signals["test"]
    assert torch.allclose(test.y[0].double(), torch.as_tensor((y_test - task.stats["y_mean"]) / task.stats["y_std"]),
                          atol=1e-5)


@pytest.mark.data
def test_init_windows_and_paper_metric():
    expected = {"cascaded-tanks": 5, "silverbox": 50, "emps": 20, "bouc-wen": 50,
                "silverbox-paper": 0, "wiener-hammerstein-paper": 0, "rlc-paper": 0}
    for name, k in expected.items():
        cls = _task_class(name)
        assert cls.init_window == k, name
        assert "mse_std" in [m.name for m in cls.metrics]
        assert cls.primary_metric == ("mse_std" if name.endswith("-paper") else "rmse"), name


@pytest.mark.data
def test_silverbox_official_segments():
    root = _data_or_skip(*_files("silverbox"))
    mat = scipy.io.loadmat(root / "sysid/silverbox/SNLS80mV.mat")
    u, y = mat["V1"][0], mat["V2"][0]
    assert len(u) == 131072
    task = _task("silverbox", root)
    sig = task._signals
    np.testing.assert_array_equal(sig["train"][0][:, 0], u[40650 : 40650 + 52050])
    np.testing.assert_array_equal(sig["val"][1][:, 0], y[40650 + 52050 : 40650 + 65062])
    np.testing.assert_array_equal(sig["test"][1][:, 0], y[40650 + 65062 : 127400])
    arrow = _task("silverbox", root, test="arrow-no-extrapolation")._signals["test"]
    np.testing.assert_array_equal(arrow[0][:, 0], u[100:32100])


@pytest.mark.data
def test_rlc_paper_rows_are_vin_to_iL_vC():
    root = _data_or_skip(*_files("rlc-paper"))
    rows = np.loadtxt(root / "sysid/burnin_paper/data_rlc_val_3333.csv", delimiter=",")
    assert rows.shape == (4, 3333)
    u, y = _task("rlc-paper", root)._signals["val"]
    np.testing.assert_array_equal(u[:, 0], rows[1])
    np.testing.assert_array_equal(y, rows[[3, 2]].T)  # (i_L, v_C), the paper's order


@pytest.mark.data
def test_bouc_wen_uses_generated_train_and_official_test():
    root = _data_or_skip(*_files("bouc-wen"))
    task = _task("bouc-wen", root)
    assert "GENERATED" in task.summary.upper()
    y_off = scipy.io.loadmat(root / "sysid/bouc_wen/yval_multisine.mat")["yval_multisine"][0]
    np.testing.assert_array_equal(task._signals["test"][1][:, 0], y_off)
    # validation is the tail of the generated training record, never the test signal
    import h5py

    with h5py.File(root / "sysid/bouc_wen/dynonet_generated_train.h5") as h5:
        y_gen = h5["multisine/y"][:, 0]
    np.testing.assert_array_equal(task._signals["val"][1][:, 0], y_gen[32768:])


@pytest.mark.data
def test_sysid_checksums_match_sha256sums():
    root = _data_or_skip("SHA256SUMS")
    sums = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, path = line.split()
            sums[path.removeprefix("./")] = digest
    for name, params, *_ in SPLIT_CASES:
        cls = _task_class(name)
        for f in cls.data_files(cls.Params(**params)):
            assert sums[f.path] == f.sha256, f.path
            assert f.source, f.path


# --- generated fixtures (no real data) ----------------------------------------------------------


def _write_rlc_fixture(root: Path, monkeypatch) -> dict[str, np.ndarray]:
    """Tiny 4-row CSVs in the paper's layout, with the task's DataFiles pointed at them."""
    cls = _task_class("rlc-paper")
    rng = np.random.default_rng(0)
    arrays, files = {}, {}
    for split, n in (("train", 12), ("val", 6), ("test", 5)):
        t = np.arange(n) * 5e-7
        rows = np.vstack([t, rng.normal(0, 3, n), rng.normal(1, 2, n), rng.normal(-1, 0.5, n)])
        f = cls.files[split]
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, rows, delimiter=",")
        files[split] = replace(f, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        arrays[split] = np.loadtxt(path, delimiter=",")
    monkeypatch.setattr(cls, "files", files)
    return arrays


def test_rlc_fixture_mapping_and_constant_model_metrics(tmp_path, monkeypatch):
    rows = _write_rlc_fixture(tmp_path, monkeypatch)
    task = _task("rlc-paper", tmp_path)
    assert task.split_lengths() == {"train": 12, "val": 6, "test": 5}
    assert task.input.size == 1 and task.output.size == 2
    y_train = rows["train"][[3, 2]].T
    mean, std = y_train.mean(0), y_train.std(0)
    np.testing.assert_allclose(task.stats["y_mean"], mean)
    # a model predicting the standardised zero predicts the training mean
    metrics = task.evaluate(_ConstantModel(task.input, task.output), "test")
    y = rows["test"][[3, 2]].T
    rmse = np.mean([math.sqrt(np.mean((y[:, c] - mean[c]) ** 2)) for c in range(2)])  # init window 0
    assert metrics["rmse"] == pytest.approx(rmse, rel=1e-9)
    assert metrics["mse_std"] == pytest.approx(np.mean(((y - mean) / std) ** 2), rel=1e-6)
    nrmse = np.mean([math.sqrt(np.mean((y[:, c] - mean[c]) ** 2)) / y[:, c].std() for c in range(2)])
    assert metrics["fit"] == pytest.approx(100 * (1 - nrmse), rel=1e-9)


def test_data_files_cover_what_is_read():
    assert _files("silverbox") == ["sysid/silverbox/SNLS80mV.mat"]
    assert _files("emps") == ["sysid/emps/DATA_EMPS.mat", "sysid/emps/DATA_EMPS_PULSES.mat"]
    assert _files("bouc-wen", test="sinesweep") == [
        "sysid/bouc_wen/dynonet_generated_train.h5",
        "sysid/bouc_wen/uval_sinesweep.mat",
        "sysid/bouc_wen/yval_sinesweep.mat",
    ]
    assert len(_files("wiener-hammerstein-paper")) == 3
    for name in ("silverbox", "emps", "bouc-wen", "silverbox-paper", "wiener-hammerstein-paper", "rlc-paper"):
        cls = _task_class(name)
        for f in cls.data_files(cls.Params()):
            assert len(f.sha256) == 64 and f.source and f.url and f.url.startswith("https://"), f


def test_checksum_mismatch_names_file_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_OFFLINE", "1")
    bad = tmp_path / "sysid/silverbox/SNLS80mV.mat"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the silverbox data")
    with pytest.raises(DataFileError) as err:
        _task("silverbox", tmp_path)
    msg = str(err.value)
    assert "checksum mismatch" in msg and "sysid/silverbox/SNLS80mV.mat" in msg
    assert "drive.google.com" in msg and "SilverboxFiles/SNLS80mV.mat" in msg and "Wigren" in msg


def test_missing_file_offline_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_OFFLINE", "1")
    with pytest.raises(DataFileError) as err:
        _task("emps", tmp_path)
    msg = str(err.value)
    assert "missing data file sysid/emps/DATA_EMPS.mat" in msg and "Janot" in msg


def test_params_are_validated():
    cls = _task_class("silverbox")
    with pytest.raises(ValueError):
        cls.Params(test="sinesweep")
    with pytest.raises(ValueError):
        _task_class("bouc-wen").Params(test="arrow")
    with pytest.raises(ValueError):
        _task_class("emps").Params(val_fraction=0.0)
