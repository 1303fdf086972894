import math

import numpy as np
import pytest
import torch

from suite.metrics import (
    CrossEntropyAccumulator,
    accuracy,
    bits_per_token,
    nats_per_token,
    perplexity,
)


def test_from_summed_ce():
    ce_sum, n = 10 * math.log(4.0), 10
    assert nats_per_token(ce_sum, n) == pytest.approx(math.log(4.0))
    assert perplexity(ce_sum, n) == pytest.approx(4.0)
    assert bits_per_token(ce_sum, n) == pytest.approx(2.0)
    assert math.isnan(nats_per_token(0.0, 0))
    assert perplexity(1e6, 1) == math.inf


def test_accuracy_labels_and_logits():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert accuracy(logits, [0, 1, 1]) == pytest.approx(2 / 3)
    assert accuracy(torch.tensor(logits), torch.tensor([0, 1, 0])) == pytest.approx(1.0)


def test_accumulator_uniform_logits():
    acc = CrossEntropyAccumulator()
    vocab = 8
    acc.add(torch.zeros(2, 3, vocab), torch.randint(0, vocab, (2, 3)))
    acc.add(torch.zeros(4, vocab), torch.randint(0, vocab, (4,)))
    r = acc.result()
    assert r["n_tokens"] == 10
    assert r["ce"] == pytest.approx(math.log(vocab))
    assert r["ppl"] == pytest.approx(vocab)
    assert r["bpc"] == pytest.approx(3.0)
    assert r["bits"] == pytest.approx(3.0)


def test_accumulator_matches_mean_ce_and_ignore_index():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, 11)
    targets = torch.randint(0, 11, (5, 7))
    targets[0, :3] = -100
    acc = CrossEntropyAccumulator()
    acc.add(logits[:2], targets[:2])
    acc.add(logits[2:], targets[2:])
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1)).item()
    r = acc.result()
    assert r["n_tokens"] == 35 - 3
    assert r["ce"] == pytest.approx(expected, rel=1e-6)
    valid = targets != -100
    exp_acc = ((logits.argmax(-1) == targets) & valid).sum().item() / valid.sum().item()
    assert r["acc"] == pytest.approx(exp_acc)
    acc.reset()
    assert math.isnan(acc.result()["ce"])
