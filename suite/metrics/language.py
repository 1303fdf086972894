"""Language / sequence-modelling and classification metrics (nats per token, perplexity as in
Aicher et al. 2019, bits per byte / dim as in Kumar & Isola 2026).

All quantities derive from a *summed* cross-entropy in nats and a token count,
so that they can be accumulated exactly over chunks or batches of any size:

* CE (nats/token)      = Σ −log p(x_{t+1} | x_{≤t}) / N
* perplexity           = exp(CE)                     (word-level PTB / WT2)
* bits per token       = CE / ln 2                   (bits per character/byte, bits per pixel/dim)
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ._array import as_numpy

__all__ = [
    "nats_per_token",
    "perplexity",
    "bits_per_token",
    "bits_per_character",
    "bits_per_pixel",
    "accuracy",
    "CrossEntropyAccumulator",
]

_LN2 = math.log(2.0)


def _check_count(n_tokens: float) -> None:
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")


def nats_per_token(ce_sum: float, n_tokens: float) -> float:
    """Mean cross-entropy in nats, CE = ce_sum / n_tokens (NaN if n_tokens == 0)."""
    _check_count(n_tokens)
    if n_tokens == 0:
        return float("nan")
    return float(ce_sum) / float(n_tokens)


def perplexity(ce_sum: float, n_tokens: float) -> float:
    """Perplexity, PPL = exp(ce_sum / n_tokens) (inf on overflow)."""
    ce = nats_per_token(ce_sum, n_tokens)
    try:
        return math.exp(ce)
    except OverflowError:
        return float("inf")


def bits_per_token(ce_sum: float, n_tokens: float) -> float:
    """Bits per token, BPT = (ce_sum / n_tokens) / ln 2 (bits/char, bits/byte, bits/pixel)."""
    return nats_per_token(ce_sum, n_tokens) / _LN2


bits_per_character = bits_per_token
bits_per_pixel = bits_per_token


def accuracy(pred: Any, target: Any) -> float:
    """Classification accuracy, (1/N) Σ 1[ŷ_i = y_i], as a fraction in [0, 1].

    ``pred`` is either integer labels with the same shape as ``target`` or
    scores/logits with one extra trailing class axis (then ŷ = argmax).
    """
    p = as_numpy(pred, dtype=None)
    t = as_numpy(target, dtype=None)
    if p.ndim == t.ndim + 1:
        p = np.argmax(p, axis=-1)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs target {t.shape}")
    if t.size == 0:
        return float("nan")
    return float(np.mean(p == t))


class CrossEntropyAccumulator:
    """Accumulates summed cross-entropy (nats), token count and correct predictions.

    ``add(logits [..., V], targets [...])`` uses
    ``torch.nn.functional.cross_entropy(..., reduction="sum")`` in float32 or
    better; targets equal to ``ignore_index`` are neither scored nor counted.
    ``result()`` returns ``{"ce", "ppl", "bpc", "bits", "acc", "n_tokens"}``,
    where ``bpc == bits`` = CE / ln 2 (use it as bits/char, bits/byte or bits/pixel).
    """

    def __init__(self, ignore_index: int = -100) -> None:
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.ce_sum: float = 0.0
        self.n_tokens: int = 0
        self.n_correct: int = 0

    @torch.no_grad()
    def add(self, logits: Any, targets: Any, mask: Optional[Any] = None) -> float:
        """Add a batch; returns the batch's summed CE in nats.

        ``mask`` (optional, same shape as ``targets``, truthy = score) is applied
        in addition to ``ignore_index``.
        """
        logits_t = torch.as_tensor(logits)
        targets_t = torch.as_tensor(targets).long()
        if logits_t.shape[:-1] != targets_t.shape:
            raise ValueError(
                f"logits {tuple(logits_t.shape)} must be targets {tuple(targets_t.shape)} + [V]"
            )
        if logits_t.dtype not in (torch.float32, torch.float64):
            logits_t = logits_t.float()
        flat_logits = logits_t.reshape(-1, logits_t.shape[-1])
        flat_targets = targets_t.reshape(-1).to(flat_logits.device)
        if mask is not None:
            m = torch.as_tensor(mask).reshape(-1).to(flat_targets.device).bool()
            flat_targets = torch.where(m, flat_targets, torch.full_like(flat_targets, self.ignore_index))
        valid = flat_targets != self.ignore_index
        n_valid = int(valid.sum())
        if n_valid == 0:
            return 0.0
        ce = F.cross_entropy(
            flat_logits, flat_targets, reduction="sum", ignore_index=self.ignore_index
        )
        pred = flat_logits.argmax(dim=-1)
        correct = int(((pred == flat_targets) & valid).sum())
        ce_val = float(ce.double())
        self.ce_sum += ce_val
        self.n_tokens += n_valid
        self.n_correct += correct
        return ce_val

    def result(self) -> Dict[str, float]:
        """``{"ce": nats/token, "ppl": exp(ce), "bpc": ce/ln2, "bits": ce/ln2, "acc", "n_tokens"}``."""
        bits = bits_per_token(self.ce_sum, self.n_tokens)
        acc = self.n_correct / self.n_tokens if self.n_tokens else float("nan")
        return {
            "ce": nats_per_token(self.ce_sum, self.n_tokens),
            "ppl": perplexity(self.ce_sum, self.n_tokens),
            "bpc": bits,
            "bits": bits,
            "acc": acc,
            "n_tokens": float(self.n_tokens),
        }
