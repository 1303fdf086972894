"""Token-stream language tasks: batchify alignment, carried-state evaluation, real PTB / shakespeare."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.contracts import IOSpec
from suite.models.rnn import GRU, RNNParams
from suite.registry import Registry, builtin_dir
from suite.tasklib.language import LanguageParams, TokenStreamTask, batchify, build_vocab, encode

# --- generated data -------------------------------------------------------------------------


class _ToyStream(TokenStreamTask):
    """A generated token stream (not a plugin: the registry does not read test files)."""

    name = "toy-stream-test"
    level = "char"
    metrics = TokenStreamTask.metric_specs("char")
    primary_metric = "bpc"
    lengths = {"train": 500, "val": 203, "test": 150}

    def load(self):
        rng = np.random.default_rng(0)
        vocab = build_vocab([list("abcdefg")])
        streams = {}
        for split, n in self.lengths.items():
            # a Markov-ish stream, so a trained model could beat uniform
            s = np.cumsum(rng.integers(0, 3, n)) % len(vocab)
            streams[split] = s
        return vocab, streams


def _gru(vocab: int, seed: int = 0) -> GRU:
    torch.manual_seed(seed)
    model = GRU(IOSpec("tokens", vocab), IOSpec("tokens", vocab), RNNParams(hidden_size=16, embed_dim=8))
    return model.double().eval()


def test_batchify_alignment():
    s = np.arange(103)
    x, y, rest = batchify(s, 4)
    assert x.shape == y.shape == (4, 25) and x.dtype == torch.long
    assert torch.equal(y, x + 1)  # y is the next token of the stream
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:-1, -1], x[1:, 0])  # columns are contiguous: nothing lost at boundaries
    assert rest.tolist() == [100, 101, 102] and rest[0] == y[-1, -1]
    with pytest.raises(ValueError):
        batchify(np.arange(3), 4)


def test_vocab_is_sorted_and_deterministic():
    v1 = build_vocab([["b", "a"], ["c", "a"]], extra=["<eos>"])
    v2 = build_vocab([["c"], ["a", "b"]], extra=["<eos>"])
    assert v1 == v2 == sorted(v1) == ["<eos>", "a", "b", "c"]
    assert encode(["a", "<eos>", "c"], v1).tolist() == [1, 0, 3]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode(["z"], v1)
    assert TokenStreamTask.build_vocab(["ba"]) == ["a", "b"]


def test_toy_task_splits_and_specs():
    task = _ToyStream(LanguageParams(streams=4, eval_streams=3))
    assert task.input == task.output == IOSpec("tokens", 7)
    train = task.split("train")
    assert train.x.shape == (4, 124) and train.mask is None
    stream = torch.as_tensor(task.stream("train"))
    assert torch.equal(train.x.reshape(-1), stream[:496]) and torch.equal(train.y.reshape(-1), stream[1:497])
    assert task.split("val").x.shape == (3, 67)
    small = _ToyStream(LanguageParams(streams=2, max_train_tokens=51))
    assert small.split("train").x.shape == (2, 25)
    assert {m.name for m in task.metrics} == {"ce", "bpc"}


def test_carried_state_equals_single_long_pass():
    model = _gru(7)
    # eval_streams = 1: the whole split in one column; chunked evaluation == one long pass
    results = {
        chunk: _ToyStream(LanguageParams(eval_chunk=chunk, eval_streams=1)).evaluate(model, "val")
        for chunk in (7, 10000)
    }
    assert results[7]["ce"] == pytest.approx(results[10000]["ce"], abs=1e-5)
    s = torch.as_tensor(_ToyStream(LanguageParams()).stream("val"))
    with torch.no_grad():
        logits, _ = model(s[None, :-1])
    direct = F.cross_entropy(logits[0], s[1:]).item()
    assert results[7]["ce"] == pytest.approx(direct, abs=1e-5)
    assert results[7]["bpc"] == pytest.approx(direct / math.log(2), abs=1e-5)


def test_carried_state_with_columns_and_leftover():
    model = _gru(7, seed=1)
    # 203 tokens = 202 pairs -> 3 columns of 67 and 1 leftover pair continuing the last column
    ce = [_ToyStream(LanguageParams(eval_chunk=c, eval_streams=3)).evaluate(model, "val")["ce"] for c in (7, 10000)]
    assert ce[0] == pytest.approx(ce[1], abs=1e-5)
    s = torch.as_tensor(_ToyStream(LanguageParams()).stream("val"))
    total = 0.0
    with torch.no_grad():
        for j in range(3):
            seg = s[j * 67 : (j + 1) * 67 + 1] if j < 2 else s[2 * 67 :]  # last column takes the leftover
            logits, _ = model(seg[None, :-1])
            total += F.cross_entropy(logits[0], seg[1:], reduction="sum").item()
    assert ce[0] == pytest.approx(total / 202, abs=1e-5)


# --- real data ------------------------------------------------------------------------------


from conftest import data_or_skip as _data_or_skip  # noqa: E402  (shared skip rule)

PTB = [f"language/ptb/ptb.{s}.txt" for s in ("train", "valid", "test")]
SHAKESPEARE = "language/tiny_shakespeare/input.txt"


def _task_class(name: str):
    reg = Registry()  # only this plugin file: faster than discovering every plugin
    reg.add_file(builtin_dir("datasets") / "language.py", "tasks")
    assert not reg.failures, reg.failures
    return reg.get("tasks", name)


def _task(name: str, root: Path, **params):
    cls = _task_class(name)
    return cls(cls.Params(**params), root)


@pytest.mark.data
def test_ptb_word_counts_and_vocab():
    task = _task("ptb-word", _data_or_skip(*PTB))
    assert len(task.vocab) == 10000 and "<eos>" in task.vocab and "<unk>" in task.vocab
    assert task.vocab == sorted(task.vocab)
    assert task.token_counts() == {"train": 929589, "val": 73760, "test": 82430}
    assert task.decode(task.stream("train")[:3]) == ["aer", "banknote", "berlitz"]
    assert task.primary_metric == "ppl" and task.metric("ppl").direction == "min"
    train = task.split("train")
    assert train.x.shape == (32, 929588 // 32)
    assert torch.equal(train.y[:, :-1], train.x[:, 1:]) and torch.equal(train.y[:-1, -1], train.x[1:, 0])


@pytest.mark.data
def test_ptb_char_convention():
    task = _task("ptb-char", _data_or_skip(*PTB))
    assert len(task.vocab) == 49 and "<unk>" in task.vocab and "\n" in task.vocab and " " in task.vocab
    assert "<" not in task.vocab and "_" not in task.vocab
    assert task.token_counts() == {"train": 4837402, "val": 379102, "test": 423247}
    head = "".join(task.decode(task.stream("train")[:22]))
    assert head == "aer banknote berlitz c"
    assert task.primary_metric == "bpc"


@pytest.mark.data
def test_tiny_shakespeare_splits():
    task = _task("tiny-shakespeare", _data_or_skip(SHAKESPEARE))
    assert len(task.vocab) == 65
    counts = task.token_counts()
    assert sum(counts.values()) == 1115394
    assert counts == {"train": 953662, "val": 50192, "test": 111540}
    assert counts["test"] == 1115394 - int(1115394 * 0.9)
    assert "".join(task.decode(task.stream("train")[:14])) == "First Citizen:"
    text = (_data_or_skip(SHAKESPEARE) / SHAKESPEARE).read_text()
    assert "".join(task.decode(task.stream("test")[:50])) == text[int(len(text) * 0.9) :][:50]
    train = task.split("train")
    assert torch.equal(train.y[:, :-1], train.x[:, 1:]) and torch.equal(train.y[:-1, -1], train.x[1:, 0])


@pytest.mark.data
def test_language_checksums_match_sha256sums():
    root = _data_or_skip("SHA256SUMS")
    sums = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, path = line.split()
            sums[path.removeprefix("./")] = digest
    for name in ("ptb-word", "ptb-char", "tiny-shakespeare"):
        cls = _task_class(name)
        for f in cls.data_files(cls.Params()):
            assert sums[f.path] == f.sha256, f.path
