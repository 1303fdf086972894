"""Adaptive TBPTT: the truncation estimator (suite/adaptive_truncation.py) against independent
autograd and closed-form oracles, the buffered training segments, and an end-to-end trial."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from suite.contracts import IOSpec, NoParams, RecurrentModel, SequenceData, TrainData
from suite.models.rnn import GRU, LSTM, Elman, RNNParams
from suite.registry import load_registry
from suite.run.sweep import TrialSpec
from suite.run.trial import execute_trial
from suite.training import buffered_segment
from suite.training.adaptive_truncation import (
    choose_K,
    cumulative_norms,
    estimate_log_beta_ols,
    estimate_truncation,
    gradient_norms_by_lag,
    gradients_by_lag,
    relative_bias,
    tail_bound,
)
from suite.training.gradient_fidelity import fidelity_diagnostics

AdaptiveTBPTT = load_registry().get("methods", "adaptive_tbptt")
AdaptiveTBPTTParams = AdaptiveTBPTT.Params
lr_factor = AdaptiveTBPTT.lr_factor

CELLS = {"lstm": LSTM, "gru": GRU, "elman": Elman}
I, O = 2, 3


# --- helpers --------------------------------------------------------------------------------------
def make_model(kind: str, hidden: int = 5, layers: int = 1, seed: int = 0) -> RecurrentModel:
    torch.manual_seed(seed)
    return CELLS[kind](IOSpec("real", I), IOSpec("real", O), RNNParams(hidden_size=hidden, num_layers=layers)).double()


def make_data(B: int = 3, T: int = 20, seed: int = 1, n_in: int = I, n_out: int = O) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, n_in, generator=g, dtype=torch.float64)
    y = torch.randn(B, T, n_out, generator=g, dtype=torch.float64)
    return TrainData("test", SequenceData(x, y), IOSpec("real", n_in), IOSpec("real", n_out))


class LinearRNN(RecurrentModel):
    """h_t = a h_{t-1} + B u_t (scalar a, i.e. a*I), y_t = C h_t."""

    def __init__(self, a: float, D: int = 4, n_in: int = I, n_out: int = O, seed: int = 0) -> None:
        super().__init__(IOSpec("real", n_in), IOSpec("real", n_out), NoParams())
        g = torch.Generator().manual_seed(seed)
        self.state_size = D
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.B = torch.nn.Parameter(torch.randn(D, n_in, generator=g, dtype=torch.float64))
        self.C = torch.nn.Parameter(torch.randn(n_out, D, generator=g, dtype=torch.float64))

    def step(self, h, u):
        return self.a * h + u @ self.B.T

    def readout(self, h, u=None):
        return h @ self.C.T


class FakeCtx:
    """Minimal TrainContext with SGD; records losses, gradients, logs and the optimizer."""

    def __init__(self, model, steps=1, lr=0.0):
        self.model, self.max_steps = model, steps
        self.optimizer_spec = {"name": "sgd", "lr": lr}
        self.losses, self.grads, self.samples, self.logs, self.optimizers = [], [], [], [], []
        self.clip_calls = 0
        self.clip_scales = []

    @property
    def lr(self):
        return float(self.optimizer_spec["lr"])

    def make_optimizer(self, params=None, **overrides):
        opt = torch.optim.SGD(list(self.model.parameters()), lr=self.lr)
        self.optimizers.append(opt)
        return opt

    def clip_gradients(self, params=None, scale=1.0):
        self.clip_calls += 1
        self.clip_scales.append(scale)

    @property
    def done(self):
        return len(self.losses) >= self.max_steps

    def step(self, loss, samples=0, **diag):
        self.losses.append(float(loss.detach()))
        self.grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in self.model.parameters()])
        self.samples.append(samples)
        return self.done

    def epoch_range(self):
        for epoch in range(1000):
            if self.done:
                return
            yield epoch
        raise RuntimeError("no progress")

    def log(self, **diag):
        self.logs.append((len(self.losses), diag))


def grads_of(loss, model):
    params = list(model.parameters())
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]


# --- phi_k against an independent autograd computation --------------------------------------------
@pytest.mark.parametrize("kind,layers", [("lstm", 1), ("lstm", 2), ("gru", 1), ("elman", 2)])
def test_phi_matches_autograd_per_lag(kind, layers):
    model, data = make_model(kind, layers=layers), make_data(B=3, T=16)
    burn, W = 4, 10
    x, y = data.train.x, data.train.y
    phi = gradient_norms_by_lag(model, x, y, data.loss, burn, W)
    assert phi.shape == (3, W)
    assert all(p.grad is None for p in model.parameters())

    # independent: for every lag k, restart the rollout from a leaf copy of h_{s-1-k} (the state entering
    # step s-k, the authors' lag k) and differentiate
    s = burn + W - 1
    with torch.no_grad():
        states = model.hidden_states(x[:, : s + 1])  # states[:, t] = h_t (after input t)
    for k in range(W):
        leaf = states[:, s - 1 - k].clone().requires_grad_(True)
        h = leaf
        u = model.encode(x)
        for t in range(s - k, s + 1):
            h = model.step(h, u[:, t])
        loss = data.loss(model.readout(h)[:, None], y[:, s : s + 1])
        (g,) = torch.autograd.grad(loss, leaf)
        torch.testing.assert_close(phi[:, k], g.norm(dim=1), atol=1e-10, rtol=0)


def test_phi_matches_retained_states_rollout():
    model, data = make_model("gru", hidden=6), make_data(B=4, T=30)
    burn, W = 6, 20
    phi = gradient_norms_by_lag(model, data.train.x, data.train.y, data.loss, burn, W)
    with torch.no_grad():
        h = model.hidden_states(data.train.x[:, :burn])[:, -1]
    kept = []
    h = h.clone().requires_grad_(True)
    for t in range(burn, burn + W):
        if t > burn:
            h.retain_grad()
        kept.append(h)  # the state entering step t
        h = model.step(h, data.train.x[:, t])
    data.loss(model.readout(h)[:, None], data.train.y[:, burn + W - 1 : burn + W]).backward()
    expected = torch.stack([kept[W - 1 - k].grad.norm(dim=1) for k in range(W)], 1)
    torch.testing.assert_close(phi, expected, atol=1e-10, rtol=0)
    grads = gradients_by_lag(model, data.train.x, data.train.y, data.loss, burn, W)
    torch.testing.assert_close(grads[:, 0], kept[-1].grad, atol=1e-12, rtol=0)  # lag 0: the state entering s


# --- linear-RNN oracle --------------------------------------------------------------------------
def closed_form_curve(r: float, W: int, tau: int) -> np.ndarray:
    """deltahat(K), K = 0..W, for phi_k = r^k phi_0 and cum_K = sum_{k<=K} phi_k (the approximate rule, or the
    exact one when every lag's mean gradient points the same way):
    E(K) = phi_0 (r^K / (1-r) + [K < tau] r^tau) (the authors' sum counts phi_tau twice below tau),
    cum_K - E(K) = phi_0 (1 - r^K (1 + r)) / (1-r) - [K < tau] phi_0 r^tau grows with K, so
    D = phi_0 (1 - r^(W-1) - r^W) / (1-r) (at K = W-1) and deltahat(K) = E(K) / D."""
    K = np.arange(W + 1, dtype=float)
    E = r**K / (1 - r) + (K < tau) * r**tau
    return E / ((1 - r ** (W - 1) - r**W) / (1 - r))


def closed_form_K(r: float, delta: float, W: int, tau: int) -> int:
    """The smallest K >= 1 with deltahat(K) < delta (else W), read off the closed-form curve; refuses a
    delta that sits within rounding of a threshold."""
    dh = closed_form_curve(r, W, tau)[1:]
    assert np.all(np.abs(dh / delta - 1) > 1e-6), "delta sits on a threshold; pick another"
    ok = np.nonzero(dh < delta)[0]
    return int(ok[0]) + 1 if len(ok) else W


@pytest.mark.parametrize("a", [0.8, 0.6])
def test_linear_rnn_oracle(a):
    r, burn, W = abs(a), 5, 30
    model = LinearRNN(a)
    data = make_data(B=4, T=burn + W + 3, seed=7)
    grads = gradients_by_lag(model, data.train.x, data.train.y, data.loss, burn, W)
    phi = grads.norm(dim=-1)
    lags = torch.arange(W, dtype=torch.float64)
    torch.testing.assert_close(phi, phi[:, :1] * r**lags, rtol=1e-10, atol=0)  # phi_k = |a|^k phi_0 exactly
    phi_bar = phi.mean(0)
    log_beta = estimate_log_beta_ols(phi_bar)
    assert math.exp(log_beta) == pytest.approx(r, abs=1e-8)
    phi0 = float(phi_bar[0])
    K = torch.arange(W + 1, dtype=torch.float64)
    for tau in (0, 7, W - W // 10, W - 1):
        want_E = phi0 * (r**K / (1 - r) + (K < tau) * r**tau)
        torch.testing.assert_close(tail_bound(phi_bar, log_beta, tau), want_E, rtol=1e-7, atol=0)
        dh = relative_bias(phi_bar, math.exp(log_beta), tau)  # approximate cumulative norm
        torch.testing.assert_close(dh, torch.as_tensor(closed_form_curve(r, W, tau)), rtol=1e-7, atol=0)
        for delta in (0.95, 0.5, 0.13, 0.011, 1.3e-3, 1e-9):
            assert choose_K(dh, delta) == closed_form_K(r, delta, W, tau), (tau, delta)
    est = estimate_truncation(grads, 0.13, W - 3, cum_norm="approx")
    assert est["K"] == closed_form_K(r, 0.13, W, W - 3) and est["beta"] == pytest.approx(r, abs=1e-8)


def test_exact_cumulative_norm_on_linear_rnn():
    """h_t = a h_{t-1} + ..: g_k = a^k g_0 per sequence, so the exact cumulative norm is
    ||mean_b g_0|| |sum_{k<=K} a^k|. With one sequence and a > 0 it equals the approximate one; with a < 0
    the partial sums alternate, D shrinks and the chosen K grows."""
    W, burn, tau = 30, 5, 27
    data = make_data(B=1, T=burn + W + 3, seed=7)
    for a in (0.8, -0.8):
        model = LinearRNN(a)
        grads = gradients_by_lag(model, data.train.x, data.train.y, data.loss, burn, W)
        g0 = float(grads[0, 0].norm())
        Kp = np.arange(W)
        want = g0 * np.abs((1 - a ** (Kp + 1)) / (1 - a))
        np.testing.assert_allclose(cumulative_norms(grads, "exact").numpy(), want, rtol=1e-10)
        np.testing.assert_allclose(cumulative_norms(grads, "approx").numpy(), g0 * (1 - abs(a) ** (Kp + 1)) / (1 - abs(a)),
                                   rtol=1e-10)
        exact = estimate_truncation(grads, 0.05, tau, cum_norm="exact")
        approx = estimate_truncation(grads, 0.05, tau, cum_norm="approx")
        if a > 0:
            assert exact["K"] == approx["K"] == closed_form_K(0.8, 0.05, W, tau)
        else:  # D = max_K (|S_K| - E(K)): by hand from the formulas
            r, K = 0.8, np.arange(W + 1)
            E = r**K / (1 - r) + (K < tau) * r**tau
            diff = np.abs((1 - a ** (Kp + 1)) / (1 - a)) - E[:W]
            dh = E / diff[diff > 0].max()
            assert exact["K"] == int(np.nonzero(dh[1:] < 0.05)[0][0]) + 1 > approx["K"]
    with pytest.raises(ValueError, match="gradient vectors"):
        estimate_truncation(grads.norm(dim=-1), 0.05, tau)


def _authors_rule(grads: np.ndarray, tau: int, delta: float, exact: bool) -> int:
    """An independent, loop-by-loop transcription of the authors' K rule (methods.md section 2.2, from
    aicherc/adaptive_tbptt ``adaptive_K_estimate`` with 'ols'): grads [B, W, D] with lag 0 = dL/dh_{s-1}.
    With beta >= 1 the bias counts as unbounded for every K (rnnbench's documented departure from their code)."""
    B, W, _ = grads.shape
    phi = [float(np.mean([np.linalg.norm(grads[b, k]) for b in range(B)])) for k in range(W)]
    lphi = [math.log(p + 1e-100) for p in phi]
    xs = [k for k in range(W) if lphi[k] >= -50]
    ys = [lphi[k] for k in xs]
    xm, ym = sum(xs) / len(xs), sum(ys) / len(ys)
    logbeta = sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / sum((x - xm) ** 2 for x in xs)
    beta = math.exp(logbeta)

    def E(K: int) -> float:
        if beta >= 1:
            return math.inf
        tail = phi[tau] / (1 - beta)
        return sum(phi[K: tau + 1]) + tail if K < tau else phi[tau] * beta ** (K - tau) / (1 - beta)

    cum, running = [], np.zeros(grads.shape[2])
    for k in range(W):
        running = running + grads[:, k].mean(0)
        cum.append(float(np.linalg.norm(running)) if exact else sum(phi[: k + 1]))
    lower = [c - E(k) for k, c in enumerate(cum) if c > E(k)]
    if not lower:
        return W
    D = max(lower)
    for K in range(1, W + 1):
        if E(K) / D < delta:
            return K
    return W


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_K_rule_matches_authors_formulas_on_fixed_gradients(kind):
    """On fixed gradient sequences from real models (and decaying random ones), the vectorised log-space rule
    chooses the same K as a loop-by-loop transcription of the authors' formulas, for both cumulative norms."""
    burn, W, tau = 5, 40, 36
    cases = []
    for seed in range(3):
        model, data = make_model(kind, hidden=6, layers=2, seed=seed), make_data(B=4, T=burn + W, seed=seed)
        cases.append(gradients_by_lag(model, data.train.x, data.train.y, data.loss, burn, W))
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        decay = torch.exp(-0.08 * torch.arange(W, dtype=torch.float64))[None, :, None]
        cases.append(torch.randn(3, W, 8, generator=g, dtype=torch.float64) * decay)
    for grads in cases:
        for rule in ("exact", "approx"):
            for delta in (0.9, 0.5, 0.1, 0.01):
                got = estimate_truncation(grads, delta, tau, cum_norm=rule)["K"]
                assert got == _authors_rule(grads.numpy(), tau, delta, rule == "exact"), (rule, delta)


# --- monotonicity and edge cases ----------------------------------------------------------------
def _random_phi_bars():
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(6):
        W = int(torch.randint(5, 60, (1,), generator=g))
        steps = -0.3 * torch.rand(W, generator=g, dtype=torch.float64) + 0.1 * torch.randn(W, generator=g, dtype=torch.float64)
        out.append(torch.exp(torch.cumsum(steps, 0)))
    return out


def _monotone(d: torch.Tensor) -> bool:
    return bool(torch.all((d[1:] <= d[:-1] * (1 + 1e-12)) | (d[1:] == d[:-1])))


def test_monotonicity_on_random_and_model_curves():
    model, data = make_model("gru", hidden=8), make_data(B=5, T=60)
    curves = _random_phi_bars() + [gradient_norms_by_lag(model, data.train.x, data.train.y, data.loss, 10, 45).mean(0)]
    deltas = [1e-4, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 0.99, 2.0]
    for phi_bar in curves:
        W = phi_bar.numel()
        for tau in {0, W // 2, W - W // 10, W - 1} - {W}:
            beta = math.exp(estimate_log_beta_ols(phi_bar))
            dh = relative_bias(phi_bar, beta, tau)
            assert _monotone(dh), (W, tau)  # deltahat(K) non-increasing in K
            Ks = [choose_K(dh, d) for d in deltas]
            assert all(k1 >= k2 for k1, k2 in zip(Ks, Ks[1:])), Ks  # K(delta) non-increasing in delta
            assert all(1 <= k <= W for k in Ks)


def test_estimator_edge_cases():
    assert estimate_log_beta_ols(torch.zeros(10, dtype=torch.float64)) == 0.0
    # points that are numerically zero are dropped from the fit
    phi = 0.5 ** torch.arange(10, dtype=torch.float64)
    phi[6:] = 0.0
    assert math.exp(estimate_log_beta_ols(phi)) == pytest.approx(0.5, abs=1e-12)
    # growing gradients: unbounded bias, so K = W
    growing = 1.1 ** torch.arange(12, dtype=torch.float64)
    beta = math.exp(estimate_log_beta_ols(growing))
    assert beta > 1
    dh = relative_bias(growing, beta, 9)
    assert torch.isinf(dh).all() and choose_K(dh, 0.5) == 12
    # vanished gradients beyond tau with no measurable decay: the tail counts as e^-50 (the authors' -50 in logs)
    flat = torch.cat([torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)])
    E = tail_bound(flat, 0.0, 7)
    assert float(E[7]) == pytest.approx(math.exp(-50.0), rel=1e-12) and float(E[0]) == pytest.approx(5.0)
    assert choose_K(relative_bias(flat, 1.0, 7), 0.1) == 5


def test_params_validation():
    with pytest.raises(ValidationError):
        AdaptiveTBPTTParams(W=50, tau=50)
    with pytest.raises(ValidationError):
        AdaptiveTBPTTParams(W=50, Kmin=10, Kmax=5)
    p = AdaptiveTBPTTParams(W=50)
    assert p.K_max == 50
    method = AdaptiveTBPTT(p)
    assert method.estimation_geometry(1000) == (5, 50, 45)
    assert method.estimation_geometry(30) == (5, 25, 23)
    assert lr_factor(16, "sqrt") == 4.0 and lr_factor(16, "linear") == 16.0 and lr_factor(16, "none") == 1.0


# --- training segments ('original-buffer') --------------------------------------------------------
def test_buffered_segments_in_training():
    model, data = make_model("gru"), make_data(B=1, T=20)
    method = AdaptiveTBPTT(AdaptiveTBPTTParams(K0=4, W=10, batch_size=1, reestimate_every=1000, lr_scaling="none"))
    ctx = FakeCtx(model, steps=3)
    method.train(model, data, ctx)
    x, y = data.train.x, data.train.y
    # update 1: outputs [0, 4) from the zero state
    y1, _ = model(x[:, :4])
    assert ctx.losses[0] == pytest.approx(float(data.loss(y1, y[:, :4]).detach()), abs=1e-13)
    # update 2: outputs [4, 8); inputs 1..7 (a K-1 = 3 step buffer) from the detached state after input 0
    _, h0 = model(x[:, :1])
    y2, _ = model(x[:, 1:8], h0.detach())
    loss2 = data.loss(y2[:, 3:], y[:, 4:8])
    assert ctx.losses[1] == pytest.approx(float(loss2.detach()), abs=1e-13)
    for got, want in zip(ctx.grads[1], grads_of(loss2, model)):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    # update 3: outputs [8, 12), inputs 5..11 from the state after input 4
    _, h4 = model(x[:, :5])
    y3, _ = model(x[:, 5:12], h4.detach())
    assert ctx.losses[2] == pytest.approx(float(data.loss(y3[:, 3:], y[:, 8:12]).detach()), abs=1e-13)
    assert ctx.samples == [4, 4, 4] and ctx.clip_calls == 3
    assert ctx.logs[0] == (0, {"K": 4})


def test_buffered_segment_after_K_changes():
    model, data = make_model("lstm"), make_data(B=2, T=20)
    part = data.train
    y_full, _ = model(part.x)
    # K shrank: the carried state (after input 5) is advanced without gradient to the shorter buffer
    _, h5 = model(part.x[:, :6])
    loss, h_c, end, n = buffered_segment(model, data, part, h5.detach(), 5, 12, 3)
    assert (end, n) == (15, 2 * 3)
    assert float(loss.detach()) == pytest.approx(float(data.loss(y_full[:, 12:15], part.y[:, 12:15]).detach()), abs=1e-12)
    _, h9 = model(part.x[:, :10])
    y_seg, _ = model(part.x[:, 10:15], h9.detach())
    for got, want in zip(grads_of(loss, model), grads_of(data.loss(y_seg[:, 2:], part.y[:, 12:15]), model)):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    _, h12 = model(part.x[:, :13])
    torch.testing.assert_close(h_c, h12, atol=1e-12, rtol=0)  # state after input pos
    # K grew: the buffer starts at the carried state (shorter than K - 1), values stay exact
    loss, _, end, _ = buffered_segment(model, data, part, h9.detach(), 9, 12, 8)
    assert end == 20
    assert float(loss.detach()) == pytest.approx(float(data.loss(y_full[:, 12:20], part.y[:, 12:20]).detach()), abs=1e-12)


@pytest.mark.parametrize("scaling", ["sqrt", "linear", "none"])
def test_reestimation_logs_and_lr_scaling(scaling):
    model, data = make_model("elman"), make_data(B=2, T=40)
    p = AdaptiveTBPTTParams(K0=3, W=12, burn=2, R=2, reestimate_every=2, batch_size=2, estimate_batch=3,
                            Kmin=2, Kmax=10, lr_scaling=scaling)
    method = AdaptiveTBPTT(p)
    ctx = FakeCtx(model, steps=5, lr=0.01)
    method.train(model, data, ctx)
    assert ctx.logs[0] == (0, {"K": 3})
    reestimates = [d for _, d in ctx.logs[1:]]
    assert len(reestimates) == 2 and [s for s, _ in ctx.logs[1:]] == [2, 4]
    for d in reestimates:
        assert set(d) == {"K", "beta", "delta_hat"} and 2 <= d["K"] <= 10 and d["beta"] > 0
    assert method.K == reestimates[-1]["K"]
    assert ctx.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 * lr_factor(method.K, scaling))


def test_reestimate_on_linear_model_matches_closed_form():
    r, burn, W, delta = 0.7, 3, 25, 0.05
    model = LinearRNN(r)
    data = make_data(B=2, T=60, seed=3)
    method = AdaptiveTBPTT(AdaptiveTBPTTParams(delta=delta, W=W, burn=burn, R=3, Kmin=1, Kmax=W, estimate_batch=4,
                                               cum_norm="approx"))
    tau = method.estimation_geometry(60)[2]
    rec = method.reestimate(model, data)
    assert rec["K"] == closed_form_K(r, delta, W, tau) == method.K
    assert rec["beta"] == pytest.approx(r, abs=1e-8)
    assert rec["delta_hat"] == pytest.approx(closed_form_curve(r, W, tau)[method.K], rel=1e-8)


# --- gradient fidelity ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_probe_gradient_with_K_covering_sequence_is_full_bptt(kind):
    model, data = make_model(kind), make_data(B=3, T=15)
    method = AdaptiveTBPTT(AdaptiveTBPTTParams(K0=15, W=20))
    fid = fidelity_diagnostics(method, model, data, data.train)
    assert fid["grad_cos"] == pytest.approx(1.0, abs=1e-12) and fid["grad_rel_err"] < 1e-10
    assert all(p.grad is None for p in model.parameters())


def test_probe_gradient_short_K_on_long_memory_model_is_below_one():
    model = LinearRNN(0.97, n_in=1, n_out=1)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 60, 1, generator=g, dtype=torch.float64)
    data = TrainData("test", SequenceData(x, 0.2 * torch.cumsum(x, 1)), IOSpec("real", 1), IOSpec("real", 1))
    method = AdaptiveTBPTT(AdaptiveTBPTTParams(K0=2, W=20))
    short = fidelity_diagnostics(method, model, data, data.train)
    method.K = 20
    longer = fidelity_diagnostics(method, model, data, data.train)
    assert short["grad_cos"] < 0.99 and longer["grad_cos"] > short["grad_cos"]


# --- end to end (no Ray) --------------------------------------------------------------------------
def test_execute_trial_reports_K_diagnostics():
    spec = TrialSpec(experiment="test", task="toy-sysid", task_params={"length": 160}, model="gru",
                     model_params={"hidden_size": 8}, method="adaptive_tbptt",
                     method_params={"K0": 5, "W": 40, "R": 2, "reestimate_every": 4, "batch_size": 4,
                                    "Kmin": 2, "Kmax": 30, "lr_scaling": "none"},
                     optimizer={"name": "adam", "lr": 0.01, "grad_clip": 1.0}, seed=0, budget={"steps": 14},
                     eval_every={"steps": 5}, selection={"metric": None, "split_weights": {"val": 1.0}},
                     resources={"cpu": 1, "device": "cpu"})
    reports = []
    rec = execute_trial(spec, {}, reports.append)
    assert rec.status == "ok", rec.error
    assert all(math.isfinite(v) for v in rec.metrics["test"].values())
    events = [e for r in reports if "diag_events" in r for e in json.loads(r["diag_events"])]
    Ks = [(step, v) for step, name, v in events if name == "K"]
    assert Ks[0] == (0, 5.0)
    assert [s for s, _ in Ks[1:]] == [4, 8, 12] or [s for s, _ in Ks[1:]] == [4, 8]  # the last may follow the last report
    assert all(2 <= v <= 30 for _, v in Ks)
    names = {name for _, name, _ in events}
    assert {"K", "beta", "delta_hat"} <= names


def test_clip_per_output_scales_the_threshold_by_one_over_K():
    """clip_per_output: every update asks for the clip threshold grad_clip / (scored outputs), as the
    authors' normed=True; the real context then clips the gradient norm at exactly that value."""
    model, data = make_model("gru"), make_data(B=1, T=10)
    method = AdaptiveTBPTT(AdaptiveTBPTTParams(K0=4, W=8, batch_size=1, reestimate_every=1000, lr_scaling="none",
                                               clip_per_output=True))
    ctx = FakeCtx(model, steps=3)
    method.train(model, data, ctx)
    assert ctx.clip_scales == [0.25, 0.25, 0.5]  # outputs [0,4), [4,8), [8,10)
    default = FakeCtx(model, steps=2)
    AdaptiveTBPTT(AdaptiveTBPTTParams(K0=4, W=8, batch_size=1, lr_scaling="none")).train(model, data, default)
    assert default.clip_scales == [1.0, 1.0]

    from suite.run.context import TrainContext

    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    norm = float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())
    ctx_real = TrainContext.__new__(TrainContext)  # only clip_gradients' fields are needed
    ctx_real.optimizer_spec, ctx_real.model = {"name": "sgd", "lr": 0.1, "grad_clip": 2.0}, model
    assert ctx_real.clip_gradients(scale=0.1) == pytest.approx(norm)
    clipped = float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())
    assert clipped == pytest.approx(0.2, rel=1e-6)
