"""The fast paths of the training loop give the numbers of their plain versions: window gathers, the fused
models' zero start, the one-output loss."""

from __future__ import annotations

import pytest
import torch

from suite.contracts import IOSpec, SequenceData
from suite.registry import load_registry
from suite.training.windows import StatelessWindows


def _by_hand(seq: SequenceData, plan: StatelessWindows, sel: torch.Tensor) -> list[torch.Tensor | None]:
    """The oracle: each window cut out with plain slices."""
    out = []
    for t in (seq.x, seq.y, seq.mask):
        if t is None:
            out.append(None)
            continue
        out.append(torch.stack([t[int(r), int(s): int(s) + plan.window]
                                for r, s in zip(plan.seq_idx[sel], plan.start_idx[sel])]))
    return out


@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("window,stride", [(7, 1), (7, 3), (50, 4), (64, 1)])
def test_take_equals_sliced_windows(tokens: bool, window: int, stride: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 9, (3, 50), generator=g) if tokens else torch.randn(3, 50, 2, generator=g)
    y = torch.randint(0, 9, (3, 50), generator=g) if tokens else torch.randn(3, 50, 1, generator=g)
    mask = torch.rand(3, 50, generator=g) > 0.3
    seq = SequenceData(x, y, mask)
    plan = StatelessWindows(seq, window, stride)
    assert int(plan.start_idx.max()) == 50 - plan.window  # the last window is aligned to the end
    sel = torch.randperm(len(plan), generator=g)[:11]
    part = plan.take(sel)
    for got, want in zip((part.x, part.y, part.mask), _by_hand(seq, plan, sel)):
        assert got.shape == want.shape
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_fused_model_zero_start_equals_initial_state(name: str) -> None:
    cls = load_registry().get("models", name)
    torch.manual_seed(0)
    model = cls(IOSpec("real", 2), IOSpec("real", 1), cls.Params(hidden_size=5, num_layers=2)).double()
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    y0, h0 = model(x)
    y1, h1 = model(x, model.initial_state(4))
    assert torch.equal(y0, y1) and torch.equal(h0, h1)


def test_fused_model_subclass_start_state_is_used() -> None:
    cls = load_registry().get("models", "gru")

    class OnesStart(cls):  # type: ignore[misc, valid-type]
        def initial_state(self, batch, device=None, dtype=None):
            return torch.ones(batch, self.state_size, dtype=dtype or torch.float64)

    torch.manual_seed(0)
    model = OnesStart(IOSpec("real", 2), IOSpec("real", 1), cls.Params(hidden_size=5)).double()
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    assert torch.equal(model(x)[0], model(x, torch.ones(4, 5, dtype=torch.float64))[0])
    assert not torch.equal(model(x)[0], model(x, torch.zeros(4, 5, dtype=torch.float64))[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_sequence_loss_equals_mean_of_channel_means(channels: int) -> None:
    from suite.contracts import sequence_loss

    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 20, channels, generator=g, requires_grad=True)
    b = torch.randn(6, 20, channels, generator=g)
    mask = torch.rand(6, 20, generator=g) > 0.4
    for m in (None, mask):
        per_pos = (a - b).pow(2).mean(dim=-1)
        want = per_pos.mean() if m is None else (per_pos * m.float()).sum() / m.float().sum()
        got = sequence_loss(IOSpec("real", channels), a, b, m)
        assert torch.equal(got, want)
        assert torch.equal(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, a)[0])
