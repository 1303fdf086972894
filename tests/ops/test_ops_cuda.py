"""The CUDA paths of the scan and the Newton solver against the CPU loop oracles.

Skipped without a GPU (CI has none); run them on a GPU machine with
``python -m pytest tests/ops/test_ops_cuda.py``.  Every backend is asked for explicitly as well as
through ``auto``, and ``auto`` must not fall back with a warning when a GPU backend is available.
"""
from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
from ops_cells import elman_cell, elman_params, gru_cell, gru_params
from test_ops_scan import make_inputs

from suite.ops import deer_solve, linear_recurrence_loop, linear_scan, linear_scan_dense, sequential_rollout
from suite.ops import scan as scan_mod

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
HAS_ACCELERATED = importlib.util.find_spec("accelerated_scan") is not None
DIAG_BACKENDS = ["auto", "chunked", "associative"] + (["accelerated"] if HAS_ACCELERATED else [])


def _on_cuda_against_loop(T: int, dense: bool, dtype: torch.dtype, backend: str, reverse: bool) -> None:
    """Forward and gradients on CUDA in ``dtype`` against the float64 loop on the CPU."""
    a, b, h0, w = make_inputs(T, dense, "near1", torch.float64, seed=T + 3)
    ref_leaves = [x.clone().requires_grad_(True) for x in (a, b, h0)]
    ra, rb, rh0 = ref_leaves
    if reverse:
        ref = linear_recurrence_loop(ra.flip(1), rb.flip(1), rh0).flip(1)
    else:
        ref = linear_recurrence_loop(ra, rb, rh0)
    exp = torch.autograd.grad((ref * w).sum(), ref_leaves)

    leaves = [x.to(CUDA, dtype).requires_grad_(True) for x in (a, b, h0)]
    scan = linear_scan_dense if dense else linear_scan
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback
        h = scan(*leaves, reverse=reverse, backend=backend)
        got = torch.autograd.grad((h * w.to(CUDA, dtype)).sum(), leaves)
    assert h.device.type == "cuda" and h.dtype == dtype
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-3)
    scale = max(1.0, float(ref.detach().abs().max()))
    torch.testing.assert_close(h.double().cpu(), ref.detach(), rtol=tol["rtol"], atol=tol["atol"] * scale)
    for gx, ex in zip(got, exp):
        torch.testing.assert_close(gx.double().cpu(), ex, rtol=tol["rtol"],
                                   atol=tol["atol"] * max(1.0, float(ex.abs().max())))


@pytest.mark.parametrize("T", [1, 2, 3, 31, 32, 33, 1000, 4099])
@pytest.mark.parametrize("backend", DIAG_BACKENDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_diagonal_scan_on_cuda_float32(T, backend, reverse):
    _on_cuda_against_loop(T, False, torch.float32, backend, reverse)


@pytest.mark.parametrize("T", [100, 1000])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_accelerated_kernel_in_segments(T, reverse, monkeypatch):
    """Sequences longer than the kernel's limit run in segments with the state carried (limit lowered
    to 64 here, so that the CPU oracle stays short)."""
    if not HAS_ACCELERATED:
        pytest.skip("accelerated-scan is not installed")
    monkeypatch.setattr(scan_mod, "_ACCELERATED_MAX_T", 64)
    _on_cuda_against_loop(T, False, torch.float32, "accelerated", reverse)


@pytest.mark.parametrize("T", [1, 33, 1000])
@pytest.mark.parametrize("backend", ["auto", "chunked", "associative"])
def test_diagonal_scan_on_cuda_float64(T, backend):
    """float64 is not an accelerated-scan dtype: auto must route it elsewhere, not fail."""
    _on_cuda_against_loop(T, False, torch.float64, backend, False)


@pytest.mark.parametrize("T", [2, 33, 300])
@pytest.mark.parametrize("backend", ["auto", "chunked", "associative"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_dense_scan_on_cuda(T, backend, dtype):
    _on_cuda_against_loop(T, True, dtype, backend, False)


def test_auto_keeps_the_accelerated_kernel_after_ineligible_inputs():
    """A float64 input is routed around the kernel without marking it failed."""
    if not HAS_ACCELERATED:
        pytest.skip("accelerated-scan is not installed")
    a = torch.rand(2, 70000, 4, device=CUDA, dtype=torch.float64) * 0.5
    b = torch.randn_like(a)
    linear_scan(a, b)  # float64
    linear_scan(a.float(), b.float())  # T > 65536: segments
    assert "accelerated" not in scan_mod._FAILED_BACKENDS
    assert "associative" not in scan_mod._FAILED_BACKENDS


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32_on_cuda(dtype):
    a, b, h0, _ = make_inputs(3000, False, "near1", torch.float64, seed=9)
    a, b, h0 = (x.to(CUDA, dtype) for x in (a, b, h0))
    h = linear_scan(a, b, h0)
    ref = linear_recurrence_loop(a.double(), b.double(), h0.double())
    rtol = 2e-3 if dtype == torch.float16 else 1.6e-2
    torch.testing.assert_close(h.double(), ref, rtol=rtol, atol=rtol * float(ref.abs().max()))


@pytest.mark.parametrize("cell", ["gru", "elman"])
@pytest.mark.parametrize("jacobian", ["dense", "diag"])
def test_deer_on_cuda_matches_rollout_and_bptt(cell, jacobian):
    """DEER (dense and quasi) on CUDA, float64: states <= 1e-10 from the rollout, implicit gradient = BPTT."""
    f, make = {"gru": (gru_cell, gru_params), "elman": (elman_cell, elman_params)}[cell]
    B, T, D, I = 3, 500, 6, 2
    g = torch.Generator().manual_seed(0)
    p = {k: v.to(CUDA).requires_grad_(True) for k, v in make(D, I).items()}
    h0 = (torch.randn(B, D, generator=g, dtype=torch.float64) * 0.5).to(CUDA)
    u = torch.randn(B, T, I, generator=g, dtype=torch.float64).to(CUDA)
    H, info = deer_solve(f, p, h0, u, jacobian=jacobian, max_iter=200, atol=1e-12, rtol=1e-10)
    ref = sequential_rollout(lambda h, x: f(p, h, x), h0, u)
    assert info.converged
    torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-10)
    if jacobian == "dense":
        w = torch.randn(B, T, D, generator=g, dtype=torch.float64).to(CUDA)
        got = torch.autograd.grad((H * w).sum(), list(p.values()))
        exp = torch.autograd.grad((ref * w).sum(), list(p.values()))
        for gx, ex in zip(got, exp):
            torch.testing.assert_close(gx, ex, rtol=1e-8, atol=1e-10)


def test_deer_on_cuda_float32():
    B, T, D, I = 4, 2000, 8, 3
    g = torch.Generator().manual_seed(1)
    p = {k: v.float().to(CUDA) for k, v in gru_params(D, I).items()}
    h0 = (torch.randn(B, D, generator=g) * 0.5).to(CUDA)
    u = torch.randn(B, T, I, generator=g).to(CUDA)
    H, info = deer_solve(gru_cell, p, h0, u)
    ref = sequential_rollout(lambda h, x: gru_cell(p, h, x), h0, u)
    assert info.converged
    torch.testing.assert_close(H, ref, rtol=0, atol=1e-5)
