"""Synthetic copy tasks of Aicher, Foti, Fox, "Adaptive Tuning of Truncated BPTT" (UAI 2019), ``copy``.

The data construction is the one of the authors' reference code, aicherc/adaptive_tbptt,
``tbptt/generate_data.py::generate_copy_sequence`` with the sizes of ``experiments/synth_script.py``
(``TRAIN_SEQ_LEN = 4000``, ``TEST_SEQ_LEN = 1000``, ``--batch_size 64``, ``--emsize 6``), re-implemented here:

* **Tokens** ``0`` = blank, ``1`` = start marker, ``2 .. num_states - 1`` = data symbols (the reference's
  ``num_states = emsize = 6``: 4 data symbols). Inputs are token ids over ``num_states`` classes (the
  reference one-hot encodes the same ids), outputs are class indices over the same ``num_states`` classes.
* **Segments.** A column is a concatenation of segments without gaps. A segment draws a copy length ``L``
  uniformly from the integers ``[min_lag, lag]``, then ``L`` tokens uniformly from ``{2 .. num_states - 1}``,
  and overwrites the first with the marker ``1``. It occupies ``2 L`` positions: input = the ``L`` tokens,
  then ``L`` blanks; target = ``L`` blanks, then the same ``L`` tokens (marker included). So in the second
  half of a segment the target is the input ``L`` steps earlier; everywhere else the target is blank.

  - ``lag_mode="fixed"``: ``L = lag`` always (``min_lag`` is forced to ``lag``; the paper's "fixed m = 10").
  - ``lag_mode="variable"``: ``L`` uniform on ``[min_lag, lag]`` (the paper's "variable m in [5, 10]").
    The model is given no lag: it has to count from the marker to the first blank.

* **Random phase.** Each column is generated longer than needed (segments until at least
  ``length + 2 lag`` positions), then its first ``offset`` positions are dropped, ``offset`` uniform on
  ``[0, 2 lag)`` (drawn once per column, after its segments), and ``length`` positions are kept. A column
  may therefore start inside a segment.

Reported in the paper: test perplexity, e.g. 1.036 for fixed lag 10 with K = 10 and 1.29-1.35 for the
variable lag; perplexity 1 is a perfect copy.

Protocol:

* ``split(name)`` returns ``x``, ``y`` of shape ``[columns, length]`` (``length = train_length`` for
  ``train``, ``eval_length`` for ``val``/``test``) and ``mask = None``: **every position is scored**,
  blank targets included, as in the reference (its loss and perplexity run over all positions). Methods
  cut windows along time from the training columns; stateful TBPTT carries the state along a column.
* Consequence of the random phase, kept because it is the reference's protocol: the first positions of a
  column can be unpredictable from the zero state -- blanks before the column's first marker whose
  targets copy tokens that lie before the column start (at most ``lag`` per column, about 5 on average
  for the fixed lag 10, about 3.7 for the variable lag in [5, 10]). They are scored all the same, so even
  a perfect copier has a perplexity slightly above 1.
* ``evaluate(model, split)``: each column from the zero state, chunks of ``eval_chunk`` steps (the paper
  evaluates in chunks of 100) with the state carried (no_grad), so the result does not depend on
  ``eval_chunk`` up to rounding. Metrics over all ``columns * length`` positions: ``ppl`` (primary) =
  exp(``ce``), ``ce`` (nats per position), ``acc`` (argmax == target, fraction). A uniform prediction
  gives ``ppl == num_states`` exactly.

Choices of this implementation (marked as such; the construction above is the reference's):

* [my choice] **random numbers**: ``numpy.random.default_rng([seed, split_index])`` (``seed`` is the data
  seed, not the trial seed; split indices train 0, val 1, test 2, so the three splits are independent
  draws, as the reference generates them by three separate calls). Columns are generated one after the
  other from that generator, each as: (copy length, tokens) per segment, then its offset -- the
  reference's order of draws, but not its legacy global ``np.random`` stream, so the numbers differ
  while the distribution is the same. A column depends only on the columns before it: more columns
  append columns.
* [my choice] **the phase shift is applied per column.** In the reference the shift statement sits inside
  the loop over columns and shifts *all* columns each time; a column thus gets the sum of its own and
  all later shifts, and since positions beyond ``seq_len`` are never shifted, the later shifts splice
  stale, misaligned pieces into the tail of every column but the last (segments cut short, repeated or
  interrupted). That is not reproduced: every column here is one unbroken segment stream with one
  random phase ("effectively a random phase per column").
* ``generator: authors`` reproduces the reference's generator *with* that quirk (same draws in the same order
  from the generator above: per column its segments, then one shift; after each column, the first
  ``length`` positions of *every* column are replaced by positions ``[shift, shift + length)`` of the
  ``length + 4 lag`` buffer, whose tail is never shifted). It is there to compare with the paper's numbers,
  not as a cleaner task: about a tenth of the test positions of the variable-lag data break the copy rule,
  which is why the paper's perplexities sit near 1.3 where the rule-abiding data give about 1.02.
  :func:`copier_perplexity` measures it: the perplexity of the best copier that follows the rule.
* [my choice] **token ids instead of one-hot inputs** (the model's embedding does the encoding). The
  reference one-hots over ``max(token) + 1`` classes, which is ``num_states`` in practice.
* [my choice] **checks**: ``num_states >= 3`` (the reference checks ``>= 2`` but needs a data symbol),
  ``lag >= 1``, ``min_lag >= 1`` and, in variable mode, ``min_lag <= lag``; in fixed mode ``min_lag`` is
  unused, so e.g. ``{lag_mode: fixed, lag: 3}`` is valid with the default ``min_lag = 5``.
* [my choice] ``train_length``, ``eval_length``, ``columns`` and ``eval_chunk`` are parameters (defaults:
  the reference's 4000, 1000, 64 and the paper's evaluation chunk 100) so that smoke runs can shrink them;
  val and test share ``eval_length`` and ``columns`` as in the reference.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from suite.contracts import IOSpec, MetricSpec, Params, RecurrentModel, SequenceData, Task, model_device_dtype
from suite.metrics.language import CrossEntropyAccumulator

_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
BLANK, MARKER = 0, 1


class CopyParams(Params):
    lag_mode: Literal["fixed", "variable"] = Field(
        "fixed", description="fixed: every copy length is lag; variable: copy lengths uniform on [min_lag, lag]"
    )
    lag: int = Field(10, ge=1, description="the copy length (fixed mode) or the largest copy length (variable mode)")
    min_lag: int = Field(5, ge=1, description="smallest copy length in variable mode (unused in fixed mode)")
    num_states: int = Field(
        6, ge=3, description="token classes: 0 blank, 1 start marker, 2..num_states-1 data symbols (emsize)"
    )
    seed: int = Field(0, ge=0, description="data seed (not the trial seed); train/val/test are independent draws")
    train_length: int = Field(4000, ge=1, description="positions per training column (reference TRAIN_SEQ_LEN)")
    eval_length: int = Field(1000, ge=1, description="positions per val/test column (reference TEST_SEQ_LEN)")
    columns: int = Field(64, ge=1, description="columns (batch rows) of every split (reference batch size)")
    eval_chunk: int = Field(100, ge=1, description="evaluation chunk length; the state is carried across chunks")
    generator: Literal["rnnbench", "authors"] = Field(
        "rnnbench", description="rnnbench: one random phase per column; authors: the reference code's generator "
        "including its quirk (every column re-shifted after each column; ~10% of variable-lag positions break the rule)"
    )

    @model_validator(mode="after")
    def _lag_range(self) -> CopyParams:
        if self.lag_mode == "variable" and self.min_lag > self.lag:
            raise ValueError(
                f"min_lag ({self.min_lag}) must be <= lag ({self.lag}) in variable-lag mode: "
                f"the copy length is drawn uniformly from [min_lag, lag]"
            )
        return self

    @property
    def lag_range(self) -> tuple[int, int]:
        """``(smallest, largest)`` copy length: ``(lag, lag)`` in fixed mode."""
        return (self.lag, self.lag) if self.lag_mode == "fixed" else (self.min_lag, self.lag)

    def length(self, split: str) -> int:
        return self.train_length if split == "train" else self.eval_length


def generate_column(
    rng: np.random.Generator, length: int, min_lag: int, lag: int, num_states: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """One column: ``(x, y, offset)``, int64 arrays of ``length`` positions and the dropped prefix length."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    n = 0
    while n < length + 2 * lag:
        L = int(rng.integers(min_lag, lag + 1))
        tokens = rng.integers(2, num_states, L, dtype=np.int64)
        tokens[0] = MARKER
        blanks = np.full(L, BLANK, dtype=np.int64)
        xs += [tokens, blanks]
        ys += [blanks, tokens]
        n += 2 * L
    offset = int(rng.integers(0, 2 * lag))
    x = np.concatenate(xs)[offset : offset + length]
    y = np.concatenate(ys)[offset : offset + length]
    return x, y, offset


def generate_authors(p: CopyParams, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference generator with its quirk (see the module docstring): ``(x, y, shifts)``; ``shifts[b]`` is
    the shift drawn after column ``b``, applied to the first ``length`` positions of every column."""
    rng = np.random.default_rng([p.seed, _SPLIT_INDEX[split]])
    lo, hi = p.lag_range
    n = p.length(split)
    inp = np.zeros((n + 4 * hi, p.columns), dtype=np.int64)
    out = np.zeros_like(inp)
    shifts = np.zeros(p.columns, dtype=np.int64)
    for b in range(p.columns):
        index = 0
        while index < n + 2 * hi:
            L = int(rng.integers(lo, hi + 1))
            tokens = rng.integers(2, p.num_states, L, dtype=np.int64)
            tokens[0] = MARKER
            inp[index : index + L, b] = tokens
            out[index + L : index + 2 * L, b] = tokens
            index += 2 * L
        shift = int(rng.integers(0, 2 * hi))
        shifts[b] = shift
        inp[:n] = inp[shift : n + shift].copy()  # every column, inside the column loop: the reference's quirk
        out[:n] = out[shift : n + shift].copy()
    return np.ascontiguousarray(inp[:n].T), np.ascontiguousarray(out[:n].T), shifts


def rule_predictions(x: np.ndarray, num_states: int) -> tuple[np.ndarray, np.ndarray]:
    """What the copy rule predicts from the inputs so far, per position of ``x [columns, length]``:
    ``(prediction, determined)``. At a token the target is the blank; at the k-th blank after the tokens of
    a segment it is the segment's k-th token (the blank once they are used up); at a blank before a column's
    first marker nothing is determined."""
    pred = np.zeros_like(x)
    determined = np.zeros(x.shape, dtype=bool)
    for c in range(x.shape[0]):
        register: list[int] = []
        blanks, seen, prev_blank = 0, False, False
        for t, tok in enumerate(x[c].tolist()):
            if tok == MARKER:
                register, blanks, seen = [], 0, True
            if tok != BLANK:
                if prev_blank:  # tokens after blanks without a marker: the rule is broken; start over
                    register, blanks = [], 0
                register.append(tok)
                pred[c, t], prev_blank = BLANK, False
            else:
                blanks += 1
                pred[c, t] = register[blanks - 1] if blanks <= len(register) else BLANK
                prev_blank = True
            determined[c, t] = seen or tok != BLANK  # at a token the target is the blank, marker or not
    return pred, determined


def copier_perplexity(x: np.ndarray, y: np.ndarray, num_states: int) -> dict[str, float]:
    """Perplexity of the best copier that follows the copy rule: uniform where the rule determines nothing,
    probability ``1 - eps`` on the rule's prediction elsewhere (``eps / (V - 1)`` on each other class), with
    ``eps`` the fraction of determined positions where the data break the rule (its maximum-likelihood value).
    Returns ``ppl``, ``broken`` (that fraction) and ``undetermined`` (the share of blanks before a column's
    first marker). On rule-abiding data ``eps = 0`` and ``ppl = V ** undetermined``."""
    pred, det = rule_predictions(x, num_states)
    V, N = num_states, x.size
    hits = int(((pred == y) & det).sum())
    misses = int(det.sum()) - hits
    eps = misses / max(hits + misses, 1)
    nll = (N - hits - misses) * math.log(V)
    if hits:
        nll -= hits * math.log(1 - eps)
    if misses:
        nll -= misses * math.log(eps / (V - 1))
    return {"ppl": math.exp(nll / N), "broken": eps, "undetermined": (N - hits - misses) / N}


def generate(p: CopyParams, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, offsets)`` of ``split``: ``[columns, length]`` int64 arrays and the ``[columns]`` offsets,
    deterministic in ``(p.seed, split index)``."""
    if p.generator == "authors":
        return generate_authors(p, split)
    rng = np.random.default_rng([p.seed, _SPLIT_INDEX[split]])
    lo, hi = p.lag_range
    cols = [generate_column(rng, p.length(split), lo, hi, p.num_states) for _ in range(p.columns)]
    x = np.stack([c[0] for c in cols])
    y = np.stack([c[1] for c in cols])
    offsets = np.array([c[2] for c in cols], dtype=np.int64)
    return x, y, offsets


class CopyTask(Task):
    name = "copy"
    summary = "synthetic copy task of Aicher et al. 2019 (marker-led segments, fixed/variable lag): carried-state ppl"
    family = "language"
    Params = CopyParams
    metrics = (
        MetricSpec("ppl", "min", "", "perplexity exp(ce) over all positions, blanks included (reference protocol)", low=1.0),
        MetricSpec("ce", "min", "nats/token", "mean cross-entropy over all positions, carried-state evaluation", low=0.0),
        MetricSpec("acc", "max", "", "fraction of positions whose argmax is the target", low=0.0, high=1.0),
    )
    primary_metric = "ppl"

    params: CopyParams

    def __init__(self, params: Any, data_dir: Any = None) -> None:
        super().__init__(params, data_dir)
        self.input = IOSpec("tokens", params.num_states)
        self.output = IOSpec("tokens", params.num_states)

    # --- data ---------------------------------------------------------------------------------
    @cached_property
    def _data(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {s: generate(self.params, s) for s in self.splits}

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``split`` as numpy arrays ``[columns, length]``."""
        x, y, _ = self._data[split]
        return x, y

    def offsets(self, split: str) -> np.ndarray:
        """The number of leading positions dropped from each column of ``split`` (its random phase)."""
        return self._data[split][2].copy()

    def split(self, name: str) -> SequenceData:
        x, y = self.arrays(name)
        return SequenceData(torch.as_tensor(x), torch.as_tensor(y), None)  # every position is scored


    # --- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: RecurrentModel, split: str) -> dict[str, float]:
        device, dtype = model_device_dtype(model)
        s = self.split(split)
        acc = CrossEntropyAccumulator()
        h = model.initial_state(s.batch, device, dtype)  # each column from the zero state
        chunk = self.params.eval_chunk
        for start in range(0, s.length, chunk):
            sl = slice(start, start + chunk)
            logits, h = model(s.x[:, sl].to(device), h)  # state carried across chunks
            acc.add(logits, s.y[:, sl].to(device))
        r = acc.result()
        return {"ppl": r["ppl"], "ce": r["ce"], "acc": r["acc"]}

    def scored_positions(self, split: str) -> int:
        """How many positions of ``split`` ``evaluate`` scores: all of them, ``columns * length``."""
        return self.params.columns * self.params.length(split)
