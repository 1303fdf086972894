"""Linear-recurrence models (scan forward == step loop) and the shPLRNN (analytic Jacobian)."""

from __future__ import annotations

import pytest
import torch
from parallel_helpers import make_model, plugin

from suite.contracts import ANALYTIC_JACOBIAN, LINEAR_RECURRENCE, IOSpec
from suite.ops import linear_recurrence_loop

SCAN_MODELS = ["lru", "mingru", "minlstm", "s6"]


@pytest.mark.parametrize("name", SCAN_MODELS)
@pytest.mark.parametrize("inputs", [3, 0])
@pytest.mark.parametrize("T", [1, 33, 200])
def test_scan_forward_equals_step_loop(name, inputs, T):
    torch.manual_seed(0)
    model = make_model(name, inputs, 2, hidden_size=8).double()
    assert LINEAR_RECURRENCE in model.capabilities
    x = torch.randn(3, T, inputs, dtype=torch.float64)
    for h0 in (None, torch.randn(3, model.state_size, dtype=torch.float64)):
        y, h_last = model(x, h0)
        hs = model.hidden_states(x, h0)
        assert torch.allclose(y, model.readout(hs, model.encode(x)), atol=1e-10, rtol=0)
        assert torch.allclose(h_last, hs[:, -1], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", SCAN_MODELS)
def test_recurrence_coeffs_describe_the_states(name):
    torch.manual_seed(1)
    model = make_model(name, 2, 1, hidden_size=5).double()
    x = torch.randn(2, 40, 2, dtype=torch.float64)
    h0 = torch.randn(2, model.state_size, dtype=torch.float64)
    a, b = model.recurrence_coeffs(model.encode(x))
    c = linear_recurrence_loop(a, b, model.to_scan_state(h0))
    assert torch.allclose(model.from_scan_state(c), model.hidden_states(x, h0), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", SCAN_MODELS)
def test_scan_gradients_equal_step_loop_gradients(name):
    torch.manual_seed(2)
    model = make_model(name, 2, 1, hidden_size=6).double()
    x = torch.randn(2, 70, 2, dtype=torch.float64)
    y, _ = model(x)
    g_scan = torch.autograd.grad(y.pow(2).sum(), list(model.parameters()))
    hs = model.hidden_states(x)
    y_loop = model.readout(hs, model.encode(x))
    g_loop = torch.autograd.grad(y_loop.pow(2).sum(), list(model.parameters()))
    for a, b in zip(g_scan, g_loop):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-9)


def test_lru_eigenvalues_inside_unit_circle():
    torch.manual_seed(3)
    model = make_model("lru", 1, 1, hidden_size=256, r_min=0.0, r_max=0.99)
    lam = model.eigenvalues()
    assert (lam.abs() < 1).all() and lam.abs().max() > 0.9
    with torch.no_grad():  # any nu keeps |lambda| < 1
        model.nu_log.fill_(-10.0)
    assert (model.eigenvalues().abs() < 1).all()
    assert model.state_size == 512  # real and imaginary parts


def test_mingru_minlstm_gates_stable_for_extreme_preactivations():
    model = make_model("minlstm", 1, 1, hidden_size=4).double()
    x = torch.tensor([[[1e4], [-1e4], [0.0]]], dtype=torch.float64)
    with torch.no_grad():
        model.proj.linear.weight.fill_(1.0)
    y, h = model(x)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()


@pytest.mark.parametrize("clipped", [True, False])
@pytest.mark.parametrize("latent", [3, 6])
def test_shplrnn_analytic_jacobian_equals_autograd(clipped, latent):
    torch.manual_seed(4)
    model = make_model("shplrnn", 2, 3, latent_dim=latent, hidden_dim=20, clipped=clipped).double()
    assert ANALYTIC_JACOBIAN in model.capabilities
    h = torch.randn(16, latent, dtype=torch.float64) * 2
    u = torch.randn(16, 2, dtype=torch.float64)
    J = model.jacobian(h, u)

    def single(hh, uu):
        return model.step(hh[None], uu[None])[0]

    J_ref = torch.func.vmap(torch.func.jacrev(single))(h, u)
    assert J.shape == (16, latent, latent)
    assert torch.allclose(J, J_ref, atol=1e-12, rtol=0)
    with torch.no_grad():
        assert float(torch.linalg.matrix_norm(J, 2).max()) <= float(model.norm_upper_bound()) + 1e-9


def test_shplrnn_observation_model():
    torch.manual_seed(5)
    model = make_model("shplrnn", 0, 3, latent_dim=5, hidden_dim=8).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    z = model.observation_inverse(x)
    assert z.shape == (4, 5) and torch.equal(model.readout(z), x)
    zhat, k = model.forcing_signals(x)
    assert k == 3 and torch.equal(zhat[:, :3], x) and (zhat[:, 3:] == 0).all()
    lin = make_model("shplrnn", 0, 3, latent_dim=5, hidden_dim=8, observation="linear").double()
    z = lin.observation_inverse(x)
    assert torch.allclose(lin.readout(z), x, atol=1e-10)  # B pinv(B) = I for a full-row-rank B
    assert lin.forcing_signals(x)[1] == 5
    with pytest.raises(ValueError):
        make_model("shplrnn", 0, 3, latent_dim=2)


def test_clipped_shplrnn_orbits_bounded():
    torch.manual_seed(6)
    model = make_model("shplrnn", 0, 3, hidden_dim=30).double()
    assert model.A.abs().max() < 1  # the normalised positive-definite initialisation
    y, _ = model(torch.zeros(1, 5000, 0, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64) * 10)
    assert torch.isfinite(y).all() and y.abs().max() < 1e4


def test_models_accept_token_inputs():
    torch.manual_seed(7)
    for name, params in (("mingru", {"hidden_size": 4}), ("lru", {"hidden_size": 4}),
                         ("shplrnn", {"latent_dim": 4, "hidden_dim": 8})):
        cls = plugin("models", name)
        model = cls(IOSpec("tokens", 11), IOSpec("tokens", 11), cls.Params(**params))
        y, _ = model(torch.randint(11, (2, 9)))
        assert y.shape == (2, 9, 11)


@pytest.mark.parametrize("name", ["elman", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_closed_form_jacobian_diagonal_equals_autograd(name, layers):
    torch.manual_seed(5)
    model = make_model(name, 3, 2, hidden_size=6, num_layers=layers).double()
    h = torch.randn(10, model.state_size, dtype=torch.float64)
    u = model.encode(torch.randn(10, 1, 3, dtype=torch.float64))[:, 0]

    def single(hh, uu):
        return model.step(hh[None], uu[None])[0]

    J_ref = torch.func.vmap(torch.func.jacrev(single))(h, u)
    d = model.jacobian_diagonal(h, u)
    assert d.shape == (10, model.state_size)
    assert torch.allclose(d, J_ref.diagonal(dim1=-2, dim2=-1), atol=1e-12, rtol=0)
    assert (J_ref - torch.diag_embed(J_ref.diagonal(dim1=-2, dim2=-1))).abs().max() > 1e-3  # J is not diagonal


@pytest.mark.parametrize("name", ["elman", "gru", "lstm"])
def test_fused_forward_in_pieces_equals_one_call(name, monkeypatch):
    """Sequences longer than ``fused_max_len`` (cuDNN refuses very long ones) run in pieces with the state
    carried: outputs, last state and gradients equal one fused call."""
    torch.manual_seed(3)
    model = make_model(name, 3, 2, hidden_size=5, num_layers=2).double()
    x = torch.randn(2, 50, 3, dtype=torch.float64)
    h0 = torch.randn(2, model.state_size, dtype=torch.float64)

    def run():
        y, last = model(x, h0)
        grads = torch.autograd.grad((y ** 2).sum() + last.sum(), list(model.parameters()))
        return y, last, grads

    y1, last1, g1 = run()
    monkeypatch.setattr(type(model), "fused_max_len", 16)  # 16 + 16 + 16 + 2
    y2, last2, g2 = run()
    torch.testing.assert_close(y2, y1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last2, last1, rtol=1e-12, atol=1e-12)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
