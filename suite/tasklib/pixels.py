"""Pixel-sequence tasks: 28 x 28 images read as 784 grey-level tokens, one pixel per step.

A :class:`PixelTask` provides, per split, ``uint8`` images ``[N, 784]`` (row-major, or a fixed
random permutation of the pixel order with ``permutation_seed``) and integer labels ``[N]``.
Grey levels are tokens: ``levels`` (default 256, no quantisation) symbols, pixel ``p`` becoming
``p * levels // 256``. Two variants (param ``variant``):

* ``generative`` -- next-pixel prediction: ``x_t = pixel t`` and ``y_t = pixel t + 1`` for
  ``t = 0 .. 782``, so sequences have 783 steps and the first pixel is never predicted (no start
  token). Metrics: ``bpp`` (bits per pixel = CE / ln 2 over the 783 predicted pixels of every
  digit; primary, min) and ``ce`` (nats/pixel). A uniform predictor scores ``log2(levels)``.
* ``classification`` -- sequential (p)MNIST: ``x`` = all 784 pixels, ``y`` = the label repeated
  at every step and ``mask`` True only at the last step (t = 783), so only the prediction after
  the whole image counts. Metrics: ``acc`` (primary, max) and ``ce`` (nats, at the last step).

Evaluation runs the model over whole digits from the zero state, in batches of ``eval_batch``
digits. ``max_train`` keeps the first N training digits (CPU runs); ``max_val`` the first N
validation digits (faster model selection); the test split is always complete.
"""

from __future__ import annotations

import gzip
from abc import abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from suite.contracts import IOSpec, MetricSpec, Params, RecurrentModel, SequenceData, Task, model_device_dtype
from suite.metrics.language import CrossEntropyAccumulator

PIXELS = 784
IMAGE_SHAPE = (28, 28)

# IDX type codes (http://yann.lecun.com/exdb/mnist/): data are big-endian
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(payload: bytes) -> np.ndarray:
    """Decode an (uncompressed) IDX file: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian
    uint32 sizes, then the data in row-major, big-endian order."""
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0:
        raise ValueError("not an IDX file (the magic number must start with two zero bytes)")
    code, ndim = payload[2], payload[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise ValueError("truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(payload, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape, dtype=np.int64)) if ndim else 1
    if len(payload) - header != count * dtype.itemsize:
        raise ValueError(
            f"IDX payload has {len(payload) - header} bytes, expected {count * dtype.itemsize} for shape {shape}"
        )
    data = np.frombuffer(payload, dtype=dtype, count=count, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (detected from the gzip magic bytes)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return parse_idx(raw)


class PixelParams(Params):
    variant: Literal["generative", "classification"] = Field(
        "generative",
        description="generative: next-pixel prediction (bpp); classification: label at the last step (acc)",
    )
    max_train: int | None = Field(None, ge=1, description="keep the first N training digits (None: all)")
    max_val: int | None = Field(
        None, ge=1, description="keep the first N validation digits (None: all); test is always full"
    )
    levels: int = Field(256, ge=2, le=256, description="grey levels (tokens); pixel p -> p * levels // 256")
    permutation_seed: int | None = Field(
        None, description="fixed random pixel order from this seed (permuted MNIST); None: row-major"
    )
    eval_batch: int = Field(200, ge=1, description="digits per evaluation batch")


def quantize(images: np.ndarray, levels: int) -> np.ndarray:
    """``uint8`` pixels 0..255 -> tokens 0..levels-1 (``p * levels // 256``; identity for 256)."""
    images = np.asarray(images, dtype=np.uint8)
    if levels == 256:
        return images
    return (images.astype(np.int32) * levels // 256).astype(np.uint8)


class PixelTask(Task):
    """Base class: subclasses implement :meth:`arrays` and set ``num_classes``."""

    family = "pixels"
    Params = PixelParams
    num_classes: ClassVar[int] = 10
    GENERATIVE_METRICS: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("bpp", "min", "bits/pixel", "bits per pixel over pixels 2..784 of every digit (generative)", low=0.0),
        MetricSpec("ce", "min", "nats/token", "mean cross-entropy per scored position", low=0.0),
    )
    CLASSIFICATION_METRICS: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("acc", "max", "fraction", "accuracy of the prediction after the last pixel (classification)", low=0.0, high=1.0),
        MetricSpec("ce", "min", "nats/token", "mean cross-entropy per scored position", low=0.0),
    )
    # class level: every metric either variant may report (the instance narrows it to its variant)
    metrics = GENERATIVE_METRICS + CLASSIFICATION_METRICS[:1]
    primary_metric = "bpp"

    @abstractmethod
    def arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``(images uint8 [N, 784] or [N, 28, 28], labels [N])`` for every split in :attr:`splits`."""

    def __init__(self, params: Any, data_dir: Any = None) -> None:
        super().__init__(params, data_dir)
        p = self.params
        self.generative = p.variant == "generative"
        self.metrics = self.GENERATIVE_METRICS if self.generative else self.CLASSIFICATION_METRICS
        self.primary_metric = "bpp" if self.generative else "acc"
        self.input = IOSpec("tokens", p.levels)
        self.output = IOSpec("tokens", p.levels if self.generative else self.num_classes)

    @cached_property
    def permutation(self) -> np.ndarray | None:
        seed = self.params.permutation_seed
        return None if seed is None else np.random.default_rng(seed).permutation(PIXELS)

    @cached_property
    def _arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        p, out = self.params, {}
        for split, (images, labels) in self.arrays().items():
            images = np.asarray(images).reshape(len(images), -1)
            labels = np.asarray(labels, dtype=np.int64).reshape(-1)
            if images.shape[1] != PIXELS or len(labels) != len(images):
                raise ValueError(f"{self.name}/{split}: images {images.shape} / labels {labels.shape}")
            limit = p.max_train if split == "train" else p.max_val if split == "val" else None
            if limit is not None:
                images, labels = images[:limit], labels[:limit]
            images = quantize(images, p.levels)
            if self.permutation is not None:
                images = images[:, self.permutation]
            out[split] = (np.ascontiguousarray(images), labels)
        return out

    def split_sizes(self) -> dict[str, int]:
        return {s: len(self._arrays[s][1]) for s in self.splits}


    def split(self, name: str) -> SequenceData:
        images, labels = self._arrays[name]
        pix = torch.as_tensor(images).long()
        if self.generative:
            return SequenceData(pix[:, :-1].contiguous(), pix[:, 1:].contiguous())
        y = torch.as_tensor(labels)[:, None].expand(-1, PIXELS).contiguous()
        mask = torch.zeros(len(labels), PIXELS, dtype=torch.bool)
        mask[:, -1] = True
        return SequenceData(pix, y, mask)

    @torch.no_grad()
    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        device, _ = model_device_dtype(model)
        images, labels = self._arrays[split]
        acc = CrossEntropyAccumulator()
        for start in range(0, len(labels), self.params.eval_batch):
            pix = torch.as_tensor(images[start : start + self.params.eval_batch]).long().to(device)
            if self.generative:
                logits, _ = model(pix[:, :-1])  # zero initial state
                acc.add(logits, pix[:, 1:])
            else:
                logits, _ = model(pix)
                acc.add(logits[:, -1], torch.as_tensor(labels[start : start + self.params.eval_batch]).to(device))
        r = acc.result()
        if self.generative:
            return {"bpp": r["bpc"], "ce": r["ce"]}
        return {"acc": r["acc"], "ce": r["ce"]}
