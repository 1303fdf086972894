"""Parallel linear scan vs the sequential loop oracle (forward and gradients)."""
from __future__ import annotations

import random
import sys
import types

import pytest
import torch

from suite.ops import linear_recurrence_loop, linear_scan, linear_scan_dense
from suite.ops import scan as scan_mod

B, D = 3, 4
RANDOM_T = random.Random(1234).randint(40, 600)
LENGTHS = [1, 2, 3, 31, 32, 33, 1000, RANDOM_T]


def make_inputs(T, dense, regime, dtype, seed=0, with_h0=True):
    g = torch.Generator().manual_seed(seed)
    if dense:
        if regime == "near1":
            # 0.999 * random orthogonal: spectral norm 0.999, no decay in most directions
            q, _ = torch.linalg.qr(torch.randn(B, T, D, D, generator=g, dtype=torch.float64))
            a = 0.999 * q
        else:  # exact zeros: whole zero matrices and zero entries
            a = torch.randn(B, T, D, D, generator=g, dtype=torch.float64) * 0.5
            a = a * (torch.rand(B, T, D, D, generator=g, dtype=torch.float64) > 0.3)
            a[:, ::3] = 0.0
    else:
        sign = torch.where(torch.rand(B, T, D, generator=g) < 0.2, -1.0, 1.0).to(torch.float64)
        if regime == "near1":
            a = sign * (0.999 + 0.001 * torch.rand(B, T, D, generator=g, dtype=torch.float64))
        else:
            a = sign * torch.rand(B, T, D, generator=g, dtype=torch.float64) * 1.2
            a = a * (torch.rand(B, T, D, generator=g, dtype=torch.float64) > 0.3)
            a[:, ::4] = 0.0
    b = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    h0 = torch.randn(B, D, generator=g, dtype=torch.float64) if with_h0 else None
    w = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    cast = lambda x: None if x is None else x.to(dtype)  # noqa: E731
    return cast(a), cast(b), cast(h0), cast(w)


def _tol(dtype, ref):
    scale = max(1.0, float(ref.detach().abs().max()))
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-10 * scale)
    return dict(rtol=2e-5, atol=2e-5 * scale)


def _check_against_loop(T, dense, regime, dtype, with_h0, backend, reverse=False):
    a, b, h0, w = make_inputs(T, dense, regime, dtype, seed=T, with_h0=with_h0)
    leaves = [a, b] + ([h0] if with_h0 else [])
    for x in leaves:
        x.requires_grad_(True)
    scan = linear_scan_dense if dense else linear_scan
    h = scan(a, b, h0, backend=backend, reverse=reverse)
    if reverse:  # oracle: run the loop on time-flipped sequences
        ref = linear_recurrence_loop(a.flip(1), b.flip(1), h0).flip(1)
    else:
        ref = linear_recurrence_loop(a, b, h0)
    assert h.dtype == dtype and h.shape == ref.shape
    torch.testing.assert_close(h, ref, **_tol(dtype, ref))
    got = torch.autograd.grad((h * w).sum(), leaves)
    exp = torch.autograd.grad((ref * w).sum(), leaves)
    for gx, ex in zip(got, exp):
        torch.testing.assert_close(gx, ex, **_tol(dtype, ex))


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
@pytest.mark.parametrize("regime", ["near1", "zeros"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["noh0", "h0"])
def test_scan_matches_loop(T, dense, regime, dtype, with_h0):
    _check_against_loop(T, dense, regime, dtype, with_h0, backend="chunked")


@pytest.mark.parametrize("T", [1, 5, 31, 33, 257])
@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
@pytest.mark.parametrize("backend", ["auto", "loop", "associative"])
def test_other_backends_match_loop(T, dense, backend):
    _check_against_loop(T, dense, "zeros", torch.float64, True, backend=backend)


@pytest.mark.parametrize("T", [1, 2, 33, 300])
@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
@pytest.mark.parametrize("backend", ["chunked", "associative"])
def test_reverse_scan(T, dense, backend):
    _check_against_loop(T, dense, "near1", torch.float64, True, backend=backend, reverse=True)


@pytest.mark.parametrize("T", [16, 17, 40, 63, 64, 65, 130])
@pytest.mark.parametrize("chunk", [2, 4, 8, 16])
@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_chunked_kernel_all_splits(T, chunk, dense, reverse):
    """Exercise chunk/tail splits directly (the public API picks its own chunk size)."""
    a, b, h0, _ = make_inputs(T, dense, "zeros", torch.float64, seed=chunk + T)
    out = torch.empty_like(b)
    scan_mod._chunked_into(out, a, b, h0, reverse, dense, chunk=chunk)
    if reverse:
        ref = linear_recurrence_loop(a.flip(1), b.flip(1), h0).flip(1)
    else:
        ref = linear_recurrence_loop(a, b, h0)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("backend", ["chunked", "loop"])
def test_gradcheck(dense, reverse, backend):
    T = 20  # chunked: two chunks of 8 plus a tail of 4
    a, b, h0, _ = make_inputs(T, dense, "zeros", torch.float64, seed=7)
    a = a + 0.1  # no exact zeros for finite differences to trip on
    # small state for the dense case: finite differences cost one solve per input entry
    a, b, h0 = (a[:2, :, :2, :2], b[:2, :, :2], h0[:2, :2]) if dense else (a[:2], b[:2], h0[:2])
    inputs = tuple(x.clone().requires_grad_(True) for x in (a, b, h0))
    scan = linear_scan_dense if dense else linear_scan
    fn = lambda a_, b_, h_: scan(a_, b_, h_, reverse=reverse, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    if backend == "chunked":  # double backward (the backward is itself a scan)
        assert torch.autograd.gradgradcheck(fn, inputs)


def test_gradcheck_complex_diagonal():
    g = torch.Generator().manual_seed(3)
    T = 19
    a = 0.9 * torch.exp(1j * torch.rand(2, T, 3, generator=g, dtype=torch.float64))
    b = torch.randn(2, T, 3, generator=g, dtype=torch.complex128)
    h0 = torch.randn(2, 3, generator=g, dtype=torch.complex128)
    inputs = tuple(x.clone().requires_grad_(True) for x in (a, b, h0))
    ref = linear_recurrence_loop(*inputs)
    torch.testing.assert_close(linear_scan(*inputs, backend="chunked"), ref)
    assert torch.autograd.gradcheck(lambda *x: linear_scan(*x, backend="chunked"), inputs)


@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
def test_padding_with_identity_is_neutral(dense):
    T, pad = 37, 27
    a, b, h0, w = make_inputs(T, dense, "near1", torch.float64, seed=11)
    scan = linear_scan_dense if dense else linear_scan
    a1, b1, h01 = (x.clone().requires_grad_(True) for x in (a, b, h0))
    h = scan(a1, b1, h01)
    grads = torch.autograd.grad((h * w).sum(), (a1, b1, h01))

    eye = torch.eye(D, dtype=a.dtype).expand(B, pad, D, D) if dense else torch.ones(B, pad, D, dtype=a.dtype)
    a2 = torch.cat([a, eye], 1).requires_grad_(True)
    b2 = torch.cat([b, torch.zeros(B, pad, D, dtype=b.dtype)], 1).requires_grad_(True)
    h02 = h0.clone().requires_grad_(True)
    hp = scan(a2, b2, h02)
    wp = torch.cat([w, torch.zeros(B, pad, D, dtype=w.dtype)], 1)
    gp = torch.autograd.grad((hp * wp).sum(), (a2, b2, h02))
    torch.testing.assert_close(hp[:, :T], h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hp[:, T:], h[:, -1:].expand(B, pad, D), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gp[0][:, :T], grads[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gp[1][:, :T], grads[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gp[2], grads[2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
@pytest.mark.parametrize("split", [1, 45, 99])
def test_chunked_continuation(dense, split):
    T = 100
    a, b, h0, _ = make_inputs(T, dense, "near1", torch.float64, seed=split)
    scan = linear_scan_dense if dense else linear_scan
    full = scan(a, b, h0)
    first = scan(a[:, :split], b[:, :split], h0)
    second = scan(a[:, split:], b[:, split:], h0=first[:, -1])
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-12, atol=1e-12)
    # and without an initial state
    full0 = scan(a, b)
    first0 = scan(a[:, :split], b[:, :split])
    torch.testing.assert_close(scan(a[:, split:], b[:, split:], first0[:, -1]), full0[:, split:],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,rtol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("dense", [False, True], ids=["diag", "dense"])
def test_half_precision(dtype, rtol, dense):
    T = 300
    a, b, h0, w = make_inputs(T, dense, "near1", torch.float64, seed=5)
    a, b, h0 = a.to(dtype), b.to(dtype), h0.to(dtype)
    scan = linear_scan_dense if dense else linear_scan
    h = scan(a, b, h0)
    assert h.dtype == dtype
    ref = linear_recurrence_loop(a.double(), b.double(), h0.double())  # exact result for the rounded inputs
    scale = float(ref.abs().max())
    # accumulation in float32: only the final rounding to `dtype` remains
    torch.testing.assert_close(h.double(), ref, rtol=rtol, atol=rtol * scale)
    # gradients come back in the input dtype
    a_, b_, h0_ = (x.clone().requires_grad_(True) for x in (a, b, h0))
    ga = torch.autograd.grad((scan(a_, b_, h0_).float() * w.float()).sum(), (a_, b_, h0_))
    assert all(gx.dtype == dtype for gx in ga)


def test_broadcast_gates_and_trailing_dims():
    g = torch.Generator().manual_seed(0)
    T = 50
    lam = torch.rand(1, 1, 2, 3, generator=g, dtype=torch.float64).requires_grad_(True)  # shared gate
    b = torch.randn(2, T, 2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    h = linear_scan(lam, b)
    ref = linear_recurrence_loop(lam.expand(2, T, 2, 3), b)
    torch.testing.assert_close(h, ref)
    g1 = torch.autograd.grad(h.sum(), (lam, b))
    g2 = torch.autograd.grad(ref.sum(), (lam, b))
    torch.testing.assert_close(g1[0], g2[0])
    torch.testing.assert_close(g1[1], g2[1])


def test_closed_form_oracle():
    """Independent of both loop and scan: constant gate a gives h_T = sum_k a^(T-k) b_k."""
    T = 64
    a = torch.full((1, T, 1), 0.97, dtype=torch.float64)
    b = torch.linspace(-1, 1, T, dtype=torch.float64).view(1, T, 1)
    h = linear_scan(a, b)
    k = torch.arange(1, T + 1, dtype=torch.float64)
    expected = (0.97 ** (T - k) * b.view(-1)).sum()
    assert abs(float(h[0, -1, 0]) - float(expected)) < 1e-12


def test_empty_sequence():
    a = torch.rand(2, 0, 3, requires_grad=True)
    b = torch.rand(2, 0, 3, requires_grad=True)
    h = linear_scan(a, b, torch.zeros(2, 3))
    assert h.shape == (2, 0, 3)
    h.sum().backward()
    assert a.grad.shape == a.shape


@pytest.mark.parametrize("T", [1, 5, 63, 64, 65, 200])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["noh0", "h0"])
def test_accelerated_wrapper_segments_pads_and_carries(T, reverse, with_h0, monkeypatch):
    """The wrapper around the accelerated-scan kernel (layout, power-of-two padding, segments longer than
    the kernel's limit, initial state, reverse) with the kernel itself replaced by the loop oracle.
    The real kernel is checked on a GPU by tests/ops/test_ops_cuda.py."""
    seen = []

    def kernel(gates, tokens):  # (B, C, T), T a power of two within the kernel's limit
        L = tokens.shape[2]
        assert gates.is_contiguous() and tokens.is_contiguous() and L & (L - 1) == 0 and 32 <= L <= 64
        seen.append(L)
        return linear_recurrence_loop(gates.transpose(1, 2), tokens.transpose(1, 2)).transpose(1, 2)

    warp = types.ModuleType("accelerated_scan.warp")
    warp.scan_forward = kernel
    monkeypatch.setitem(sys.modules, "accelerated_scan", types.ModuleType("accelerated_scan"))
    monkeypatch.setitem(sys.modules, "accelerated_scan.warp", warp)
    monkeypatch.setattr(scan_mod, "_accelerated_fits", lambda b, dense: not dense)
    monkeypatch.setattr(scan_mod, "_ACCELERATED_MAX_T", 64)
    g = torch.Generator().manual_seed(T)
    a = torch.rand(2, T, 3, 2, generator=g, dtype=torch.float64) * 1.2 - 0.1
    b = torch.randn(2, T, 3, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, 2, generator=g, dtype=torch.float64) if with_h0 else None
    out = torch.empty_like(b)
    scan_mod._accelerated_into(out, a, b, h0, reverse, False)
    if reverse:
        ref = linear_recurrence_loop(a.flip(1), b.flip(1), h0).flip(1)
    else:
        ref = linear_recurrence_loop(a, b, h0)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert len(seen) == -(-T // 64)


def test_accelerated_backend_refuses_cpu():
    with pytest.raises(RuntimeError):
        linear_scan(torch.rand(1, 40, 2), torch.rand(1, 40, 2), backend="accelerated")


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        linear_scan_dense(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError):
        linear_scan(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), backend="nope")
