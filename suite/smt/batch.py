"""Window bookkeeping for SMT and DMT on next-token data.

The training split (``x [R, L]`` tokens, ``y = x`` shifted by one) is viewed as ``R`` token rows
``s = [x_0 .. x_{L-1}, y_{L-1}]`` of ``L + 1`` tokens (:func:`token_rows`). A row starts a
"reading" (the RNN's zero state) at its first token; a sample may also start reading later
(``start``), as the suite's evaluation does when a column begins mid-text. Positions before the
start, or before the row, are padding (``-1``) in the teacher's contexts.

One SMT sample is an *anchor* ``t`` (``0 <= t < L``), the index of the input token of the single
transition it trains, with the indexes of ``forward_smt`` in the reference code
(Kumar & Isola 2026, ``src/model.py``)::

    x_ctx      = s[t-Tc   : t]       context of m_now  (memory after reading s[..t-1])
    x_ctx_next = s[t-Tc+1 : t+1]     context of m_next (the window slid by one)
    x_in       = s[t]                 the input of the transition m_now -> m_next
    x_fut      = s[t : t+Tf]          decoder inputs (teacher forcing) ...
    y_fut      = s[t : t+Tf]          ... and targets: y_fut[:, 0] == x_in is predicted from m_now alone
    y_next     = s[t+1]               the token after x_in (target of the readout of the new state)

so ``y_fut[:, 0] == x_in`` and ``x_ctx_next[:, :-1] == x_ctx[:, 1:]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from suite.contracts import SequenceData

PAD = -1


def token_rows(data: SequenceData) -> Tensor:
    """``[R, L + 1]`` token rows of next-token data; raises if ``data`` is not next-token prediction."""
    x, y = data.x, data.y
    if x.dtype != torch.long or y.dtype != torch.long or x.ndim != 2 or y.shape != x.shape:
        raise ValueError("smt needs token sequences x, y of shape [B, T] (next-token prediction)")
    if data.mask is not None:
        raise ValueError("smt needs unmasked next-token data (e.g. the generative variant of a pixel task)")
    if x.shape[1] > 1 and not torch.equal(y[:, :-1], x[:, 1:]):
        raise ValueError("smt needs next-token data: y[:, :-1] must equal x[:, 1:]")
    return torch.cat([x, y[:, -1:]], dim=1)


def _gather(s: Tensor, rows: Tensor, pos: Tensor, lo: Tensor) -> Tensor:
    """``s[rows, pos]`` with ``-1`` where ``pos < lo`` (before the reading start) or off the row."""
    valid = (pos >= lo) & (pos >= 0) & (pos < s.shape[1])
    vals = s[rows[:, None].expand_as(pos), pos.clamp(0, s.shape[1] - 1)]
    return torch.where(valid, vals, torch.full_like(vals, PAD))


@dataclass
class SMTBatch:
    x_ctx: Tensor  #: [B, Tc]
    x_ctx_next: Tensor  #: [B, Tc]
    x_in: Tensor  #: [B]
    x_fut: Tensor  #: [B, Tf]
    y_fut: Tensor  #: [B, Tf]
    y_next: Tensor  #: [B]
    empty: Tensor  #: [B] bool: nothing read before x_in (m_now is the memory of an empty context)


def smt_batch(s: Tensor, rows: Tensor, anchors: Tensor, starts: Tensor, Tc: int, Tf: int) -> SMTBatch:
    """The SMT batch of the given anchors (``starts``: first position read, per sample)."""
    dev = s.device
    rows, anchors, starts = rows.to(dev), anchors.to(dev), starts.to(dev)
    t, lo = anchors[:, None], starts[:, None]
    x_ctx = _gather(s, rows, t + torch.arange(-Tc, 0, device=dev), lo)
    x_ctx_next = _gather(s, rows, t + torch.arange(-Tc + 1, 1, device=dev), lo)
    fut = _gather(s, rows, t + torch.arange(0, Tf, device=dev), lo)
    return SMTBatch(x_ctx=x_ctx, x_ctx_next=x_ctx_next, x_in=s[rows, anchors], x_fut=fut, y_fut=fut.clone(),
                    y_next=s[rows, anchors + 1], empty=(x_ctx < 0).all(dim=1))


def sample_smt_batch(s: Tensor, batch: int, Tc: int, Tf: int, restart_prob: float,
                     generator: torch.Generator) -> SMTBatch:
    """Uniform rows and anchors; with probability ``restart_prob`` a sample starts reading only
    ``c ~ U{0..Tc-1}`` tokens before its anchor (``c = 0``: the transition out of the zero state)."""
    R, Lp = s.shape
    rows = torch.randint(0, R, (batch,), generator=generator)
    anchors = torch.randint(0, Lp - 1, (batch,), generator=generator)
    back = torch.randint(0, Tc, (batch,), generator=generator)
    restart = torch.rand(batch, generator=generator) < restart_prob
    starts = torch.where(restart, anchors - back, torch.zeros_like(anchors)).clamp_min(0)
    return smt_batch(s, rows, anchors, starts, Tc, Tf)


@dataclass
class DMTBatch:
    x_ctx0: Tensor  #: [B, Tc] context of the starting memory (memory after reading s[..a-1])
    empty0: Tensor  #: [B] bool: the rollout starts from the zero state (nothing read)
    x_in: Tensor  #: [B, R] inputs s[a .. a+R-1]
    targets: Tensor  #: [B, R] s[a+1 .. a+R]: the state after x_in[:, t] predicts targets[:, t]
    label_ctx: Tensor  #: [B, R // k, Tc] contexts of the oracle memories after k, 2k, .. inputs


def dmt_batch(s: Tensor, rows: Tensor, anchors: Tensor, starts: Tensor, Tc: int, rollout: int, k: int) -> DMTBatch:
    dev = s.device
    rows, anchors, starts = rows.to(dev), anchors.to(dev), starts.to(dev)
    a, lo = anchors[:, None], starts[:, None]
    x_ctx0 = _gather(s, rows, a + torch.arange(-Tc, 0, device=dev), lo)
    steps = torch.arange(rollout, device=dev)
    x_in = s[rows[:, None], a + steps]
    targets = s[rows[:, None], a + steps + 1]
    ends = torch.arange(k, rollout + 1, k, device=dev)  # inputs read before each label
    pos = a[:, :, None] + ends[None, :, None] + torch.arange(-Tc, 0, device=dev)[None, None]  # [B, J, Tc]
    B, J = len(rows), len(ends)
    label_ctx = _gather(s, rows, pos.reshape(B, J * Tc), lo).reshape(B, J, Tc)
    return DMTBatch(x_ctx0=x_ctx0, empty0=(x_ctx0 < 0).all(dim=1), x_in=x_in, targets=targets, label_ctx=label_ctx)


def sample_dmt_batch(s: Tensor, batch: int, Tc: int, rollout: int, k: int, zero_start_fraction: float,
                     generator: torch.Generator) -> DMTBatch:
    """Rollout windows ``s[a .. a+rollout]``; a ``zero_start_fraction`` of them start reading at ``a``
    (zero state, the suite's protocol), the others from the teacher's memory of ``s[..a-1]``."""
    R, Lp = s.shape
    rollout = min(rollout, Lp - 1)
    rows = torch.randint(0, R, (batch,), generator=generator)
    anchors = torch.randint(0, Lp - rollout, (batch,), generator=generator)
    zero = torch.rand(batch, generator=generator) < zero_start_fraction
    starts = torch.where(zero, anchors, torch.zeros_like(anchors))
    return dmt_batch(s, rows, anchors, starts, Tc, rollout, min(k, rollout))
