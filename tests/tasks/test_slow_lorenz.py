"""Slow-time-scale Lorenz-63 (``lorenz63-slow``) and the autoregressive DSR protocol (``inputs: previous``)."""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import pydantic
import pytest
import torch
from torch import Tensor, nn

from suite.contracts import STEP, IOSpec, NoParams, RecurrentModel
from suite.registry import load_registry
from suite.tasklib.dynamics import (
    PE_STRIDE,
    PE_WARMUP,
    closed_loop_prediction_error,
    closed_loop_run,
)

SMALL = dict(length=3000, test_length=1500, transient=200)


@lru_cache(maxsize=1)
def _registry():
    return load_registry()


def _cls():
    return _registry().get("tasks", "lorenz63-slow")


def _module():
    return _cls()  # the generator's functions are static methods of the registered class


def _task(**params):
    cls = _cls()
    return cls(cls.Params(**{**SMALL, **params}))


# --- the generated system ---------------------------------------------------------------------------

def test_loads_through_the_registry_with_documented_defaults():
    cls = load_registry().get("tasks", "lorenz63-slow")
    p = cls.Params()
    assert (p.length, p.test_length, p.seed, p.dt, p.period, p.rho0, p.amplitude, p.transient, p.noise) == (
        100_000, 100_000, 0, 0.01, 200.0, 32.0, 6.0, 1000, 0.0)
    assert p.inputs == "none" and cls.data_files(p) == []
    with pytest.raises(pydantic.ValidationError):
        cls.Params(omega=1.0)  # extra fields are forbidden
    assert "inputs" not in p.model_dump(mode="json")  # the default leaves earlier trial keys unchanged
    assert cls.Params(inputs="previous").model_dump(mode="json")["inputs"] == "previous"


def test_deterministic_given_the_seed_and_different_across_seeds():
    mod = _module()
    task = _task(seed=3)
    mod.generated.cache_clear()
    mod.raw.cache_clear()
    again = _task(seed=3)
    for split in ("train", "val", "test"):
        assert np.array_equal(again.trajectory(split), task.trajectory(split))
    other = _task(seed=4)
    assert not np.allclose(other.trajectory("train"), task.trajectory("train"))
    assert not np.allclose(other.trajectory("test"), task.trajectory("test"))
    # train and test of one seed start from different fast states and slow phases
    x0_train, x0_test, _ = mod.initial_conditions(3)
    assert not np.allclose(x0_train[:3], x0_test[:3]) and not np.isclose(x0_train[3], x0_test[3])


def test_slow_variables_stay_on_the_unit_circle_and_have_the_documented_period():
    mod = _module()
    dt, period, transient = 0.01, 200.0, 200
    train, test = mod.raw(3000, 1500, 0, dt, period, 32.0, 6.0, transient)
    assert train.shape == (3000, 5) and test.shape == (1500, 5)
    assert not train.flags.writeable and not test.flags.writeable
    for X in (train, test):
        assert np.abs(X[:, 3] ** 2 + X[:, 4] ** 2 - 1).max() < 1e-8
    # phase advance over a known number of steps: 2 pi k dt / period
    x0_train, _, _ = mod.initial_conditions(0)
    phase0 = np.arctan2(x0_train[4], x0_train[3])
    k = 2500
    phase = np.unwrap(np.arctan2(train[:, 4], train[:, 3]))
    assert abs((phase[k] - phase[0]) - 2 * np.pi * k * dt / period) < 1e-8
    # and u = cos(omega t + phase0) with t counted from the start of the integration (transient included)
    t = (transient + np.arange(3000)) * dt
    assert np.abs(train[:, 3] - np.cos(2 * np.pi / period * t + phase0)).max() < 1e-8
    # a short period: one full period (period / dt samples) later the slow state is back
    X = mod.integrate(x0_train, 2500, dt, 0, period=20.0)
    assert np.abs(X[2000:, 3:] - X[:500, 3:]).max() < 1e-8
    assert np.abs(X[1000:1500, 3:] + X[:500, 3:]).max() < 1e-8  # half a period: opposite point


def test_rho_stays_in_its_band_and_the_fast_part_follows_the_equations():
    mod = _module()
    x0, _, _ = mod.initial_conditions(1)
    rho0, amplitude = 32.0, 6.0
    X = mod.integrate(x0, 2500, 0.01, 100, period=20.0, rho0=rho0, amplitude=amplitude)
    rho = rho0 + amplitude * X[:, 3]
    assert rho.min() >= rho0 - amplitude - 1e-8 and rho.max() <= rho0 + amplitude + 1e-8
    assert rho.min() < rho0 - amplitude + 0.01 and rho.max() > rho0 + amplitude - 0.01  # a full period covers it
    # every sample is the previous one advanced by dt: a fine classical RK4 agrees
    omega = 2 * np.pi / 20.0

    def f(s):
        return mod.rhs(0.0, s, omega, rho0, amplitude)

    h = 0.01 / 100
    for i in (0, 1234, 2498):
        s = X[i].copy()
        for _ in range(100):
            k1 = f(s)
            k2 = f(s + h / 2 * k1)
            k3 = f(s + h / 2 * k2)
            k4 = f(s + h * k3)
            s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        assert np.abs(s - X[i + 1]).max() < 1e-7
    assert X[:, 2].min() > 0 and 20 < X[:, 2].mean() < 35  # on the (drifting) butterfly


def test_shapes_and_standardisation_with_the_training_statistics():
    task = _task(seed=2)
    n = task.split_lengths()
    assert n == {"train": 2700, "val": 300, "test": 1500}
    assert task.input == IOSpec("real", 0) and task.output == IOSpec("real", 5)
    train = task.split("train")
    assert train.x.shape == (1, 2700, 0) and train.y.shape == (1, 2700, 5)
    whole = np.concatenate([task.trajectory("train"), task.trajectory("val")])
    assert np.allclose(whole.mean(0), 0, atol=1e-12) and np.allclose(whole.std(0), 1, atol=1e-12)
    raw_train, raw_test = _module().raw(3000, 1500, 2, 0.01, 200.0, 32.0, 6.0, 200)
    mean, std = raw_train.mean(0), raw_train.std(0)
    assert np.allclose(task.trajectory("test"), (raw_test - mean) / std, atol=1e-12)
    noisy = _task(seed=2, noise=0.05)
    diff = np.concatenate([noisy.trajectory("train"), noisy.trajectory("val")]) - whole
    assert 0.04 < diff.std() < 0.06 and np.array_equal(noisy.trajectory("test"), task.trajectory("test"))
    mod = _module()
    train_arr, test_arr = mod.generated(3000, 1500, 2, 0.01, 200.0, 32.0, 6.0, 200, 0.0)
    assert not train_arr.flags.writeable and not test_arr.flags.writeable


# --- the autoregressive protocol ---------------------------------------------------------------------

def test_previous_inputs_split_is_the_shifted_trajectory():
    task = _task(seed=0, inputs="previous")
    assert task.input == IOSpec("real", 5) and task.output == IOSpec("real", 5)
    for split in ("train", "val", "test"):
        data = task.split(split)
        T = task.split_lengths()[split]
        assert data.x.shape == (1, T, 5) and data.y.shape == (1, T, 5)
        assert torch.equal(data.x[:, 1:], data.y[:, :-1])  # x[t] == y[t-1]
        assert torch.equal(data.x[:, 0], data.y[:, 0])  # the first input is X_0 itself
        assert np.array_equal(data.y[0].numpy(), task.trajectory(split).astype(np.float32))
    plain = _task(seed=0)
    assert torch.equal(plain.split("train").y, task.split("train").y)
    assert plain.split("train").x.shape == (1, 2700, 0)


class StepCountOracle(RecurrentModel):
    """Readout = the true value at the step count (X[k - 1] after k steps): replays X from the zero state."""

    name = "step-count-oracle"
    capabilities = frozenset({STEP})

    def __init__(self, X: np.ndarray) -> None:
        super().__init__(IOSpec("real", X.shape[1]), IOSpec("real", X.shape[1]), NoParams())
        self.register_buffer("X", torch.tensor(X, dtype=torch.float64))
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.state_size = 1

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        return h + 1

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return self.X[(h[..., 0].long() - 1).clamp(0, len(self.X) - 1)]


class NextValueOracle(RecurrentModel):
    """A perfect teacher-forcing fit of one trajectory: the identity on the first step from the zero state
    (target X_0 of input X_0), the next true value of the input afterwards. State: (step count, input)."""

    name = "next-value-oracle"
    capabilities = frozenset({STEP})

    def __init__(self, X: np.ndarray) -> None:
        super().__init__(IOSpec("real", X.shape[1]), IOSpec("real", X.shape[1]), NoParams())
        X = np.asarray(X, dtype=np.float64)
        self.register_buffer("X", torch.tensor(X))
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.index = {row.tobytes(): i for i, row in enumerate(X)}
        self.state_size = 1 + X.shape[1]

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        return torch.cat([h[:, :1] + 1, u], -1)

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        x = h[..., 1:]
        nxt = [min(self.index[row.tobytes()] + 1, len(self.X) - 1) for row in x.double().cpu().numpy()]
        out = self.X[torch.tensor(nxt, dtype=torch.long)]
        return torch.where(h[..., :1] == 1, x, out)


class LinearAR(RecurrentModel):
    """x_{t+1} = A x_t: state = the last input, readout = A h (exact for data of that linear system)."""

    name = "linear-ar"
    capabilities = frozenset({STEP})

    def __init__(self, A: np.ndarray) -> None:
        n = A.shape[0]
        super().__init__(IOSpec("real", n), IOSpec("real", n), NoParams())
        self.A = nn.Parameter(torch.tensor(A, dtype=torch.float64))
        self.state_size = n

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        return u

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return h @ self.A.T


class Persistence(LinearAR):
    """Outputs its input."""

    def __init__(self, n: int) -> None:
        super().__init__(np.eye(n))


class Counter(RecurrentModel):
    """Counts its steps from the zero state, outputs the count (and counts step calls and their batch)."""

    name = "counter"
    capabilities = frozenset({STEP})

    def __init__(self, n: int) -> None:
        super().__init__(IOSpec("real", n), IOSpec("real", n), NoParams())
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.state_size = 1
        self.calls: list[int] = []

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        self.calls.append(h.shape[0])
        return h + 1

    def readout(self, h: Tensor, u: Tensor | None = None) -> Tensor:
        return h.expand(*h.shape[:-1], self.output_spec.size)


class InputSum(Counter):
    """State = the sum of its inputs; readout = that sum (shows which observations a warm-up feeds)."""

    def step(self, h: Tensor, u: Tensor) -> Tensor:
        return h + u.sum(-1, keepdim=True)


def _linear_system(T: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta, r = 0.1, 0.999
    A = np.zeros((3, 3))
    A[:2, :2] = r * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    A[2, 2] = 0.995
    X = np.empty((T, 3))
    X[0] = rng.normal(size=3)
    for t in range(1, T):
        X[t] = A @ X[t - 1]
    return A, X


def test_free_run_of_exact_models_equals_the_data():
    A, X = _linear_system()
    Xt = torch.tensor(X)
    for model in (StepCountOracle(X), LinearAR(A), NextValueOracle(X)):
        gen = closed_loop_run(model, Xt[0], len(X))
        assert gen.shape == X.shape
        assert torch.allclose(gen, Xt, atol=1e-12, rtol=0), type(model).__name__
    assert closed_loop_run(LinearAR(A), Xt[0], 1).shape == (1, 3)
    pe = closed_loop_prediction_error(LinearAR(A), Xt)
    assert pe < 1e-24
    assert closed_loop_prediction_error(NextValueOracle(X), Xt, stride=1) < 1e-24


def test_oracle_scores_perfectly_through_the_task():
    task = _task(seed=1, inputs="previous")
    for split in ("val", "test"):
        X = task.trajectory(split)
        metrics = task.evaluate(NextValueOracle(X), split)
        assert set(metrics) == {"dstsp", "dh", "pe20"}
        assert abs(metrics["dstsp"]) < 1e-12 and metrics["dh"] < 1e-12 and metrics["pe20"] < 1e-20


def test_persistence_pe_by_hand():
    X = np.random.default_rng(0).normal(size=(103, 2))
    Xt = torch.tensor(X)
    n = 20
    for stride in (1, PE_STRIDE, 7):
        starts = np.arange(0, len(X) - n, stride)
        by_hand = float(np.mean((X[starts] - X[starts + n]) ** 2))
        assert closed_loop_prediction_error(Persistence(2), Xt, n=n, stride=stride) == pytest.approx(by_hand, rel=1e-12)
    starts = np.arange(0, len(X) - n, PE_STRIDE)  # the default: every 5th start point, t = 0, 5, 10, ...
    assert closed_loop_prediction_error(Persistence(2), Xt) == pytest.approx(
        float(np.mean((X[starts] - X[starts + n]) ** 2)), rel=1e-12)
    gen = closed_loop_run(Persistence(2), Xt[0], 50)
    assert torch.equal(gen, Xt[:1].expand(50, 2))  # persistence free run: X_0 forever


def test_warm_up_windows_per_start_point():
    # zero data, a step counter: the 20th prediction is the number of steps since the zero state,
    # min(t, w) + 2 warm-up steps (window X[max(0, t - w) : t + 1] and the duplicated first input) + 19
    T, n, w = 130, 20, PE_WARMUP
    zeros = torch.zeros(T, 1, dtype=torch.float64)
    starts = np.arange(0, T - n)
    expected = float(np.mean((np.minimum(starts, w) + 2 + n - 1) ** 2.0))
    assert closed_loop_prediction_error(Counter(1), zeros, n=n, stride=1) == pytest.approx(expected, rel=1e-12)
    # which observations: the sum of the inputs is X_s + X_s + X_{s+1} + ... + X_t (one-step prediction, n = 1)
    X = np.arange(1.0, T + 1)[:, None] ** 1.5
    for stride in (1, 3):
        starts = np.arange(0, T - 1, stride)
        sums = np.array([X[max(t - w, 0), 0] + X[max(t - w, 0): t + 1, 0].sum() for t in starts])
        by_hand = float(np.mean((sums - X[starts + 1, 0]) ** 2))
        pe = closed_loop_prediction_error(InputSum(1), torch.tensor(X), n=1, stride=stride)
        assert pe == pytest.approx(by_hand, rel=1e-12)


def test_protocol_is_vectorised_over_start_points():
    T, n, w = 2000, 20, PE_WARMUP
    counter = Counter(5)
    closed_loop_prediction_error(counter, torch.zeros(T, 5, dtype=torch.float64))
    n_starts = len(range(0, T - n, PE_STRIDE))
    assert counter.calls == [n_starts] * (w + 2 + n - 1)  # w + 21 batched steps, all start points at once
    # a real model through the whole evaluation of a 2000-step trajectory, well under 10 s; one intra-op
    # thread as a trial with cpu: 1 runs (suite/trial.py): batch-1 steps only lose time to thread wake-ups
    task = _task(seed=0, length=2500, test_length=2000, inputs="previous")
    lru = _registry().get("models", "lru")
    torch.manual_seed(0)
    model = lru(task.input, task.output, lru.Params(hidden_size=16))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        pe = closed_loop_prediction_error(model, torch.tensor(task.trajectory("test"), dtype=torch.float32))
        pe_elapsed = time.perf_counter() - start
        metrics = task.evaluate(model, "test")
        elapsed = time.perf_counter() - start - pe_elapsed
    finally:
        torch.set_num_threads(threads)
    assert set(metrics) == {"dstsp", "dh", "pe20"} and np.isfinite(list(metrics.values())).all()
    assert metrics["pe20"] == pytest.approx(pe, rel=1e-6)
    assert pe_elapsed < 2.0 and elapsed < 5.0, (pe_elapsed, elapsed)
    y_hat, _ = model(task.split("train").x)  # the teacher-forced training pass (scan) works on the layout
    assert y_hat.shape == task.split("train").y.shape
