"""SMT / DMT (methods/smt.py, suite/smt/): batch indexes, one transition per sample, memory
normalisation, an oracle teacher on a Markov source, the uniformity loss, DMT gradient routing,
the teacher-prefix protocol, the markov-tokens task, and end-to-end trials without Ray."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from suite.contracts import STEP, IOSpec, NoParams, RecurrentModel, SequenceData
from suite.models.rnn import GRU, RNNParams
from suite.registry import load_registry
from suite.run.sweep import TrialSpec
from suite.run.trial import execute_trial
from suite.smt.adapter import ModelStudent, TransformerUpdater
from suite.smt.batch import dmt_batch, sample_smt_batch, smt_batch, token_rows
from suite.smt.evaluation import (
    evaluate_with_teacher_prefix,
    teacher_sliding_ce,
    zero_state_ce,
)
from suite.smt.losses import uniformity_loss
from suite.smt.objective import (
    SMTWeights,
    backward_routed,
    dmt_forward,
    dmt_rollout,
    smt_forward,
)
from suite.smt.teacher import Teacher, TeacherConfig, rms_normalize

REGISTRY = load_registry()
MarkovTokens = REGISTRY.get("tasks", "markov-tokens")
MarkovParams = MarkovTokens.Params
SMTParams = REGISTRY.get("methods", "smt").Params

V = 5


def tiny_cfg(**kw) -> TeacherConfig:
    base = {"vocab": V, "Tc": 6, "Tf": 3, "K": 2, "d_mem": 8, "dim": 16, "layers": 1, "decoder_layers": 1,
            "heads": 2, "ff_mult": 2}
    return TeacherConfig(**{**base, **kw})


def gru(hidden: int = 6, seed: int = 0) -> GRU:
    torch.manual_seed(seed)
    return GRU(IOSpec("tokens", V), IOSpec("tokens", V), RNNParams(hidden_size=hidden, embed_dim=4))


def rows(R: int = 3, L: int = 40, seed: int = 0) -> Tensor:
    return torch.randint(0, V, (R, L + 1), generator=torch.Generator().manual_seed(seed))


class Counting:
    """Wraps a callable and records the batch size of every call."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, h, *args):
        self.calls.append(h.shape[0])
        return self.fn(h, *args)


# --- batches ---------------------------------------------------------------------------------------
def test_batch_alignment_matches_reference_indexes():
    Tc, Tf = 6, 3
    s = rows(R=4, L=30)
    x, y = s[:, :-1], s[:, 1:]
    r = torch.tensor([0, 1, 2, 3, 1])
    a = torch.tensor([0, 3, 10, 20, 7])  # window start; the transition input is at t = a + Tc
    b = smt_batch(s, r, a + Tc, torch.zeros_like(a), Tc, Tf)
    xw, yw = x[r[:, None], a[:, None] + torch.arange(Tc + Tf + 1)], y[r[:, None], a[:, None] + torch.arange(Tc + Tf + 1)]
    # the reference's get_smt_batch on windows x_0..x_{T-1}
    assert torch.equal(b.x_ctx, xw[:, :Tc])
    assert torch.equal(b.x_fut, xw[:, Tc : Tc + Tf])
    assert torch.equal(b.y_fut, yw[:, Tc - 1 : Tc + Tf - 1])
    assert torch.equal(b.x_ctx_next, xw[:, 1 : Tc + 1])
    assert torch.equal(b.x_in, xw[:, Tc])
    assert torch.equal(b.y_next, yw[:, Tc])
    # the two alignment checks of the SMT batch: the first future token is the input, the next context is shifted by one
    assert torch.equal(b.y_fut[:, 0], b.x_in)
    assert torch.equal(b.x_ctx_next[:, :-1], b.x_ctx[:, 1:])


def test_batch_padding_and_reading_starts():
    s = rows(R=2, L=30)
    Tc, Tf = 6, 3
    b = smt_batch(s, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 10, 29]), torch.tensor([0, 0, 8, 0]), Tc, Tf)
    assert b.empty.tolist() == [True, False, False, False]
    assert (b.x_ctx[0] == -1).all() and b.x_ctx_next[0, -1] == s[0, 0]
    assert b.x_ctx[1].tolist() == [-1] * 4 + s[0, :2].tolist()
    assert b.x_ctx[2].tolist() == [-1] * 4 + s[1, 8:10].tolist()  # reading started at 8
    assert b.y_fut[3].tolist() == [s[1, 29].item(), s[1, 30].item(), -1]  # off the end of the row
    assert torch.equal(b.y_fut[:, 0], b.x_in) and torch.equal(b.x_ctx_next[:, :-1], b.x_ctx[:, 1:])
    g = torch.Generator().manual_seed(0)
    rb = sample_smt_batch(s, 64, Tc, Tf, 0.5, g)
    assert torch.equal(rb.y_fut[:, 0], rb.x_in) and torch.equal(rb.x_ctx_next[:, :-1], rb.x_ctx[:, 1:])
    assert rb.empty.any()
    with pytest.raises(ValueError, match="next-token"):
        token_rows(SequenceData(s[:, :-1], torch.flip(s[:, 1:], [1])))


def test_dmt_batch_labels_follow_the_rollout():
    s = rows(R=2, L=40)
    Tc, R, k = 6, 8, 4
    b = dmt_batch(s, torch.tensor([0, 1]), torch.tensor([10, 0]), torch.tensor([0, 0]), Tc, R, k)
    assert torch.equal(b.x_in[0], s[0, 10:18]) and torch.equal(b.targets[0], s[0, 11:19])
    assert torch.equal(b.label_ctx[0, 0], s[0, 14 - Tc : 14]) and torch.equal(b.label_ctx[0, 1], s[0, 18 - Tc : 18])
    assert b.empty0.tolist() == [False, True]


# --- one transition per sample; memory normalisation ----------------------------------------------
@pytest.mark.parametrize("updater", [False, True])
def test_transition_applied_once_per_sample(updater):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    teacher, model = Teacher(cfg), gru()
    student = ModelStudent(model, cfg.K, cfg.d_mem)
    upd = TransformerUpdater(cfg, 1) if updater else None
    counter = Counting(model.step)
    model.step = counter  # instance attribute shadows the method
    if upd is not None:
        u_counter = Counting(upd.transition)
        upd.transition = u_counter
    b = sample_smt_batch(rows(R=3, L=40), 11, cfg.Tc, cfg.Tf, 0.3, torch.Generator().manual_seed(1))
    out = smt_forward(teacher, student, b, SMTWeights(), updater=upd)
    # one call holding all samples side by side: each sample's graph contains a single application
    # of U (its input state is built from teacher memories only), so no gradient path crosses two
    assert counter.calls == [11]
    if upd is not None:
        assert u_counter.calls == [11]
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.rnn.weight_hh_l0.grad is not None and teacher.registers.grad is not None


@pytest.mark.parametrize("to_teacher", [False, True])
def test_gradient_routing_to_the_teacher(to_teacher):
    """With the routing switches off, L_state and L_readout train the RNN side only (one forward)."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    teacher, model = Teacher(cfg), gru()
    student = ModelStudent(model, cfg.K, cfg.d_mem)
    b = sample_smt_batch(rows(R=3, L=40), 16, cfg.Tc, cfg.Tf, 0.3, torch.Generator().manual_seed(1))
    w = SMTWeights(dec=0.0, dyn=0.0, unif=0.0, state=1.0, readout=1.0)
    out = smt_forward(teacher, student, b, w, state_grad_to_teacher=to_teacher, readout_grad_to_teacher=to_teacher)
    backward_routed(out, [*model.parameters(), *student.parameters()])
    teacher_grad = sum(float(p.grad.abs().sum()) for p in teacher.parameters() if p.grad is not None)
    assert (teacher_grad > 0) == to_teacher
    assert model.rnn.weight_hh_l0.grad.abs().sum() > 0 and student.to_state.weight.grad.abs().sum() > 0
    # the RNN-side gradient equals that of a plain backward of the total
    g_routed = model.rnn.weight_hh_l0.grad.clone()
    model.zero_grad()
    smt_forward(teacher, student, b, w)["loss"].backward()
    assert torch.allclose(g_routed, model.rnn.weight_hh_l0.grad, atol=1e-6)


def _registered_step_models():
    from suite.registry import load_registry

    reg = load_registry(())
    return sorted(name for name, info in reg.plugins["models"].items() if info.ok and STEP in info.cls.capabilities)


@pytest.mark.parametrize("name", _registered_step_models())
def test_any_registered_model_can_be_the_transition(name):
    """ModelStudent only uses the model contract (encode, step, readout, initial_state, state_size)."""
    from suite.registry import load_registry

    cls = load_registry(()).get("models", name)
    torch.manual_seed(0)
    try:
        model = cls(IOSpec("tokens", V), IOSpec("tokens", V), cls.Params())
    except (ValueError, TypeError, NotImplementedError) as exc:  # no token inputs: not a language model
        pytest.skip(f"{name} cannot be built for tokens: {exc}")
    cfg = tiny_cfg()
    teacher, student = Teacher(cfg), ModelStudent(model, cfg.K, cfg.d_mem)
    b = sample_smt_batch(rows(R=2, L=30), 8, cfg.Tc, cfg.Tf, 0.3, torch.Generator().manual_seed(0))
    out = smt_forward(teacher, student, b, SMTWeights())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and any(p.grad is not None for p in model.parameters())
    # the teacher-prefix protocol runs the model's own forward from the adapter's state
    r = evaluate_with_teacher_prefix(teacher, student, torch.randint(0, V, (2, 12)), 8)
    assert math.isfinite(r["bpt"])


def test_memory_rms_is_one():
    cfg = tiny_cfg(d_mem=12)
    torch.manual_seed(0)
    teacher = Teacher(cfg)
    ctx = torch.randint(0, V, (7, cfg.Tc))
    ctx[0] = -1  # empty context
    ctx[1, :4] = -1
    m = teacher.encode(ctx)
    assert m.shape == (7, cfg.K, cfg.d_mem)
    rms = m.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-5)
    student = ModelStudent(gru(), cfg.K, cfg.d_mem)
    m2, _ = student.transition(m, torch.randint(0, V, (7,)))
    assert torch.allclose(m2.pow(2).mean(-1).sqrt(), torch.ones(7, cfg.K), atol=1e-5)
    m3, _ = TransformerUpdater(cfg, 1).transition(m, torch.randint(0, V, (7,)))
    assert torch.allclose(m3.pow(2).mean(-1).sqrt(), torch.ones(7, cfg.K), atol=1e-5)
    # an empty context maps to the model's initial (zero) state
    h = student.state_label(m, (ctx < 0).all(1))
    assert torch.equal(h[0], torch.zeros_like(h[0])) and h[1].abs().sum() > 0


# --- oracle teacher on a k-th order Markov source -----------------------------------------------------
class OracleTeacher(nn.Module):
    """Memory = the one-hot of each of the last k tokens (k tokens of V values, RMS-normalised)."""

    def __init__(self, k: int, vocab: int) -> None:
        super().__init__()
        self.k, self.vocab = k, vocab

    def encode(self, ctx: Tensor) -> Tensor:
        last = ctx[:, -self.k :]
        return rms_normalize(torch.nn.functional.one_hot(last.clamp_min(0), self.vocab).to(torch.float64))


class LinearRNN(RecurrentModel):
    """h' = A h + B u + c (a linear cell: the shift of one-hot windows is exactly representable)."""

    name = "linear-test"
    Params = NoParams
    capabilities = frozenset({STEP})

    def __init__(self, vocab: int, state: int) -> None:
        super().__init__(IOSpec("tokens", vocab), IOSpec("tokens", vocab), NoParams())
        self.embedding = nn.Embedding(vocab, vocab)
        self.A = nn.Linear(state, state)
        self.B = nn.Linear(vocab, state, bias=False)
        self.head = nn.Linear(state, vocab)
        self.state_size = state

    def encode(self, x: Tensor) -> Tensor:
        return self.embedding(x)

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        return self.A(h) + self.B(u)

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return self.head(h)


def test_oracle_teacher_dynamics_learnable_and_rollout_exact():
    """Oracle memories (one-hots of the last k tokens) of a k-th order Markov source: with fixed
    invertible adapters (to_state = P, from_state = P^-1) the shift of the window is exactly a linear
    cell, and L_state is quadratic in it, so brief training reaches L_dyn ~ L_state ~ 0."""
    k, Vo = 2, 3
    D = k * Vo
    task = MarkovTokens(MarkovParams(vocab=Vo, order=k, train_tokens=3000, val_tokens=64, test_tokens=64, streams=4))
    s = token_rows(task.split("train"))
    teacher = OracleTeacher(k, Vo)
    torch.manual_seed(0)
    model = LinearRNN(Vo, D).double()
    student = ModelStudent(model, k, Vo).double()
    with torch.no_grad():
        P = torch.randn(D, D, dtype=torch.float64)
        student.to_state.weight.copy_(P)
        student.from_state.weight.copy_(torch.linalg.inv(P))
        student.to_state.bias.zero_()
        student.from_state.bias.zero_()
        model.embedding.weight.copy_(torch.eye(Vo))
    student.requires_grad_(False)
    model.embedding.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    # full-context samples (anchors >= k) for training the transition
    r = torch.randint(0, s.shape[0], (64,), generator=g)
    a = torch.randint(k, s.shape[1] - 1, (64,), generator=g)
    batch = smt_batch(s, r, a, torch.zeros_like(a), k, 1)
    w = SMTWeights(dec=0.0, unif=0.0, readout=0.0, dyn=0.0, state=1.0)
    before = smt_forward(teacher, student, batch, w)
    opt = torch.optim.LBFGS([model.A.weight, model.A.bias, model.B.weight], lr=1.0, max_iter=100,
                            tolerance_grad=1e-14, tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = smt_forward(teacher, student, batch, w)["loss"]
        loss.backward()
        return loss

    opt.step(closure)
    out = smt_forward(teacher, student, batch, w)
    assert before["loss_dyn"].item() > 0.1
    assert out["loss_dyn"].item() < 1e-12 and out["loss_state"].item() < 1e-12

    # roll the trained U out over a fresh stream: memory space, and the model's own state space
    x = torch.as_tensor(task.stream("test"))[None]
    m_oracle = torch.stack([teacher.encode(x[:, : t + 1]) for t in range(k - 1, x.shape[1])], 1)[0]  # after x[:t+1]
    with torch.no_grad():
        m = m_oracle[:1]
        errs = []
        for t in range(k, x.shape[1]):
            m, _ = student.transition(m, x[:, t])
            errs.append((m[0] - m_oracle[t - k + 1]).abs().max())
        assert max(errs) < 1e-5
        h0 = student.state_label(m_oracle[:1])
        _, hT = model(x[:, k:], h0)
        hs = model.hidden_states(x[:, k:], h0)
        assert torch.allclose(hs[:, -1], hT)
        mem = student.memory(hs[0])
        assert (mem - m_oracle[1:]).abs().max() < 1e-5


# --- losses -----------------------------------------------------------------------------------------
def test_uniformity_matches_direct_formula():
    torch.manual_seed(0)
    z = torch.randn(6, 3, 4, dtype=torch.float64)
    zn = z.reshape(-1, 4) / z.reshape(-1, 4).norm(dim=-1, keepdim=True)
    n = zn.shape[0]
    d2 = torch.cdist(zn, zn).pow(2)
    off = ~torch.eye(n, dtype=torch.bool)
    direct = torch.exp(-2 * d2[off]).mean().log()
    via_pdist = torch.pdist(zn).pow(2).mul(-2).exp().mean().log()
    assert torch.allclose(uniformity_loss(z, sample=None), direct, atol=1e-12)
    assert torch.allclose(direct, via_pdist, atol=1e-12)
    big = torch.randn(700, 4, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    idx = torch.randperm(700, generator=torch.Generator().manual_seed(3))[:512]
    sub = big[idx] / big[idx].norm(dim=-1, keepdim=True)
    assert torch.allclose(uniformity_loss(big, sample=512, generator=g),
                          torch.pdist(sub).pow(2).mul(-2).exp().mean().log(), atol=1e-12)


# --- DMT gradient routing ------------------------------------------------------------------------------
@pytest.mark.parametrize("bptt", [False, True])
def test_dmt_rollout_gradient_crosses_steps_only_with_bptt(bptt):
    cfg = tiny_cfg()
    model = gru()
    student = ModelStudent(model, cfg.K, cfg.d_mem)
    x = torch.randint(0, V, (4, 6))
    h0 = torch.randn(4, model.state_size, requires_grad=True)
    labels = [rms_normalize(torch.randn(4, cfg.K, cfg.d_mem)) for _ in range(3)]

    def label_loss(h, m):
        return (student.memory(h) - m).pow(2).mean()

    r = dmt_rollout(student.step, student.readout, h0, x, x, labels, 2, label_loss, bptt_through_rollout=bptt)
    states = r["states"]
    late = r["dyn_terms"][-1] + r["readout_terms"][-1]  # losses at the last step
    grads = torch.autograd.grad(late, [h0, states[-3]], allow_unused=True, retain_graph=True)
    if bptt:
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert all(g is None for g in grads)  # only the last transition is in the graph of the last loss
        # and the parameters still get a (one-step) gradient
        gw = torch.autograd.grad(late, model.rnn.weight_hh_l0)[0]
        assert gw.abs().sum() > 0


def test_dmt_forward_runs_with_teacher_frozen():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    teacher, model = Teacher(cfg), gru()
    student, upd = ModelStudent(model, cfg.K, cfg.d_mem), TransformerUpdater(cfg, 1)
    s = rows(R=2, L=40)
    b = dmt_batch(s, torch.tensor([0, 1, 1]), torch.tensor([3, 0, 20]), torch.tensor([0, 0, 20]), cfg.Tc, 8, 4)
    out = dmt_forward(teacher, student, b, 4, w_dyn=10.0, w_readout=1.0, updater=upd)
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert model.head.weight.grad is not None and upd.blocks.layers[0].linear1.weight.grad is not None


# --- evaluation protocols ----------------------------------------------------------------------------------
def test_teacher_prefix_protocol_matches_a_manual_loop():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    teacher, model = Teacher(cfg), gru()
    student = ModelStudent(model, cfg.K, cfg.d_mem)
    tokens = torch.randint(0, V, (3, 15))
    read = 8
    got = evaluate_with_teacher_prefix(teacher, student, tokens, read)
    with torch.no_grad():
        h = student.state_label(teacher.encode(tokens[:, read - cfg.Tc : read]))
        ce, last = [], tokens[:, read - 1]
        for t in range(read, 15):
            ce.append(torch.nn.functional.cross_entropy(student.readout(h, last), tokens[:, t], reduction="none"))
            h, last = student.step(h, tokens[:, t]), tokens[:, t]
        want = torch.stack(ce).mean().item()
    assert got["ce"] == pytest.approx(want, rel=1e-5) and got["bpt"] == pytest.approx(want / math.log(2), rel=1e-5)
    z = zero_state_ce(model, tokens, read)
    logits, _ = model(tokens[:, :-1])
    ref = torch.nn.functional.cross_entropy(logits[:, read - 1 :].reshape(-1, V), tokens[:, read:].reshape(-1))
    assert z["ce"] == pytest.approx(ref.item(), rel=1e-5)
    sl = teacher_sliding_ce(teacher, tokens, read, stride=3)
    with torch.no_grad():
        manual = [torch.nn.functional.cross_entropy(teacher.next_logits(teacher.encode(tokens[:, p - cfg.Tc : p])),
                                                    tokens[:, p], reduction="none") for p in range(read, 15, 3)]
    assert sl["ce"] == pytest.approx(torch.cat(manual).mean().item(), rel=1e-5)


# --- the markov-tokens task ----------------------------------------------------------------------------
def test_markov_task_is_deterministic_and_next_token():
    p = MarkovParams(vocab=4, order=2, train_tokens=500, val_tokens=100, test_tokens=100, streams=4, eval_streams=2)
    a, b = MarkovTokens(p), MarkovTokens(p)
    tr = a.split("train")
    assert tr.x.shape == (4, 124) and torch.equal(tr.y[:, :-1], tr.x[:, 1:])
    assert torch.equal(tr.x, b.split("train").x)
    assert not np.array_equal(a.stream("val"), a.stream("test"))
    assert 0 < a.entropy_rate_bits() < 2.0
    torch.manual_seed(0)
    model = GRU(a.input, a.output, RNNParams(hidden_size=4))
    m = a.evaluate(model, "val")
    assert set(m) == {"bpt", "ce"} and m["bpt"] == pytest.approx(m["ce"] / math.log(2))


# --- parameters and end-to-end trials ------------------------------------------------------------------
def test_params_validation():
    with pytest.raises(ValidationError, match="copy_decoder_to_readout"):
        SMTParams(copy_decoder_to_readout=True)
    SMTParams(copy_decoder_to_readout=True, updater="transformer")
    with pytest.raises(ValidationError):
        SMTParams(teacher="frozen", teacher_pretrain_fraction=0.6, dmt_fraction=0.5)


TINY = {"Tc": 8, "Tf": 4, "K": 2, "d_mem": 8, "teacher_dim": 16, "teacher_layers": 1, "teacher_decoder_layers": 1,
        "teacher_heads": 2, "teacher_ff_mult": 2, "batch_size": 16, "diag_windows": 2, "diag_eval_len": 8,
        "log_every": 2, "dmt_rollout": 6, "dmt_k": 3, "dmt_batch_size": 4}


def run_trial(method_params: dict, model: str = "gru", steps: int = 6) -> tuple:
    spec = TrialSpec(
        experiment="smt-test", task="markov-tokens",
        task_params={"train_tokens": 800, "val_tokens": 200, "test_tokens": 200, "streams": 4, "eval_streams": 2},
        model=model, model_params={"hidden_size": 8, "embed_dim": 4}, method="smt",
        method_params={**TINY, **method_params}, optimizer={"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
        seed=0, budget={"steps": steps}, eval_every={"steps": 3},
        selection={"metric": None, "split_weights": {"val": 1.0}}, resources={"cpu": 1},
    )
    reports: list[dict] = []
    rec = execute_trial(spec, {}, reports.append)
    return rec, reports


@pytest.mark.parametrize("method_params", [
    {},
    {"dmt_fraction": 0.5},
    {"dmt_fraction": 0.5, "bptt_through_rollout": True, "updater": "transformer", "copy_decoder_to_readout": True,
     "copy_every": 2},
    {"teacher": "frozen", "teacher_pretrain_fraction": 0.3, "dyn_grad_to_teacher": False},
], ids=["smt", "smt+dmt", "transformer+dmt-bptt", "frozen-teacher"])
def test_end_to_end_trial(method_params):
    rec, reports = run_trial(method_params)
    assert rec.status == "ok", rec.error
    assert math.isfinite(rec.metric("test", "bpt")) and math.isfinite(rec.metric("val", "bpt"))
    assert rec.steps == 6
    events = [name for r in reports if r.get("diag_events") for _, name, _ in json.loads(r["diag_events"])]
    assert "loss_dyn" in events
    if method_params.get("dmt_fraction"):
        assert "dmt_loss_readout" in events and "smt_end_teacher_prefix_bpt" in events


def test_end_to_end_trial_lstm():
    rec, _ = run_trial({"dmt_fraction": 0.5}, model="lstm", steps=4)
    assert rec.status == "ok", rec.error
    assert math.isfinite(rec.metric("test", "bpt"))
