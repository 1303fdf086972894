"""Estimating the truncation length of adaptive TBPTT (Aicher, Foti & Fox, UAI 2019).

Pure functions, independent of the training loop (see ``methods/adaptive_tbptt.py``). The conventions are
those of the authors' code (aicherc/adaptive_tbptt, ``tbptt/adaptive_truncation.py`` as called by
``experiments/synth_script.py``), re-derived from its formulas:

* :func:`gradients_by_lag` -- ``g[b, k] = dL_s / dh_{s-1-k}`` for the loss ``L_s`` at the last step ``s``
  of a window, ``k = 0 .. W-1``: lag 0 is the state *entering* the last step (the authors'
  ``states[j][0]``), lag ``W-1`` the state after the burn-in;
* :func:`cumulative_norms` -- ``cum_K`` for ``K = 0 .. W-1``: ``exact`` = ``|| sum_{k<=K} mean_b g_k ||``
  (the authors' default, used by their copy-task script) or ``approx`` = ``sum_{k<=K} mean_b ||g_k||``
  (``cum_grad_norm_approx=True``, their language-model script);
* :func:`estimate_log_beta_ols` -- the geometric decay rate of the mean norms ``phi_bar`` (OLS slope of
  ``log phi_bar_k`` against ``k`` over all lags);
* :func:`log_tail_bound` / :func:`tail_bound` -- the bias bound ``E(K)``;
* :func:`relative_bias` -- ``deltahat(K) = E(K) / D`` with ``D`` a lower bound on ``||g||``;
* :func:`choose_K` -- the smallest ``K`` in ``1 .. W`` whose estimated relative bias is below ``delta``.

The bound (up to the constant ``M``, which cancels in the ratio), lags beyond ``tau`` following the fitted
decay ``phi_bar_{tau+j} = beta^j phi_bar_tau``:

    E(K) = sum_{k=K}^{tau} phi_bar_k + phi_bar_tau / (1 - beta)      for K < tau
    E(K) = phi_bar_tau * beta^(K - tau) / (1 - beta)                 for K >= tau

(the authors' sum runs to ``tau`` inclusive, so ``phi_bar_tau`` is counted twice below ``tau``; kept, as it
is their rule). ``D = max_{K=0..W-1} (cum_K - E(K))`` over the ``K`` where it is positive, and
``deltahat(K) = E(K) / D`` (``inf`` when no ``K`` gives a positive difference). All of it runs in log space.

Where this differs from the authors' code, on purpose: with ``beta >= 1`` their bound is ``inf`` for
``K >= tau`` but ``1`` (a zero-initialised log) for ``K < tau``; here it is ``inf`` for every ``K`` (no
decay measured: nothing bounds the bias, so ``K = W``). When the mean norm at ``tau`` is numerically zero
(log below -50) and no decay was measured, the tail counts as ``e^-50`` as theirs does, whatever the sign
of the (meaningless) slope.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

from suite.contracts import RecurrentModel

EPS = 1e-100  #: added to the mean norms before taking logs (as in the reference code)
LOG_ZERO = -50.0  #: log-norms below this are treated as zero (dropped from the OLS fit)

LossFn = Callable[..., Tensor]
CumNorm = Literal["exact", "approx"]


def gradients_by_lag(model: RecurrentModel, x: Tensor, y: Tensor, loss_fn: LossFn, burn: int, W: int,
                     mask: Tensor | None = None) -> Tensor:
    """Per-sequence state gradients ``g[b, k] = dL_s / dh^b_{s-1-k}`` for ``k = 0 .. W-1``: ``[B, W, D]``.

    ``x``/``y`` hold at least ``burn + W`` steps. The first ``burn`` steps run from the zero state
    without gradient; the next ``W`` steps run through ``model.step`` with the state entering each of
    them kept in the graph, ``L_s = loss_fn(y_hat_s, y_s)`` is the loss at the last of them (step
    ``s = burn+W-1``) and one ``torch.autograd.grad`` call returns its gradient w.r.t. all ``W``
    states ``h_{s-1}, h_{s-2}, .., h_{s-W}`` (total derivatives through the recurrence; ``h_{s-W}`` is the
    state after the burn-in). ``loss_fn`` is the task loss (a mean over the batch), so every gradient
    carries the same factor ``1/B``, which cancels in the relative bias. Parameter ``.grad`` is untouched.
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
            states.append(h)  # the state entering step burn + t
            h = model.step(h, u[:, t])
        y_hat = model.readout(h, u[:, -1])[:, None]
        last_mask = None if mask is None else mask[:, burn + W - 1 : burn + W]
        loss = loss_fn(y_hat, y[:, -1:], last_mask)
        grads = torch.autograd.grad(loss, states, allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(states, grads)]
    # states[-1] is h_{s-1} (lag 0), states[0] is h_{s-W} (lag W-1)
    return torch.stack([g.flatten(1) for g in reversed(grads)], dim=1).detach()


def gradient_norms_by_lag(model: RecurrentModel, x: Tensor, y: Tensor, loss_fn: LossFn, burn: int, W: int,
                          mask: Tensor | None = None) -> Tensor:
    """``phi[b, k] = || dL_s / dh^b_{s-1-k} ||``: ``[B, W]`` (see :func:`gradients_by_lag`)."""
    return gradients_by_lag(model, x, y, loss_fn, burn, W, mask).norm(dim=-1)


def cumulative_norms(grads: Tensor, rule: CumNorm = "exact") -> Tensor:
    """``cum_K`` for ``K = 0 .. W-1`` from ``grads [B, W, D]`` (float64): ``exact``:
    ``|| sum_{k<=K} mean_b g_k ||``; ``approx``: ``sum_{k<=K} mean_b || g_k ||`` (never smaller)."""
    g = grads.detach().to("cpu", torch.float64)
    if rule == "exact":
        return torch.cumsum(g.mean(0), 0).norm(dim=-1)
    if rule == "approx":
        return torch.cumsum(g.norm(dim=-1).mean(0), 0)
    raise ValueError(f"unknown cumulative-norm rule {rule!r}: use 'exact' or 'approx'")


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
    K = torch.arange(n, dtype=torch.float64)
    lp_tau = lp[tau]
    log_geo: Tensor | None
    if log_beta < 0:
        log_geo = lp_tau - _log1mexp(torch.tensor(log_beta, dtype=torch.float64))  # phi_tau / (1 - beta)
        if log_beta == -math.inf:  # beta = 0: the tail is phi_tau alone
            out = torch.where(K == tau, log_geo, torch.tensor(-math.inf, dtype=torch.float64))
        else:
            out = log_geo + (K - tau) * log_beta
    elif lp_tau < LOG_ZERO:  # no decay measured, but the gradients have already vanished at tau
        log_geo = None
        out = torch.full((n,), LOG_ZERO, dtype=torch.float64)
    else:  # no decay: nothing bounds the bias
        return torch.full((n,), math.inf, dtype=torch.float64)
    if tau > 0:  # K < tau: sum_{k=K}^{tau} phi_k (+ phi_tau / (1 - beta)), a reversed log-cumsum-exp
        head = torch.flip(torch.logcumsumexp(torch.flip(lp[: tau + 1], [0]), 0), [0])[:tau]
        out[:tau] = head if log_geo is None else torch.logaddexp(head, log_geo.expand(tau))
    return out


def tail_bound(phi_bar: Tensor, log_beta: float, tau: int, K_max: int | None = None) -> Tensor:
    """``E(K)`` for ``K = 0 .. max(W, K_max)``: the bias bound of truncating at ``K`` (up to ``M``)."""
    return torch.exp(log_tail_bound(phi_bar, log_beta, tau, K_max))


def log_relative_bias(phi_bar: Tensor, beta: float, tau: int, K_max: int | None = None,
                      cum: Tensor | None = None) -> Tensor:
    """``log deltahat(K)`` for ``K = 0 .. max(W, K_max)``; ``+inf`` where nothing bounds it.

    ``cum`` (``[W]``, see :func:`cumulative_norms`) defaults to the approximate rule on ``phi_bar``.
    """
    lp = _log_phi(phi_bar)
    W = lp.numel()
    log_beta = math.log(beta) if beta > 0 else -math.inf
    log_E = log_tail_bound(phi_bar, log_beta, tau, K_max)
    if cum is None:
        cum = torch.cumsum(phi_bar.detach().to("cpu", torch.float64), 0)
    if cum.numel() != W:
        raise ValueError(f"cum has {cum.numel()} entries, phi_bar {W}")
    log_cum = torch.log(cum.detach().to("cpu", torch.float64) + EPS)
    log_E_pair = log_E[:W]  # E(K) paired with cum_K, K = 0 .. W-1 (both count lag K, as the authors')
    bound = log_cum > log_E_pair
    log_lower = torch.full_like(log_cum, -math.inf)
    log_lower[bound] = log_cum[bound] + _log1mexp(log_E_pair[bound] - log_cum[bound])
    log_D = log_lower.max()
    if not torch.isfinite(log_D):
        return torch.full_like(log_E, math.inf)
    return log_E - log_D


def relative_bias(phi_bar: Tensor, beta: float, tau: int, K_max: int | None = None,
                  cum: Tensor | None = None) -> Tensor:
    """``deltahat[K] = E(K) / D`` for ``K = 0 .. max(W, K_max)`` (index = truncation length).

    Non-increasing in ``K``; ``inf`` everywhere when no ``cum_K - E(K)`` is
    positive or the tail is unbounded (``beta >= 1``).
    """
    return torch.exp(log_relative_bias(phi_bar, beta, tau, K_max, cum))


def choose_K(deltahat: Tensor, delta: float, W: int | None = None) -> int:
    """Smallest ``K`` in ``1 .. W`` with ``deltahat[K] < delta``, else ``W``.

    ``W`` (the estimation window) defaults to ``len(deltahat) - 1``; entries beyond it (tail
    extrapolations) are not searched, as in the reference code.
    """
    W = deltahat.numel() - 1 if W is None else W
    ok = torch.nonzero(deltahat[1 : W + 1] < delta)
    return int(ok[0, 0]) + 1 if len(ok) else int(W)


def estimate_truncation(grads: Tensor, delta: float, tau: int, K_max: int | None = None,
                        cum_norm: CumNorm = "exact") -> dict[str, float | Tensor]:
    """One estimate from per-sequence state gradients ``grads [B, W, D]`` (or their norms ``[B, W]``,
    which allow only ``cum_norm="approx"``): ``{"K", "log_beta", "beta", "delta_hat"}``.

    ``delta_hat`` is the whole ``deltahat[K]`` curve (``K = 0 .. max(W, K_max)``).
    """
    if grads.dim() == 2:
        if cum_norm != "approx":
            raise ValueError("the exact cumulative norm needs the gradient vectors [B, W, D], not their norms")
        grads = grads[..., None]
    g = grads.detach().to("cpu", torch.float64)
    phi_bar = g.norm(dim=-1).mean(0)
    log_beta = estimate_log_beta_ols(phi_bar)
    beta = math.exp(log_beta)
    dh = relative_bias(phi_bar, beta, tau, K_max, cumulative_norms(g, cum_norm))
    return {"K": choose_K(dh, delta, phi_bar.numel()), "log_beta": log_beta, "beta": beta, "delta_hat": dh}
