"""TBPTT with burn-in (methods/tbptt.py): exactness limits, burn-in semantics, stateful carrying,
end-to-end trials, and the gradient-fidelity diagnostic (suite/gradient_fidelity.py)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from suite.contracts import IOSpec, NoParams, RecurrentModel, SequenceData, TrainData
from suite.models.rnn import GRU, LSTM, Elman, RNNParams
from suite.registry import load_registry
from suite.run.sweep import TrialSpec
from suite.run.trial import execute_trial
from suite.training import burn_in_loss, trainable_parameters, window_starts
from suite.training.gradient_fidelity import fidelity_diagnostics, full_bptt_gradient, gradient_fidelity, probe_batch

REGISTRY = load_registry()
TBPTT = REGISTRY.get("methods", "tbptt")
TBPTTParams = TBPTT.Params

CELLS = {"lstm": LSTM, "gru": GRU, "elman": Elman}
I, O = 2, 3


# --- helpers --------------------------------------------------------------------------------------
def make_model(kind: str, hidden: int = 5, seed: int = 0, layers: int = 1) -> RecurrentModel:
    torch.manual_seed(seed)
    cls = CELLS[kind]
    return cls(IOSpec("real", I), IOSpec("real", O), RNNParams(hidden_size=hidden, num_layers=layers)).double()


def make_data(B: int = 3, T: int = 12, seed: int = 1, n_in: int = I, n_out: int = O) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, n_in, generator=g, dtype=torch.float64)
    y = torch.randn(B, T, n_out, generator=g, dtype=torch.float64)
    return TrainData("test", SequenceData(x, y), IOSpec("real", n_in), IOSpec("real", n_out))


def grads_of(loss: torch.Tensor, model: RecurrentModel) -> list[torch.Tensor]:
    params = list(model.parameters())
    return [torch.zeros_like(p) if g is None else g for p, g in
            zip(params, torch.autograd.grad(loss, params, allow_unused=True))]


def step_loop_outputs(model: RecurrentModel, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Outputs from the model's single-step loop (independent of the fused forward)."""
    return model.readout(model.hidden_states(x, h0))


class FakeCtx:
    """Minimal TrainContext: SGD (lr 0 by default, so parameters stay put), records every update."""

    def __init__(self, model: RecurrentModel, steps: int = 1, lr: float = 0.0, optimizer: str = "sgd") -> None:
        self.model, self.max_steps = model, steps
        self.optimizer_spec = {"name": optimizer, "lr": lr}
        self.grads: list[list[torch.Tensor]] = []
        self.losses: list[float] = []
        self.samples: list[int] = []
        self.logs: list[tuple[int, dict[str, float]]] = []
        self.clip_calls = 0
        self.optimizers: list[torch.optim.Optimizer] = []
        self.epochs = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer_spec["lr"])

    def make_optimizer(self, params=None, **overrides):
        opt = torch.optim.SGD(list(self.model.parameters() if params is None else params), lr=self.lr)
        self.optimizers.append(opt)
        return opt

    def clip_gradients(self, params=None):
        self.clip_calls += 1
        return None

    @property
    def done(self) -> bool:
        return len(self.losses) >= self.max_steps

    def step(self, loss, samples: int = 0, **diag) -> bool:
        self.grads.append([torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                           for p in self.model.parameters()])
        self.losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
        self.samples.append(samples)
        return self.done

    def epoch_range(self):
        empty = 0
        while not self.done:
            before = len(self.losses)
            yield self.epochs
            self.epochs += 1
            empty = empty + 1 if len(self.losses) == before else 0
            if empty > 20:
                raise RuntimeError("method made no update in 20 epochs (would loop forever)")

    def log(self, **diag) -> None:
        self.logs.append((len(self.losses), diag))


def run_method(params: dict, model: RecurrentModel, data: TrainData, steps: int = 1, **ctx_kw) -> FakeCtx:
    ctx = FakeCtx(model, steps=steps, **ctx_kw)
    TBPTT(TBPTTParams(**params)).train(model, data, ctx)
    return ctx


def assert_grads_close(a, b, atol=1e-10):
    assert len(a) == len(b)
    for ga, gb in zip(a, b):
        torch.testing.assert_close(ga, gb, atol=atol, rtol=0)


def assert_grads_equal(a, b):
    assert len(a) == len(b)
    for ga, gb in zip(a, b):
        assert torch.equal(ga, gb)


# --- exactness: a window covering the sequence is full BPTT ----------------------------------------
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
@pytest.mark.parametrize("window", [12, 20])
def test_window_covering_sequence_is_full_bptt(kind, mode, window):
    model, data = make_model(kind), make_data(B=3, T=12)
    full_loss = data.loss(step_loop_outputs(model, data.train.x), data.train.y)
    reference = grads_of(full_loss, model)
    ctx = run_method({"window": window, "mode": mode, "batch_size": 8}, model, data)
    assert ctx.losses[0] == pytest.approx(float(full_loss.detach()), abs=1e-12)
    assert_grads_close(ctx.grads[0], reference)
    assert ctx.samples[0] == 3 * 12
    assert ctx.clip_calls == 1


# --- burn-in semantics ----------------------------------------------------------------------------
def _manual_windows(data: TrainData, window: int, stride: int) -> SequenceData:
    starts = window_starts(data.train.length, window, stride)
    xs = [data.train.x[b, s : s + window] for b in range(data.train.batch) for s in starts.tolist()]
    ys = [data.train.y[b, s : s + window] for b in range(data.train.batch) for s in starts.tolist()]
    return SequenceData(torch.stack(xs), torch.stack(ys))


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_m0_is_plain_tbptt_bitwise(kind):
    model, data = make_model(kind), make_data(B=2, T=14)
    windows = _manual_windows(data, window=5, stride=3)  # starts 0, 3, 6, 9 -> 8 windows in order
    y_hat, _ = model(windows.x)
    reference = grads_of(data.loss(y_hat, windows.y), model)
    ctx = run_method({"window": 5, "stride": 3, "burn_in": 0, "shuffle": False, "batch_size": 100}, model, data)
    assert_grads_equal(ctx.grads[0], reference)
    for grad_mode in (True, False):
        loss, _ = burn_in_loss(model, data, windows, 0, grad_mode)
        assert_grads_equal(grads_of(loss, model), reference)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_m_last_only_last_output_carries_gradient(kind):
    model, data = make_model(kind), make_data(B=2, T=15)
    N, m = 5, 4
    params = {"window": N, "burn_in": m, "shuffle": False, "batch_size": 100}
    windows = _manual_windows(data, window=N, stride=N)
    y_hat, _ = model(windows.x)
    reference = grads_of(data.loss(y_hat[:, -1:], windows.y[:, -1:]), model)  # many-to-one
    base = run_method(params, model, data).grads[0]
    assert_grads_close(base, reference, atol=1e-13)

    burn_positions = (torch.arange(15) % N) < m
    perturbed = make_data(B=2, T=15)
    perturbed.train.y[:, burn_positions] += 100.0 * torch.randn_like(perturbed.train.y[:, burn_positions])
    assert_grads_equal(run_method(params, model, perturbed).grads[0], base)

    scored = make_data(B=2, T=15)
    scored.train.y[:, ~burn_positions] += 1.0
    changed = run_method(params, model, scored).grads[0]
    assert any(not torch.allclose(a, b) for a, b in zip(changed, base))


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_burnin_grad_modes(kind):
    model, data = make_model(kind), make_data(B=3, T=8)
    part = data.train
    m = 3
    with_grad = grads_of(burn_in_loss(model, data, part, m, True)[0], model)
    without = grads_of(burn_in_loss(model, data, part, m, False)[0], model)
    assert any(not torch.allclose(a, b, atol=1e-8) for a, b in zip(with_grad, without))

    # each mode equals its manual definition
    y_hat, _ = model(part.x)
    assert_grads_close(with_grad, grads_of(data.loss(y_hat[:, m:], part.y[:, m:]), model), atol=1e-13)
    with torch.no_grad():
        h_m = model.hidden_states(part.x[:, :m])[:, -1]
    y_rest = step_loop_outputs(model, part.x[:, m:], h_m)
    assert_grads_close(without, grads_of(data.loss(y_rest, part.y[:, m:]), model), atol=1e-12)

    # losses agree; with m = 0 the two modes coincide bitwise
    with torch.no_grad():
        assert float(burn_in_loss(model, data, part, m, True)[0]) == pytest.approx(
            float(burn_in_loss(model, data, part, m, False)[0]), abs=1e-12)
    g0_true = grads_of(burn_in_loss(model, data, part, 0, True)[0], model)
    g0_false = grads_of(burn_in_loss(model, data, part, 0, False)[0], model)
    assert_grads_equal(g0_true, g0_false)

    # and the method passes the mode through
    a = run_method({"window": 8, "burn_in": m, "burnin_grad": True, "batch_size": 8}, model, data).grads[0]
    b = run_method({"window": 8, "burn_in": m, "burnin_grad": False, "batch_size": 8}, model, data).grads[0]
    assert_grads_close(a, with_grad)
    assert_grads_close(b, without)


@pytest.mark.parametrize("m", [0, 2, 6])
def test_loss_normalised_by_scored_positions_batch_outputs(m):
    model, data = make_model("gru"), make_data(B=4, T=7)
    part = data.train
    N, b, d = part.length, part.batch, O
    with torch.no_grad():
        y_hat, _ = model(part.x)
        expected = ((y_hat[:, m:] - part.y[:, m:]) ** 2).sum() / ((N - m) * b * d)
        for grad_mode in (True, False):
            loss, _ = burn_in_loss(model, data, part, m, grad_mode)
            assert float(loss) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("length,window,stride", [(10, 3, 3), (10, 3, 2), (10, 4, 4), (11, 5, 1), (7, 7, 3),
                                                  (5, 9, 2), (100, 30, 7), (31, 8, 40)])
def test_window_starts_cover_sequence(length, window, stride):
    starts = window_starts(length, window, stride).tolist()
    assert starts == sorted(set(starts)) and starts[0] == 0
    w = min(window, length)
    assert all(0 <= s and s + w <= length for s in starts)
    assert starts[-1] == length - w
    covered = set()
    for s in starts:
        covered.update(range(s, s + w))
    if stride <= window:  # a stride longer than the window skips steps by design
        assert covered == set(range(length))
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
    assert {0, length - 1} <= covered


def test_burn_in_fraction_and_validation():
    assert TBPTTParams(window=10, burn_in=0.5).burn_in_steps == 5
    assert TBPTTParams(window=10, burn_in=3).burn_in_steps == 3
    assert TBPTTParams(window=8, burn_in=0.75).burn_in_steps == 6
    assert TBPTTParams(window=10, burn_in=0).burn_in_steps == 0
    with pytest.raises(ValidationError):
        TBPTTParams(window=10, burn_in=10)
    with pytest.raises(ValidationError):
        TBPTTParams(window=10, burn_in=2.5)
    # the fraction is applied in training: 0.5 of N = 10 leaves 5 scored outputs per window
    model, data = make_model("elman"), make_data(B=1, T=10)
    ctx = run_method({"window": 10, "burn_in": 0.5, "batch_size": 4}, model, data)
    y_hat, _ = model(data.train.x)
    assert ctx.losses[0] == pytest.approx(float(data.loss(y_hat[:, 5:], data.train.y[:, 5:]).detach()), abs=1e-13)
    assert ctx.samples[0] == 5


# --- stateful mode --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_stateful_carries_detached_state(kind):
    model, data = make_model(kind), make_data(B=1, T=20)
    calls = []

    def hook(module, args, kwargs, output):
        h0 = args[1] if len(args) > 1 else kwargs.get("h0")
        calls.append((h0, output[1].detach().clone()))

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        ctx = run_method({"window": 5, "mode": "stateful", "batch_size": 2}, model, data, steps=3)
    finally:
        handle.remove()
    assert len(calls) == 3
    assert calls[0][0] is None  # the first window starts from the zero state
    h_in, h_out = calls[1][0], calls[0][1]
    assert torch.equal(h_in, h_out) and not h_in.requires_grad  # the detached final state of window 1

    # reproduce by hand: 2 streams of 10 steps -> windows [0, 5), [5, 10); the third update opens the
    # next epoch, which restarts from the zero state
    xs = data.train.x.reshape(2, 10, I)
    ys = data.train.y.reshape(2, 10, O)
    y1, h1 = model(xs[:, :5])
    y2, _ = model(xs[:, 5:10], h1.detach())
    torch.testing.assert_close(calls[1][0], h1.detach(), atol=1e-12, rtol=0)
    assert ctx.losses[1] == pytest.approx(float(data.loss(y2, ys[:, 5:10]).detach()), abs=1e-12)
    assert calls[2][0] is None  # a new epoch resets the state
    assert_grads_close(ctx.grads[1], grads_of(data.loss(y2, ys[:, 5:10]), model), atol=1e-12)


def test_stateful_burn_in_longer_than_sequence_terminates():
    """Regression: a burn-in >= the stream length used to give no update (an endless epoch loop)."""
    model, data = make_model("gru"), make_data(B=2, T=12)
    ctx = run_method({"window": 20, "burn_in": 15, "mode": "stateful"}, model, data, steps=2)
    assert len(ctx.losses) == 2 and ctx.samples[0] == 2 * 1  # burn-in clamped to 11: one scored output


# --- stateful_phased: the authors' LSTM_Stateful -------------------------------------------------
def _rollout_state(model: RecurrentModel, x: torch.Tensor, start: int, stop: int) -> torch.Tensor | None:
    """The state at ``stop`` of the model's step loop run from the zero state at ``start`` (None if empty)."""
    if stop == start:
        return None
    return model.hidden_states(x[None, start:stop])[0, -1]


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_stateful_phased_window_starts_from_its_phase_shifted_stream(kind):
    """Oracle: window i starts from the state of a step-loop run from the zero state at i mod N, as the
    authors' slot logic gives (N // b slots, unshuffled stride-1 windows, b per batch, drop_last)."""
    N, b, T = 6, 3, 23  # T - N + 1 = 18 windows -> 6 batches per epoch, 2 slots
    model, data = make_model(kind), make_data(B=1, T=T)
    calls = []

    def hook(module, args, kwargs, output):
        h0 = args[1] if len(args) > 1 else kwargs.get("h0")
        calls.append((args[0].detach().clone(), None if h0 is None else h0.detach().clone()))

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        ctx = run_method({"window": N, "mode": "stateful_phased", "batch_size": b, "burn_in": 2}, model, data,
                         steps=8)
    finally:
        handle.remove()
    assert len(calls) == 8
    x, y = data.train.x[0], data.train.y[0]
    for update_no, (xb, h0) in enumerate(calls):
        k = update_no % 6  # the seventh update opens a new epoch: zero states again
        starts = [k * b + j for j in range(b)]
        assert torch.equal(xb, torch.stack([x[i:i + N] for i in starts]))
        expected = [_rollout_state(model, x, i % N, i) for i in starts]
        if k < N // b:
            assert h0 is None and all(e is None for e in expected)
            continue
        torch.testing.assert_close(h0, torch.stack(expected), atol=1e-12, rtol=0)
        assert not h0.requires_grad
        y_hat, _ = model(xb, torch.stack(expected).detach())
        y_win = torch.stack([y[i:i + N] for i in starts])
        loss = data.loss(y_hat[:, 2:], y_win[:, 2:])
        assert ctx.losses[update_no] == pytest.approx(float(loss.detach()), abs=1e-12)
        assert_grads_close(ctx.grads[update_no], grads_of(loss, model), atol=1e-12)
    assert ctx.epochs == 1 and ctx.samples[0] == b * (N - 2)  # stopped inside the second epoch (index 1)


def test_stateful_phased_states_do_not_cross_sequences():
    model, data = make_model("gru"), make_data(B=2, T=9)  # 6 windows of 4 per sequence -> 3 batches of 2 each
    starts = []

    def hook(module, args, kwargs, output):
        starts.append(args[1] if len(args) > 1 else kwargs.get("h0"))

    model.register_forward_hook(hook, with_kwargs=True)
    run_method({"window": 4, "mode": "stateful_phased", "batch_size": 2}, model, data, steps=6)
    # per sequence: batches 0, 1 from zero states (2 slots), batch 2 continues batch 0; then sequence 2 restarts
    assert [h is None for h in starts] == [True, True, False, True, True, False]


def test_stateful_phased_bad_sizes_are_named():
    with pytest.raises(ValidationError, match="multiple of batch_size"):
        TBPTTParams(window=10, batch_size=4, mode="stateful_phased")
    model, data = make_model("gru"), make_data(B=1, T=10)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        run_method({"window": 8, "mode": "stateful_phased", "batch_size": 4}, model, data)  # 3 windows < 4


# --- end to end (no Ray) --------------------------------------------------------------------------
def _spec(method: str, method_params: dict, optimizer: dict, steps: int = 12) -> TrialSpec:
    return TrialSpec(experiment="test", task="toy-sysid", task_params={"length": 120}, model="gru",
                     model_params={"hidden_size": 8}, method=method, method_params=method_params,
                     optimizer=optimizer, seed=0, budget={"steps": steps}, eval_every={"steps": 6},
                     selection={"metric": None, "split_weights": {"val": 1.0}},
                     resources={"cpu": 1, "device": "cpu"})


@pytest.mark.parametrize("method,params", [("tbptt", {"window": 30, "batch_size": 8, "burn_in": 0.2}),
                                           ("tbptt", {"window": 30, "mode": "stateful", "burn_in": 5}),
                                           ("tbptt", {"window": 30, "mode": "stateful_phased", "batch_size": 10}),
                                           ("bptt", {})])
def test_execute_trial_end_to_end(method, params):
    reports = []
    rec = execute_trial(_spec(method, params, {"name": "adam", "lr": 0.01}), {}, reports.append)
    assert rec.status == "ok", rec.error
    assert rec.steps == 12
    test_metrics = rec.metrics["test"]
    assert test_metrics and all(math.isfinite(v) for v in test_metrics.values())
    assert math.isfinite(rec.metric("test", "rmse"))
    assert [r for r in reports if not r.get("final")]  # progress reports at the evaluations


@pytest.mark.parametrize("method,params", [("tbptt", {"window": 30, "batch_size": 8}), ("bptt", {})])
def test_execute_trial_huge_lr_diverges(method, params):
    rec = execute_trial(_spec(method, params, {"name": "sgd", "lr": 1e6}, steps=50), {}, lambda r: None)
    assert rec.status == "diverged", rec
    assert "non-finite" in rec.error


# --- gradient fidelity ----------------------------------------------------------------------------
class ScalarLinearRNN(RecurrentModel):
    """h_t = a h_{t-1} + B u_t, y_t = C h_t (long memory for |a| near 1)."""

    def __init__(self, a: float, D: int = 3, n_in: int = 1, n_out: int = 1, seed: int = 0) -> None:
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


def test_gradient_fidelity_formulas():
    r = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    same = gradient_fidelity([t.clone() for t in r], r)
    assert same["grad_cos"] == pytest.approx(1.0) and same["grad_rel_err"] == 0.0
    double = gradient_fidelity([2 * t for t in r], r)
    assert double["grad_cos"] == pytest.approx(1.0) and double["grad_rel_err"] == pytest.approx(1.0)
    ortho = gradient_fidelity([torch.tensor([2.0, -1.0]), torch.tensor([[0.0]])], [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])])
    assert ortho["grad_cos"] == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(gradient_fidelity([torch.zeros(2)], [torch.ones(2)])["grad_cos"])
    with pytest.raises(ValueError):
        gradient_fidelity([torch.zeros(2)], [torch.zeros(3)])


@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_fidelity_window_covering_sequence_is_exact(kind, mode):
    model, data = make_model(kind), make_data(B=3, T=12)
    probe = probe_batch(data.train, 2)
    method = TBPTT(TBPTTParams(window=16, mode=mode, batch_size=4))
    fid = fidelity_diagnostics(method, model, data, probe)
    assert fid["grad_cos"] == pytest.approx(1.0, abs=1e-12)
    assert fid["grad_rel_err"] < 1e-10
    assert all(p.grad is None for p in model.parameters())  # .grad untouched


@pytest.mark.parametrize("mode", ["stateless", "stateful"])
def test_fidelity_short_window_on_long_memory_model_is_below_one(mode):
    model = ScalarLinearRNN(a=0.97)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 60, 1, generator=g, dtype=torch.float64)
    y = torch.cumsum(x, 1) * 0.2  # a target with long memory
    data = TrainData("test", SequenceData(x, y), IOSpec("real", 1), IOSpec("real", 1))
    short = fidelity_diagnostics(TBPTT(TBPTTParams(window=3, mode=mode)), model, data, data.train)
    longer = fidelity_diagnostics(TBPTT(TBPTTParams(window=30, mode=mode)), model, data, data.train)
    assert short["grad_cos"] < 0.99 and short["grad_rel_err"] > 0.1
    assert longer["grad_cos"] > short["grad_cos"]


def test_probe_gradient_stateful_is_weighted_window_average():
    model, data = make_model("gru"), make_data(B=1, T=12)
    method = TBPTT(TBPTTParams(window=5, mode="stateful", batch_size=1, burn_in=1))
    got = method.probe_gradient(model, data, data.train)
    # one stream of 12 steps: windows [0,5), [5,10), [10,12) with 4, 4 and 1 scored outputs
    x, y, h, total = data.train.x, data.train.y, None, None
    for (a, b), w in zip([(0, 5), (5, 10), (10, 12)], [4, 4, 1]):
        y_hat, h_new = model(x[:, a:b], h)
        g = grads_of(data.loss(y_hat[:, 1:], y[:, a + 1 : b]), model)
        total = [w * gi for gi in g] if total is None else [t + w * gi for t, gi in zip(total, g)]
        h = h_new.detach()
    assert_grads_close(got, [t / 9 for t in total], atol=1e-13)


def test_full_bptt_gradient_and_hookless_methods():
    model, data = make_model("lstm"), make_data()
    ref = full_bptt_gradient(model, data.train, data.loss)
    y_hat = step_loop_outputs(model, data.train.x)
    assert_grads_close(ref, grads_of(data.loss(y_hat, data.train.y), model))
    assert len(ref) == len(trainable_parameters(model))
    bptt = REGISTRY.get("methods", "bptt")
    assert fidelity_diagnostics(bptt(bptt.Params()), model, data, data.train) is None
