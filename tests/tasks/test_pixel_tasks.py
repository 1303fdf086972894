"""Pixel-sequence tasks: IDX parsing, variants, masks, bits per pixel, real MNIST / Fashion-MNIST."""

from __future__ import annotations

import gzip
import inspect
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.contracts import IOSpec, RecurrentModel
from suite.registry import Registry, builtin_dir
from suite.tasklib.pixels import PixelParams, PixelTask, parse_idx, quantize, read_idx

# --- helpers --------------------------------------------------------------------------------


class ZeroLogits(RecurrentModel):
    """Outputs all-zero logits: the uniform predictor (log2(V) bits per token)."""

    name = "zero-logits-test"

    def __init__(self, input: IOSpec, output: IOSpec) -> None:
        super().__init__(input, output, RecurrentModel.Params())
        self.state_size = 1
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, 1, dtype=self.dummy.dtype, device=x.device)

    def step(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return h

    def readout(self, h: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(*h.shape[:-1], self.output_spec.size, dtype=h.dtype, device=h.device) + 0 * self.dummy

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.initial_state(x.shape[0]) if h0 is None else h0  # constant state: skip the step loop
        return self.readout(h[:, None].expand(-1, x.shape[1], -1)), h


class _ToyPixels(PixelTask):
    """Generated 28x28 'digits' (not a plugin: the registry does not read test files)."""

    name = "toy-pixels-test"
    sizes = {"train": 12, "val": 5, "test": 7}

    def arrays(self):
        rng = np.random.default_rng(0)
        return {
            s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
            for s, n in self.sizes.items()
        }


def _idx_bytes(array: np.ndarray, code: int, dtype: str) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


# --- IDX ------------------------------------------------------------------------------------


def test_idx_parsing_roundtrip(tmp_path: Path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 255], dtype=np.uint8)
    (tmp_path / "img.idx.gz").write_bytes(gzip.compress(_idx_bytes(images, 0x08, ">u1")))
    (tmp_path / "lab.idx").write_bytes(_idx_bytes(labels, 0x08, ">u1"))
    got = read_idx(tmp_path / "img.idx.gz")
    assert got.shape == (3, 4, 5) and got.dtype == np.uint8 and np.array_equal(got, images)
    assert np.array_equal(read_idx(tmp_path / "lab.idx"), labels)
    ints = np.array([[-2, 70000], [3, -1]], dtype=np.int32)
    assert np.array_equal(parse_idx(_idx_bytes(ints, 0x0C, ">i4")), ints)
    floats = np.array([0.5, -1.25], dtype=np.float32)
    out = parse_idx(_idx_bytes(floats, 0x0D, ">f4"))
    assert np.array_equal(out, floats) and out.dtype.isnative


def test_idx_parsing_errors():
    good = _idx_bytes(np.zeros((2, 2), dtype=np.uint8), 0x08, ">u1")
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="type code"):
        parse_idx(good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match="expected"):
        parse_idx(good[:-1])


# --- protocol on generated digits -------------------------------------------------------------


def test_generative_split_alignment():
    task = _ToyPixels(PixelParams())
    assert task.input == task.output == IOSpec("tokens", 256) and task.primary_metric == "bpp"
    data = task.split("train")
    assert data.x.shape == data.y.shape == (12, 783) and data.x.dtype == torch.long and data.mask is None
    assert torch.equal(data.y[:, :-1], data.x[:, 1:])
    images = torch.as_tensor(task.arrays()["train"][0].reshape(12, 784)).long()
    assert torch.equal(data.x, images[:, :783]) and torch.equal(data.y, images[:, 1:])
    assert task.split_sizes() == {"train": 12, "val": 5, "test": 7}


def test_classification_mask_one_per_sequence():
    task = _ToyPixels(PixelParams(variant="classification"))
    assert task.output == IOSpec("tokens", 10) and task.primary_metric == "acc"
    assert task.metric("acc").direction == "max"
    data = task.split("train")
    labels = torch.as_tensor(task.arrays()["train"][1])
    assert data.x.shape == data.y.shape == data.mask.shape == (12, 784)
    assert data.mask.dtype == torch.bool
    assert torch.equal(data.mask.sum(1), torch.ones(12, dtype=torch.long)) and data.mask[:, -1].all()
    assert torch.equal(data.y[:, -1], labels) and (data.y == labels[:, None]).all()


def test_uniform_predictor_is_8_bits_per_pixel():
    task = _ToyPixels(PixelParams(eval_batch=4))
    model = ZeroLogits(task.input, task.output)
    for split in task.splits:
        r = task.evaluate(model, split)
        assert r["bpp"] == pytest.approx(8.0, abs=1e-12)
        assert r["ce"] == pytest.approx(math.log(256), abs=1e-12)
    coarse = _ToyPixels(PixelParams(levels=16))
    assert coarse.evaluate(ZeroLogits(coarse.input, coarse.output), "val")["bpp"] == pytest.approx(4.0, abs=1e-12)


def test_classification_evaluation_scores_last_step():
    task = _ToyPixels(PixelParams(variant="classification", eval_batch=3))
    r = task.evaluate(ZeroLogits(task.input, task.output), "test")
    labels = task.arrays()["test"][1]
    assert set(r) == {"acc", "ce"}
    assert r["ce"] == pytest.approx(math.log(10), abs=1e-12)
    assert r["acc"] == pytest.approx(np.mean(labels == 0))  # argmax of equal logits is class 0


def test_quantize_permutation_and_limits():
    assert quantize(np.array([0, 15, 16, 255], dtype=np.uint8), 16).tolist() == [0, 0, 1, 15]
    task = _ToyPixels(PixelParams(max_train=5, max_val=2, permutation_seed=3, levels=16))
    assert task.split_sizes() == {"train": 5, "val": 2, "test": 7}
    raw = task.arrays()["train"][0].reshape(12, 784)[:5]
    perm = np.random.default_rng(3).permutation(784)
    assert np.array_equal(task._arrays["train"][0], raw[:, perm] // 16)
    assert task.split("train").x.max() < 16


# --- real data ------------------------------------------------------------------------------


from conftest import data_or_skip as _data_or_skip  # noqa: E402  (shared skip rule)


def _registry() -> Registry:
    reg = Registry()  # only this plugin file: faster than discovering every plugin
    reg.add_file(builtin_dir("datasets") / "pixels.py", "tasks")
    assert not reg.failures, reg.failures
    return reg


def _task(name: str, **params) -> PixelTask:
    cls = _registry().get("tasks", name)
    files = [f.path for f in cls.data_files(cls.Params())]
    return cls(cls.Params(**params), _data_or_skip(*files))


@pytest.mark.data
def test_mnist_test_split_by_index():
    task = _task("mnist-test", variant="classification")
    assert task.split_sizes() == {"train": 8000, "val": 1000, "test": 1000}
    root = _data_or_skip("pixels/mnist/t10k-labels-idx1-ubyte.gz")
    labels = read_idx(root / "pixels/mnist/t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and np.array_equal(task._arrays["test"][1], labels[9000:])
    data = task.split("val")
    assert data.x.shape == (1000, 784) and int(data.mask.sum()) == 1000 and data.mask[:, -1].all()
    assert int(data.x.max()) == 255 and int(data.x.min()) == 0


@pytest.mark.data
def test_mnist_5k_stratified():
    task = _task("mnist-5k")
    assert task.split_sizes() == {"train": 4000, "val": 500, "test": 500}
    assert _task("mnist-5k", max_train=20, max_val=30).split_sizes() == {"train": 20, "val": 30, "test": 500}
    for split, per_class in (("train", 400), ("val", 50), ("test", 50)):
        labels = task._arrays[split][1]
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
        assert labels[:10].tolist() == list(range(10))  # interleaved by class
    assert task.split("train").x.shape == (4000, 783)
    small = _task("mnist-5k", max_val=40)
    assert small.evaluate(ZeroLogits(small.input, small.output), "val")["bpp"] == pytest.approx(8.0, abs=1e-12)
    module = inspect.getmodule(type(task))
    idx = module.stratified_split(np.repeat(np.arange(3), 4), {"a": 2, "b": 1, "c": 1})
    assert idx["a"].tolist() == [0, 4, 8, 1, 5, 9] and idx["c"].tolist() == [3, 7, 11]


@pytest.mark.data
def test_fashion_mnist_splits():
    task = _task("fashion-mnist", variant="classification", max_train=100)
    assert task.split_sizes() == {"train": 100, "val": 5000, "test": 10000}
    root = _data_or_skip("pixels/fashion_mnist/train-labels-idx1-ubyte.gz")
    train_labels = read_idx(root / "pixels/fashion_mnist/train-labels-idx1-ubyte.gz")
    assert train_labels.shape == (60000,)
    assert np.array_equal(task._arrays["val"][1], train_labels[55000:])
    assert np.bincount(task._arrays["test"][1]).tolist() == [1000] * 10
    assert task.split("train").mask.sum(1).eq(1).all()


@pytest.mark.data
def test_pixel_checksums_match_sha256sums():
    root = _data_or_skip("SHA256SUMS")
    sums = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, path = line.split()
            sums[path.removeprefix("./")] = digest
    reg = _registry()
    for name in ("mnist-test", "mnist-5k", "fashion-mnist"):
        cls = reg.get("tasks", name)
        for f in cls.data_files(cls.Params()):
            assert sums[f.path] == f.sha256, f.path
