"""Adaptive TBPTT: the truncation estimator (suite/adaptive_truncation.py) against independent
autograd and closed-form oracles, the buffered training segments, and an end-to-end trial."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError

from suite.adaptive_truncation import (
    choose_K,
    estimate_log_beta_ols,
    estimate_truncation,
    gradient_norms_by_lag,
    relative_bias,
    tail_bound,
)
from suite.contracts import IOSpec, NoParams, RecurrentModel, SequenceData, TrainData
from suite.gradient_fidelity import fidelity_diagnostics
from suite.models.rnn import GRU, LSTM, Elman, RNNParams
from suite.registry import load_registry
from suite.sweep import TrialSpec
from suite.training import buffered_segment
from suite.trial import execute_trial

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

    @property
    def lr(self):
        return float(self.optimizer_spec["lr"])

    def make_optimizer(self, params=None, **overrides):
        opt = torch.optim.SGD(list(self.model.parameters()), lr=self.lr)
        self.optimizers.append(opt)
        return opt

    def clip_gradients(self, params=None):
        self.clip_calls += 1

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

    # independent: for every lag k, restart the rollout from a leaf copy of h_{s-k} and differentiate
    s = burn + W - 1
    with torch.no_grad():
        states = model.hidden_states(x[:, : s + 1])  # states[:, t] = h_t (after input t)
    for k in range(W):
        leaf = states[:, s - k].clone().requires_grad_(True)
        h = leaf
        u = model.encode(x)
        for t in range(s - k + 1, s + 1):
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
    for t in range(burn, burn + W):
        h = model.step(h, data.train.x[:, t])
        h.retain_grad()
        kept.append(h)
    data.loss(model.readout(h)[:, None], data.train.y[:, burn + W - 1 : burn + W]).backward()
    expected = torch.stack([kept[W - 1 - k].grad.norm(dim=1) for k in range(W)], 1)
    torch.testing.assert_close(phi, expected, atol=1e-10, rtol=0)


# --- linear-RNN oracle --------------------------------------------------------------------------
def closed_form_K(r: float, delta: float, W: int) -> int:
    """phi_k = r^k phi_0: E(K) = phi_0 r^K / (1-r), cum_K = phi_0 (1 - r^K) / (1-r),
    D = max_K (cum_K - E(K)) = phi_0 (1 - 2 r^W) / (1-r) (at K = W), so deltahat(K) = r^K / (1 - 2 r^W)
    and K = the smallest K >= 1 with r^K < delta (1 - 2 r^W), i.e. floor(log(delta c) / log r) + 1."""
    c = 1 - 2 * r**W
    x = math.log(delta * c) / math.log(r)
    assert abs(x - round(x)) > 1e-6, "delta sits on a threshold; pick another"
    K = max(1, math.floor(x) + 1)
    return min(K, W)


@pytest.mark.parametrize("a", [0.8, -0.85, 0.6])
def test_linear_rnn_oracle(a):
    r, burn, W = abs(a), 5, 30
    model = LinearRNN(a)
    data = make_data(B=4, T=burn + W + 3, seed=7)
    phi = gradient_norms_by_lag(model, data.train.x, data.train.y, data.loss, burn, W)
    lags = torch.arange(W, dtype=torch.float64)
    torch.testing.assert_close(phi, phi[:, :1] * r**lags, rtol=1e-10, atol=0)  # phi_k = |a|^k phi_0 exactly
    phi_bar = phi.mean(0)
    log_beta = estimate_log_beta_ols(phi_bar)
    assert math.exp(log_beta) == pytest.approx(r, abs=1e-8)
    phi0 = float(phi_bar[0])
    K = torch.arange(W + 1, dtype=torch.float64)
    for tau in (0, 7, W - W // 10, W - 1):
        torch.testing.assert_close(tail_bound(phi_bar, log_beta, tau), phi0 * r**K / (1 - r), rtol=1e-8, atol=0)
        dh = relative_bias(phi_bar, math.exp(log_beta), tau)
        torch.testing.assert_close(dh, r**K / (1 - 2 * r**W), rtol=1e-8, atol=0)
        for delta in (0.95, 0.5, 0.13, 0.011, 1.3e-3, 1e-9):
            assert choose_K(dh, delta) == closed_form_K(r, delta, W), (tau, delta)
    est = estimate_truncation(phi, 0.13, W - 3)
    assert est["K"] == closed_form_K(r, 0.13, W) and est["beta"] == pytest.approx(r, abs=1e-8)


def test_tail_bound_extends_beyond_window_and_synthetic_oracle():
    r, W, phi0 = 0.9, 40, 2.5
    phi_bar = phi0 * r ** torch.arange(W, dtype=torch.float64)
    log_beta = estimate_log_beta_ols(phi_bar)
    assert log_beta == pytest.approx(math.log(r), abs=1e-12)
    E = tail_bound(phi_bar, log_beta, 30, K_max=70)
    K = torch.arange(71, dtype=torch.float64)
    torch.testing.assert_close(E, phi0 * r**K / (1 - r), rtol=1e-10, atol=0)
    assert relative_bias(phi_bar, r, 30, K_max=70).shape == (71,)


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
    # vanished gradients beyond tau with no measurable decay: tail counts as zero
    flat = torch.cat([torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)])
    E = tail_bound(flat, 0.0, 7)
    assert float(E[7]) == 0.0 and float(E[0]) == pytest.approx(5.0)
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
    method = AdaptiveTBPTT(AdaptiveTBPTTParams(delta=delta, W=W, burn=burn, R=3, Kmin=1, Kmax=W, estimate_batch=4))
    rec = method.reestimate(model, data)
    assert rec["K"] == closed_form_K(r, delta, W) == method.K
    assert rec["beta"] == pytest.approx(r, abs=1e-8)
    assert rec["delta_hat"] == pytest.approx(r ** method.K / (1 - 2 * r**W), rel=1e-8)


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
