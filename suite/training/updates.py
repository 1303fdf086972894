"""One parameter update, with optional throughput timing: the loop body every method repeats."""

from __future__ import annotations

import time
from typing import Iterable

import torch
from torch import Tensor, nn

from suite.contracts import Trainer


class Timer:
    """Wall time of one update (CUDA synchronised): ``t = Timer(x)`` before the forward pass; ``update(...,
    timer=t)`` stops it before counting the update and logs ``tokens_per_s`` = samples / elapsed."""

    def __init__(self, like: Tensor | None = None) -> None:
        self.cuda = like is not None and like.is_cuda
        self.t0 = time.perf_counter()
        self.elapsed = 0.0

    def stop(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        self.elapsed = time.perf_counter() - self.t0
        return self.elapsed

    def rate(self, items: float) -> float:
        return items / max(self.elapsed, 1e-9)


def update(ctx: Trainer, opt: torch.optim.Optimizer, loss: Tensor, *, samples: int = 0,
           params: Iterable[nn.Parameter] | None = None, timer: Timer | None = None, objective: Tensor | None = None,
           clip_scale: float = 1.0, **diagnostics: float) -> bool:
    """``zero_grad``, ``backward``, clip (``clip_scale`` x the manifest's ``grad_clip``), ``step``, then ``ctx.step(loss,
    samples, **diagnostics)``: returns True when the budget is spent. ``objective`` (default: ``loss``) is what
    is differentiated, e.g. the loss plus a penalty; the loss is what is counted. With ``timer``,
    ``tokens_per_s`` is logged too (the update's samples per second, from the timer's start to the step)."""
    opt.zero_grad(set_to_none=True)
    (loss if objective is None else objective).backward()
    if clip_scale == 1.0:
        ctx.clip_gradients(params)
    else:
        ctx.clip_gradients(params, scale=clip_scale)
    opt.step()
    if timer is not None:
        timer.stop()
        diagnostics["tokens_per_s"] = timer.rate(samples)
    return ctx.step(loss, samples=samples, **diagnostics)
