"""Parallel-scan training of models that are linear in their state (LRU, minGRU, minLSTM, ...).

The model's ``forward`` solves its recurrence ``c_t = a_t * c_{t-1} + b_t`` with the parallel scan
(:func:`suite.ops.linear_scan`; its backward is a reverse scan), so full BPTT over a whole
sequence costs O(T) work at O(log T)-ish depth instead of T sequential steps. This method trains
over whole sequences (``seq_len: null``, from the zero state, ``batch_size`` sequences per update)
or over long chunks processed in time order with the detached final state carried to the next
chunk. Requires LINEAR_RECURRENCE (a nonlinear RNN has no scan form: use ``deer``).

Logged per update: ``tokens_per_s`` (positions x batch / wall time of forward + backward + update);
with ``drift_every: n`` also ``scan_drift`` every n updates, the max abs difference between the
scan states and the sequential step loop on the first sequence of the batch (first
``drift_length`` steps) -- a numerical-drift monitor (a scan in low precision drifts
from the sequential recurrence over long sequences).
"""

from __future__ import annotations

import torch
from pydantic import Field

from suite.contracts import LINEAR_RECURRENCE, Method, Params, RecurrentModel, SequenceData, TrainData, Trainer
from suite.training import GradientAverage, Timer, batches, chunk_bounds, scored_positions, trainable_parameters, update


class ScanTrainParams(Params):
    batch_size: int | None = Field(None, gt=0, description="sequences per update (None: all)")
    seq_len: int | None = Field(None, gt=0, description="chunk length with carried state (None: whole sequences)")
    shuffle: bool = Field(True, description="shuffle sequences each epoch")
    drift_every: int = Field(0, ge=0, description="log scan-vs-loop drift every n updates (0: never)")
    drift_length: int = Field(256, gt=0, description="steps compared by the drift monitor")


@torch.no_grad()
def scan_drift(model: RecurrentModel, x: torch.Tensor, h0: torch.Tensor | None = None) -> float:
    """max |forward (scan) states - step-loop states| on ``x`` (outputs compared through the readout)."""
    y_scan, h_scan = model(x, h0)
    hs = model.hidden_states(x, h0)
    y_loop = model.readout(hs, model.encode(x))
    return float(torch.maximum((y_scan - y_loop).abs().max(), (h_scan - hs[:, -1]).abs().max()))


class Scan(Method):
    name = "scan"
    summary = "full BPTT of a linear-recurrence model (LRU, minGRU, minLSTM) through the parallel scan in its forward"
    Params = ScanTrainParams
    search_space = {"batch_size": {"choice": [4, 16, 64]}}
    requires = frozenset({LINEAR_RECURRENCE})

    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        p, train = self.params, data.train
        opt = ctx.make_optimizer()
        bounds = chunk_bounds(train.length, p.seq_len)
        for _ in ctx.epoch_range():
            for idx in batches(train.batch, p.batch_size, p.shuffle, train.x.device):
                seqs, h = train.select(idx), None
                for a, b in bounds:
                    part = seqs.slice_time(a, b)
                    diag = {}
                    if p.drift_every and (ctx.steps + 1) % p.drift_every == 0:  # not timed
                        probe = part.select(slice(0, 1)).slice_time(0, min(p.drift_length, part.length))
                        diag["scan_drift"] = scan_drift(model, probe.x)
                    timer = Timer(part.x)
                    y_hat, h_last = model(part.x, h)
                    h = h_last.detach()
                    if update(ctx, opt, data.loss(y_hat, part.y, part.mask), samples=part.batch * part.length,
                              timer=timer, **diag):
                        return

    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[torch.Tensor]:
        """Gradient of the mean probe loss as trained here (whole sequences = full BPTT; chunks carry state)."""
        avg = GradientAverage(trainable_parameters(model))
        with torch.enable_grad():
            h = None
            for a, b in chunk_bounds(probe.length, self.params.seq_len):
                part = probe.slice_time(a, b)
                y_hat, h_last = model(part.x, h)
                avg.add(data.loss(y_hat, part.y, part.mask), scored_positions(part.mask, part.batch, part.length))
                h = h_last.detach()
        return avg.result()
