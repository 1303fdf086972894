"""Full backpropagation through time: every training sequence is one graph, start to end."""

from __future__ import annotations

from pydantic import Field

from suite.contracts import Method, Params, RecurrentModel, TrainData, Trainer
from suite.training import batches, update


class BPTTParams(Params):
    batch_size: int | None = Field(None, gt=0, description="sequences per update (None: all)")
    shuffle: bool = Field(True, description="shuffle sequences each epoch")


class BPTT(Method):
    name = "bptt"
    summary = "full BPTT over each whole training sequence from the zero state (the baseline)"
    Params = BPTTParams
    search_space = {"batch_size": {"choice": [4, 16, 64]}}

    def train(self, model: RecurrentModel, data: TrainData, ctx: Trainer) -> None:
        train, p = data.train, self.params
        opt = ctx.make_optimizer()
        for _ in ctx.epoch_range():
            for idx in batches(train.batch, p.batch_size, p.shuffle, train.x.device):
                part = train.select(idx)
                y_hat, _ = model(part.x)
                if update(ctx, opt, data.loss(y_hat, part.y, part.mask), samples=part.batch * part.length):
                    return
