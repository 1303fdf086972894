"""Token-stream language modelling: batchified training streams, carried-state evaluation.

A :class:`TokenStreamTask` provides, per split, one long stream of token ids (a 1-D integer
array) and a vocabulary. The protocol (carried-state evaluation in chunks, as in
Aicher et al., UAI 2019):

* **Training data** (``split("train")``): the stream is cut into ``streams`` contiguous columns of
  equal length ``L = (N - 1) // streams`` ("batchified"); ``x[j] = s[j L : (j+1) L]`` and
  ``y[j] = s[j L + 1 : (j+1) L + 1]`` -- the next token. Column ``j`` ends where column ``j + 1``
  begins, so ``y[j, -1] == x[j + 1, 0]`` and no pair is lost at column boundaries; only the last
  ``(N - 1) mod streams`` pairs of the stream are dropped. Methods cut windows along time from
  these columns (stateful TBPTT carries the state from one window to the next in a column).
* **Evaluation** (``evaluate(model, split)``): the split is batchified into ``eval_streams``
  columns the same way and read in chunks of ``eval_chunk`` tokens; **the recurrent state is
  carried across chunks** (the final state of a chunk, under ``no_grad``, starts the next), so
  the result does not depend on ``eval_chunk`` up to rounding. Each column starts from the zero
  state. The pairs left over by the batchification (fewer than ``eval_streams``) are scored too:
  they continue the last column, from its final state. Every next-token pair of the split is
  therefore scored exactly once; with ``eval_streams = 1`` this is a single pass over the whole
  split. The summed cross-entropy gives ``ce`` (nats/token) and ``ppl = exp(ce)`` for word-level
  tasks or ``bpc = ce / ln 2`` for character-level ones.

``split("val")`` / ``split("test")`` return the ``eval_streams`` batchification used by the
evaluation (never given to methods).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from suite.contracts import IOSpec, MetricSpec, Params, RecurrentModel, SequenceData, Task, model_device_dtype
from suite.metrics.language import CrossEntropyAccumulator


class LanguageParams(Params):
    streams: int = Field(32, ge=1, description="parallel columns the training stream is batchified into")
    eval_chunk: int = Field(256, ge=1, description="evaluation chunk length; the state is carried across chunks")
    eval_streams: int = Field(8, ge=1, description="parallel columns in evaluation (each starts from the zero state)")
    max_train_tokens: int | None = Field(
        None, ge=2, description="use only the first N training tokens (CPU smoke runs); None: all"
    )


def build_vocab(sequences: Iterable[Iterable[str]], extra: Sequence[str] = ()) -> list[str]:
    """Deterministic vocabulary: the sorted set of all symbols in ``sequences`` (and ``extra``)."""
    symbols: set[str] = set(extra)
    for seq in sequences:
        symbols.update(seq)
    return sorted(symbols)


def encode(tokens: Iterable[str], vocab: Sequence[str], what: str = "stream") -> np.ndarray:
    """Token ids (int64) of ``tokens`` under ``vocab``; unknown symbols are an error."""
    index = {s: i for i, s in enumerate(vocab)}
    try:
        return np.fromiter((index[t] for t in tokens), dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"{what}: symbol {exc.args[0]!r} is not in the vocabulary") from None


def batchify(stream: np.ndarray | torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut a stream of ``N`` tokens into ``columns`` contiguous next-token columns.

    Returns ``(x, y, rest)``: ``x, y`` are ``[columns, L]`` long tensors, ``L = (N - 1) // columns``,
    ``x[j] = s[jL : (j+1)L]`` and ``y[j] = s[jL+1 : (j+1)L+1]``; ``rest = s[columns L :]`` holds the
    leftover pairs ``rest[:-1] -> rest[1:]`` (``(N - 1) mod columns`` of them), which continue the
    last column (``rest[0] == y[-1, -1]``).
    """
    s = torch.as_tensor(np.asarray(stream), dtype=torch.long)
    if s.ndim != 1 or len(s) < 2:
        raise ValueError(f"a token stream must be 1-D with at least 2 tokens, got shape {tuple(s.shape)}")
    n_pairs = len(s) - 1
    if n_pairs < columns:
        raise ValueError(f"stream of {len(s)} tokens is too short for {columns} columns")
    length = n_pairs // columns
    used = columns * length
    x = s[:used].reshape(columns, length)
    y = s[1 : used + 1].reshape(columns, length)
    rest = s[used:]  # rest[0] == y[-1, -1]: the input of the first leftover pair
    return x, y, rest


class TokenStreamTask(Task):
    """Base class: subclasses set ``level`` ("word" or "char") and implement :meth:`load`."""

    family = "language"
    Params = LanguageParams
    level: ClassVar[Literal["word", "char"]] = "word"

    @classmethod
    def metric_specs(cls, level: str) -> tuple[MetricSpec, ...]:
        ce = MetricSpec("ce", "min", "nats/token", "mean next-token cross-entropy, carried-state evaluation", low=0.0)
        if level == "word":
            return (ce, MetricSpec("ppl", "min", "1", "perplexity exp(ce)", low=1.0))
        return (ce, MetricSpec("bpc", "min", "bits/char", "bits per character, ce / ln 2", low=0.0))

    @abstractmethod
    def load(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """``(vocab, {split: token ids})`` for every split in :attr:`splits`."""

    build_vocab = staticmethod(build_vocab)
    encode = staticmethod(encode)

    def __init__(self, params: Any, data_dir: Any = None) -> None:
        super().__init__(params, data_dir)
        vocab = self.vocab
        self.input = IOSpec("tokens", len(vocab))
        self.output = IOSpec("tokens", len(vocab))

    @cached_property
    def _loaded(self) -> tuple[list[str], dict[str, np.ndarray]]:
        vocab, streams = self.load()
        out = {}
        for split in self.splits:
            ids = np.asarray(streams[split], dtype=np.int64)
            if ids.ndim != 1 or len(ids) < 2:
                raise ValueError(f"{self.name}/{split}: a token stream must be 1-D with >= 2 tokens")
            if ids.min() < 0 or ids.max() >= len(vocab):
                raise ValueError(f"{self.name}/{split}: token ids outside the vocabulary of {len(vocab)}")
            out[split] = ids
        return list(vocab), out

    @property
    def vocab(self) -> list[str]:
        return self._loaded[0]

    def stream(self, split: str) -> np.ndarray:
        """The token ids of ``split`` (training: truncated to ``max_train_tokens`` if set)."""
        ids = self._loaded[1][split]
        if split == "train" and self.params.max_train_tokens is not None:
            ids = ids[: self.params.max_train_tokens]
        return ids

    def token_counts(self) -> dict[str, int]:
        return {s: len(self._loaded[1][s]) for s in self.splits}

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab[int(i)] for i in ids]


    def split(self, name: str) -> SequenceData:
        columns = self.params.streams if name == "train" else self.params.eval_streams
        x, y, _ = batchify(self.stream(name), columns)
        return SequenceData(x, y)

    @torch.no_grad()
    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        device, dtype = model_device_dtype(model)
        x, y, rest = batchify(self.stream(split), self.params.eval_streams)
        acc = CrossEntropyAccumulator()
        h = model.initial_state(x.shape[0], device, dtype)
        chunk = self.params.eval_chunk
        for start in range(0, x.shape[1], chunk):
            xc = x[:, start : start + chunk].to(device)
            logits, h = model(xc, h)  # state carried across chunks
            acc.add(logits, y[:, start : start + chunk].to(device))
        if len(rest) > 1:  # leftover pairs continue the last column from its final state
            h = h[-1:]
            rx, ry = rest[:-1], rest[1:]
            for start in range(0, len(rx), chunk):
                logits, h = model(rx[start : start + chunk][None].to(device), h)
                acc.add(logits, ry[start : start + chunk][None].to(device))
        r = acc.result()
        out = {"ce": r["ce"]}
        out["ppl" if self.level == "word" else "bpc"] = r["ppl" if self.level == "word" else "bpc"]
        return out
