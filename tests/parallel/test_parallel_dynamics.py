"""DSR tasks: generated Lorenz-63, metric wiring with an oracle model, the data files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parallel_helpers import make_model, plugin
from torch import Tensor, nn

from suite.contracts import OBSERVATION_INVERSE, STEP, IOSpec, NoParams, RecurrentModel
from suite.tasklib.dynamics import free_run


def lorenz(**params):
    cls = plugin("tasks", "lorenz63")
    return cls(cls.Params(source="generated", **params))


class ReplayOracle(RecurrentModel):
    """A 'perfect model' of one trajectory: the state is (observation, time index); a step replays."""

    name = "replay-oracle"  # never registered: test modules are not plugin folders
    capabilities = frozenset({STEP, OBSERVATION_INVERSE})

    def __init__(self, X: np.ndarray) -> None:
        super().__init__(IOSpec("real", 0), IOSpec("real", X.shape[1]), NoParams())
        self.register_buffer("X", torch.tensor(X, dtype=torch.float64))
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.index = {row.tobytes(): i for i, row in enumerate(np.asarray(X, dtype=np.float64))}
        self.state_size = X.shape[1] + 1

    def observation_inverse(self, x: Tensor) -> Tensor:
        idx = [self.index[row.tobytes()] for row in x.double().cpu().numpy()]
        return torch.cat([x, torch.tensor(idx, dtype=x.dtype, device=x.device)[:, None]], -1)

    def forcing_signals(self, y: Tensor) -> tuple[Tensor, int]:
        return torch.cat([y, torch.zeros_like(y[..., :1])], -1), y.shape[-1]

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        i = (h[:, -1] + 1).clamp_max(len(self.X) - 1)
        return torch.cat([self.X[i.long()], i[:, None]], -1)

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return h[..., :-1]


def test_generated_lorenz63_length_and_determinism():
    task = lorenz(length=3000, test_length=1200, seed=3)
    n = task.split_lengths()
    assert n["train"] + n["val"] == 3000 and n["val"] == 300 and n["test"] == 1200
    train = task.split("train")
    assert train.x.shape == (1, 2700, 0) and train.y.shape == (1, 2700, 3)
    assert task.input.size == 0 and task.output.size == 3
    whole = np.concatenate([task.trajectory("train"), task.trajectory("val")])
    assert np.allclose(whole.mean(0), 0, atol=1e-12) and np.allclose(whole.std(0), 1, atol=1e-12)
    gen = plugin("tasks", "lorenz63")
    gen.generated.cache_clear()
    again = lorenz(length=3000, test_length=1200, seed=3)
    assert np.array_equal(again.trajectory("train"), task.trajectory("train"))
    assert np.array_equal(again.trajectory("test"), task.trajectory("test"))
    other = lorenz(length=3000, test_length=1200, seed=4)
    assert not np.allclose(other.trajectory("train"), task.trajectory("train"))
    noisy = lorenz(length=3000, test_length=1200, seed=3, noise=0.05)
    diff = noisy.trajectory("train") - task.trajectory("train")
    assert 0.04 < diff.std() < 0.06 and np.array_equal(noisy.trajectory("test"), task.trajectory("test"))


def test_generated_lorenz63_follows_the_equations():
    gen = plugin("tasks", "lorenz63")
    X = gen.integrate(np.array([1.0, 1.0, 25.0]), 2001, dt=0.01)
    # every sample is the previous one advanced by dt: check with a fine classical RK4
    f = lambda s: gen.rhs(0.0, s)  # noqa: E731
    h = 0.01 / 100
    for i in (0, 500, 1999):
        s = X[i].copy()
        for _ in range(100):
            k1 = f(s); k2 = f(s + h / 2 * k1); k3 = f(s + h / 2 * k2); k4 = f(s + h * k3)  # noqa: E702
            s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        assert np.abs(s - X[i + 1]).max() < 1e-7
    assert X[:, 2].min() > 0 and 20 < X[:, 2].mean() < 30  # on the butterfly


def test_oracle_model_scores_perfectly():
    task = lorenz(length=2000, test_length=2500, seed=1)
    for split in ("val", "test"):
        X = task.trajectory(split)
        metrics = task.evaluate(ReplayOracle(X), split)
        assert set(metrics) == {"dstsp", "dh", "pe20"}
        assert abs(metrics["dstsp"]) < 1e-12 and metrics["dh"] < 1e-12 and metrics["pe20"] < 1e-20


def test_metrics_rank_a_wrong_model_worse():
    task = lorenz(length=2000, test_length=2500, seed=1)
    good = task.evaluate(ReplayOracle(task.trajectory("test")), "test")
    torch.manual_seed(0)
    untrained = task.evaluate(make_model("shplrnn", 0, 3, hidden_dim=10).double(), "test")
    assert untrained["dstsp"] > good["dstsp"] + 0.5 and untrained["dh"] > 0.1 and untrained["pe20"] > 0.01


def test_eval_length_caps_the_free_run():
    task = lorenz(length=2000, test_length=2500, seed=1, eval_length=500)
    model = make_model("shplrnn", 0, 3, hidden_dim=10).double()
    X = task.trajectory("test")
    gen = free_run(model, torch.tensor(X[0]), 500)
    assert gen.shape == (500, 3) and torch.allclose(gen[0], torch.tensor(X[0]))
    assert np.isfinite(list(task.evaluate(model, "test").values())).all()


@pytest.mark.data
def test_files_and_eeg_test_split(real_data):
    for name, n in (("lorenz63", 3), ("lorenz96", 10), ("bursting-neuron", 3), ("ecg", 5)):
        cls = plugin("tasks", name)
        task = cls(cls.Params(), real_data)
        lengths = task.split_lengths()
        assert lengths == {"train": 90000, "val": 10000, "test": 100000} and task.output.size == n
    cls = plugin("tasks", "eeg")
    task = cls(cls.Params(), real_data)
    raw = np.load(real_data / "dynamics/durstewitz_icml2023/EEG_train.npy")
    lengths = task.split_lengths()
    assert sum(lengths.values()) == len(raw) == 9640 and lengths["test"] == 1928
    assert np.array_equal(task.trajectory("test"), raw[-1928:])  # carved from the tail
    assert np.array_equal(task.trajectory("val"), raw[-1928 - lengths["val"]: -1928])
