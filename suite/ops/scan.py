"""Parallel solvers for the first-order linear recurrence h_t = A_t h_{t-1} + b_t.

Two flavours share one implementation:

* diagonal: ``a`` has the shape of ``b`` (``[B, T, D]``, or any trailing state
  shape ``[B, T, *S]``), ``h_t = a_t * h_{t-1} + b_t``;
* dense: ``A`` is ``[B, T, D, D]`` and ``h_t = A_t @ h_{t-1} + b_t``.

Time is always dim 1.  The backward pass is itself a reverse-time scan
(``bbar_t = g_t + A_{t+1}^H bbar_{t+1}``), so forward and backward cost the same.

Backends (``backend=``):

``"chunked"``  (CPU default) split T into chunks of C steps.  Pass 1 runs the
    recurrence inside every chunk at once (vectorised across chunks, zero start)
    and forms each chunk's transition product; a short loop over the chunks
    then gives the state entering every chunk; pass 2 reruns the in-chunk
    recurrence from those states, writing the output.  O(T) work, about
    2C + T/C Python-level steps, and no division by cumulative products, so
    gates with zeros or tiny values are exact.
``"loop"``     plain sequential loop (also used for very short sequences).
``"associative"`` ``torch._higher_order_ops.associative_scan`` (``pointwise``
    mode on CUDA for the diagonal case, ``generic`` otherwise; runs eagerly on CPU).
``"accelerated"`` the ``accelerated_scan.warp`` CUDA kernel, if installed (diagonal, float32 / float16 /
    bfloat16; sequences longer than its 65536 steps run in segments with the state carried; ``auto``
    skips it for other inputs without marking it failed).
``"auto"``     CUDA: accelerated -> associative -> chunked (first that works);
    elsewhere: chunked (loop for tiny T, and for dense states too large for
    chunk products to pay off).
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import Tensor

__all__ = ["linear_scan", "linear_scan_dense", "BACKENDS"]

BACKENDS = ("auto", "loop", "chunked", "associative", "accelerated")

# GPU backends that raised once are not retried in this process.
_FAILED_BACKENDS: set[str] = set()


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------

def _affine(a: Tensor, h: Tensor, b: Tensor, dense: bool, out: Optional[Tensor] = None) -> Tensor:
    """``a * h + b`` (diagonal) or ``a @ h + b`` (dense), optionally written into ``out``."""
    if dense:
        ah = torch.matmul(a, h.unsqueeze(-1)).squeeze(-1)
        return torch.add(b, ah, out=out) if out is not None else ah + b
    if out is not None:
        return torch.addcmul(b, a, h, out=out)
    return torch.addcmul(b, a, h)


def _herm(a: Tensor, dense: bool) -> Tensor:
    """Adjoint of the linear map ``h -> a h``: conj (diagonal) or conj-transpose (dense)."""
    return a.mH if dense else a.conj()


def _chunk_size(L: int, dense: bool) -> int:
    """Chunk length: about sqrt(2 L) rounded to a power of two, within [8, 64].

    Measured on a 2-core CPU (B=16, D=256 and B=4, D=8; T from 1e3 to 1.6e4):
    64 was best or within 5% of best for T >= 2048, and 128/256 were slower
    (cache conflicts from the larger chunk stride).
    """
    c = 2 ** round(math.log2(max(1.0, math.sqrt(2.0 * L))))
    return int(min(64, max(8, c)))


# ----------------------------------------------------------------------------
# kernels: all write the states into a preallocated ``out`` (no autograd)
# reverse=True means h_t = a_t h_{t+1} + b_t with h_{L+1} = h0.
# ----------------------------------------------------------------------------

def _loop_into(out: Tensor, a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool, dense: bool) -> Tensor:
    L = b.shape[1]
    a_l, b_l, o_l = a.unbind(1), b.unbind(1), out.unbind(1)
    h = h0
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        if h is None:
            h = o_l[t].copy_(b_l[t])
        else:
            h = _affine(a_l[t], h, b_l[t], dense, out=o_l[t])
    return out


def _chunked_into(out: Tensor, a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool, dense: bool,
                  chunk: Optional[int] = None) -> Tensor:
    L = b.shape[1]
    C = chunk or _chunk_size(L, dense)
    nC = L // C
    if nC < 2 or C < 2:
        return _loop_into(out, a, b, h0, reverse, dense)
    T0 = nC * C
    main = slice(L - T0, L) if reverse else slice(0, T0)
    tail = slice(0, L - T0) if reverse else slice(T0, L)

    am = a[:, main].unflatten(1, (nC, C))
    bm = b[:, main].unflatten(1, (nC, C))
    om = out[:, main].unflatten(1, (nC, C))
    a_l, b_l, o_l = am.unbind(2), bm.unbind(2), om.unbind(2)
    order = list(range(C - 1, -1, -1)) if reverse else list(range(C))

    # pass 1: chunk-local end states (zero start), all chunks at once
    h = b_l[order[0]].clone()
    for i in order[1:]:
        h = _affine(a_l[i], h, b_l[i], dense)
    # transition product of every chunk (latest factor on the left)
    if dense:
        P = a_l[order[0]]
        for i in order[1:]:
            P = torch.matmul(a_l[i], P)
    else:
        P = am.prod(2)

    # short sequential pass over the chunks: the state entering every chunk
    init = torch.empty_like(h)
    carry = h0
    for k in (range(nC - 1, -1, -1) if reverse else range(nC)):
        if carry is None:
            init[:, k].zero_()
            carry = h[:, k]
        else:
            init[:, k].copy_(carry)
            carry = _affine(P[:, k], carry, h[:, k], dense)

    # pass 2: rerun each chunk from its true initial state, writing the output
    hh = init
    for i in order:
        hh = _affine(a_l[i], hh, b_l[i], dense, out=o_l[i])

    if L > T0:
        _loop_into(out[:, tail], a[:, tail], b[:, tail], carry, reverse, dense)
    return out


def _fold_h0(a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool, dense: bool) -> Tensor:
    """Return b with the initial state folded into its first (in scan order) element."""
    if h0 is None:
        return b
    idx = -1 if reverse else 0
    b = b.clone()
    b[:, idx] = _affine(a[:, idx], h0, b[:, idx], dense)
    return b


def _associative_into(out: Tensor, a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool,
                      dense: bool) -> Tensor:
    from torch._higher_order_ops.associative_scan import associative_scan

    b = _fold_h0(a, b, h0, reverse, dense)
    if dense:
        def combine(x, y):  # x: earlier (already scanned), y: later element
            return torch.matmul(y[0], x[0]), torch.matmul(y[0], x[1].unsqueeze(-1)).squeeze(-1) + y[1]
        mode = "generic"
    else:
        def combine(x, y):
            return y[0] * x[0], y[0] * x[1] + y[1]
        mode = "pointwise" if b.device.type in ("cuda", "xpu") else "generic"
    _, h = associative_scan(combine, (a.contiguous(), b.contiguous()), dim=1, reverse=reverse,
                            combine_mode=mode)
    out.copy_(h)
    return out


_ACCELERATED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_ACCELERATED_MAX_T = 65536  # the kernel's longest sequence; longer ones run in segments of this length


def _accelerated_fits(b: Tensor, dense: bool) -> bool:
    """Whether the accelerated-scan kernel can take this input (a mismatch is no kernel failure)."""
    return not dense and b.device.type == "cuda" and b.dtype in _ACCELERATED_DTYPES


def _accelerated_into(out: Tensor, a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool,
                      dense: bool) -> Tensor:
    if not _accelerated_fits(b, dense):
        raise RuntimeError("accelerated_scan needs a real diagonal float32/float16/bfloat16 recurrence on CUDA")
    from accelerated_scan.warp import scan_forward  # compiles a CUDA extension on first import

    if reverse:
        a, b = a.flip(1), b.flip(1)
    B, L = b.shape[:2]
    # (B, T, ...) -> (B, channels, T), the kernel's layout
    g = a.reshape(B, L, -1).transpose(1, 2)
    x = b.reshape(B, L, -1).transpose(1, 2)
    carry = None if h0 is None else h0.reshape(B, -1)
    segments = []
    for start in range(0, L, _ACCELERATED_MAX_T):
        gs, xs = g[:, :, start:start + _ACCELERATED_MAX_T], x[:, :, start:start + _ACCELERATED_MAX_T]
        n = gs.shape[2]
        if carry is not None:  # fold the state entering the segment into its first input
            xs = xs.clone()
            xs[:, :, 0] = torch.addcmul(xs[:, :, 0], gs[:, :, 0], carry)
        n_pad = max(32, 1 << (n - 1).bit_length())  # a power of two in [32, 65536]: gate 1, input 0
        if n_pad != n:
            gs = torch.cat([gs, gs.new_ones(B, gs.shape[1], n_pad - n)], 2)
            xs = torch.cat([xs, xs.new_zeros(B, xs.shape[1], n_pad - n)], 2)
        hs = scan_forward(gs.contiguous(), xs.contiguous())[:, :, :n]
        carry = hs[:, :, -1]
        segments.append(hs)
    h = (segments[0] if len(segments) == 1 else torch.cat(segments, 2)).transpose(1, 2).reshape(b.shape)
    out.copy_(h.flip(1) if reverse else h)
    return out


def _run_into(out: Tensor, a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool, dense: bool,
              backend: str) -> Tensor:
    """Dispatch to a kernel; ``out``, ``a``, ``b`` share the time length (dim 1)."""
    if b.shape[1] == 0:
        return out
    if backend == "loop":
        return _loop_into(out, a, b, h0, reverse, dense)
    if backend == "chunked":
        return _chunked_into(out, a, b, h0, reverse, dense)
    if backend == "associative":
        return _associative_into(out, a, b, h0, reverse, dense)
    if backend == "accelerated":
        return _accelerated_into(out, a, b, h0, reverse, dense)
    if backend != "auto":
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if b.device.type == "cuda":
        for name, fn in (("accelerated", _accelerated_into), ("associative", _associative_into)):
            if name in _FAILED_BACKENDS or (name == "accelerated" and not _accelerated_fits(b, dense)):
                continue
            try:
                return fn(out, a, b, h0, reverse, dense)
            except Exception as err:  # noqa: BLE001 - optional GPU paths; fall back below
                _FAILED_BACKENDS.add(name)
                warnings.warn(f"linear_scan: backend {name!r} unavailable ({err!r}); falling back",
                              RuntimeWarning, stacklevel=3)
        return _chunked_into(out, a, b, h0, reverse, dense)
    L = b.shape[1]
    if L < 16:
        return _loop_into(out, a, b, h0, reverse, dense)
    if dense and b.shape[-1] > 16:
        # chunk products cost O(T D^3) against the loop's O(T D^2)
        return _loop_into(out, a, b, h0, reverse, dense)
    return _chunked_into(out, a, b, h0, reverse, dense)


# ----------------------------------------------------------------------------
# autograd
# ----------------------------------------------------------------------------

class _LinearScan(torch.autograd.Function):
    """h = scan(a, b, h0) in direction ``reverse``; backward = scan in the other direction.

    The backward is written with this same Function when ``create_graph`` is on,
    so higher-order derivatives work too.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Optional[Tensor], reverse: bool, dense: bool,
                backend: str) -> Tensor:
        out = torch.empty(b.shape, dtype=b.dtype, device=b.device)
        _run_into(out, a, b, h0, reverse, dense, backend)
        ctx.save_for_backward(a, out, h0)
        ctx.reverse, ctx.dense, ctx.backend = reverse, dense, backend
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        a, h, h0 = ctx.saved_tensors
        reverse, dense, backend = ctx.reverse, ctx.dense, ctx.backend
        need_a, need_b, need_h0 = ctx.needs_input_grad[:3]
        L = h.shape[1]
        if L == 0:
            return (torch.zeros_like(a), torch.zeros_like(g), None if h0 is None else torch.zeros_like(h0),
                    None, None, None)
        first = -1 if reverse else 0  # first position in scan order
        aH = _herm(a, dense)

        # adjoint: bbar_t = g_t + A_{next(t)}^H bbar_{next(t)}, solved in the opposite direction
        if L == 1:
            bbar = g
        elif torch.is_grad_enabled():  # double backward: stay differentiable
            if reverse:
                rest = _LinearScan.apply(aH[:, :-1], g[:, 1:], g[:, 0], False, dense, backend)
                bbar = torch.cat([g[:, :1], rest], 1)
            else:
                rest = _LinearScan.apply(aH[:, 1:], g[:, :-1], g[:, -1], True, dense, backend)
                bbar = torch.cat([rest, g[:, -1:]], 1)
        else:
            bbar = torch.empty(g.shape, dtype=g.dtype, device=g.device)
            if reverse:
                bbar[:, 0] = g[:, 0]
                _run_into(bbar[:, 1:], aH[:, :-1], g[:, 1:], bbar[:, 0], False, dense, backend)
            else:
                bbar[:, -1] = g[:, -1]
                _run_into(bbar[:, :-1], aH[:, 1:], g[:, :-1], bbar[:, -1], True, dense, backend)

        da = dh0 = None
        if need_a:
            # da_t = bbar_t (x) conj(h_prev(t)),  h_prev = [h0, h_1..h_{T-1}] (forward order)
            hc = h.conj()
            h0c = h0.conj() if h0 is not None else None
            if torch.is_grad_enabled():
                z = torch.zeros_like(h[:, :1]) if h0c is None else h0c.unsqueeze(1)
                hprev = torch.cat([hc[:, 1:], z], 1) if reverse else torch.cat([z, hc[:, :-1]], 1)
                da = bbar.unsqueeze(-1) * hprev.unsqueeze(-2) if dense else bbar * hprev
            else:
                da = torch.empty(a.shape, dtype=a.dtype, device=a.device)
                cur, prev = (slice(0, L - 1), slice(1, L)) if reverse else (slice(1, L), slice(0, L - 1))
                if dense:
                    torch.mul(bbar[:, cur].unsqueeze(-1), hc[:, prev].unsqueeze(-2), out=da[:, cur])
                    if h0c is None:
                        da[:, first].zero_()
                    else:
                        torch.mul(bbar[:, first].unsqueeze(-1), h0c.unsqueeze(-2), out=da[:, first])
                else:
                    torch.mul(bbar[:, cur], hc[:, prev], out=da[:, cur])
                    if h0c is None:
                        da[:, first].zero_()
                    else:
                        torch.mul(bbar[:, first], h0c, out=da[:, first])
        if need_h0 and h0 is not None:
            a1 = aH[:, first]
            dh0 = torch.matmul(a1, bbar[:, first].unsqueeze(-1)).squeeze(-1) if dense else a1 * bbar[:, first]
        db = bbar if need_b else None
        return da, db, dh0, None, None, None


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------

def _prepare(a: Tensor, b: Tensor, h0: Optional[Tensor], dense: bool):
    if b.dim() < 3:
        raise ValueError(f"b must be [B, T, D...], got shape {tuple(b.shape)}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    if h0 is not None:
        dtype = torch.promote_types(dtype, h0.dtype)
    out_dtype = dtype
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32  # accumulate in float32
    if dense:
        if a.dim() != b.dim() + 1 or a.shape[-1] != a.shape[-2] or a.shape[-1] != b.shape[-1]:
            raise ValueError(f"dense scan needs A [B,T,D,D] and b [B,T,D]; got {tuple(a.shape)}, {tuple(b.shape)}")
        lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-1])
        a = a.to(dtype).expand(*lead, *a.shape[-2:])
        b = b.to(dtype).expand(*lead, b.shape[-1])
    else:
        a, b = torch.broadcast_tensors(a.to(dtype), b.to(dtype))
    if h0 is not None:
        h0 = h0.to(dtype).expand(b.shape[:1] + b.shape[2:])
    return a, b, h0, out_dtype


def linear_scan(a: Tensor, b: Tensor, h0: Optional[Tensor] = None, *, reverse: bool = False,
                backend: str = "auto") -> Tensor:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` for t = 1..T in parallel (diagonal gates).

    Args:
        a: gates ``[B, T, D]`` (broadcastable against ``b``; any trailing state shape works).
        b: inputs ``[B, T, D]``.
        h0: optional initial state ``[B, D]`` (zero when omitted); differentiable.
        reverse: scan from t = T down to 1 (``h_t = a_t h_{t+1} + b_t``, ``h_{T+1} = h0``).
        backend: ``"auto"``, ``"loop"``, ``"chunked"``, ``"associative"`` or ``"accelerated"``.

    Returns:
        States ``[B, T, D]`` (h0 excluded) in the promoted input dtype; float16/bfloat16
        inputs are accumulated in float32.  Gradients flow to ``a``, ``b`` and ``h0``.
    """
    a, b, h0, out_dtype = _prepare(a, b, h0, dense=False)
    h = _LinearScan.apply(a, b, h0, reverse, False, backend)
    return h.to(out_dtype)


def linear_scan_dense(A: Tensor, b: Tensor, h0: Optional[Tensor] = None, *, reverse: bool = False,
                      backend: str = "auto") -> Tensor:
    """Solve ``h_t = A_t @ h_{t-1} + b_t`` for t = 1..T in parallel (dense transition matrices).

    Args:
        A: ``[B, T, D, D]``.
        b: ``[B, T, D]``.
        h0: optional initial state ``[B, D]``.
        reverse, backend: as in :func:`linear_scan`.

    Returns:
        States ``[B, T, D]``; gradients flow to ``A``, ``b`` and ``h0``.
    """
    A, b, h0, out_dtype = _prepare(A, b, h0, dense=True)
    h = _LinearScan.apply(A, b, h0, reverse, True, backend)
    return h.to(out_dtype)
