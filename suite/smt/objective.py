"""The SMT forward (one transition per sample) and the DMT on-policy rollout.

SMT (per sample, indexes in :mod:`suite.smt.batch`)::

    m_now  = Enc(x_ctx),  m_next = Enc(x_ctx_next)
    L_dec  = sum_j gamma^j CE(Dec(m_now, x_fut)_j, y_fut_j) / #valid        (predictive state)
    L_unif = log mean_{i!=j} exp(-2 ||z_i - z_j||^2), z = L2-normalised tokens of m_now
    h'     = step(state_label(m_now), x_in)          <- the ONLY application of U in the graph
    L_dyn  = || RMSNorm(from_state(h')) - m_next ||^2                       (memory space, reference)
    L_state= || h' - state_label(m_next) ||^2 / mean(state_label(m_next)^2) (state space)
    L_ro   = (CE(readout(h'), y_next) + CE(readout(state_label(m_next)), y_next)) / 2
    L      = w_dec L_dec + w_dyn L_dyn + w_unif L_unif + w_state L_state + w_readout L_ro

With the Transformer updater, ``L_dyn`` uses its ``U(m_now, x_in)`` instead (and its readout joins
``L_ro`` unless it is a copy of the teacher's decoder); the suite model still gets ``L_state`` and its
own ``L_ro``, since the model is what the suite evaluates. ``dyn_grad_to_teacher`` decides whether
``L_dyn`` reaches the encoder (reference default: yes, ``detach_rnn=False``); ``state_grad_to_teacher``
the same for ``L_state`` (default no: with weight 1 it collapses the memory to a constant, which
makes every transition trivially predictable); ``readout_grad_to_teacher`` for the readout of the
state labels (default yes: the suite models read out linearly from their state, so the memory must be
linearly decodable through ``to_state``; the reference's readout is the teacher's own decoder).

DMT rollout: from a start state, ``h_{t+1} = step(h_t, x_in[t])`` (``h_t`` detached first unless
``bptt_through_rollout``); after every ``k`` inputs the state is compared with the frozen teacher's
memory of the same prefix; every new state is read out against the next token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from suite.smt.adapter import ModelStudent, TransformerUpdater
from suite.smt.batch import DMTBatch, SMTBatch
from suite.smt.losses import (
    decoder_loss,
    dynamics_loss,
    masked_cross_entropy,
    relative_state_loss,
    uniformity_loss,
)


@dataclass(frozen=True)
class SMTWeights:
    dec: float = 1.0
    dyn: float = 0.1
    unif: float = 0.001
    state: float = 1.0
    readout: float = 1.0
    gamma: float = 1.0
    unif_sample: int = 512


def _zero(ref: Tensor) -> Tensor:
    return ref.new_zeros(())


def smt_forward(teacher, student: ModelStudent, batch: SMTBatch, w: SMTWeights, *,
                updater: TransformerUpdater | None = None, train_teacher: bool = True,
                dyn_grad_to_teacher: bool = True, readout_grad_to_transition: bool = True,
                train_updater_readout: bool = True, train_student: bool = True, state_grad_to_teacher: bool = False,
                readout_grad_to_teacher: bool = True,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """All SMT losses of one batch; ``out["loss"]`` is the weighted total.

    Gradient routing: ``out["loss_rnn_only"]`` is the part of the total that must not reach the
    teacher (``w_state * L_state`` unless ``state_grad_to_teacher``, ``w_readout * L_ro`` unless
    ``readout_grad_to_teacher``) and ``out["loss_shared"]`` the rest; :func:`backward_routed` applies
    them with a single forward (U still runs once). ``out["loss"].backward()`` routes everything
    everywhere (as if both switches were on).

    ``train_teacher=False`` encodes under ``no_grad`` and skips the teacher-only terms (frozen
    teacher); ``train_student=False`` computes only the teacher terms (teacher pre-training).
    """
    out: dict[str, Tensor] = {}
    with torch.set_grad_enabled(train_teacher and torch.is_grad_enabled()):
        m_now = teacher.encode(batch.x_ctx)
        m_next = teacher.encode(batch.x_ctx_next) if train_student else None
        if train_teacher and hasattr(teacher, "decode") and w.dec:
            logits = teacher.decode(m_now, batch.x_fut)
            out["loss_decoder"], ce = decoder_loss(logits, batch.y_fut, w.gamma)
            valid0 = batch.y_fut[:, 0] >= 0
            out["loss_decoder0"] = (ce[:, 0] * valid0).sum() / valid0.sum().clamp_min(1)
        if train_teacher and w.unif:
            out["loss_unif"] = uniformity_loss(m_now, sample=w.unif_sample, generator=generator)
    loss = w.dec * out.get("loss_decoder", _zero(m_now)) + w.unif * out.get("loss_unif", _zero(m_now))
    if not train_student:
        out["loss"] = out["loss_shared"] = loss
        return out
    assert m_next is not None
    m_in = m_now if dyn_grad_to_teacher else m_now.detach()
    m_tgt = m_next if dyn_grad_to_teacher else m_next.detach()

    # the single transition of the suite model: h' = step(state_label(m_now), x_in)
    m_hat, h_next = student.transition(m_in, batch.x_in, batch.empty)
    out["loss_state"] = relative_state_loss(h_next, student.state_label(m_tgt))
    h_ro = h_next if readout_grad_to_transition else h_next.detach()
    out["loss_readout"] = 0.5 * (masked_cross_entropy(student.readout(h_ro, batch.x_in), batch.y_next)
                                 + masked_cross_entropy(student.readout(student.state_label(m_next), batch.x_in),
                                                        batch.y_next))
    if updater is None:
        out["loss_dyn"] = dynamics_loss(m_hat, m_tgt)
    else:
        m_hat_u, _ = updater.transition(m_in, batch.x_in, batch.empty)
        out["loss_dyn"] = dynamics_loss(m_hat_u, m_tgt)
        if train_updater_readout:
            m_ro = m_hat_u if readout_grad_to_transition else m_hat_u.detach()
            out["loss_readout_updater"] = 0.5 * (masked_cross_entropy(updater.readout(m_ro), batch.y_next)
                                                 + masked_cross_entropy(updater.readout(m_next.detach()), batch.y_next))
    # gradient routing: terms whose gradient must not reach the teacher are applied to the RNN only
    terms = {"dyn": (w.dyn * out["loss_dyn"], True),  # L_dyn's own routing is the detach of m_in / m_tgt above
             "state": (w.state * out["loss_state"], state_grad_to_teacher),
             "readout": (w.readout * out["loss_readout"], readout_grad_to_teacher),
             "readout_updater": (w.readout * out.get("loss_readout_updater", _zero(loss)), readout_grad_to_teacher)}
    shared = loss + sum(v for v, to_teacher in terms.values() if to_teacher)
    routed = sum((v for v, to_teacher in terms.values() if not to_teacher), _zero(loss))
    out["loss_shared"], out["loss_rnn_only"] = shared, routed
    out["loss"] = shared + routed
    return out


def backward_routed(out: dict[str, Tensor], rnn_params: list[torch.nn.Parameter]) -> None:
    """Backpropagate ``out["loss_shared"]`` into everything and ``out["loss_rnn_only"]`` into
    ``rnn_params`` only (gradients accumulate in ``.grad``)."""
    routed = out.get("loss_rnn_only")
    grads = None
    if routed is not None and routed.requires_grad:
        params = [p for p in rnn_params if p.requires_grad]
        grads = torch.autograd.grad(routed, params, retain_graph=True, allow_unused=True)
    out["loss_shared"].backward()
    if grads is not None:
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g


def dmt_rollout(step: Callable[[Tensor, Tensor], Tensor], readout: Callable[[Tensor, Tensor], Tensor], h0: Tensor,
                x_in: Tensor, targets: Tensor, labels: list[Tensor], k: int,
                label_loss: Callable[[Tensor, Tensor], Tensor], *, bptt_through_rollout: bool = False,
                readout_grad_to_transition: bool = True) -> dict[str, object]:
    """On-policy rollout over ``x_in [B, R]``: returns the mean readout CE, the mean label loss,
    and per-step lists (``states``, ``readout_terms``, ``dyn_terms``) for inspection.

    ``readout(h, x)`` gets the new state and the input just read. ``labels[j]`` is the oracle after
    ``(j + 1) k`` inputs. With ``bptt_through_rollout=False`` the
    state is detached before every step, so each loss term reaches exactly one transition.
    """
    h = h0
    states, ro_terms, dyn_terms = [], [], []
    for t in range(x_in.shape[1]):
        h = step(h if bptt_through_rollout else h.detach(), x_in[:, t])
        states.append(h)
        ro_terms.append(masked_cross_entropy(readout(h if readout_grad_to_transition else h.detach(), x_in[:, t]),
                                             targets[:, t]))
        if (t + 1) % k == 0 and (t + 1) // k <= len(labels):
            dyn_terms.append(label_loss(h, labels[(t + 1) // k - 1]))
    loss_ro = torch.stack(ro_terms).mean()
    loss_dyn = torch.stack(dyn_terms).mean() if dyn_terms else _zero(loss_ro)
    return {"loss_readout": loss_ro, "loss_dyn": loss_dyn, "states": states,
            "readout_terms": ro_terms, "dyn_terms": dyn_terms}


def dmt_forward(teacher, student: ModelStudent, batch: DMTBatch, k: int, *, w_dyn: float, w_readout: float,
                updater: TransformerUpdater | None = None, bptt_through_rollout: bool = False,
                readout_grad_to_transition: bool = True, train_updater_readout: bool = True) -> dict[str, Tensor]:
    """DMT losses of one batch (teacher frozen: its memories are computed under ``no_grad``)."""
    B, J, Tc = batch.label_ctx.shape
    with torch.no_grad():
        m0 = teacher.encode(batch.x_ctx0)
        m_labels = teacher.encode(batch.label_ctx.reshape(B * J, Tc)).reshape(B, J, *m0.shape[1:]) if J else None
    labels = [m_labels[:, j] for j in range(J)] if J else []

    def state_label_loss(h: Tensor, m: Tensor) -> Tensor:
        return relative_state_loss(h, student.state_label(m)) + dynamics_loss(student.memory(h), m)

    h0 = student.state_label(m0, batch.empty0).detach()
    r = dmt_rollout(student.step, student.readout, h0, batch.x_in, batch.targets, labels, k, state_label_loss,
                    bptt_through_rollout=bptt_through_rollout, readout_grad_to_transition=readout_grad_to_transition)
    out = {"loss_readout": r["loss_readout"], "loss_dyn": r["loss_dyn"]}
    loss = w_dyn * out["loss_dyn"] + w_readout * out["loss_readout"]
    if updater is not None:
        ru = dmt_rollout(lambda m, x: updater.transition(m, x)[0],
                         updater.readout if train_updater_readout else (lambda m, x: updater.readout(m.detach())),
                         m0, batch.x_in, batch.targets, labels, k, dynamics_loss,
                         bptt_through_rollout=bptt_through_rollout,
                         readout_grad_to_transition=readout_grad_to_transition)
        out["loss_readout_updater"], out["loss_dyn_updater"] = ru["loss_readout"], ru["loss_dyn"]
        loss = loss + w_dyn * ru["loss_dyn"] + (w_readout * ru["loss_readout"] if train_updater_readout else 0.0)
    out["loss"] = loss
    return out
