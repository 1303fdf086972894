"""Supervised Memory Training (SMT, Kumar & Isola 2026) with an optional DMT phase.

SMT reduces RNN training to supervised one-step transitions ``(m_t, x_{t+1}) -> m_{t+1}``. A
Transformer teacher (:mod:`suite.smt.teacher`) encodes a sliding context of ``Tc`` tokens into a
memory ``m`` of ``K`` RMS-normalised tokens (``d_mem`` values each) and is trained on a
*predictive-state* objective (a causal decoder predicts the next ``Tf`` tokens from ``m``, discount
``gamma``) plus a uniformity term. The RNN learns the transition: every sample applies it exactly
once, so training is time-parallel and no gradient crosses two transitions. The loss terms and the
batch indexes are documented in :mod:`suite.smt.objective` and :mod:`suite.smt.batch`.

The suite model is the transition. ``updater: model`` (default): ``U(m, x) =
RMSNorm(from_state(model.step(to_state(m), encode(x))))`` with linear adapters
(:mod:`suite.smt.adapter`); besides the reference's memory-space ``L_dyn`` the state itself is
supervised (``L_state``: ``step(to_state(m_t), x) ~ to_state(m_{t+1})``, relative to the labels'
variance), because after training the model runs on its own in state space. ``updater: transformer``
adds the reference's Transformer-block updater for ``L_dyn`` (and the teacher-prefix diagnostic); the
suite model then learns from ``L_state`` and its readout loss only. The model's readout
(``model.readout``, e.g. ``model.head``) is trained by ``L_readout`` on the transition's output state
and on the teacher's state labels ``to_state(m_{t+1})``.

Deviations from the reference, each a switch: ``state_grad_to_teacher: false`` (``L_state`` would
otherwise collapse the memory to a constant -- observed on markov-tokens), ``readout_grad_to_teacher:
true`` (the suite models read out *linearly* from their state, so the memory is shaped to be linearly
decodable through ``to_state``; the reference's readout is a copy of the nonlinear decoder; on
markov-tokens this took the state labels' readout from 1.70 to 1.40 nats/token, teacher 1.33). The
gradient routing uses one forward (:func:`suite.smt.objective.backward_routed`).

Reading starts. The suite evaluates every method from the RNN's own zero state with the state carried
over the whole stream (columns / digits start at the zero state: the "burn-in prefix" protocol).
SMT samples whose teacher context is empty map to the model's initial state; rows start reading at
their first token, and a ``restart_prob`` share of samples start reading at a random recent position,
so the transitions out of the zero state and through short contexts are trained too.

DMT (``dmt_fraction > 0``): the last share of the budget rolls the model out on-policy over
``dmt_rollout`` true tokens (teacher frozen) and regresses the visited states on the teacher's
memories every ``dmt_k`` steps, with a readout loss on every state. ``bptt_through_rollout: false``
(default, the reference's README setting) detaches the state before each step: no gradient crosses
steps. Rollouts start from the zero state (``dmt_zero_start_fraction``) or the teacher's memory.

Budget accounting: ``ctx.step`` once per update (SMT: ``batch_size`` transitions; DMT:
``dmt_batch_size x dmt_rollout`` steps); an epoch is ``ceil(train tokens / batch_size)`` updates. The
teacher, adapters and diagnostics are charged to the budget. Phases follow ``ctx.budget_fraction``.

Diagnostics (``ctx.log``): the loss terms, gradient norms, and -- at the end of the SMT phase (when
DMT follows) and at the end of training -- the paper's protocol on windows of the *training* split
(methods never see val/test): ``teacher_prefix_bpt`` (teacher encodes a prefix, the RNN continues;
:func:`suite.smt.evaluation.evaluate_with_teacher_prefix`), ``zero_state_bpt`` (the RNN reads the same
windows from its zero state: the suite protocol) and ``teacher_bpt`` (the teacher's own sliding-window
prediction, the bound a perfect transition reaches). These are *not* the trial's metrics. The values
at the phase switch carry the prefix ``smt_end_``; the end-of-training values are logged after the last
``ctx.step`` and reach the trial's final record (``diag/...``) and the curves table (split ``diag``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from suite.contracts import (
    STEP,
    IOSpec,
    Method,
    Params,
    RecurrentModel,
    TrainData,
    Trainer,
    model_device_dtype,
)
from suite.smt.adapter import ModelStudent, TransformerUpdater
from suite.smt.batch import sample_dmt_batch, sample_smt_batch, token_rows
from suite.smt.evaluation import (
    evaluate_with_teacher_prefix,
    teacher_sliding_ce,
    zero_state_ce,
)
from suite.smt.objective import SMTWeights, backward_routed, dmt_forward, smt_forward
from suite.smt.teacher import Teacher, TeacherConfig


class SMTParams(Params):
    # --- teacher ------------------------------------------------------------------------------
    Tc: int = Field(128, ge=1, description="teacher context length (sliding window of past tokens)")
    Tf: int = Field(32, ge=1, description="future tokens the decoder predicts from the memory")
    K: int = Field(4, ge=1, description="memory (register) tokens")
    d_mem: int = Field(64, ge=1, description="values per memory token (memory = K * d_mem values)")
    teacher_dim: int = Field(128, ge=8, description="teacher Transformer width")
    teacher_layers: int = Field(4, ge=1, description="encoder blocks")
    teacher_decoder_layers: int = Field(2, ge=1, description="decoder blocks")
    teacher_heads: int = Field(4, ge=1, description="attention heads")
    teacher_ff_mult: int = Field(4, ge=1, description="feed-forward width / teacher width")
    gamma: float = Field(1.0, gt=0.0, le=1.0, description="discount of the predictive-state loss over the Tf tokens")
    teacher: Literal["joint", "frozen"] = Field(
        "joint", description="joint: trained with the RNN (reference); frozen: trained alone for "
        "teacher_pretrain_fraction of the budget, then frozen while the RNN learns")
    teacher_pretrain_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="budget share of teacher-only training (teacher: frozen)")
    # --- loss weights and gradient routing -------------------------------------------------------
    w_dec: float = Field(1.0, ge=0.0, description="predictive-state (decoder) loss weight")
    w_dyn: float = Field(0.1, ge=0.0, description="memory-space dynamics loss weight (MSE to the next memory)")
    w_unif: float = Field(0.001, ge=0.0, description="uniformity loss weight")
    w_state: float = Field(1.0, ge=0.0, description="state-space dynamics loss weight (relative MSE)")
    w_readout: float = Field(1.0, ge=0.0, description="readout (next-token CE) loss weight")
    unif_sample: int = Field(512, ge=2, description="memory tokens drawn for the uniformity loss")
    dyn_grad_to_teacher: bool = Field(True, description="L_dyn also shapes the encoder (reference: yes)")
    state_grad_to_teacher: bool = Field(False, description="L_state also shapes the encoder (default no: it collapses the memory)")
    readout_grad_to_teacher: bool = Field(
        True, description="the readout loss on the teacher's state labels also shapes the encoder, so that the "
        "memory becomes decodable by the model's (linear) head; the reference's readout is a copy of the decoder")
    readout_grad_to_transition: bool = Field(
        True, description="the readout loss on a transition's output also trains that one transition")
    clip_teacher: float | None = Field(1.0, gt=0.0, description="gradient-norm clip of the teacher (None: off)")
    clip_rnn: float | None = Field(1.0, gt=0.0, description="gradient-norm clip of the RNN and adapters (None: off)")
    # --- transition -------------------------------------------------------------------------------
    updater: Literal["model", "transformer"] = Field(
        "model", description="U for L_dyn: the suite model behind adapters, or the reference's Transformer blocks")
    updater_layers: int = Field(2, ge=1, description="Transformer updater blocks (updater: transformer)")
    copy_decoder_to_readout: bool = Field(
        False, description="copy the teacher's decoder into the Transformer updater's readout every "
        "copy_every steps, as the reference does (updater: transformer only)")
    copy_every: int = Field(1000, ge=1, description="steps between decoder copies")
    # --- sampling and schedule ----------------------------------------------------------------------
    batch_size: int = Field(128, ge=1, description="transitions (windows) per SMT update")
    restart_prob: float = Field(0.1, ge=0.0, le=1.0, description="share of samples that start reading at a random recent position")
    warmup_fraction: float = Field(0.01, ge=0.0, lt=1.0, description="linear learning-rate warm-up (budget share)")
    bf16_autocast: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU)")
    # --- DMT ----------------------------------------------------------------------------------------
    dmt_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="budget share spent in DMT at the end (0: off)")
    dmt_k: int = Field(16, ge=1, description="oracle memory every k rollout steps")
    dmt_rollout: int = Field(128, ge=1, description="on-policy rollout length")
    bptt_through_rollout: bool = Field(False, description="backpropagate through the rollout (false: state detached each step)")
    dmt_batch_size: int = Field(32, ge=1, description="rollouts per DMT update")
    dmt_lr_scale: float = Field(0.1, gt=0.0, description="DMT learning rate / SMT learning rate (cosine decay to 0)")
    dmt_w_dyn: float = Field(10.0, ge=0.0, description="DMT state/memory regression weight")
    dmt_w_readout: float = Field(1.0, ge=0.0, description="DMT readout loss weight")
    dmt_zero_start_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of rollouts from the zero state")
    # --- diagnostics ----------------------------------------------------------------------------------
    diag_windows: int = Field(16, ge=0, description="training windows for the teacher-prefix diagnostic (0: off)")
    diag_eval_len: int = Field(256, ge=2, description="scored tokens per diagnostic window")
    log_every: int = Field(50, ge=1, description="steps between loss diagnostics")

    @model_validator(mode="after")
    def _consistent(self) -> SMTParams:
        if self.copy_decoder_to_readout and self.updater != "transformer":
            raise ValueError("copy_decoder_to_readout needs updater='transformer': the suite model's readout "
                             "is its own head on its state (trained by the readout loss), not a decoder")
        if self.teacher_dim % self.teacher_heads:
            raise ValueError(f"teacher_dim {self.teacher_dim} is not divisible by teacher_heads {self.teacher_heads}")
        if self.teacher == "frozen" and self.teacher_pretrain_fraction + self.dmt_fraction >= 1.0:
            raise ValueError("teacher_pretrain_fraction + dmt_fraction must leave budget for SMT")
        return self


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _grad_norm(params: list[torch.nn.Parameter], clip: float | None) -> float:
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf))


class SMT(Method):
    name = "smt"
    summary = ("Supervised Memory Training: one-step transitions supervised by a jointly trained Transformer "
               "teacher's predictive-state memories (time-parallel), optional DMT on-policy fine-tuning")
    Params = SMTParams
    requires = frozenset({STEP})
    search_space = {"d_mem": {"choice": [16, 32, 64]}, "w_dyn": {"loguniform": [0.01, 1.0]},
                    "restart_prob": {"uniform": [0.0, 0.3]}}

    @classmethod
    def not_applicable(cls, input: IOSpec, output: IOSpec) -> str | None:
        if not (input.is_tokens and output.is_tokens and input.size == output.size):
            return "smt needs next-token prediction on tokens (input and output vocabularies equal)"
        return None

    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        p = self.params
        reason = self.not_applicable(data.input, data.output)
        if reason:
            raise ValueError(reason)
        s = token_rows(data.train)
        device, dtype = model_device_dtype(model)
        s = s.to(device)
        cfg = TeacherConfig(vocab=data.output.size, Tc=p.Tc, Tf=p.Tf, K=p.K, d_mem=p.d_mem, dim=p.teacher_dim,
                            layers=p.teacher_layers, decoder_layers=p.teacher_decoder_layers,
                            heads=p.teacher_heads, ff_mult=p.teacher_ff_mult)
        teacher = Teacher(cfg).to(device=device, dtype=dtype)
        student = ModelStudent(model, p.K, p.d_mem).to(device=device, dtype=dtype)
        updater = TransformerUpdater(cfg, p.updater_layers).to(device=device, dtype=dtype) if p.updater == "transformer" else None
        if updater is not None and p.copy_decoder_to_readout:
            updater.copy_readout_from(teacher)
            updater.readout_decoder.requires_grad_(False)
        self.teacher, self.student, self.updater = teacher, student, updater  # kept for inspection
        teacher_params = list(teacher.parameters())
        rnn_params = [q for q in [*model.parameters(), *student.parameters(), *(updater.parameters() if updater else [])]
                      if q.requires_grad]
        weights = SMTWeights(dec=p.w_dec, dyn=p.w_dyn, unif=p.w_unif, state=p.w_state, readout=p.w_readout,
                             gamma=p.gamma, unif_sample=p.unif_sample)
        gen = torch.Generator().manual_seed(ctx.seed)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if p.bf16_autocast and device.type == "cuda"
                    else contextlib.nullcontext())
        opt = ctx.make_optimizer(rnn_params + teacher_params)
        dmt_opt: torch.optim.Optimizer | None = None
        dmt_start_fraction = 1.0 - p.dmt_fraction if p.dmt_fraction > 0 else math.inf
        steps_per_epoch = max(1, math.ceil(s.shape[0] * (s.shape[1] - 1) / p.batch_size))
        diag_windows = self._diagnostic_windows(s, ctx.seed)

        for _ in ctx.epoch_range():
            for _ in range(steps_per_epoch):
                frac = ctx.budget_fraction
                if frac >= dmt_start_fraction:
                    if dmt_opt is None:  # end of the SMT phase: the paper's checkpoint
                        self._diagnostics(model, ctx, diag_windows, "smt_end_")
                        teacher.requires_grad_(False)
                        teacher.eval()
                        dmt_opt = ctx.make_optimizer(rnn_params, lr=ctx.lr * p.dmt_lr_scale)
                    loss, out, samples = self._dmt_step(s, teacher, student, updater, dmt_opt, rnn_params,
                                                        ctx, frac, dmt_start_fraction, gen, autocast)
                else:
                    pretrain = p.teacher == "frozen" and frac < p.teacher_pretrain_fraction
                    train_teacher = p.teacher == "joint" or pretrain
                    if p.teacher == "frozen" and not pretrain and teacher_params[0].requires_grad:
                        teacher.requires_grad_(False)
                    lr = ctx.lr * min(1.0, (frac / p.warmup_fraction) if p.warmup_fraction else 1.0)
                    _set_lr(opt, max(lr, ctx.lr * 1e-3))
                    batch = sample_smt_batch(s, p.batch_size, p.Tc, p.Tf, p.restart_prob, gen)
                    with autocast:
                        out = smt_forward(teacher, student, batch, weights, updater=updater,
                                          train_teacher=train_teacher, train_student=not pretrain,
                                          dyn_grad_to_teacher=p.dyn_grad_to_teacher,
                                          state_grad_to_teacher=p.state_grad_to_teacher,
                                          readout_grad_to_teacher=p.readout_grad_to_teacher,
                                          readout_grad_to_transition=p.readout_grad_to_transition,
                                          train_updater_readout=not p.copy_decoder_to_readout, generator=gen)
                    loss = out.pop("loss")
                    opt.zero_grad(set_to_none=True)
                    backward_routed(out, rnn_params)
                    out = {k: v for k, v in out.items() if k not in ("loss_shared", "loss_rnn_only")}
                    out["grad_norm_teacher"] = _grad_norm(teacher_params, p.clip_teacher)
                    out["grad_norm_rnn"] = _grad_norm(rnn_params, p.clip_rnn)
                    opt.step()
                    out["lr"] = opt.param_groups[0]["lr"]
                    samples = p.batch_size
                if updater is not None and p.copy_decoder_to_readout and (ctx.steps + 1) % p.copy_every == 0:
                    updater.copy_readout_from(teacher)
                diag = {}
                if (ctx.steps + 1) % p.log_every == 0:
                    diag = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items() if k != "loss"}
                    diag["phase_dmt"] = float(dmt_opt is not None)
                if ctx.step(loss, samples=samples, **diag):
                    break
            if ctx.done:
                break
        if updater is not None and p.copy_decoder_to_readout:
            updater.copy_readout_from(teacher)
        self._diagnostics(model, ctx, diag_windows, "")  # logged after the last step: they reach the final record

    # --- DMT ------------------------------------------------------------------------------------------
    def _dmt_step(self, s, teacher, student, updater, opt, rnn_params, ctx, frac, start, gen, autocast):
        p = self.params
        span = max(1e-9, 1.0 - start)
        progress = min(1.0, max(0.0, (frac - start) / span))
        warm = min(1.0, progress / 0.01)
        _set_lr(opt, ctx.lr * p.dmt_lr_scale * max(1e-3, warm * 0.5 * (1 + math.cos(math.pi * progress))))
        batch = sample_dmt_batch(s, p.dmt_batch_size, p.Tc, p.dmt_rollout, p.dmt_k, p.dmt_zero_start_fraction, gen)
        with autocast:
            out = dmt_forward(teacher, student, batch, min(p.dmt_k, batch.x_in.shape[1]), w_dyn=p.dmt_w_dyn,
                              w_readout=p.dmt_w_readout, updater=updater, bptt_through_rollout=p.bptt_through_rollout,
                              readout_grad_to_transition=p.readout_grad_to_transition,
                              train_updater_readout=not p.copy_decoder_to_readout)
        loss = out["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        out = {f"dmt_{k}": v for k, v in out.items()}
        out["grad_norm_rnn"] = _grad_norm(rnn_params, p.clip_rnn)
        opt.step()
        out["lr"] = opt.param_groups[0]["lr"]
        return loss, out, batch.x_in.numel()

    # --- diagnostics --------------------------------------------------------------------------------
    def _diagnostic_windows(self, s: torch.Tensor, seed: int) -> tuple[torch.Tensor, int] | None:
        p = self.params
        if not p.diag_windows:
            return None
        Lp = s.shape[1]
        read_len = p.Tc if Lp >= p.Tc + 2 else max(1, Lp // 2)
        E = min(p.diag_eval_len, Lp - read_len)
        g = torch.Generator().manual_seed(seed + 7919)
        rows = torch.randint(0, s.shape[0], (p.diag_windows,), generator=g).to(s.device)
        starts = torch.randint(0, Lp - read_len - E + 1, (p.diag_windows,), generator=g).to(s.device)
        idx = starts[:, None] + torch.arange(read_len + E, device=s.device)
        return s[rows[:, None], idx], read_len

    def _diagnostics(self, model: RecurrentModel, ctx: Trainer, windows, prefix: str) -> None:
        if windows is None:
            return
        tokens, read_len = windows
        was = self.teacher.training, model.training
        self.teacher.eval()
        model.eval()
        try:
            diag = {
                "teacher_prefix_bpt": evaluate_with_teacher_prefix(self.teacher, self.student, tokens, read_len)["bpt"],
                "zero_state_bpt": zero_state_ce(model, tokens, read_len)["bpt"],
                "teacher_bpt": teacher_sliding_ce(self.teacher, tokens, read_len,
                                                  stride=max(1, (tokens.shape[1] - read_len) // 32))["bpt"],
            }
            if self.updater is not None:
                diag["teacher_prefix_bpt_transformer"] = evaluate_with_teacher_prefix(
                    self.teacher, self.updater, tokens, read_len)["bpt"]
        finally:
            self.teacher.train(was[0])
            model.train(was[1])
        ctx.log(**{prefix + k: v for k, v in diag.items()})
