"""Estimating the truncation length of adaptive TBPTT (Aicher, Foti & Fox, UAI 2019).

Pure functions, independent of the training loop (see ``methods/adaptive_tbptt.py``):

* :func:`gradient_norms_by_lag` -- ``phi[b, k] = || dL_s / dh_{s-k} ||`` for the loss ``L_s`` at
  the last step ``s`` of a window, ``k = 0 .. W-1``, from the model's ``step`` loop;
* :func:`estimate_log_beta_ols` -- the geometric decay rate of the mean norms ``phi_bar`` (OLS
  slope of ``log phi_bar_k`` against ``k``);
* :func:`log_tail_bound` / :func:`tail_bound` -- the bias bound ``E(K)`` of truncating at ``K``;
* :func:`relative_bias` -- ``deltahat(K) = E(K) / D`` with ``D`` a lower bound on ``||g||``;
* :func:`choose_K` -- the smallest ``K`` whose estimated relative bias is below ``delta``.

Conventions. ``TBPTT(K)`` keeps the lags ``k = 0 .. K-1`` of every scored loss term, so the bias
of truncating at ``K`` is bounded (up to the constant ``M``, which cancels in the ratio) by

    E(K) = sum_{k >= K} phi_bar_k,

where lags beyond ``tau`` follow the fitted geometric decay ``phi_bar_{tau+j} = beta^j phi_bar_tau``:

    E(K) = sum_{k=K}^{tau-1} phi_bar_k + phi_bar_tau / (1 - beta)      for K < tau
    E(K) = phi_bar_tau * beta^(K - tau) / (1 - beta)                   for K >= tau

(infinite when ``beta >= 1``, unless ``phi_bar_tau`` is numerically zero). The authors' code adds
``phi_bar_tau`` once more for ``K < tau`` (its sum runs to ``tau`` inclusive); we use the sum that
is exact under the geometric-tail model, so ``E`` is continuous at ``tau`` and, for
``phi_k = |a|^k phi_0``, equals ``phi_0 |a|^K / (1 - |a|)`` for every ``K``. The truncated
gradient norm is approximated by ``cum_K = sum_{k<K} phi_bar_k`` (the authors'
``cum_grad_norm_approx``), the lower bound on the full gradient norm is
``D = max_K (cum_K - E(K))`` and ``deltahat(K) = E(K) / D`` (``inf`` when ``D <= 0``). All of it
runs in log space, as in the reference code.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from suite.contracts import RecurrentModel

EPS = 1e-100  #: added to the mean norms before taking logs (as in the reference code)
LOG_ZERO = -50.0  #: log-norms below this are treated as zero (dropped from the OLS fit)

LossFn = Callable[..., Tensor]


def gradient_norms_by_lag(model: RecurrentModel, x: Tensor, y: Tensor, loss_fn: LossFn, burn: int, W: int,
                          mask: Tensor | None = None) -> Tensor:
    """Per-sequence norms ``phi[b, k] = || dL_s / dh^b_{s-k} ||`` for ``k = 0 .. W-1``: ``[B, W]``.

    ``x``/``y`` hold at least ``burn + W`` steps. The first ``burn`` steps run from the zero state
    without gradient; the next ``W`` steps run through ``model.step`` with every state kept in the
    graph, ``L_s = loss_fn(y_hat_s, y_s)`` is the loss at the last of them (step ``s = burn+W-1``)
    and one ``torch.autograd.grad`` call returns its gradient w.r.t. all ``W`` states
    ``h_s, h_{s-1}, .., h_{s-W+1}`` (total derivatives through the recurrence). ``loss_fn`` is the
    task loss (a mean over the batch), so every ``phi`` carries the same factor ``1/B``, which
    cancels in the relative bias. Parameter gradients (``.grad``) are left untouched.
    """
    if W < 1 or burn < 0:
        raise ValueError(f"need W >= 1 and burn >= 0, got W={W}, burn={burn}")
    if x.shape[1] < burn + W:
        raise ValueError(f"sequence of length {x.shape[1]} is shorter than burn + W = {burn + W}")
    x, y = x[:, : burn + W], y[:, : burn + W]
    with torch.no_grad():
        u = model.encode(x)
        h = model.initial_state(u.shape[0], u.device, u.dtype)
        for t in range(burn):
            h = model.step(h, u[:, t])
    with torch.enable_grad():
        u = model.encode(x[:, burn:])  # encoder in the graph is harmless; only states are differentiated
        h = h.detach().requires_grad_(True)
        states = []
        for t in range(W):
            h = model.step(h, u[:, t])
            states.append(h)
        y_hat = model.readout(h, u[:, -1])[:, None]
        last_mask = None if mask is None else mask[:, burn + W - 1 : burn + W]
        loss = loss_fn(y_hat, y[:, -1:], last_mask)
        grads = torch.autograd.grad(loss, states, allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(states, grads)]
    # states[-1] is h_s (lag 0), states[0] is h_{s-W+1} (lag W-1)
    return torch.stack([g.flatten(1).norm(dim=1) for g in reversed(grads)], dim=1).detach()


def _log_phi(phi_bar: Tensor) -> Tensor:
    return torch.log(phi_bar.detach().to("cpu", torch.float64) + EPS)  # tiny vectors: CPU


def estimate_log_beta_ols(phi_bar: Tensor) -> float:
    """OLS slope of ``log phi_bar_k`` against ``k`` over all lags (as the authors' 'ols').

    Points with ``log phi_bar_k < -50`` count as zero and are dropped; with fewer than two points
    left the slope is 0 (``beta = 1``).
    """
    lp = _log_phi(phi_bar)
    k = torch.arange(lp.numel(), dtype=torch.float64, device=lp.device)
    keep = lp >= LOG_ZERO
    if int(keep.sum()) <= 1:
        return 0.0
    lp, k = lp[keep], k[keep]
    kc, lc = k - k.mean(), lp - lp.mean()
    return float((kc * lc).sum() / (kc * kc).sum())


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near both ends."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_tail_bound(phi_bar: Tensor, log_beta: float, tau: int, K_max: int | None = None) -> Tensor:
    """``log E(K)`` for ``K = 0 .. max(W, K_max)`` (see the module docstring), float64."""
    lp = _log_phi(phi_bar)
    W = lp.numel()
    if not 0 <= tau < W:
        raise ValueError(f"tau ({tau}) must lie in [0, W) = [0, {W})")
    n = max(W, K_max or 0) + 1
    K = torch.arange(n, dtype=torch.float64, device=lp.device)
    lp_tau = lp[tau]
    if log_beta == -math.inf:  # beta = 0: nothing beyond tau
        log_geo = lp_tau
        out = torch.full((n,), -math.inf, dtype=torch.float64)
        out[tau] = lp_tau
    elif log_beta < 0:
        log_geo = lp_tau - _log1mexp(torch.tensor(log_beta, dtype=torch.float64))  # phi_tau / (1 - beta)
        out = lp_tau + (K - tau) * log_beta - _log1mexp(torch.tensor(log_beta, dtype=torch.float64))
    elif lp_tau < LOG_ZERO:  # no decay measured, but the gradients have already vanished at tau
        log_geo = torch.tensor(-math.inf, dtype=torch.float64)
        out = torch.full((n,), -math.inf, dtype=torch.float64)
    else:
        return torch.full((n,), math.inf, dtype=torch.float64)
    # K < tau: sum_{k=K}^{tau-1} phi_k + phi_tau / (1 - beta), via a reversed log-cumsum-exp
    if tau > 0:
        head = torch.flip(torch.logcumsumexp(torch.flip(lp[:tau], [0]), 0), [0])  # head[K] = log sum_{k=K}^{tau-1}
        out[:tau] = torch.logaddexp(head, log_geo.expand(tau))
    return out


def tail_bound(phi_bar: Tensor, log_beta: float, tau: int, K_max: int | None = None) -> Tensor:
    """``E(K)`` for ``K = 0 .. max(W, K_max)``: the bias bound of truncating at ``K`` (up to ``M``)."""
    return torch.exp(log_tail_bound(phi_bar, log_beta, tau, K_max))


def log_relative_bias(phi_bar: Tensor, beta: float, tau: int, K_max: int | None = None) -> Tensor:
    """``log deltahat(K)`` for ``K = 0 .. max(W, K_max)``; ``+inf`` where nothing bounds it."""
    lp = _log_phi(phi_bar)
    W = lp.numel()
    log_beta = math.log(beta) if beta > 0 else -math.inf
    log_E = log_tail_bound(phi_bar, log_beta, tau, K_max)
    # cum_K = sum_{k<K} phi_k for K = 1..W (what TBPTT(K) keeps), paired with E(K)
    log_cum = torch.logcumsumexp(lp, 0)  # log_cum[K-1] = log sum_{k<K}
    log_E_obs = log_E[1 : W + 1]
    bound = log_cum > log_E_obs
    log_lower = torch.full_like(log_cum, -math.inf)
    log_lower[bound] = log_cum[bound] + _log1mexp(log_E_obs[bound] - log_cum[bound])
    log_D = log_lower.max()
    if not torch.isfinite(log_D):
        return torch.full_like(log_E, math.inf)
    return log_E - log_D


def relative_bias(phi_bar: Tensor, beta: float, tau: int, K_max: int | None = None) -> Tensor:
    """``deltahat[K] = E(K) / D`` for ``K = 0 .. max(W, K_max)`` (index = truncation length).

    Non-increasing in ``K``; ``inf`` everywhere when
    ``D = max_K (cum_K - E(K)) <= 0`` or the tail is unbounded (``beta >= 1``).
    """
    return torch.exp(log_relative_bias(phi_bar, beta, tau, K_max))


def choose_K(deltahat: Tensor, delta: float, W: int | None = None) -> int:
    """Smallest ``K`` in ``1 .. W`` with ``deltahat[K] < delta``, else ``W``.

    ``W`` (the estimation window) defaults to ``len(deltahat) - 1``; entries beyond it (tail
    extrapolations) are not searched, as in the reference code.
    """
    W = deltahat.numel() - 1 if W is None else W
    ok = torch.nonzero(deltahat[1 : W + 1] < delta)
    return int(ok[0, 0]) + 1 if len(ok) else int(W)


def estimate_truncation(phi: Tensor, delta: float, tau: int, K_max: int | None = None) -> dict[str, float | Tensor]:
    """One estimate from per-sequence norms ``phi [B, W]``: ``{"K", "log_beta", "beta", "delta_hat"}``.

    ``delta_hat`` is the whole ``deltahat[K]`` curve (``K = 0 .. max(W, K_max)``).
    """
    phi_bar = phi.detach().to("cpu", torch.float64).mean(0)
    log_beta = estimate_log_beta_ols(phi_bar)
    beta = math.exp(log_beta)
    dh = relative_bias(phi_bar, beta, tau, K_max)
    return {"K": choose_K(dh, delta, phi_bar.numel()), "log_beta": log_beta, "beta": beta, "delta_hat": dh}
