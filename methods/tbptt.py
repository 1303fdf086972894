"""Truncated BPTT over windows, with an optional burn-in (Schiller et al., ICLR 2026).

Windows of length ``window`` (N) are cut from the training sequences every ``stride`` steps.
*Stateless* (the paper): every window starts from the zero state, windows are shuffled. The first
``burn_in`` (m) outputs of a window are simulated but left out of the loss, which is normalised by
(N - m) x batch x outputs. ``burnin_grad: true`` (the paper's code) keeps the burn-in steps in the
graph; ``false`` runs them under no-grad and detaches the state. *Stateful*: each sequence is cut
into ``batch_size`` contiguous streams processed in time order, the detached final state of one
window starting the next (no shuffling). ``burn_in: 0`` is plain TBPTT; a window at least as long
as the sequence is full BPTT. Windows run through the model's fused sequence ``forward``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from suite.context import TrainContext
from suite.contracts import Method, Params, RecurrentModel, SequenceData, TrainData


class TBPTTParams(Params):
    window: int = Field(100, gt=0, description="window length N (truncation length)")
    stride: int | None = Field(None, gt=0, description="step between window starts (default: window)")
    burn_in: float = Field(0, ge=0, description="outputs left out of the loss: an integer m, or a fraction of N if < 1")
    burnin_grad: bool = Field(True, description="gradients flow through the burn-in steps (paper's code)")
    mode: Literal["stateless", "stateful"] = Field("stateless", description="zero state per window, or carried state")
    batch_size: int = Field(32, gt=0, description="windows per update (stateful: parallel streams)")
    shuffle: bool = Field(True, description="shuffle windows each epoch (stateless only)")

    @model_validator(mode="after")
    def _burn_in_below_window(self) -> "TBPTTParams":
        if self.burn_in >= 1 and int(self.burn_in) != self.burn_in:
            raise ValueError("burn_in must be an integer number of steps, or a fraction below 1")
        if self.burn_in_steps >= self.window:
            raise ValueError(f"burn_in ({self.burn_in_steps}) must be smaller than window ({self.window})")
        return self

    @property
    def burn_in_steps(self) -> int:
        return int(round(self.burn_in * self.window)) if 0 < self.burn_in < 1 else int(self.burn_in)


def window_starts(length: int, window: int, stride: int) -> torch.Tensor:
    """Start indices covering the sequence; a last window is aligned to the end if needed."""
    if window >= length:
        return torch.zeros(1, dtype=torch.long)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return torch.tensor(starts, dtype=torch.long)


def burn_in_loss(model: RecurrentModel, data: TrainData, part: SequenceData, m: int, grad: bool,
                 h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss over outputs m.. of a batch of windows, and the final state (not detached)."""
    if m > 0 and not grad:
        with torch.no_grad():
            _, h = model(part.x[:, :m], h0)
        y_hat, h_last = model(part.x[:, m:], h.detach())
        rest = part.slice_time(m, part.length)
        return data.loss(y_hat, rest.y, rest.mask), h_last
    y_hat, h_last = model(part.x, h0)
    mask = None if part.mask is None else part.mask[:, m:]
    return data.loss(y_hat[:, m:], part.y[:, m:], mask), h_last


class TBPTT(Method):
    name = "tbptt"
    summary = "truncated BPTT over windows (stateless or stateful) with a burn-in m left out of the loss"
    Params = TBPTTParams

    def train(self, model: RecurrentModel, data: TrainData, ctx: TrainContext) -> None:
        if self.params.mode == "stateful":
            self._train_stateful(model, data, ctx)
        else:
            self._train_stateless(model, data, ctx)

    def _train_stateless(self, model: RecurrentModel, data: TrainData, ctx: TrainContext) -> None:
        p, train = self.params, data.train
        window = min(p.window, train.length)
        m = min(p.burn_in_steps, window - 1)
        starts = window_starts(train.length, window, p.stride or p.window)
        # every (sequence, start) pair is one window
        seq_idx = torch.arange(train.batch).repeat_interleave(len(starts))
        start_idx = starts.repeat(train.batch)
        offsets = torch.arange(window)
        opt = ctx.make_optimizer()
        device = train.x.device
        for _ in ctx.epoch_range():
            order = torch.randperm(len(seq_idx)) if p.shuffle else torch.arange(len(seq_idx))
            for b in range(0, len(order), p.batch_size):
                sel = order[b : b + p.batch_size]
                rows = seq_idx[sel].to(device)[:, None]
                cols = (start_idx[sel][:, None] + offsets).to(device)
                part = SequenceData(train.x[rows, cols], train.y[rows, cols],
                                    None if train.mask is None else train.mask[rows, cols])
                loss, _ = burn_in_loss(model, data, part, m, p.burnin_grad)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                ctx.clip_gradients()
                opt.step()
                if ctx.step(loss, samples=part.batch * (window - m)):
                    return

    def _stream_layout(self, seq: SequenceData) -> tuple[SequenceData, int, int]:
        """``seq`` cut into contiguous streams (stateful mode), the window and the burn-in used."""
        p = self.params
        streams = max(1, min(p.batch_size, seq.length // p.window))
        span = seq.length // streams
        # [B * streams, span]: contiguous pieces of every sequence, processed side by side
        cut = seq.slice_time(0, streams * span)
        x = cut.x.reshape(seq.batch * streams, span, *cut.x.shape[2:])
        y = cut.y.reshape(seq.batch * streams, span, *cut.y.shape[2:])
        mask = None if cut.mask is None else cut.mask.reshape(seq.batch * streams, span)
        window = min(p.window, span)
        # a burn-in of a whole stream would leave no window to train on (and loop forever)
        return SequenceData(x, y, mask), window, min(p.burn_in_steps, window - 1)

    def _train_stateful(self, model: RecurrentModel, data: TrainData, ctx: TrainContext) -> None:
        p = self.params
        stream_data, window, m = self._stream_layout(data.train)
        span = stream_data.length
        opt = ctx.make_optimizer()
        for _ in ctx.epoch_range():
            h = None
            for start in range(0, span, window):
                part = stream_data.slice_time(start, min(start + window, span))
                if part.length <= m:
                    break
                loss, h_last = burn_in_loss(model, data, part, m, p.burnin_grad, h)
                h = h_last.detach()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                ctx.clip_gradients()
                opt.step()
                if ctx.step(loss, samples=part.batch * (part.length - m)):
                    return

    # --- gradient-fidelity hook (suite.gradient_fidelity) ----------------------------------------
    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[torch.Tensor]:
        """The gradient this method would use on ``probe``: its windows (with burn-in), averaged.

        Stateless: all windows of every probe sequence (in chunks of ``batch_size``) from the zero
        state. Stateful: the probe cut into streams as in training, windows in time order with the
        detached state carried. Windows are weighted by their scored positions, so the result
        estimates the gradient of the mean loss; with a window covering the sequence it equals
        the full-BPTT gradient. Parameters and ``.grad`` are left untouched.
        """
        from suite.gradient_fidelity import GradientAverage, scored_positions, trainable_parameters

        p = self.params
        avg = GradientAverage(trainable_parameters(model))
        with torch.enable_grad():
            if p.mode == "stateful":
                streams, window, m = self._stream_layout(probe)
                h = None
                for start in range(0, streams.length, window):
                    part = streams.slice_time(start, min(start + window, streams.length))
                    if part.length <= m:
                        break
                    loss, h_last = burn_in_loss(model, data, part, m, p.burnin_grad, h)
                    h = h_last.detach()
                    avg.add(loss, scored_positions(None if part.mask is None else part.mask[:, m:], part.batch, part.length - m))
            else:
                window = min(p.window, probe.length)
                m = min(p.burn_in_steps, window - 1)
                starts = window_starts(probe.length, window, p.stride or p.window)
                seq_idx = torch.arange(probe.batch).repeat_interleave(len(starts))
                start_idx = starts.repeat(probe.batch)
                offsets = torch.arange(window)
                device = probe.x.device
                for b in range(0, len(seq_idx), p.batch_size):
                    rows = seq_idx[b : b + p.batch_size].to(device)[:, None]
                    cols = (start_idx[b : b + p.batch_size][:, None] + offsets).to(device)
                    part = SequenceData(probe.x[rows, cols], probe.y[rows, cols],
                                        None if probe.mask is None else probe.mask[rows, cols])
                    loss, _ = burn_in_loss(model, data, part, m, p.burnin_grad)
                    avg.add(loss, scored_positions(None if part.mask is None else part.mask[:, m:], part.batch, window - m))
        return avg.result()
