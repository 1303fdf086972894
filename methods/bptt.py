"""Full backpropagation through time: every training sequence is one graph, start to end."""

from __future__ import annotations

import torch
from pydantic import Field

from suite.context import TrainContext
from suite.contracts import Method, Params, RecurrentModel, TrainData


class BPTTParams(Params):
    batch_size: int | None = Field(None, gt=0, description="sequences per update (None: all)")
    shuffle: bool = Field(True, description="shuffle sequences each epoch")


class BPTT(Method):
    name = "bptt"
    summary = "full BPTT over each whole training sequence from the zero state (the baseline)"
    Params = BPTTParams

    def train(self, model: RecurrentModel, data: TrainData, ctx: TrainContext) -> None:
        train, p = data.train, self.params
        opt = ctx.make_optimizer()
        batch = p.batch_size or train.batch
        for _ in ctx.epoch_range():
            order = torch.randperm(train.batch) if p.shuffle else torch.arange(train.batch)
            for start in range(0, train.batch, batch):
                part = train.select(order[start : start + batch].to(train.x.device))
                y_hat, _ = model(part.x)
                loss = data.loss(y_hat, part.y, part.mask)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                ctx.clip_gradients()
                opt.step()
                if ctx.step(loss, samples=part.batch * part.length):
                    return
