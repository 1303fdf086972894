"""markov-tokens with a long-range dependency: the next token also depends on the token ``lag`` steps back."""

from __future__ import annotations

import numpy as np
import pytest

from suite.registry import load_registry


def task(**params):
    cls = load_registry().get("tasks", "markov-tokens")
    return cls(cls.Params(**params))


def test_the_lagged_token_drives_the_source():
    t = task(vocab=3, order=1, lag=20, concentration=0.3, train_tokens=60_000, val_tokens=100, test_tokens=40_000)
    s = t.load()[1]["train"]
    # empirical next-token frequencies given (previous token, token 20 back) match the table's rows
    prev, lagged, nxt = s[19:-1], s[:-20], s[20:]
    rows = prev * 3 + lagged
    for row in range(9):
        sel = nxt[rows == row]
        freq = np.bincount(sel, minlength=3) / len(sel)
        assert np.abs(freq - t.table[row]).max() < 0.03, (row, freq, t.table[row])
    assert t.split("train").x.shape[0] == 16  # batchified as the language protocol does
    # ignoring the lagged token costs bits: the short-memory optimum is worse than the entropy rate
    assert t.short_memory_bits() > t.entropy_rate_bits() + 0.1


def test_without_lag_nothing_changes():
    a, b = task(vocab=4, order=2), task(vocab=4, order=2, lag=0)
    assert np.array_equal(a.load()[1]["train"], b.load()[1]["train"])
    assert a.short_memory_bits() == pytest.approx(a.entropy_rate_bits())
    assert task(vocab=4, order=2, lag=5).load()[1]["train"].tolist() != a.load()[1]["train"].tolist()
