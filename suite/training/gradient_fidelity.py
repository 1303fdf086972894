"""Gradient fidelity: how close a method's gradient is to the full-BPTT gradient on a probe batch.

A method that wants to be measured implements the optional hook

    Method.probe_gradient(model, data: TrainData, probe: SequenceData) -> list[Tensor]

returning the gradient it would use on the probe sequences (one tensor per trainable parameter,
in ``model.parameters()`` order, see :func:`trainable_parameters`), averaged over its windows /
segments with weights equal to their numbers of scored positions, so that it estimates the
gradient of the mean loss over the probe. :func:`full_bptt_gradient` gives the reference (the
gradient of ``loss_fn`` over the whole probe sequences from the zero state) and
:func:`gradient_fidelity` compares the two (cosine and relative error of the flattened vectors).
:func:`fidelity_diagnostics` does all three for the engine. Nothing here touches ``p.grad`` or
the parameters.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from suite.contracts import RecurrentModel, SequenceData, TrainData
from suite.training.gradients import parameter_gradients, trainable_parameters

LossFn = Callable[..., Tensor]


def full_bptt_gradient(model: RecurrentModel, data: SequenceData, loss_fn: LossFn) -> list[Tensor]:
    """Full-BPTT gradient of ``loss_fn(y_hat, y, mask)`` over the whole probe sequences (zero state)."""
    with torch.enable_grad():
        y_hat, _ = model(data.x)
        loss = loss_fn(y_hat, data.y, data.mask)
        return parameter_gradients(loss, trainable_parameters(model))


def _flat(grads: Sequence[Tensor]) -> Tensor:
    return torch.cat([g.detach().reshape(-1).to(torch.float64) for g in grads])


def gradient_fidelity(method_grads: list[Tensor], reference_grads: list[Tensor]) -> dict[str, float]:
    """``{"grad_cos": cos(g, r), "grad_rel_err": ||g - r|| / ||r||}`` over all parameters (float64).

    NaN where undefined (a zero vector).
    """
    if len(method_grads) != len(reference_grads):
        raise ValueError(f"{len(method_grads)} method gradients but {len(reference_grads)} reference gradients")
    for g, r in zip(method_grads, reference_grads):
        if g.shape != r.shape:
            raise ValueError(f"gradient shapes differ: {tuple(g.shape)} vs {tuple(r.shape)}")
    g, r = _flat(method_grads), _flat(reference_grads)
    ng, nr = float(g.norm()), float(r.norm())
    cos = float(g @ r) / (ng * nr) if ng > 0 and nr > 0 else math.nan
    rel = float((g - r).norm()) / nr if nr > 0 else math.nan
    return {"grad_cos": cos, "grad_rel_err": rel}


def probe_batch(train: SequenceData, size: int = 8, length: int | None = None) -> SequenceData:
    """A fixed probe: the first ``size`` training sequences, cut to their first ``length`` steps
    (``None``: whole), the same at every evaluation. Long single-sequence tasks want a ``length``:
    the reference is full BPTT over it."""
    probe = train.select(slice(0, min(size, train.batch)))
    return probe if length is None or length >= probe.length else probe.slice_time(0, length)


def fidelity_diagnostics(method: Any, model: RecurrentModel, data: TrainData, probe: SequenceData) -> dict[str, float] | None:
    """grad_cos / grad_rel_err of ``method`` on ``probe``; ``None`` if it has no ``probe_gradient``."""
    hook = getattr(method, "probe_gradient", None)
    if hook is None:
        return None
    reference = full_bptt_gradient(model, probe, data.loss)
    return gradient_fidelity(hook(model, data, probe), reference)
