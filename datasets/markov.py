"""A generated token task: a k-th order Markov source over a small vocabulary (``markov-tokens``).

The source: every context of the last ``order`` tokens (``vocab ** order`` of them) has a next-token
distribution drawn once from a symmetric Dirichlet(``concentration``) with ``numpy``'s
``default_rng(seed)``; the first ``order`` tokens of a stream are uniform.

**Long-range dependency** (``lag > 0``): the context is the last ``order`` tokens *and* the token ``lag``
steps back, ``vocab ** (order + 1)`` rows. A model has to carry that token over ``lag`` steps; truncated
BPTT with a window shorter than ``lag`` gets no gradient for it. Positions with fewer than ``lag`` earlier
tokens use token 0 as the lagged one. :meth:`MarkovTokens.short_memory_bits` is the best bits per token of
a model that ignores the lagged token, :meth:`MarkovTokens.entropy_rate_bits` the best of one that uses it
(both estimated on the test stream for ``lag > 0``). The train, val and test
streams are independent draws from the same source (stream seeds derived from ``seed`` and the split),
so the task is deterministic and needs no data files.

Protocol: the language-modelling one of :mod:`suite.tasklib.language` -- training data are the train
stream batchified into ``streams`` columns (``x = tokens[:, :-1]``, ``y = tokens[:, 1:]`` per
column), evaluation is carried-state cross-entropy over the whole split (``eval_streams`` columns,
each from the zero state, chunks of ``eval_chunk`` with the state carried). Metrics: ``bpt`` (bits
per token, primary) and ``ce`` (nats per token). :meth:`MarkovTokens.entropy_rate_bits` is the
source's entropy rate -- the best achievable ``bpt`` in the long run.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from pydantic import Field

from suite.contracts import MetricSpec, RecurrentModel
from suite.tasklib.language import LanguageParams, TokenStreamTask

_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


class MarkovParams(LanguageParams):
    vocab: int = Field(8, ge=2, le=64, description="vocabulary size")
    order: int = Field(2, ge=1, le=6, description="Markov order k (the next token depends on the last k)")
    concentration: float = Field(0.3, gt=0.0, description="Dirichlet concentration of the transition rows")
    seed: int = Field(0, description="seed of the source and of the streams")
    lag: int = Field(0, ge=0, le=100_000, description="also condition on the token this many steps back (0: none)")
    train_tokens: int = Field(20000, ge=16, description="tokens in the training stream")
    val_tokens: int = Field(4000, ge=16, description="tokens in the validation stream")
    test_tokens: int = Field(4000, ge=16, description="tokens in the test stream")
    streams: int = Field(16, ge=1, description="parallel columns the training stream is batchified into")
    eval_streams: int = Field(4, ge=1, description="parallel columns in evaluation (each from the zero state)")


def transition_table(vocab: int, order: int, concentration: float, seed: int, lag: int = 0) -> np.ndarray:
    """``[vocab ** order, vocab]`` next-token probabilities (``[vocab ** (order + 1), vocab]`` with a lag:
    the lagged token is the least significant digit of the row index); row index = base-``vocab`` number of
    the context, oldest token most significant."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(vocab, concentration), size=vocab ** (order + (1 if lag else 0)))


def generate(table: np.ndarray, vocab: int, order: int, n: int, seed: int, lag: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    out[:order] = rng.integers(0, vocab, order)
    u = rng.random(n)
    cdf = np.cumsum(table, axis=1)
    ctx = 0
    for i in range(order):
        ctx = ctx * vocab + int(out[i])
    mod = vocab ** (order - 1)
    for i in range(order, n):
        row = ctx if not lag else ctx * vocab + (int(out[i - lag]) if i >= lag else 0)
        tok = min(int(np.searchsorted(cdf[row], u[i], side="right")), vocab - 1)
        out[i] = tok
        ctx = (ctx % mod) * vocab + tok
    return out


def context_rows(tokens: np.ndarray, vocab: int, order: int, lag: int) -> np.ndarray:
    """The table row generating every position ``order..n-1`` of ``tokens`` (vectorised)."""
    n = len(tokens)
    ctx = np.zeros(n - order, dtype=np.int64)
    for j in range(order):
        ctx = ctx * vocab + tokens[j: n - order + j]
    if lag:
        idx = np.arange(order, n) - lag
        ctx = ctx * vocab + np.where(idx >= 0, tokens[np.clip(idx, 0, None)], 0)
    return ctx


class MarkovTokens(TokenStreamTask):
    name = "markov-tokens"
    summary = "generated k-th order Markov token source (small vocabulary): carried-state bits per token"
    family = "language"
    Params = MarkovParams
    level = "char"
    metrics = (
        MetricSpec("bpt", "min", "bits/token", "bits per token, ce / ln 2 (carried-state evaluation)", low=0.0),
        MetricSpec("ce", "min", "nats/token", "mean next-token cross-entropy, carried-state evaluation", low=0.0),
    )
    primary_metric = "bpt"

    @cached_property
    def table(self) -> np.ndarray:
        p = self.params
        return transition_table(p.vocab, p.order, p.concentration, p.seed, p.lag)

    def load(self) -> tuple[list[str], dict[str, np.ndarray]]:
        p = self.params
        sizes = {"train": p.train_tokens, "val": p.val_tokens, "test": p.test_tokens}
        streams = {split: generate(self.table, p.vocab, p.order, n, seed=p.seed * 1000 + 17 + _SPLIT_INDEX[split],
                                   lag=p.lag)
                   for split, n in sizes.items()}
        return [f"t{i}" for i in range(p.vocab)], streams

    def _test_rows(self) -> np.ndarray:
        p = self.params
        tokens = generate(self.table, p.vocab, p.order, p.test_tokens, seed=p.seed * 1000 + 17 + _SPLIT_INDEX["test"],
                          lag=p.lag)
        return context_rows(tokens, p.vocab, p.order, p.lag)

    def short_memory_bits(self) -> float:
        """Best bits/token without the lagged token: the entropy of the next token given the last ``order``
        tokens only, the lagged token marginalised with its frequency in the test stream (= the entropy
        rate when ``lag`` is 0)."""
        p = self.params
        if not p.lag:
            return self.entropy_rate_bits()
        rows = self._test_rows()
        counts = np.bincount(rows, minlength=self.table.shape[0]).reshape(-1, p.vocab).astype(float)
        mixed = (counts[:, :, None] * self.table.reshape(-1, p.vocab, p.vocab)).sum(1)
        weight = counts.sum(1)
        mixed = mixed / np.maximum(weight[:, None], 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.nansum(np.where(mixed > 0, mixed * np.log2(mixed), 0.0), axis=1)
        return float((weight * h).sum() / weight.sum())

    def entropy_rate_bits(self) -> float:
        """Entropy rate of the source in bits/token (stationary distribution over contexts; with a lag,
        the mean row entropy over the test stream's positions)."""
        p = self.params
        if p.lag:
            with np.errstate(divide="ignore", invalid="ignore"):
                h = -np.nansum(np.where(self.table > 0, self.table * np.log2(self.table), 0.0), axis=1)
            return float(h[self._test_rows()].mean())
        n_ctx, mod = p.vocab**p.order, p.vocab ** (p.order - 1)
        P = np.zeros((n_ctx, n_ctx))
        for c in range(n_ctx):
            for tok in range(p.vocab):
                P[c, (c % mod) * p.vocab + tok] += self.table[c, tok]
        pi = np.full(n_ctx, 1.0 / n_ctx)
        for _ in range(5000):
            pi = pi @ P
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.nansum(np.where(self.table > 0, self.table * np.log2(self.table), 0.0), axis=1)
        return float(pi @ h)


    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        out = super().evaluate(model, split)
        return {"bpt": out["bpc"], "ce": out["ce"]}
