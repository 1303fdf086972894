"""DEER-family Newton solvers for nonlinear recurrences h_t = f(h_{t-1}, u_t; theta).

* DEER (Lim et al. 2024): Newton on the stacked residual; each step is a linear
  recurrence solved with the parallel scan of :mod:`suite.ops.scan`.
* quasi-DEER (Gonzalez et al. 2024): ``jacobian="diag"``, diagonal Jacobians.
* ELK / quasi-ELK: ``damping="elk"``, Levenberg-Marquardt step = Kalman smoother mean.
* GTF-DEER: ``forcing=(alpha, zhat)``, DEER on z_t = (1-alpha) f(z_{t-1}, u_t) + alpha zhat_t.

Gradients (``backward="implicit"``) come from implicit differentiation at the
fixed point: one reverse scan with J^T for the adjoint, then one batched VJP of
``f`` over all time steps.  At convergence they equal BPTT's.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from .kalman import lm_smoother_mean
from .scan import linear_scan, linear_scan_dense

__all__ = ["deer_solve", "gtf_deer_solve", "DeerInfo", "NewtonNotConverged", "default_tolerances"]

Cell = Callable[[Dict[str, Tensor], Tensor, Tensor], Tensor]
JacFn = Callable[[Dict[str, Tensor], Tensor, Tensor], Tensor]


class NewtonNotConverged(RuntimeWarning):
    """Warned when a DEER-family solve stops at ``max_iter`` without meeting its tolerance."""


@dataclass
class DeerInfo:
    """Diagnostics of one solve.

    Attributes:
        iterations: Newton (or LM) updates performed.
        converged: the returned trajectory is a fixed point within tolerance: its residual
            ``|h_t - g(h_{t-1}, u_t)|`` is within ``atol + rtol |h_t|`` everywhere. (A small step
            alone is not enough: a damped ELK step can be small far from the fixed point.)
        residual: ``max_{b,t} ||h_t - g(h_{t-1}, u_t)||_2`` of the returned trajectory
            (g = f, or the forced map with ``forcing``).
        nan_events: iterate entries that were NaN and were reset to 0.
        clip_events: iterate entries with ``|h| > clip`` (inf included) that were clipped.
        residual_history: the same residual for each iterate before its update
            (entry 0 is the initial guess).
    """

    iterations: int = 0
    converged: bool = False
    residual: float = float("nan")
    nan_events: int = 0
    clip_events: int = 0
    residual_history: list = field(default_factory=list)


def default_tolerances(dtype: torch.dtype) -> Tuple[float, float]:
    """DEER's defaults: (atol, rtol) = (1e-6, 1e-4) for float64, (1e-4, 1e-3) otherwise."""
    if dtype == torch.float64:
        return 1e-6, 1e-4
    return 1e-4, 1e-3


# ----------------------------------------------------------------------------
# pieces shared by forward and backward
# ----------------------------------------------------------------------------

@dataclass
class _Config:
    f: Cell
    keys: Tuple[str, ...]
    jacobian: str
    damping: Optional[str]
    sigma2: float
    max_iter: int
    atol: Optional[float]
    rtol: Optional[float]
    clip: float
    jac_fn: Optional[JacFn]
    backward: str
    alpha: float
    backend: str
    info: list = field(default_factory=list)


def _shift(h0: Tensor, H: Tensor) -> Tensor:
    """h_prev = [h0, h_1, ..., h_{T-1}]."""
    return torch.cat([h0.unsqueeze(1), H[:, :-1]], 1)


def _f_and_jac(cfg: _Config, params: Dict[str, Tensor], hprev: Tensor, u: Tensor, mode: str,
               allow_jac_fn: bool = True) -> Tuple[Tensor, Tensor]:
    """f(h_prev, u) and its Jacobian w.r.t. h_prev on flat inputs [N, D], [N, I].

    ``mode`` is ``"dense"`` ([N, D, D]) or ``"diag"`` ([N, D]).
    """
    f = cfg.f
    if cfg.jac_fn is not None and allow_jac_fn:
        J = cfg.jac_fn(params, hprev, u)
        if mode == "diag" and J.dim() == hprev.dim() + 1:
            J = J.diagonal(dim1=-2, dim2=-1)
        elif mode == "dense" and J.dim() == hprev.dim():
            J = torch.diag_embed(J)
        return f(params, hprev, u), J

    def single(h: Tensor, x: Tensor):
        y = f(params, h.unsqueeze(0), x.unsqueeze(0)).squeeze(0)
        return y, y

    # On a CPU, many rows in chunks keep vmap's batched backward in cache: 3x faster at N = 4e4 (GRU,
    # D = 16, one thread) than all rows at once, no gain at N = 4e3; on a GPU one launch is best.
    big = hprev.device.type == "cpu" and hprev.shape[0] > 4 * _CPU_JACOBIAN_CHUNK
    chunk = _CPU_JACOBIAN_CHUNK if big else None
    J, fx = torch.func.vmap(torch.func.jacrev(single, argnums=0, has_aux=True), chunk_size=chunk)(hprev, u)
    if mode == "diag":
        J = J.diagonal(dim1=-2, dim2=-1)
    return fx, J


_CPU_JACOBIAN_CHUNK = 2048


def _sanitize(H: Tensor, clip: float, info: DeerInfo) -> Tensor:
    nan = torch.isnan(H)
    n_nan = int(nan.sum())
    big = H.abs() > clip
    n_big = int(big.sum())
    if n_nan or n_big:
        info.nan_events += n_nan
        info.clip_events += n_big
        H = torch.nan_to_num(H, nan=0.0, posinf=clip, neginf=-clip).clamp(-clip, clip)
    return H


def _residual_norm(H: Tensor, G: Tensor) -> float:
    return float(torch.linalg.vector_norm(H - G, dim=-1).max()) if H.numel() else 0.0


def _newton(cfg: _Config, params: Dict[str, Tensor], h0: Tensor, u: Tensor, zhat: Optional[Tensor],
            init: Optional[Tensor]) -> Tuple[Tensor, DeerInfo]:
    """The Newton / LM iteration itself (no autograd)."""
    B, T, D = u.shape[0], u.shape[1], h0.shape[-1]
    info = DeerInfo()
    if T == 0:
        info.converged, info.residual = True, 0.0
        return h0.new_zeros(B, 0, D), info
    atol, rtol = default_tolerances(h0.dtype)
    atol = cfg.atol if cfg.atol is not None else atol
    rtol = cfg.rtol if cfg.rtol is not None else rtol
    alpha = cfg.alpha
    dense = cfg.jacobian == "dense"
    u_flat = u.reshape(B * T, -1)

    if init is not None:
        H = init.to(h0.dtype).expand(B, T, D).clone()
    elif zhat is not None:
        H = zhat.clone()
    else:
        H = h0.unsqueeze(1).expand(B, T, D).clone()

    def forced(fx: Tensor) -> Tensor:
        return fx if zhat is None else (1.0 - alpha) * fx + alpha * zhat

    def target(H: Tensor) -> Tensor:
        return forced(cfg.f(params, _shift(h0, H).reshape(B * T, D), u_flat).reshape(B, T, D))

    def within(H: Tensor, G: Tensor) -> bool:
        return bool(((H - G).abs() <= atol + rtol * H.abs()).all())

    G_final: Optional[Tensor] = None
    for it in range(cfg.max_iter):
        hprev = _shift(h0, H)
        fx, J = _f_and_jac(cfg, params, hprev.reshape(B * T, D), u_flat, cfg.jacobian)
        fx = fx.reshape(B, T, D)
        J = J.reshape((B, T, D, D) if dense else (B, T, D))
        G = forced(fx)
        if zhat is not None:
            J = (1.0 - alpha) * J
        info.residual_history.append(_residual_norm(H, G))
        # linearised recurrence h_t = J_t h_{t-1} + (g(h_prev) - J_t h_prev)
        if dense:
            rhs = G - torch.matmul(J, hprev.unsqueeze(-1)).squeeze(-1)
        else:
            rhs = G - J * hprev
        if cfg.damping == "elk":
            H_new = lm_smoother_mean(J, rhs, h0, H, cfg.sigma2)
        elif dense:
            H_new = linear_scan_dense(J, rhs, h0, backend=cfg.backend)
        else:
            H_new = linear_scan(J, rhs, h0, backend=cfg.backend)
        events = info.nan_events + info.clip_events
        H_new = _sanitize(H_new, cfg.clip, info)
        info.iterations = it + 1
        # an update that had to be sanitised is not a fixed point, however small the change
        clean = info.nan_events + info.clip_events == events
        small_step = clean and bool(((H_new - H).abs() <= atol + rtol * H_new.abs()).all())
        H = H_new
        if small_step:  # a candidate fixed point: confirm it on the residual
            G_final = target(H)
            if within(H, G_final):
                info.converged = True
                break
            G_final = None

    # residual of the returned trajectory (one more evaluation of f unless the test above made it)
    G = G_final if G_final is not None else target(H)
    info.residual = _residual_norm(H, G)
    if not info.converged:
        info.converged = within(H, G)
    if not info.converged:
        warnings.warn(
            f"DEER solve did not converge in {cfg.max_iter} iterations "
            f"(residual {info.residual:.3e}, nan events {info.nan_events}, clip events {info.clip_events})",
            NewtonNotConverged, stacklevel=4)
    return H, info


class _DeerFunction(torch.autograd.Function):
    """Newton forward under no_grad; implicit-function backward at the fixed point."""

    @staticmethod
    def forward(ctx, cfg: _Config, init: Optional[Tensor], h0: Tensor, u: Tensor, zhat: Optional[Tensor],
                *pvals: Tensor) -> Tensor:
        params = dict(zip(cfg.keys, pvals))
        with torch.no_grad():
            H, info = _newton(cfg, params, h0, u, zhat, init)
        cfg.info.append(info)
        ctx.cfg = cfg
        ctx.save_for_backward(H, h0, u, zhat, *pvals)
        return H

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        cfg: _Config = ctx.cfg
        H, h0, u, zhat, *pvals = ctx.saved_tensors
        params = dict(zip(cfg.keys, pvals))
        B, T, D = H.shape
        if T == 0:
            return (None, None, torch.zeros_like(h0), torch.zeros_like(u),
                    None if zhat is None else torch.zeros_like(zhat), *[torch.zeros_like(p) for p in pvals])
        alpha = cfg.alpha if zhat is not None else 0.0
        mode = "diag" if cfg.backward == "quasi" else "dense"
        hprev = _shift(h0, H).reshape(B * T, D)
        u_flat = u.reshape(B * T, -1)
        # exact adjoint needs the full Jacobian: a diagonal-only jac_fn is not used for it
        use_jac_fn = mode == "diag" or cfg.jacobian == "dense"
        _, J = _f_and_jac(cfg, params, hprev, u_flat, mode, allow_jac_fn=use_jac_fn)
        if mode == "dense" and J.dim() == 2:  # diagonal-only jac_fn: recompute with autograd
            _, J = _f_and_jac(cfg, params, hprev, u_flat, mode, allow_jac_fn=False)
        A = (1.0 - alpha) * J.reshape((B, T, D, D) if mode == "dense" else (B, T, D))
        # adjoint: lam_t = g_t + A_{t+1}^T lam_{t+1}  (reverse scan, A_{T+1} = 0)
        A_next = torch.cat([A[:, 1:], torch.zeros_like(A[:, :1])], 1)
        if mode == "dense":
            lam = linear_scan_dense(A_next.mT, g, reverse=True, backend=cfg.backend)
        else:
            lam = linear_scan(A_next, g, reverse=True, backend=cfg.backend)
        lam_flat = lam.reshape(B * T, D)

        def fcall(p, hp, x):
            return cfg.f(p, hp, x)

        _, vjp_fn = torch.func.vjp(fcall, params, hprev, u_flat)
        gp, ghp, gu = vjp_fn(lam_flat)
        scale = 1.0 - alpha
        dparams = [gp[k] * scale if gp[k] is not None else None for k in cfg.keys]
        dh0 = ghp.reshape(B, T, D)[:, 0] * scale
        du = gu.reshape(u.shape) * scale
        dzhat = alpha * lam if zhat is not None else None
        return (None, None, dh0, du, dzhat, *dparams)


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------

def deer_solve(
    f: Cell,
    params: Dict[str, Tensor],
    h0: Tensor,
    u: Tensor,
    *,
    jacobian: str = "dense",
    damping: Optional[str] = None,
    sigma2: float = 1e8,
    max_iter: int = 100,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    init: Optional[Tensor] = None,
    clip: float = 1e8,
    jac_fn: Optional[JacFn] = None,
    backward: str = "implicit",
    forcing: Optional[Tuple[float, Tensor]] = None,
    backend: str = "auto",
) -> Tuple[Tensor, DeerInfo]:
    """Solve ``h_t = f(params, h_{t-1}, u_t)`` for all t at once with (quasi-)Newton / LM.

    Args:
        f: pure cell ``f(params, h: [N, D], u: [N, I]) -> [N, D]``, row-wise in N and
            usable under ``torch.func`` (vmap / jacrev / vjp).
        params: named parameter tensors (gradients flow to them).
        h0: initial state ``[B, D]``.
        u: inputs ``[B, T, I]``.
        jacobian: ``"dense"`` (DEER / ELK) or ``"diag"`` (quasi-DEER / quasi-ELK).
        damping: ``None`` (Newton) or ``"elk"`` (Levenberg-Marquardt step via Kalman smoother).
        sigma2: ELK observation variance (1 / lambda); larger means less damping.
        max_iter: iteration cap (Newton is exact after T iterations).
        atol, rtol: stop when ``|h_new - h| <= atol + rtol |h_new|`` everywhere; defaults from
            :func:`default_tolerances` (float32: 1e-4, 1e-3; float64: 1e-6, 1e-4).
        init: warm-start trajectory ``[B, T, D]``; default h0 repeated (``zhat`` with forcing).
        clip: iterates are NaN->0 and clipped to ``[-clip, clip]``.
        jac_fn: optional analytic Jacobian ``(params, h: [N, D], u: [N, I]) -> [N, D, D] or [N, D]``.
        backward: ``"implicit"`` (exact gradient at the fixed point, = BPTT) or ``"quasi"``
            (adjoint with the diagonal Jacobians, approximate unless J is diagonal).
        forcing: ``(alpha, zhat)`` for GTF-DEER: solve ``z_t = (1-alpha) f(z_{t-1}, u_t) + alpha zhat_t``.
        backend: linear-scan backend (see :mod:`suite.ops.scan`).

    Returns:
        ``(H, info)``: states ``[B, T, D]`` (differentiable w.r.t. params, h0, u, zhat) and
        a :class:`DeerInfo`.  Warns :class:`NewtonNotConverged` when the tolerance is not met.
    """
    if jacobian not in ("dense", "diag"):
        raise ValueError(f"jacobian must be 'dense' or 'diag', got {jacobian!r}")
    if damping not in (None, "elk"):
        raise ValueError(f"damping must be None or 'elk', got {damping!r}")
    if backward not in ("implicit", "quasi"):
        raise ValueError(f"backward must be 'implicit' or 'quasi', got {backward!r}")
    if max_iter < 1:
        raise ValueError("max_iter must be >= 1")
    if u.dim() != 3 or h0.dim() != 2 or u.shape[0] != h0.shape[0]:
        raise ValueError(f"expected h0 [B, D] and u [B, T, I]; got {tuple(h0.shape)}, {tuple(u.shape)}")
    alpha, zhat = 0.0, None
    if forcing is not None:
        alpha, zhat = forcing
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"forcing alpha must be in [0, 1], got {alpha}")
        zhat = zhat.to(h0.dtype).expand(u.shape[0], u.shape[1], h0.shape[-1])
    keys = tuple(params.keys())
    cfg = _Config(f=f, keys=keys, jacobian=jacobian, damping=damping, sigma2=sigma2, max_iter=int(max_iter),
                  atol=atol, rtol=rtol, clip=float(clip), jac_fn=jac_fn, backward=backward, alpha=alpha,
                  backend=backend)
    pvals = tuple(params[k] for k in keys)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (h0, u, zhat, *pvals))
    if not needs_grad:
        with torch.no_grad():
            return _newton(cfg, params, h0, u, zhat, init)
    init_d = init.detach() if init is not None else None
    H = _DeerFunction.apply(cfg, init_d, h0, u, zhat, *pvals)
    return H, cfg.info[-1]


def gtf_deer_solve(
    f: Cell,
    params: Dict[str, Tensor],
    h0: Tensor,
    u: Tensor,
    alpha: float,
    zhat: Tensor,
    **kwargs,
) -> Tuple[Tensor, DeerInfo]:
    """GTF-DEER: DEER on the forced recurrence ``z_t = (1-alpha) f(z_{t-1}, u_t) + alpha zhat_t``.

    The Jacobian of the forced map is ``(1-alpha) J``.  ``alpha = 0`` is plain DEER;
    ``alpha = 1`` returns ``zhat`` after one iteration.  The initial guess defaults to
    ``zhat``.  Other keyword arguments are those of :func:`deer_solve`.
    """
    return deer_solve(f, params, h0, u, forcing=(alpha, zhat), **kwargs)
