"""SMT losses: dynamics (memory MSE), relative state MSE, uniformity, discounted predictive state."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dynamics_loss(m_pred: Tensor, m_target: Tensor) -> Tensor:
    """``L_dyn``: mean squared error between predicted and teacher memories (any shape)."""
    return (m_pred - m_target).pow(2).mean()


def relative_state_loss(h_pred: Tensor, h_target: Tensor, eps: float = 1e-6) -> Tensor:
    """``L_state``: MSE in the RNN's state space divided by the (detached) variance of the targets
    over the batch, so neither shrinking the state labels nor squeezing them around a constant
    offset can lower it (1 = as good as predicting the batch mean)."""
    h_target_flat = h_target.detach().reshape(-1, h_target.shape[-1])
    scale = h_target_flat.var(dim=0, unbiased=False).mean() if h_target_flat.shape[0] > 1 else h_target_flat.pow(2).mean()
    return (h_pred - h_target).pow(2).mean() / (scale + eps)


def uniformity_loss(z: Tensor, t: float = 2.0, sample: int | None = 512,
                    generator: torch.Generator | None = None) -> Tensor:
    """``L_unif`` (Wang & Isola 2020) over memory *tokens*: ``z [..., d]`` is flattened to tokens,
    L2-normalised, at most ``sample`` tokens are drawn at random, and
    ``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` is returned (``pdist`` lists each pair once, and
    the mean over ordered pairs i != j is the same number)."""
    z = z.reshape(-1, z.shape[-1])
    z = z / (z.norm(dim=-1, keepdim=True) + torch.finfo(z.dtype).eps)
    if sample is not None and z.shape[0] > sample:
        idx = torch.randperm(z.shape[0], generator=generator, device="cpu")[:sample].to(z.device)
        z = z[idx]
    if z.shape[0] < 2:
        return z.sum() * 0.0
    return torch.pdist(z, p=2).pow(2).mul(-t).exp().mean().log()


def decoder_loss(logits: Tensor, y_fut: Tensor, gamma: float = 1.0) -> tuple[Tensor, Tensor]:
    """``L_dec`` (predictive state): ``sum_j gamma^j CE_j`` over valid targets divided by their count
    (the reference's masked mean of the discounted losses; ``-1`` targets are ignored), and the
    per-position cross-entropy ``[B, Tf]`` (0 where invalid) for diagnostics."""
    B, Tf, V = logits.shape
    valid = y_fut >= 0
    ce = F.cross_entropy(logits.reshape(-1, V).float(), y_fut.clamp_min(0).reshape(-1), reduction="none")
    ce = ce.reshape(B, Tf) * valid
    weights = gamma ** torch.arange(Tf, device=logits.device, dtype=ce.dtype)
    return (ce * weights).sum() / valid.sum().clamp_min(1), ce


def masked_cross_entropy(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean next-token cross-entropy (nats) over ``valid`` positions (all if None)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1).clamp_min(0),
                         reduction="none")
    if valid is None:
        return ce.mean()
    v = valid.reshape(-1).to(ce.dtype)
    return (ce * v).sum() / v.sum().clamp_min(1)
