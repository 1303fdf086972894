"""Truncated BPTT over windows, with an optional burn-in (Schiller et al., ICLR 2026).

Windows of length ``window`` (N) are cut from the training sequences every ``stride`` steps.
*Stateless* (the paper): every window starts from the zero state, windows are shuffled. The first
``burn_in`` (m) outputs of a window are simulated but left out of the loss, which is normalised by
(N - m) x batch x outputs. ``burnin_grad: true`` (the paper's code) keeps the burn-in steps in the
graph; ``false`` runs them under no-grad and detaches the state. *Stateful*: each sequence is cut
into ``batch_size`` contiguous streams processed in time order, the detached final state of one
window starting the next (no shuffling). *stateful_phased* is the authors' stateful baseline
(``LSTM_Stateful``): every stride-1 window in order, ``batch_size`` windows per update, each window starting
from the detached state of the window N steps earlier (N phase-shifted streams; ``stride`` and ``shuffle``
do not apply, and N must be a multiple of ``batch_size``). ``burn_in: 0`` is plain TBPTT; a window at least as long
as the sequence is full BPTT. Windows run through the model's fused sequence ``forward``.
"""

from __future__ import annotations

from typing import Iterator, Literal

import torch
from pydantic import Field, model_validator

from suite.contracts import Method, Params, RecurrentModel, SequenceData, TrainData, Trainer
from suite.training import (
    GradientAverage,
    PhasedStatefulWindows,
    StatelessWindows,
    burn_in_loss,
    cut_streams,
    scored_positions,
    trainable_parameters,
    update,
)


class TBPTTParams(Params):
    window: int = Field(100, gt=0, description="window length N (truncation length)")
    stride: int | None = Field(None, gt=0, description="step between window starts (default: window)")
    burn_in: float = Field(0, ge=0, description="outputs left out of the loss: an integer m, or a fraction of N if < 1")
    burnin_grad: bool = Field(True, description="gradients flow through the burn-in steps (paper's code)")
    mode: Literal["stateless", "stateful", "stateful_phased"] = Field(
        "stateless", description="zero state per window; carried state over batch_size contiguous streams; or the "
        "authors' stateful baseline (every stride-1 window in order, batch_size per update, each continuing the "
        "window N steps before; window a multiple of batch_size)")
    batch_size: int = Field(32, gt=0, description="windows per update (stateful: parallel streams)")
    shuffle: bool = Field(True, description="shuffle windows each epoch (stateless only)")

    @model_validator(mode="after")
    def _burn_in_below_window(self) -> "TBPTTParams":
        if self.burn_in >= 1 and int(self.burn_in) != self.burn_in:
            raise ValueError("burn_in must be an integer number of steps, or a fraction below 1")
        if self.burn_in_steps >= self.window:
            raise ValueError(f"burn_in ({self.burn_in_steps}) must be smaller than window ({self.window})")
        if self.mode == "stateful_phased" and self.window % self.batch_size:
            raise ValueError(f"mode stateful_phased needs window ({self.window}) to be a multiple of batch_size "
                             f"({self.batch_size}), as the authors' LSTM_Stateful asserts: change one of them")
        return self

    @property
    def burn_in_steps(self) -> int:
        return int(round(self.burn_in * self.window)) if 0 < self.burn_in < 1 else int(self.burn_in)


class TBPTT(Method):
    name = "tbptt"
    summary = "truncated BPTT over windows (stateless or stateful) with a burn-in m left out of the loss"
    Params = TBPTTParams
    search_space = {"window": {"choice": [16, 32, 64, 128]}, "burn_in": {"uniform": [0.0, 0.5]},
                    "batch_size": {"choice": [16, 32, 64]}}

    # --- the window plan (used by train and probe_gradient alike) ---------------------------------
    def windows(self, seq: SequenceData) -> tuple[StatelessWindows, int]:
        """Stateless mode: every window of ``seq`` and the burn-in used."""
        p = self.params
        plan = StatelessWindows(seq, p.window, p.stride or p.window)
        return plan, min(p.burn_in_steps, plan.window - 1)

    def streams(self, seq: SequenceData) -> tuple[SequenceData, int, int]:
        """Stateful mode: ``seq`` cut into contiguous streams, the window and the burn-in used."""
        p = self.params
        streams = cut_streams(seq, min(p.batch_size, seq.length // p.window))
        window = min(p.window, streams.length)
        # a burn-in of a whole stream would leave no window to train on (and loop forever)
        return streams, window, min(p.burn_in_steps, window - 1)

    def phased(self, seq: SequenceData) -> tuple[PhasedStatefulWindows, int]:
        """Stateful_phased mode: the authors' window plan of ``seq`` and the burn-in used."""
        p = self.params
        plan = PhasedStatefulWindows(seq, p.window, p.batch_size)
        if len(plan) == 0:
            raise ValueError(f"tbptt mode stateful_phased: sequences of {seq.length} steps give "
                             f"{plan.starts} windows of {plan.window} steps, fewer than batch_size "
                             f"({p.batch_size}): lower batch_size or window")
        return plan, min(p.burn_in_steps, plan.window - 1)

    def phased_losses(self, model: RecurrentModel, data: TrainData, plan: PhasedStatefulWindows,
                      m: int) -> Iterator[tuple[SequenceData, torch.Tensor]]:
        """``(windows, loss)`` of every batch of ``plan`` in training order, each batch starting from the detached
        states its slot's previous batch left (zero states at the start of a pass: one pass per epoch)."""
        states: dict[tuple[int, int], torch.Tensor] = {}
        for part, slot in plan.iterate():
            loss, h_last = burn_in_loss(model, data, part, m, self.params.burnin_grad, states.get(slot))
            states[slot] = h_last.detach()
            yield part, loss

    @staticmethod
    def stream_windows(streams: SequenceData, window: int, m: int):
        """The stateful windows of ``streams`` in time order (a last window shorter than the burn-in is dropped)."""
        for start in range(0, streams.length, window):
            part = streams.slice_time(start, min(start + window, streams.length))
            if part.length <= m:
                return
            yield part

    # --- training ---------------------------------------------------------------------------------
    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        p = self.params
        opt = ctx.make_optimizer()
        if p.mode == "stateless":
            plan, m = self.windows(data.train)
            for _ in ctx.epoch_range():
                for part in plan.iterate(p.batch_size, p.shuffle):
                    loss, _ = burn_in_loss(model, data, part, m, p.burnin_grad)
                    if update(ctx, opt, loss, samples=part.batch * (part.length - m)):
                        return
            return
        if p.mode == "stateful_phased":
            phased, m = self.phased(data.train)
            for _ in ctx.epoch_range():
                for part, loss in self.phased_losses(model, data, phased, m):
                    if update(ctx, opt, loss, samples=part.batch * (part.length - m)):
                        return
            return
        streams, window, m = self.streams(data.train)
        for _ in ctx.epoch_range():
            h = None
            for part in self.stream_windows(streams, window, m):
                loss, h_last = burn_in_loss(model, data, part, m, p.burnin_grad, h)
                h = h_last.detach()
                if update(ctx, opt, loss, samples=part.batch * (part.length - m)):
                    return

    # --- gradient-fidelity hook (suite.training.gradient_fidelity) ----------------------------------------
    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[torch.Tensor]:
        """The gradient this method would use on ``probe``: its windows (with burn-in), averaged.

        Stateless: all windows of every probe sequence (in chunks of ``batch_size``, in order) from the
        zero state. Stateful: the probe cut into streams as in training, windows in time order with the
        detached state carried. Stateful_phased: the authors' batches in order, states carried per slot.
        Windows are weighted by their scored positions, so the result
        estimates the gradient of the mean loss; with a window covering the sequence it equals
        the full-BPTT gradient. Parameters and ``.grad`` are left untouched.
        """
        p = self.params
        avg = GradientAverage(trainable_parameters(model))

        def scored(part: SequenceData, m: int) -> float:
            return scored_positions(None if part.mask is None else part.mask[:, m:], part.batch, part.length - m)

        with torch.enable_grad():
            if p.mode == "stateless":
                plan, m = self.windows(probe)
                for part in plan.iterate(p.batch_size, shuffle=False):
                    loss, _ = burn_in_loss(model, data, part, m, p.burnin_grad)
                    avg.add(loss, scored(part, m))
            elif p.mode == "stateful_phased":
                phased, m = self.phased(probe)
                for part, loss in self.phased_losses(model, data, phased, m):
                    avg.add(loss, scored(part, m))
            else:
                streams, window, m = self.streams(probe)
                h = None
                for part in self.stream_windows(streams, window, m):
                    loss, h_last = burn_in_loss(model, data, part, m, p.burnin_grad, h)
                    h = h_last.detach()
                    avg.add(loss, scored(part, m))
        return avg.result()
