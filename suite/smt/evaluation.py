"""Evaluation protocols for SMT-trained RNNs (Kumar & Isola 2026, the evaluation of
``src/train_smt.py`` in the reference code, and a shared protocol for a fair comparison).

* **Suite protocol ("burn-in prefix")** -- what the trial reports for every method: the RNN starts
  from its own zero initial state at the start of each evaluation column / digit and carries its
  state over the whole stream; every next-token prediction is scored. :func:`zero_state_ce` applies
  it to windows: the RNN reads the prefix itself, only the continuation is scored.
* **Paper protocol ("teacher prefix")**, the reference's ``read_with_teacher_rnn``:
  :func:`evaluate_with_teacher_prefix` -- the teacher encodes the last ``Tc`` tokens of a prefix into
  a memory, the RNN starts from the corresponding state (``state_label(m)``) and reads the
  continuation with teacher forcing; the first prediction comes from that state itself.
* :func:`teacher_sliding_ce` -- the teacher re-encoding the sliding window at every scored position
  (its ``loss_decoder0``): what a perfect transition could reach.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.smt.adapter import ModelStudent, TransformerUpdater

LN2 = math.log(2.0)


def _result(ce_sum: Tensor, n: int) -> dict[str, float]:
    ce = float(ce_sum) / max(n, 1)
    return {"ce": ce, "bpt": ce / LN2}


@torch.no_grad()
def evaluate_with_teacher_prefix(teacher, student: ModelStudent | TransformerUpdater, tokens: Tensor,
                                 read_len: int) -> dict[str, float]:
    """Paper protocol on windows ``tokens [B, read_len + E]``: the teacher reads
    ``tokens[:, :read_len]`` (its last ``Tc`` tokens), the RNN continues; the E tokens
    ``tokens[:, read_len:]`` are scored. Returns ``ce`` (nats/token) and ``bpt`` (bits/token)."""
    x_read, x_eval = tokens[:, :read_len], tokens[:, read_len:]
    m = teacher.encode(x_read[:, -teacher.cfg.Tc :])
    if isinstance(student, ModelStudent):
        h = student.state_label(m)
        first = student.readout(h, x_read[:, -1])[:, None]
        rest, _ = student.model(x_eval[:, :-1], h) if x_eval.shape[1] > 1 else (first[:, :0], h)
        logits = torch.cat([first, rest], dim=1)
    else:
        out = []
        for t in range(x_eval.shape[1]):
            out.append(student.readout(m))
            m, _ = student.transition(m, x_eval[:, t])
        logits = torch.stack(out, dim=1)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x_eval.reshape(-1), reduction="sum")
    return _result(ce, x_eval.numel())


@torch.no_grad()
def zero_state_ce(model, tokens: Tensor, read_len: int) -> dict[str, float]:
    """Suite protocol on the same windows: the model reads ``tokens`` from its zero initial state;
    the predictions of ``tokens[:, read_len:]`` are scored."""
    logits, _ = model(tokens[:, :-1])
    scored = logits[:, read_len - 1 :]
    target = tokens[:, read_len:]
    ce = F.cross_entropy(scored.reshape(-1, scored.shape[-1]).float(), target.reshape(-1), reduction="sum")
    return _result(ce, target.numel())


@torch.no_grad()
def teacher_sliding_ce(teacher, tokens: Tensor, read_len: int, stride: int = 1, chunk: int = 1024) -> dict[str, float]:
    """The teacher's next-token prediction from its sliding-window memory (the last ``Tc`` tokens,
    padded at the window start) at positions ``read_len, read_len + stride, ..`` of ``tokens``."""
    Tc, T = teacher.cfg.Tc, tokens.shape[1]
    positions = torch.arange(read_len, T, stride, device=tokens.device)
    idx = positions[:, None] + torch.arange(-Tc, 0, device=tokens.device)  # [P, Tc]
    ctx = torch.where(idx >= 0, tokens[:, idx.clamp_min(0)], torch.full_like(tokens[:, idx], -1))  # [B, P, Tc]
    ctx, target = ctx.reshape(-1, Tc), tokens[:, positions].reshape(-1)
    ce_sum = torch.zeros((), dtype=torch.float64, device=tokens.device)
    for a in range(0, len(target), chunk):
        logits = teacher.next_logits(teacher.encode(ctx[a : a + chunk]))
        ce_sum += F.cross_entropy(logits.float(), target[a : a + chunk], reduction="sum").double()
    return _result(ce_sum, len(target))
