"""Adaptive TBPTT (Aicher, Foti & Fox, UAI 2019): the truncation K follows a target relative bias.

Training is stateful TBPTT in the authors' 'original-buffer' style. Every training sequence is cut
into contiguous streams (``batch_size`` of them are processed side by side); a stream is covered
by segments whose *scored* parts ``[pos, pos + K)`` tile it, each segment starting ``K - 1`` steps
earlier (the buffer, inside the graph, not scored) from the detached state carried over from the
previous segment. Every scored output therefore backpropagates through at least ``K - 1`` earlier
steps (fewer only at the start of a stream). The loss is the task loss averaged over the scored
outputs; gradients are clipped through ``ctx.clip_gradients`` at the manifest's ``optimizer.grad_clip``, or,
with ``clip_per_output: true``, at ``grad_clip / K`` (the scored outputs of the segment) as the authors'
copy-task runs do (``normed=True``: ``tbptt.py`` divides the clip threshold by the normalisation).

Every ``reestimate_every`` updates, K is re-estimated (:mod:`suite.training.adaptive_truncation`): ``R``
times, ``estimate_batch`` random windows of ``burn + W`` training steps give the state gradients
``g_k = dL_s/dh_{s-1-k}`` of the last-step loss (lag 0 = the state entering the last step, as the
authors index it); the mean of their norms gives beta (OLS) and, with the cumulative norm (``cum_norm``:
``exact`` = ``||sum_{k<=K} mean_b g_k||``, the authors' copy-task rule, or ``approx`` = the sum of the mean
norms, their language-model rule), the relative bias curve deltahat(K); K_r is the smallest K with
deltahat(K) < delta (else W). The new K is
``clip(int(mean_r K_r), Kmin, Kmax)``; ``ctx.log(K=, beta=, delta_hat=)`` records it (beta and
deltahat(K) averaged over the repeats).

Learning rate: ``lr_scaling`` sets the optimizer's lr to ``base_lr * sqrt(K)`` ("sqrt", the
authors' default), ``base_lr * K`` ("linear", their Wikitext-2 runs) or ``base_lr`` ("none"),
where ``base_lr`` is the manifest's ``optimizer.lr``; it is re-applied whenever K changes. The
scaling compensates for the per-output normalisation of the loss and was tuned for plain SGD;
with Adam-type optimizers use "none".

When K grows at a re-estimate, the first segment after it has the previous buffer (K_old - 1):
the state it would need lies before the carried one. When K shrinks, the carried state is
advanced without gradient to where the shorter buffer starts.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from suite.contracts import Method, Params, RecurrentModel, SequenceData, TrainData, Trainer
from suite.training import GradientAverage, batches, buffered_segment, cut_streams, trainable_parameters, update
from suite.training.adaptive_truncation import estimate_truncation, gradients_by_lag


class AdaptiveTBPTTParams(Params):
    delta: float = Field(0.5, gt=0, description="target relative gradient bias delta")
    K0: int = Field(20, ge=1, description="initial truncation length")
    W: int = Field(100, ge=2, description="estimation window: lags 0..W-1 of the last-step loss")
    burn: int | None = Field(None, ge=0, description="steps run without gradient before the estimation window (default W//10)")
    tau: int | None = Field(None, ge=0, description="lag where the geometric tail starts (default W - W//10); < W")
    Kmin: int = Field(1, ge=1, description="smallest truncation length")
    Kmax: int | None = Field(None, ge=1, description="largest truncation length (default W)")
    R: int = Field(5, ge=1, description="estimation repeats per re-estimate (K = mean of the repeats' K)")
    reestimate_every: int = Field(40, ge=1, description="updates between re-estimates of K")
    estimate_batch: int | None = Field(None, ge=1, description="windows per estimation repeat (default batch_size)")
    lr_scaling: Literal["sqrt", "linear", "none"] = Field("sqrt", description="optimizer lr = base lr x sqrt(K), x K, or x 1")
    batch_size: int = Field(32, ge=1, description="parallel streams per update")
    cum_norm: Literal["exact", "approx"] = Field(
        "exact", description="cumulative gradient norm in the bias bound: exact ||sum g_k|| (authors' copy script) or approx sum ||g_k|| (their LM script)")
    clip_per_output: bool = Field(
        False, description="clip the gradient norm at grad_clip / K instead of grad_clip (the authors' copy-task runs)")
    adapt: bool = Field(True, description="re-estimate K; false keeps K = K0 (the paper's fixed-K baselines, same training)")

    @model_validator(mode="after")
    def _consistent(self) -> "AdaptiveTBPTTParams":
        if self.tau is not None and self.tau >= self.W:
            raise ValueError(f"tau ({self.tau}) must be smaller than W ({self.W})")
        if self.Kmin > self.K_max:
            raise ValueError(f"Kmin ({self.Kmin}) exceeds Kmax ({self.K_max})")
        return self

    @property
    def K_max(self) -> int:
        return self.W if self.Kmax is None else self.Kmax


class AdaptiveTBPTT(Method):
    name = "adaptive_tbptt"
    summary = "stateful TBPTT(K) with a K-1 buffer; K re-estimated from gradient-norm decay to meet a relative bias delta"
    Params = AdaptiveTBPTTParams
    search_space = {"delta": {"loguniform": [0.05, 0.9]}, "K0": {"choice": [5, 10, 20, 40]},
                    "batch_size": {"choice": [16, 32, 64]}}

    @staticmethod
    def lr_factor(K: int, scaling: str) -> float:
        """The factor applied to the base learning rate at truncation ``K``."""
        if scaling == "sqrt":
            return math.sqrt(K)
        if scaling == "linear":
            return float(K)
        return 1.0

    def __init__(self, params: AdaptiveTBPTTParams) -> None:
        super().__init__(params)
        self.K = min(max(params.K0, params.Kmin), params.K_max)
        self.history: list[dict[str, float]] = []  #: one entry per re-estimate

    # --- configuration --------------------------------------------------------------------------
    def estimation_geometry(self, length: int) -> tuple[int, int, int]:
        """``(burn, W, tau)`` used on sequences of ``length`` steps (shrunk if they are too short)."""
        p = self.params
        burn = p.W // 10 if p.burn is None else p.burn
        W = p.W
        if burn + W > length:
            burn = min(burn, max(0, length - 2))
            W = length - burn
            if W < 2:
                raise ValueError(f"training sequences of length {length} are too short for adaptive TBPTT")
        tau = (W - W // 10) if p.tau is None else min(p.tau, W - 1)
        return burn, W, tau

    def _streams(self, train: SequenceData) -> SequenceData:
        """Each sequence cut into contiguous streams, at least ``batch_size`` in all when they are long enough."""
        p = self.params
        return cut_streams(train, min(math.ceil(p.batch_size / train.batch), train.length // p.K_max))

    def _set_lr(self, opt: torch.optim.Optimizer, base_lr: float) -> None:
        lr = base_lr * self.lr_factor(self.K, self.params.lr_scaling)
        for group in opt.param_groups:
            group["lr"] = lr

    # --- training -------------------------------------------------------------------------------
    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        p = self.params
        streams = self._streams(data.train)
        geometry = self.estimation_geometry(data.train.length)
        opt = ctx.make_optimizer()
        self._set_lr(opt, ctx.lr)
        ctx.log(K=self.K)
        updates = 0
        for _ in ctx.epoch_range():
            for idx in batches(streams.batch, p.batch_size, True, streams.x.device):
                part = streams.select(idx)
                h, h_idx, pos = None, -1, 0
                while pos < part.length:
                    loss, h_c, end, _ = buffered_segment(model, data, part, h, h_idx, pos, self.K)
                    clip_scale = 1.0 / (end - pos) if p.clip_per_output else 1.0  # 1/K (shorter at a stream's end)
                    h, h_idx, samples, pos = h_c.detach(), pos, part.batch * (end - pos), end
                    updates += 1
                    if update(ctx, opt, loss, samples=samples, clip_scale=clip_scale):
                        return
                    if p.adapt and updates % p.reestimate_every == 0:
                        self.reestimate(model, data, ctx, geometry)
                        self._set_lr(opt, ctx.lr)

    def reestimate(self, model: RecurrentModel, data: TrainData, ctx: Trainer | None = None,
                   geometry: tuple[int, int, int] | None = None) -> dict[str, float]:
        """Re-estimate K from ``R`` batches of random training windows; sets and returns it."""
        p, train = self.params, data.train
        burn, W, tau = geometry or self.estimation_geometry(train.length)
        n = p.estimate_batch or p.batch_size
        device = train.x.device
        offsets = torch.arange(burn + W)
        Ks, betas, curves = [], [], []
        for _ in range(p.R):
            seq = torch.randint(train.batch, (n,))
            start = torch.randint(train.length - burn - W + 1, (n,))
            rows, cols = seq[:, None].to(device), (start[:, None] + offsets).to(device)
            mask = None if train.mask is None else train.mask[rows, cols]
            grads = gradients_by_lag(model, train.x[rows, cols], train.y[rows, cols], data.loss, burn, W, mask)
            est = estimate_truncation(grads, p.delta, tau, K_max=p.K_max, cum_norm=p.cum_norm)
            Ks.append(est["K"])
            betas.append(est["beta"])
            curves.append(est["delta_hat"])
        self.K = min(max(int(sum(Ks) / len(Ks)), p.Kmin), p.K_max)
        delta_hat = float(torch.stack(curves)[:, self.K].mean())
        record = {"K": float(self.K), "beta": float(sum(betas) / len(betas)), "delta_hat": delta_hat}
        self.history.append(record)
        if ctx is not None:
            ctx.log(**record)
        return record

    # --- gradient-fidelity hook (suite.training.gradient_fidelity) ----------------------------------------
    def probe_gradient(self, model: RecurrentModel, data: TrainData, probe: SequenceData) -> list[torch.Tensor]:
        """The gradient this method would use on ``probe`` at the current K: every probe sequence
        is one stream covered by buffered segments (state carried, detached), and the segments'
        gradients are averaged with weights = scored positions. With K >= T it is full BPTT."""
        avg = GradientAverage(trainable_parameters(model))
        with torch.enable_grad():
            h, h_idx, pos = None, -1, 0
            while pos < probe.length:
                loss, h_c, end, n = buffered_segment(model, data, probe, h, h_idx, pos, self.K)
                avg.add(loss, n)
                h, h_idx, pos = h_c.detach(), pos, end
        return avg.result()
