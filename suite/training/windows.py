"""Cutting training sequences into what a method updates on: batches, windows, streams, chunks, and the
truncated losses over them (burn-in, 'original-buffer' segments).

A method keeps one *plan* (e.g. :class:`StatelessWindows`) and uses it both in ``train`` and in its
``probe_gradient`` hook, so the gradient-fidelity diagnostic measures exactly what is trained.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from suite.contracts import RecurrentModel, SequenceData, TrainData


def batches(n: int, size: int | None, shuffle: bool, device: torch.device | str | None = None) -> Iterator[Tensor]:
    """Index tensors of one epoch over ``n`` rows, ``size`` at a time (None: all), shuffled or in order."""
    order = torch.randperm(n) if shuffle else torch.arange(n)
    size = size or n
    for start in range(0, n, size):
        yield order[start: start + size].to(device)


def chunk_bounds(length: int, seq_len: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``length`` in chunks of ``seq_len`` (None, or longer: one chunk)."""
    if not seq_len or seq_len >= length:
        return [(0, length)]
    return [(s, min(s + seq_len, length)) for s in range(0, length, seq_len)]


def window_starts(length: int, window: int, stride: int) -> Tensor:
    """Start indices covering the sequence; a last window is aligned to the end if needed."""
    if window >= length:
        return torch.zeros(1, dtype=torch.long)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return torch.tensor(starts, dtype=torch.long)


class StatelessWindows:
    """Every ``(sequence, start)`` window of length ``window`` every ``stride`` steps of ``seq``."""

    def __init__(self, seq: SequenceData, window: int, stride: int) -> None:
        self.seq = seq
        self.window = min(window, seq.length)
        starts = window_starts(seq.length, self.window, stride)
        self.seq_idx = torch.arange(seq.batch).repeat_interleave(len(starts))
        self.start_idx = starts.repeat(seq.batch)
        # every stride-1 window as a view [B, starts, window, ...] (no copy): a batch is one gather from it
        self._views = [None if t is None else t.unfold(1, self.window, 1).movedim(-1, 2) for t in (seq.x, seq.y, seq.mask)]

    def __len__(self) -> int:
        return len(self.seq_idx)

    def take(self, sel: Tensor) -> SequenceData:
        """The windows ``sel`` (indices into this plan) as a batch ``[len(sel), window]``."""
        device = self.seq.x.device
        rows, starts = self.seq_idx[sel].to(device), self.start_idx[sel].to(device)
        x, y, mask = (None if v is None else v[rows, starts] for v in self._views)
        return SequenceData(x, y, mask)

    def iterate(self, batch_size: int, shuffle: bool) -> Iterator[SequenceData]:
        for sel in batches(len(self), batch_size, shuffle):
            yield self.take(sel)


class PhasedStatefulWindows:
    """The authors' stateful TBPTT (Schiller et al., ``LSTM_Stateful`` with an unshuffled loader): every
    stride-1 window of length ``window`` (N) of each sequence, in the order of its start, ``batch`` (b)
    windows per update, a last incomplete batch of a sequence dropped. Batch k of a sequence uses state slot
    ``k mod N/b``: its windows start from the detached final states of batch ``k - N/b``, which end exactly
    where they begin. So window i starts from the state that a run from the zero state at ``i mod N`` reaches
    at i: N phase-shifted streams, each cut into contiguous windows. N must be a multiple of b (the authors
    assert it)."""

    def __init__(self, seq: SequenceData, window: int, batch: int) -> None:
        if window % batch:
            raise ValueError(f"stateful_phased needs window ({window}) to be a multiple of batch_size ({batch})")
        self.windows = StatelessWindows(seq, window, 1)
        self.window, self.batch = self.windows.window, batch
        self.slots = window // batch
        self.starts = len(self.windows) // seq.batch  # stride-1 windows per sequence
        self.per_sequence = self.starts // batch  # full batches per sequence

    def __len__(self) -> int:
        """Updates per epoch."""
        return self.windows.seq.batch * self.per_sequence

    def iterate(self) -> Iterator[tuple[SequenceData, tuple[int, int]]]:
        """``(windows, slot)`` in training order; ``slot = (sequence, k mod N/b)`` names the state that the
        windows start from and leave behind (the zero state the first time a slot is used)."""
        for s in range(self.windows.seq.batch):
            for k in range(self.per_sequence):
                first = s * self.starts + k * self.batch
                yield self.windows.take(torch.arange(first, first + self.batch)), (s, k % self.slots)


def cut_streams(seq: SequenceData, per_sequence: int) -> SequenceData:
    """Every sequence cut into ``per_sequence`` contiguous streams, side by side: ``[B * per_sequence, T // per_sequence]``
    (stateful TBPTT processes the streams in time order, carrying the state)."""
    per_sequence = max(1, per_sequence)
    span = seq.length // per_sequence
    cut = seq.slice_time(0, per_sequence * span)
    rows = seq.batch * per_sequence
    x = cut.x.reshape(rows, span, *cut.x.shape[2:])
    y = cut.y.reshape(rows, span, *cut.y.shape[2:])
    mask = None if cut.mask is None else cut.mask.reshape(rows, span)
    return SequenceData(x, y, mask)


def burn_in_loss(model: RecurrentModel, data: TrainData, part: SequenceData, m: int, grad: bool,
                 h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Loss over outputs ``m..`` of a batch of windows (the first ``m`` are the burn-in, simulated but not
    scored), and the final state (not detached). ``grad=False`` runs the burn-in under no_grad and detaches."""
    if m > 0 and not grad:
        with torch.no_grad():
            _, h = model(part.x[:, :m], h0)
        y_hat, h_last = model(part.x[:, m:], h.detach())
        rest = part.slice_time(m, part.length)
        return data.loss(y_hat, rest.y, rest.mask), h_last
    y_hat, h_last = model(part.x, h0)
    mask = None if part.mask is None else part.mask[:, m:]
    return data.loss(y_hat[:, m:], part.y[:, m:], mask), h_last


def buffered_segment(model: RecurrentModel, data: TrainData, part: SequenceData, h: Tensor | None,
                     h_idx: int, pos: int, K: int) -> tuple[Tensor, Tensor, int, float]:
    """One 'original-buffer' segment (Aicher et al.) of streams ``part``: loss on outputs ``[pos, pos+K)``.

    ``h`` is the (detached) state after input ``h_idx`` (``None``/``-1``: the zero state before
    the stream). The segment's inputs start at ``max(pos - K + 1, 0)`` (the state is first
    advanced without gradient if it lies earlier; if it lies later, the buffer is shorter).
    Returns the loss, the state after input ``pos`` (not detached; the next segment's start
    when K is unchanged), the segment end and its number of scored positions.
    """
    from suite.training.gradients import scored_positions

    end = min(pos + K, part.length)
    a = max(pos - K + 1, 0)
    if h_idx + 1 < a:
        with torch.no_grad():
            _, h = model(part.x[:, h_idx + 1: a], h)
        h_idx = a - 1
    a = h_idx + 1
    y1, h_c = model(part.x[:, a: pos + 1], h)
    y_hat = y1[:, -1:]
    if end > pos + 1:
        y2, _ = model(part.x[:, pos + 1: end], h_c)
        y_hat = torch.cat([y_hat, y2], dim=1)
    mask = None if part.mask is None else part.mask[:, pos:end]
    loss = data.loss(y_hat, part.y[:, pos:end], mask)
    return loss, h_c, end, scored_positions(mask, part.batch, end - pos)
