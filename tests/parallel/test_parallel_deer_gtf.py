"""The ``deer`` method's forward/gradients against the sequential model, and GTF / GTF-DEER."""

from __future__ import annotations

import pytest
import torch
from parallel_helpers import make_model, plugin

from suite.contracts import sequence_loss
from suite.ops import sequential_rollout

TIGHT = dict(atol=1e-13, rtol=1e-13, max_iter=400)


@pytest.fixture(scope="module")
def deer():
    import suite.training.newton as newton  # the toolbox the deer and gtf_deer methods are built from

    return newton


@pytest.fixture(scope="module")
def gtf():
    import suite.training.forcing as forcing

    return forcing


def _gru(seed=0):
    torch.manual_seed(seed)
    return make_model("gru", 3, 2, hidden_size=5).double()


def _solver(deer, **kw):
    return deer.solver_options(plugin("methods", "deer").Params(**{**TIGHT, **kw}))


def test_deer_states_and_gradient_equal_bptt(deer):
    model = _gru()
    x = torch.randn(2, 120, 3, dtype=torch.float64)
    y = torch.randn(2, 120, 2, dtype=torch.float64)
    h0 = torch.randn(2, 5, dtype=torch.float64) * 0.5
    y_hat, H, info = deer.deer_forward(model, x, h0, **_solver(deer))
    assert info.converged and info.iterations < 120
    ref = sequential_rollout(model.step, h0, model.encode(x))
    assert torch.allclose(H, ref, atol=1e-12, rtol=0)
    y_fused, _ = model(x, h0)  # nn.GRU's fused kernel
    assert torch.allclose(y_hat, y_fused, atol=1e-10, rtol=0)
    params = list(model.parameters())
    g_deer = torch.autograd.grad(sequence_loss(model.output_spec, y_hat, y), params)
    g_bptt = torch.autograd.grad(sequence_loss(model.output_spec, y_fused, y), params)
    for a, b in zip(g_deer, g_bptt):
        assert (a - b).abs().max() <= 1e-8 * max(1.0, float(b.abs().max()))


@pytest.mark.parametrize("variant", ["quasi", "elk", "quasi-elk"])
def test_variants_reach_the_same_states(deer, variant):
    model = _gru(1)
    x = torch.randn(2, 80, 3, dtype=torch.float64)
    _, H_dense, info_dense = deer.deer_forward(model, x, **_solver(deer))
    _, H, info = deer.deer_forward(model, x, **_solver(deer, variant=variant, sigma2=1e6))
    assert info.converged
    assert torch.allclose(H, H_dense, atol=1e-10, rtol=0)
    if variant == "quasi":
        assert info.iterations >= info_dense.iterations


def test_quasi_deer_uses_the_closed_form_diagonal(deer):
    model = _gru(4)
    cell = deer.FunctionalCell(model)
    assert cell.has_diagonal and not cell.has_jacobian
    x = torch.randn(2, 70, 3, dtype=torch.float64)
    u = model.encode(x)
    h0 = model.initial_state(2, dtype=torch.float64)
    opts = _solver(deer, variant="quasi")
    H, info = cell.solve(h0, u, **opts)
    H_auto, info_auto = cell.solve(h0, u, **{**opts, "jac_fn": None})  # diagonal of vmap(jacrev)
    assert info.converged and info.iterations == info_auto.iterations
    assert torch.allclose(H, H_auto, atol=1e-12, rtol=0)
    assert torch.allclose(H, sequential_rollout(model.step, h0, u), atol=1e-10, rtol=0)


def test_quasi_backward_is_approximate_but_close(deer):
    model = _gru(2)
    x = torch.randn(1, 60, 3, dtype=torch.float64)
    params = list(model.parameters())
    grads = {}
    for backward in ("implicit", "quasi"):
        y_hat, _, _ = deer.deer_forward(model, x, **_solver(deer, backward=backward))
        grads[backward] = torch.cat([g.flatten() for g in torch.autograd.grad(y_hat.pow(2).mean(), params)])
    cos = torch.nn.functional.cosine_similarity(grads["implicit"], grads["quasi"], dim=0)
    assert 0.5 < cos < 1 - 1e-9  # the diagonal adjoint differs from BPTT, but points the same way


def test_deer_uses_the_analytic_jacobian(deer):
    torch.manual_seed(3)
    model = make_model("shplrnn", 0, 3, hidden_dim=16).double()
    cell = deer.FunctionalCell(model)
    assert cell.has_jacobian
    z0 = torch.randn(2, 3, dtype=torch.float64)
    u = torch.zeros(2, 50, 0, dtype=torch.float64)
    H, info = cell.solve(z0, u, **_solver(deer))
    assert info.converged
    assert torch.allclose(H, sequential_rollout(model.step, z0, u), atol=1e-10, rtol=0)


def _lorenz_like(T=60, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 6, T + 1, dtype=torch.float64)
    phase = torch.rand(B, 1, 1, generator=g, dtype=torch.float64) * 6
    y = torch.stack([torch.sin(t + phase[..., 0]), torch.cos(1.3 * t + phase[..., 0]),
                     torch.sin(0.7 * t + phase[..., 0]) ** 2], -1)
    return y  # [B, T+1, 3]


def _shplrnn(latent=3, seed=0, scale=1.0):
    torch.manual_seed(seed)
    m = make_model("shplrnn", 0, 3, latent_dim=latent, hidden_dim=20).double()
    with torch.no_grad():
        m.W1.mul_(scale)
    return m


def _window_inputs(model, y):
    from suite.contracts import forcing_signals, state_from_observation

    u = torch.zeros(y.shape[0], y.shape[1] - 1, 0, dtype=y.dtype)
    z0 = state_from_observation(model, y[:, 0])
    zhat, k = forcing_signals(model, y[:, 1:])
    return z0, u, zhat, k


@pytest.mark.parametrize("latent", [3, 5])
def test_gtf_deer_alpha_zero_is_deer_and_alpha_one_is_zhat(deer, gtf, latent):
    model = _shplrnn(latent)
    y = _lorenz_like()
    z0, u, zhat, k = _window_inputs(model, y)
    cell = deer.FunctionalCell(model)
    _, Zf, info = gtf.gtf_parallel(model, z0, u, zhat, 0.0, k, cell=cell, **_solver(deer))
    H, _ = cell.solve(z0, u, **_solver(deer))
    assert info.converged and torch.allclose(Zf, H, atol=1e-10, rtol=0)
    _, Zf1, info1 = gtf.gtf_parallel(model, z0, u, zhat, 1.0, k, cell=cell, **_solver(deer))
    assert torch.allclose(Zf1[..., :k], zhat[..., :k], atol=0, rtol=0)
    if k == latent:
        assert info1.iterations <= 2 and torch.equal(Zf1, zhat)


@pytest.mark.parametrize("latent", [3, 5])
@pytest.mark.parametrize("alpha", [0.1, 0.6])
def test_gtf_sequential_equals_gtf_deer_fixed_point_and_gradients(deer, gtf, latent, alpha):
    model = _shplrnn(latent, seed=1, scale=3.0)  # strongly expanding: forcing keeps Newton contracting
    y = _lorenz_like(T=100)
    z0, u, zhat, k = _window_inputs(model, y)
    preds_seq, forced_seq = gtf.gtf_sequential(model, z0, u, zhat, alpha, k)
    preds_par, forced_par, info = gtf.gtf_parallel(model, z0, u, zhat, alpha, k, **_solver(deer))
    assert info.converged
    assert torch.allclose(forced_par, forced_seq, atol=1e-10, rtol=1e-10)
    assert torch.allclose(preds_par, preds_seq, atol=1e-10, rtol=1e-10)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = lambda preds: (model.readout(preds) - y[:, 1:]).pow(2).mean()  # noqa: E731
    g_seq = torch.autograd.grad(loss(preds_seq), params, allow_unused=True, retain_graph=True)
    g_par = torch.autograd.grad(loss(preds_par), params, allow_unused=True)
    for a, b in zip(g_seq, g_par):
        if a is None:
            assert b is None or b.abs().max() == 0
            continue
        assert (a - b).abs().max() <= 1e-8 * max(1.0, float(a.abs().max()))


def test_adaptive_alpha_rule(gtf):
    model = _shplrnn(3, scale=4.0)
    y = _lorenz_like(T=200)
    _, u, zhat, _ = _window_inputs(model, y)
    norm = gtf.estimate_norm(model, zhat, u, "product_upper_bound", 4096)
    J = model.jacobian(zhat.reshape(-1, 3)).reshape(2, 200, 3, 3)
    by_hand = torch.linalg.matrix_norm(J.detach(), 2).log().mean(1).exp().max()
    assert norm == pytest.approx(float(by_hand), rel=1e-10)
    assert norm <= gtf.estimate_norm(model, zhat, u, "batch_maximum", 4096) + 1e-12
    assert gtf.optimal_alpha(norm) == pytest.approx(max(0.0, 1 - 1 / norm))
    assert gtf.optimal_alpha(0.5) == 0.0
    sched = gtf.AlphaSchedule("adaptive", 0.0, "product_upper_bound", every=5, decay=0.9, points=4096)
    for i in range(4):
        assert sched.update(model, zhat, u) is None and sched.alpha == 0.0
    assert sched.update(model, zhat, u) == pytest.approx(norm)
    assert sched.alpha == pytest.approx(gtf.optimal_alpha(norm))  # raised at once
    sched.alpha = 0.99
    for _ in range(5):
        sched.update(model, zhat, u)
    assert sched.alpha == pytest.approx(0.9 * 0.99 + 0.1 * gtf.optimal_alpha(norm))  # decays slowly
    const = gtf.AlphaSchedule("constant", 0.3, "product_upper_bound", 1, 0.9, 10)
    assert const.update(model, zhat, u) is None and const.alpha == 0.3


def test_deer_method_gradient_hook_equals_full_bptt():
    from suite.contracts import IOSpec, SequenceData, TrainData
    from suite.training.gradient_fidelity import full_bptt_gradient

    model = _gru(5)
    probe = SequenceData(torch.randn(3, 90, 3, dtype=torch.float64), torch.randn(3, 90, 2, dtype=torch.float64))
    data = TrainData("probe", probe, IOSpec("real", 3), IOSpec("real", 2))
    method = plugin("methods", "deer")(plugin("methods", "deer").Params(**TIGHT))
    g_method = method.probe_gradient(model, data, probe)
    g_bptt = full_bptt_gradient(model, probe, data.loss)
    for a, b in zip(g_method, g_bptt):
        assert (a - b).abs().max() <= 1e-8 * max(1.0, float(b.abs().max()))
    chunked = plugin("methods", "deer")(plugin("methods", "deer").Params(**TIGHT, seq_len=30))
    g_chunk = torch.cat([g.flatten() for g in chunked.probe_gradient(model, data, probe)])
    cos = torch.nn.functional.cosine_similarity(g_chunk, torch.cat([g.flatten() for g in g_bptt]), dim=0)
    assert 0.5 < cos < 1 - 1e-9  # carried, detached state: truncated gradient
