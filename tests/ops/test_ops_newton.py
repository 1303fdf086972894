"""DEER / quasi-DEER / ELK / GTF-DEER vs sequential rollouts and BPTT."""
from __future__ import annotations

import warnings

import pytest
import torch
from ops_cells import (
    elementwise_cell,
    elementwise_jac_diag,
    elementwise_params,
    elman_cell,
    elman_jac,
    elman_params,
    gru_cell,
    gru_params,
    linear_cell,
    logistic_cell,
    logistic_params,
    strong_tanh_cell,
    strong_tanh_params,
)

from suite.ops import NewtonNotConverged, deer_solve, gtf_deer_solve, lm_smoother_mean, sequential_rollout

F64 = torch.float64


def rollout(f, p, h0, u):
    return sequential_rollout(lambda h, x: f(p, h, x), h0, u)


def data(B, T, D, I, dtype=F64, seed=0, h0_range=None):
    g = torch.Generator().manual_seed(seed)
    if h0_range is None:
        h0 = torch.randn(B, D, generator=g, dtype=dtype) * 0.5
    else:
        lo, hi = h0_range
        h0 = lo + (hi - lo) * torch.rand(B, D, generator=g, dtype=dtype)
    u = torch.randn(B, T, I, generator=g, dtype=dtype)
    return h0, u


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with NewtonNotConverged silenced (for deliberately truncated solves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NewtonNotConverged)
        return fn(*args, **kwargs)


CELLS = {
    "gru": (gru_cell, gru_params),
    "elman": (elman_cell, elman_params),
}


# ---------------------------------------------------------------------------- forward

@pytest.mark.parametrize("cell", ["gru", "elman"])
def test_deer_matches_sequential_float64(cell):
    f, mk = CELLS[cell]
    B, T, D, I = 3, 200, 5, 3
    p = mk(D, I)
    h0, u = data(B, T, D, I)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NewtonNotConverged)
        H, info = deer_solve(f, p, h0, u)
    R = rollout(f, p, h0, u)
    assert info.converged and 1 < info.iterations < 50
    assert (H - R).abs().max() <= 1e-10
    assert info.residual <= 1e-10
    assert info.nan_events == 0 and info.clip_events == 0


@pytest.mark.parametrize("cell", ["gru", "elman"])
def test_deer_matches_sequential_float32(cell):
    f, mk = CELLS[cell]
    B, T, D, I = 4, 300, 6, 3
    p = {k: v.float() for k, v in mk(D, I).items()}
    h0, u = data(B, T, D, I, dtype=torch.float32)
    H, info = deer_solve(f, p, h0, u)
    R = rollout(f, p, h0, u)
    assert H.dtype == torch.float32 and info.converged
    assert (H - R).abs().max() <= 1e-5


@pytest.mark.parametrize("cell", ["logistic", "strong_tanh", "gru"])
def test_exactness_first_n_states(cell):
    """After n Newton iterations the first n states are exact, for any cell; max_iter = T is exact."""
    if cell == "logistic":
        f, p = logistic_cell, logistic_params(3, 2)
        h0, u = data(2, 25, 3, 2, h0_range=(0.2, 0.8))
    elif cell == "strong_tanh":
        f, p = strong_tanh_cell, strong_tanh_params(4, 2)
        h0, u = data(2, 25, 4, 2)
    else:
        f, p = gru_cell, gru_params(4, 2, scale=2.0)
        h0, u = data(2, 25, 4, 2)
    T = u.shape[1]
    R = rollout(f, p, h0, u)
    for n in (1, 2, 5, 11):
        H, info = quiet(deer_solve, f, p, h0, u, max_iter=n)
        assert info.iterations <= n
        torch.testing.assert_close(H[:, :n], R[:, :n], rtol=1e-9, atol=1e-9)
    H, info = quiet(deer_solve, f, p, h0, u, max_iter=T)
    torch.testing.assert_close(H, R, rtol=1e-6, atol=1e-6)
    # same for quasi-DEER (a diagonal Jacobian still gives an exact first state per iteration)
    Hq, _ = quiet(deer_solve, f, p, h0, u, max_iter=T, jacobian="diag")
    torch.testing.assert_close(Hq, R, rtol=1e-6, atol=1e-6)


def test_chaotic_map_is_not_solved_by_few_iterations():
    """Guard for the exactness test: truncated solves really are wrong beyond state n."""
    f, p = logistic_cell, logistic_params(3, 2)
    h0, u = data(2, 25, 3, 2, h0_range=(0.2, 0.8))
    R = rollout(f, p, h0, u)
    with pytest.warns(NewtonNotConverged):
        H, info = deer_solve(f, p, h0, u, max_iter=3)
    assert not info.converged
    assert (H[:, 3:] - R[:, 3:]).abs().max() > 1e-2


def test_linear_cell_converges_in_one_iteration():
    g = torch.Generator().manual_seed(5)
    D, I = 4, 2
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    p = {"W": 0.95 * q, "U": torch.randn(D, I, generator=g, dtype=F64),
         "b": torch.randn(D, generator=g, dtype=F64)}
    h0, u = data(3, 60, D, I)
    R = rollout(linear_cell, p, h0, u)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NewtonNotConverged)
        H1, info1 = deer_solve(linear_cell, p, h0, u, max_iter=1)
        H2, info2 = deer_solve(linear_cell, p, h0, u, max_iter=2)
    assert info1.iterations == 1 and info1.converged
    torch.testing.assert_close(H1, R, rtol=1e-10, atol=1e-10)
    assert info2.iterations == 2 and info2.converged
    assert (H2 - H1).abs().max() <= 1e-12


def test_nonconvergence_warns_and_flags():
    f, p = gru_cell, gru_params(4, 3)
    h0, u = data(2, 50, 4, 3)
    with pytest.warns(NewtonNotConverged):
        H, info = deer_solve(f, p, h0, u, max_iter=1)
    assert info.converged is False and info.iterations == 1
    assert info.residual > 1e-3
    assert torch.isfinite(H).all()


def test_clip_and_nan_events_are_counted():
    # an exploding linear map: the exact trajectory leaves [-clip, clip]
    p = {"W": torch.eye(2, dtype=F64) * 3.0, "U": torch.zeros(2, 1, dtype=F64), "b": torch.ones(2, dtype=F64)}
    h0, u = data(1, 20, 2, 1)
    with pytest.warns(NewtonNotConverged):
        H, info = deer_solve(linear_cell, p, h0, u, clip=10.0, max_iter=5)
    assert info.clip_events > 0 and not info.converged
    assert H.abs().max() <= 10.0

    def nan_cell(p, h, x):  # sqrt of a negative number -> NaN
        return torch.sqrt(h - p["c"]) + x

    with pytest.warns(NewtonNotConverged):
        H, info = deer_solve(nan_cell, {"c": torch.tensor(5.0, dtype=F64)}, torch.zeros(1, 2, dtype=F64),
                             torch.zeros(1, 6, 2, dtype=F64), max_iter=3)
    assert info.nan_events > 0 and not torch.isnan(H).any()


def test_warm_start_from_solution():
    f, p = elman_cell, elman_params(4, 2)
    h0, u = data(2, 80, 4, 2)
    R = rollout(f, p, h0, u)
    H, info = deer_solve(f, p, h0, u, init=R)
    assert info.iterations == 1 and info.converged
    torch.testing.assert_close(H, R, rtol=1e-12, atol=1e-12)


def test_analytic_jacobian_matches_autograd():
    f, p = elman_cell, elman_params(5, 3)
    h0, u = data(2, 100, 5, 3)
    H_auto, info_auto = deer_solve(f, p, h0, u)
    H_jac, info_jac = deer_solve(f, p, h0, u, jac_fn=elman_jac)
    assert info_auto.iterations == info_jac.iterations
    torch.testing.assert_close(H_jac, H_auto, rtol=1e-12, atol=1e-12)
    N = 7
    hh, uu = torch.randn(N, 5, dtype=F64), torch.randn(N, 3, dtype=F64)
    J = torch.func.vmap(torch.func.jacrev(lambda h, x: f(p, h[None], x[None])[0]))(hh, uu)
    torch.testing.assert_close(elman_jac(p, hh, uu), J)


@pytest.mark.parametrize("cell", ["gru", "elman"])
def test_quasi_deer_same_fixed_point(cell):
    f, mk = CELLS[cell]
    p = mk(5, 3)
    h0, u = data(3, 150, 5, 3)
    R = rollout(f, p, h0, u)
    Hd, info_d = deer_solve(f, p, h0, u, atol=1e-12, rtol=0.0)
    Hq, info_q = deer_solve(f, p, h0, u, jacobian="diag", atol=1e-12, rtol=0.0, max_iter=300)
    assert info_q.converged and info_q.iterations >= info_d.iterations
    torch.testing.assert_close(Hq, R, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(Hd, R, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- gradients

def _grads(H, w, leaves):
    return torch.autograd.grad((H * w).sum(), leaves)


def _leaves(p, h0, u):
    p = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    return p, h0.clone().requires_grad_(True), u.clone().requires_grad_(True)


@pytest.mark.parametrize("cell", ["gru", "elman"])
@pytest.mark.parametrize("jacobian", ["dense", "diag"])
def test_implicit_gradient_equals_bptt(cell, jacobian):
    f, mk = CELLS[cell]
    p, h0, u = _leaves(mk(4, 3), *data(2, 60, 4, 3))
    w = torch.randn(2, 60, 4, dtype=F64)
    leaves = [h0, u, *p.values()]
    H, _ = deer_solve(f, p, h0, u, jacobian=jacobian, atol=1e-13, rtol=0.0, max_iter=300)
    got = _grads(H, w, leaves)
    exp = _grads(rollout(f, p, h0, u), w, leaves)
    for g_, e_ in zip(got, exp):
        torch.testing.assert_close(g_, e_, rtol=1e-8, atol=1e-8)


def test_chunked_cpu_jacobians_give_the_same_solution_and_gradient(monkeypatch):
    """Many rows on a CPU get their Jacobians in chunks (vmap chunk_size); lowered to 16 here, so that
    B*T = 120 rows > 4 * 16 take that path: states equal the rollout, gradients equal BPTT."""
    from suite.ops import newton

    monkeypatch.setattr(newton, "_CPU_JACOBIAN_CHUNK", 16)
    f, mk = CELLS["gru"]
    p, h0, u = _leaves(mk(4, 3), *data(2, 60, 4, 3))
    assert h0.shape[0] * u.shape[1] > 4 * newton._CPU_JACOBIAN_CHUNK
    w = torch.randn(2, 60, 4, dtype=F64)
    leaves = [h0, u, *p.values()]
    H, info = deer_solve(f, p, h0, u, atol=1e-13, rtol=0.0, max_iter=300)
    R = rollout(f, p, h0, u)
    assert info.converged and (H - R).abs().max() <= 1e-10
    for g_, e_ in zip(_grads(H, w, leaves), _grads(R, w, leaves)):
        torch.testing.assert_close(g_, e_, rtol=1e-8, atol=1e-8)


def test_quasi_backward_is_exact_for_diagonal_cells_only():
    D, I, T = 4, 3, 40
    w = torch.randn(2, T, D, dtype=F64)
    # elementwise cell: diagonal Jacobian, so the quasi adjoint is exact
    p, h0, u = _leaves(elementwise_params(D, I), *data(2, T, D, I))
    leaves = [h0, u, *p.values()]
    H, _ = deer_solve(elementwise_cell, p, h0, u, jacobian="diag", backward="quasi", atol=1e-13, rtol=0.0,
                      jac_fn=elementwise_jac_diag)
    got = _grads(H, w, leaves)
    exp = _grads(rollout(elementwise_cell, p, h0, u), w, leaves)
    for g_, e_ in zip(got, exp):
        torch.testing.assert_close(g_, e_, rtol=1e-8, atol=1e-8)
    # GRU: the quasi adjoint is only an approximation
    p, h0, u = _leaves(gru_params(D, I), *data(2, T, D, I))
    Hq, _ = deer_solve(gru_cell, p, h0, u, jacobian="diag", backward="quasi", atol=1e-13, rtol=0.0,
                       max_iter=300)
    gq = _grads(Hq, w, [p["Uz"]])[0]
    ge = _grads(rollout(gru_cell, p, h0, u), w, [p["Uz"]])[0]
    assert (gq - ge).abs().max() > 1e-3


def test_deer_gradcheck():
    f, p = elman_cell, elman_params(3, 2)
    h0, u = data(2, 6, 3, 2)
    keys = list(p)

    def fn(h0_, u_, *pv):
        return deer_solve(f, dict(zip(keys, pv)), h0_, u_, atol=1e-13, rtol=0.0)[0]

    inputs = tuple(x.clone().requires_grad_(True) for x in (h0, u, *p.values()))
    assert torch.autograd.gradcheck(fn, inputs)


def test_deer_gradcheck_gru():
    f, p = gru_cell, gru_params(2, 2)
    h0, u = data(1, 5, 2, 2)
    keys = list(p)

    def fn(h0_, u_, *pv):
        return deer_solve(f, dict(zip(keys, pv)), h0_, u_, atol=1e-13, rtol=0.0)[0]

    inputs = tuple(x.clone().requires_grad_(True) for x in (h0, u, *p.values()))
    assert torch.autograd.gradcheck(fn, inputs)


# ---------------------------------------------------------------------------- ELK

def _dense_lm_oracle(A, b, h0, y, sigma2):
    """argmin_s sum ||s_t - A_t s_{t-1} - b_t||^2 + 1/sigma2 sum ||s_t - y_t||^2 via lstsq on the T*D system."""
    T, D = b.shape
    n = T * D
    rows_dyn = torch.zeros(n, n, dtype=b.dtype)
    rhs_dyn = b.reshape(-1).clone()
    for t in range(T):
        rows_dyn[t * D:(t + 1) * D, t * D:(t + 1) * D] = torch.eye(D, dtype=b.dtype)
        if t == 0:
            rhs_dyn[:D] += A[0] @ h0
        else:
            rows_dyn[t * D:(t + 1) * D, (t - 1) * D:t * D] = -A[t]
    lam_sqrt = (1.0 / sigma2) ** 0.5
    M = torch.cat([rows_dyn, lam_sqrt * torch.eye(n, dtype=b.dtype)], 0)
    rhs = torch.cat([rhs_dyn, lam_sqrt * y.reshape(-1)], 0)
    return torch.linalg.lstsq(M, rhs.unsqueeze(-1)).solution.reshape(T, D)


@pytest.mark.parametrize("diag", [False, True], ids=["dense", "diag"])
@pytest.mark.parametrize("sigma2", [0.05, 1.0, 30.0])
def test_elk_step_is_lm_least_squares(diag, sigma2):
    g = torch.Generator().manual_seed(int(sigma2 * 100))
    B, T, D = 2, 5, 3
    A = torch.randn(B, T, D, D, generator=g, dtype=F64) * 0.9
    if diag:
        A = torch.diag_embed(A.diagonal(dim1=-2, dim2=-1))
    b = torch.randn(B, T, D, generator=g, dtype=F64)
    h0 = torch.randn(B, D, generator=g, dtype=F64)
    y = torch.randn(B, T, D, generator=g, dtype=F64)
    got = lm_smoother_mean(A.diagonal(dim1=-2, dim2=-1) if diag else A, b, h0, y, sigma2)
    for i in range(B):
        exp = _dense_lm_oracle(A[i], b[i], h0[i], y[i], sigma2)
        torch.testing.assert_close(got[i], exp, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("jacobian", ["dense", "diag"])
def test_elk_large_sigma_equals_deer_step_for_step(jacobian):
    f, p = elman_cell, elman_params(4, 2)
    h0, u = data(2, 40, 4, 2)
    for n in (1, 2, 3, 4):
        Hd, _ = quiet(deer_solve, f, p, h0, u, jacobian=jacobian, max_iter=n)
        He, _ = quiet(deer_solve, f, p, h0, u, jacobian=jacobian, damping="elk", sigma2=1e12, max_iter=n)
        Hi, _ = quiet(deer_solve, f, p, h0, u, jacobian=jacobian, damping="elk", sigma2=float("inf"),
                      max_iter=n)
        torch.testing.assert_close(He, Hd, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(Hi, Hd, rtol=1e-11, atol=1e-11)
    # strong damping really changes the step
    Hs, _ = quiet(deer_solve, f, p, h0, u, jacobian=jacobian, damping="elk", sigma2=0.1, max_iter=1)
    Hd, _ = quiet(deer_solve, f, p, h0, u, jacobian=jacobian, max_iter=1)
    assert (Hs - Hd).abs().max() > 1e-2


@pytest.mark.parametrize("jacobian", ["dense", "diag"])
def test_elk_converges_to_the_sequential_trajectory(jacobian):
    f, p = gru_cell, gru_params(4, 2)
    h0, u = data(2, 50, 4, 2)
    H, info = deer_solve(f, p, h0, u, jacobian=jacobian, damping="elk", sigma2=10.0, max_iter=200,
                         atol=1e-12, rtol=0.0)
    assert info.converged
    torch.testing.assert_close(H, rollout(f, p, h0, u), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- GTF-DEER

def forced_rollout(f, p, h0, u, alpha, zhat):
    z, out = h0, []
    for x_t, zh_t in zip(u.unbind(1), zhat.unbind(1)):
        z = (1 - alpha) * f(p, z, x_t) + alpha * zh_t
        out.append(z)
    return torch.stack(out, 1)


def test_gtf_alpha_zero_is_deer():
    f, p = gru_cell, gru_params(4, 3)
    h0, u = data(2, 70, 4, 3)
    zhat = torch.randn(2, 70, 4, dtype=F64)
    H, _ = deer_solve(f, p, h0, u, atol=1e-12, rtol=0.0)
    Hg, _ = gtf_deer_solve(f, p, h0, u, 0.0, zhat, atol=1e-12, rtol=0.0)
    torch.testing.assert_close(Hg, H, rtol=1e-11, atol=1e-11)


def test_gtf_alpha_one_returns_zhat_in_one_iteration():
    f, p = gru_cell, gru_params(4, 3)
    h0, u = data(2, 70, 4, 3)
    zhat = torch.randn(2, 70, 4, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NewtonNotConverged)
        Hg, info = gtf_deer_solve(f, p, h0, u, 1.0, zhat, max_iter=1, init=torch.zeros_like(zhat))
    assert info.iterations == 1 and info.converged
    torch.testing.assert_close(Hg, zhat, rtol=0, atol=1e-15)


@pytest.mark.parametrize("alpha", [0.3, 0.7])
def test_gtf_fixed_point_and_gradient(alpha):
    f, p = strong_tanh_cell, strong_tanh_params(4, 2)  # strongly nonlinear; forcing makes it contract
    p, h0, u = _leaves(p, *data(2, 60, 4, 2))
    zhat = torch.randn(2, 60, 4, dtype=F64, requires_grad=True)
    w = torch.randn(2, 60, 4, dtype=F64)
    H, info = gtf_deer_solve(f, p, h0, u, alpha, zhat, atol=1e-13, rtol=0.0)
    R = forced_rollout(f, p, h0, u, alpha, zhat)
    assert info.converged
    torch.testing.assert_close(H, R, rtol=1e-10, atol=1e-10)
    leaves = [h0, u, zhat, *p.values()]
    for g_, e_ in zip(_grads(H, w, leaves), _grads(R, w, leaves)):
        torch.testing.assert_close(g_, e_, rtol=1e-8, atol=1e-8)


def test_input_validation():
    f, p = elman_cell, elman_params(3, 2)
    h0, u = data(1, 4, 3, 2)
    with pytest.raises(ValueError):
        deer_solve(f, p, h0, u, jacobian="full")
    with pytest.raises(ValueError):
        deer_solve(f, p, h0, u, damping="lm")
    with pytest.raises(ValueError):
        gtf_deer_solve(f, p, h0, u, 1.5, torch.zeros(1, 4, 3))


@pytest.mark.parametrize("jacobian", ["dense", "diag"])
@pytest.mark.parametrize("sigma2", [1.0, 100.0])
def test_stalled_elk_is_not_reported_converged(jacobian, sigma2):
    """A damped ELK step can be tiny far from the fixed point (chaotic logistic map): convergence is
    judged on the residual of the returned trajectory, never on the step size alone."""

    def logistic(p, h, u):
        return p["r"] * h * (1 - h) + 0 * u

    p = {"r": torch.tensor(3.9, dtype=F64)}
    h0, u = torch.full((2, 1), 0.3, dtype=F64), torch.zeros(2, 60, 1, dtype=F64)
    R = sequential_rollout(lambda h, x: logistic(p, h, x), h0, u)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NewtonNotConverged)
        H, info = deer_solve(logistic, p, h0, u, jacobian=jacobian, damping="elk", sigma2=sigma2, max_iter=20)
    atol, rtol = 1e-6, 1e-4
    residual_ok = info.residual <= atol + rtol * float(H.abs().max())
    assert not info.converged and not residual_ok and float((H - R).abs().max()) > 0.1
    assert any(issubclass(w.category, NewtonNotConverged) for w in caught)
    # with enough iterations the same solver reaches the rollout, and says so
    H, info = deer_solve(logistic, p, h0, u, jacobian=jacobian, damping="elk", sigma2=sigma2, max_iter=200)
    assert info.converged == bool(torch.allclose(H, R, atol=1e-5))
