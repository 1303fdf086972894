"""Dynamical systems reconstruction tasks (protocol: :mod:`suite.tasklib.dynamics`).

==================  ===========================================  ========  ==============================
task                files (data directory ``dynamics/...``)      shape     notes
==================  ===========================================  ========  ==============================
lorenz63            durstewitz_icml2023/lorenz63_on0.05_train    100000x3  noisy train (5 % observation
                    durstewitz_icml2023/lorenz63_test            100000x3  noise), clean test; or generated
lorenz96            durstewitz_dendplrnn/lorenz96_{train,test}   100000x10 N >= 6: GMM D_stsp
bursting-neuron     durstewitz_dendplrnn/burstingneuron_*        100000x3
ecg                 durstewitz_icml2023/ECG_pecuzal_5d_*         100000x5  5-d delay embedding
eeg                 durstewitz_icml2023/EEG_train                9640x64   see below
lorenz63-slow       none (generated)                             100000x5  Lorenz-63, rho driven by a slow
                                                                           oscillator (period 20000 steps)
==================  ===========================================  ========  ==============================

All files are standardised trajectories, one ``T x N`` array per file, used as shipped. The
validation split is a tail of the training trajectory (``val_fraction``, default 10 %), held out
from training.

**EEG:** the published ``EEG_train.npy`` and ``EEG_test.npy`` are byte-identical (same SHA-256),
so testing on the "test" file would test on the training data. This task therefore reads only the
training file and carves the test split from its tail (``test_fraction``, default 20 %, i.e. the
last 1928 steps); validation is the tail of what remains.

**Generated Lorenz-63** (``lorenz63`` with ``source: generated``): the published equations
dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z with sigma = 10, rho = 28,
beta = 8/3, integrated with ``scipy.integrate.solve_ivp`` (DOP853, rtol = atol = 1e-10) and sampled
every ``dt`` = 0.01 time units. The initial condition is drawn from ``seed`` and a transient of
``transient`` steps is discarded; the test trajectory is a separate run from a second initial
condition of the same seed. Both are standardised with the training mean and standard deviation;
``noise`` adds Gaussian observation noise (in units of the standardised signal) to the training
trajectory only, like the ``on0.05`` file. Any length up to 1e6 works (about 4 s per 1e5 steps on
one CPU core; results are cached per process).

**Slow Lorenz-63** (``lorenz63-slow``, generated, ``data_files()`` is empty): a documented slow time
scale for the long-trajectory claim of GTF-DEER (training on T > 1e4 helps when the data has long
time scales). Lorenz-63 (sigma = 10, beta = 8/3) whose rho is driven by a slow harmonic oscillator::

    dx/dt = sigma (y - x),  dy/dt = x (rho(t) - z) - y,  dz/dt = x y - beta z,
    du/dt = -omega v,       dv/dt = omega u,             rho(t) = rho0 + amplitude * u(t),

``omega = 2 pi / period``. ``(u, v)`` starts on the unit circle at a phase drawn from ``seed`` and stays
there (``u^2 + v^2`` is conserved), so ``u = cos(omega t + phase)``. Defaults: ``rho0`` = 32,
``amplitude`` = 6 (rho in [26, 38]: above the onset of chaos near rho = 24.74 and far below the
first periodic window near rho = 99.5, so the fast part is chaotic throughout), ``period`` = 200 time
units, ``dt`` = 0.01, so one slow period is 20 000 samples; ``length`` = ``test_length`` = 100 000
(5 periods each). The system is autonomous and 5-dimensional and **all five variables (x, y, z, u,
v) are observed**: the slow phase must be in the data for a DSR model (an autonomous map of the
observed state) to be able to reconstruct it; with (x, y, z) alone the observed dynamics would be
non-autonomous. The slow oscillation makes the attractor's statistics drift over 2e4 steps (its size
and the mean of z, from about 22 at rho = 26 to 33 at rho = 38), a time scale that training windows
of 200 or 1000 steps cannot see: within a window the phase advances by 2 pi / 100 or 2 pi / 20 and
rho changes by at most 0.4 or 1.9, so short windows constrain the slow rotation rate and the
rho-dependence of the fast flow only weakly, while a free run of the 1e5-step test trajectory
exposes errors in both.

Integration as for the generated Lorenz-63 (DOP853, rtol = atol = 1e-10, chunked, ``transient``
steps discarded, during which the slow phase keeps advancing; about as fast as the generated Lorenz-63,
cached per process). Train and test are separate runs from
separate initial conditions of the same ``seed`` (fast state ``[0, 0, 25] + U(-10, 10)^3`` and slow
phase ``U(0, 2 pi)`` each), both standardised with the training mean and standard deviation of all
five variables (``u``, ``v`` over 5 periods: mean about 0, std about 1/sqrt 2; a ``length`` below one
period gives skewed statistics). ``noise`` adds Gaussian observation noise in standardised units to
the training trajectory only. To vary the amount of training data (T = 1e3 ... 1e5) use
``train_length``: the standardisation, the validation tail (the last 10 %, half a period) and the
test set then stay the same. :func:`raw_lorenz63_slow` gives the unstandardised trajectories. The
DSR evaluation applies unchanged (N = 5 < 6: binned D_stsp); with ``inputs: previous`` (see
:mod:`suite.tasklib.dynamics`) models without observation inversion (the class-1 SSMs ``lru``,
``mingru``, ``s6``) are trained and evaluated autoregressively.

Sources: Hess, Monfared, Brenner, Durstewitz, "Generalized Teacher Forcing for Learning Chaotic
Dynamics", ICML 2023 (repository DurstewitzLab/GTF-shPLRNN, GPL-3.0) and Brenner et al., "Tractable
Dendritic RNNs for Reconstructing Nonlinear Dynamical Systems", ICML 2022 (DurstewitzLab/dendPLRNN,
GPL-3.0). Download URLs point at those repositories at fixed commits; every file is verified
against its SHA-256.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from suite.datafiles import DataFile, resolve
from suite.tasklib.dynamics import DynamicsParams, DynamicsTask

_GTF_RAW = "https://raw.githubusercontent.com/DurstewitzLab/GTF-shPLRNN/63ac00d84f237d5ecf2f85d8447a198261aff0c0/ICML2023_datasets/"
_DEND_RAW = "https://raw.githubusercontent.com/DurstewitzLab/dendPLRNN/3657dec38052bfa8365c25bfc2eef8cfb1e0b00b/BPTT_TF/Experiments/"
_DEND_RAW_OLD = "https://raw.githubusercontent.com/DurstewitzLab/dendPLRNN/d5ff851b28fd8ce43fe9dc5a86fe88c67dc4500b/BPTT_TF/Experiments/"
_GTF_SOURCE = ("Hess, Monfared, Brenner, Durstewitz, 'Generalized Teacher Forcing for Learning Chaotic Dynamics', "
               "ICML 2023; repository DurstewitzLab/GTF-shPLRNN (GPL-3.0)")
_DEND_SOURCE = ("Brenner, Hess, Mikhaeil, Bereska, Monfared, Kuo, Durstewitz, 'Tractable Dendritic RNNs for "
                "Reconstructing Nonlinear Dynamical Systems', ICML 2022; repository DurstewitzLab/dendPLRNN (GPL-3.0)")


def _file(folder: str, name: str, sha256: str, url: str | None, source: str) -> DataFile:
    return DataFile(path=f"dynamics/{folder}/{name}", sha256=sha256, url=url, source=source)


LORENZ63_TRAIN = _file("durstewitz_icml2023", "lorenz63_on0.05_train.npy",
                       "2246dfc44bf3a02090cdb5264dd836c18143e5bac4297807f4c62e153a39c1eb",
                       _GTF_RAW + "Lorenz63/lorenz63_on0.05_train.npy", _GTF_SOURCE)
LORENZ63_TEST = _file("durstewitz_icml2023", "lorenz63_test.npy",
                      "21be3a05a58724c4c1bbdf419ac644c45e6a9fbbf4093108a70fd80f93d7b7e3",
                      _GTF_RAW + "Lorenz63/lorenz63_test.npy", _GTF_SOURCE)
ECG_TRAIN = _file("durstewitz_icml2023", "ECG_pecuzal_5d_train.npy",
                  "b79deb8b054486360233bb4cefdb154dc5f6b0a55b1a713cd76378606d936185",
                  _GTF_RAW + "ECG/ECG_pecuzal_5d_train.npy", _GTF_SOURCE)
ECG_TEST = _file("durstewitz_icml2023", "ECG_pecuzal_5d_test.npy",
                 "7c17fe9b9e90d0610f817a53e73ec8389b30763ce36985cfcadc1459dd89c654",
                 _GTF_RAW + "ECG/ECG_pecuzal_5d_test.npy", _GTF_SOURCE)
EEG_TRAIN = _file("durstewitz_icml2023", "EEG_train.npy",
                  "7cc56e3b648ce492e1ac3d4284c46ccd1092e4abbc4c45f020b8c4a0b2a994bf",
                  _DEND_RAW_OLD + "Table1/EEG/data/EEG_train.npy",
                  _GTF_SOURCE + " (EEG data as distributed with the ICML 2023 data sets; also in DurstewitzLab/dendPLRNN)")
LORENZ96_TRAIN = _file("durstewitz_dendplrnn", "lorenz96_train.npy",
                       "b147f3a5cf6256dc6b7243c15ed950d40f349506e4246362b76588305f6e4d21",
                       _DEND_RAW + "TableS2/Lorenz96/data/lorenz96_train.npy", _DEND_SOURCE)
LORENZ96_TEST = _file("durstewitz_dendplrnn", "lorenz96_test.npy",
                      "5528c302ea212a4b3b57425dd22bd6c2657d139b3714eabd1afe08482fc3291d",
                      _DEND_RAW + "TableS2/Lorenz96/data/lorenz96_test.npy", _DEND_SOURCE)
BURSTING_TRAIN = _file("durstewitz_dendplrnn", "burstingneuron_train.npy",
                       "7643f704e8828e225b7c2d57e6847b321942b631260c0fa4422217f97184d1ba",
                       _DEND_RAW_OLD + "Table1/BurstingNeuron/data/burstingneuron_train.npy", _DEND_SOURCE)
BURSTING_TEST = _file("durstewitz_dendplrnn", "burstingneuron_test.npy",
                      "0630743ff6e64c9e9c4d5e525c1eb5b456300a9bbf2a953b99cde7e226dcaf55",
                      _DEND_RAW_OLD + "Table1/BurstingNeuron/data/burstingneuron_test.npy", _DEND_SOURCE)


# --- generated Lorenz-63 ----------------------------------------------------------------------------

LORENZ63_SIGMA, LORENZ63_RHO, LORENZ63_BETA = 10.0, 28.0, 8.0 / 3.0
MAX_GENERATED_LENGTH = 1_000_000


def _lorenz63_rhs(_t: float, s: np.ndarray) -> np.ndarray:
    x, y, z = s
    return np.array([LORENZ63_SIGMA * (y - x), x * (LORENZ63_RHO - z) - y, x * y - LORENZ63_BETA * z])


def _integrate(rhs, x0: np.ndarray, length: int, dt: float, transient: int, what: str) -> np.ndarray:
    """``length`` states of the autonomous ODE ``rhs`` sampled every ``dt`` after ``transient`` samples."""
    from scipy.integrate import solve_ivp

    total = transient + length
    state = np.asarray(x0, dtype=np.float64)
    out = np.empty((total, len(state)))
    out[0] = state
    done, chunk = 1, 100_000  # integrate in pieces: bounded t_eval arrays, same result as one call
    while done < total:
        n = min(chunk, total - done)
        t_eval = np.arange(1, n + 1) * dt
        sol = solve_ivp(rhs, (0.0, n * dt), out[done - 1], method="DOP853", t_eval=t_eval,
                        rtol=1e-10, atol=1e-10)
        if not sol.success:
            raise RuntimeError(f"{what} integration failed: {sol.message}")
        out[done: done + n] = sol.y.T
        done += n
    return out[transient:]


def integrate_lorenz63(x0: np.ndarray, length: int, dt: float = 0.01, transient: int = 0) -> np.ndarray:
    """``length`` states ``[length, 3]`` sampled every ``dt`` after ``transient`` discarded samples."""
    return _integrate(_lorenz63_rhs, x0, length, dt, transient, "Lorenz-63")


@lru_cache(maxsize=4)
def generated_lorenz63(length: int, test_length: int, seed: int, dt: float, transient: int,
                       noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) standardised with the training statistics; deterministic given the arguments."""
    rng = np.random.default_rng([seed, 63])
    x0_train = np.array([0.0, 0.0, 25.0]) + rng.uniform(-10.0, 10.0, size=3)
    x0_test = np.array([0.0, 0.0, 25.0]) + rng.uniform(-10.0, 10.0, size=3)
    train = integrate_lorenz63(x0_train, length, dt, transient)
    test = integrate_lorenz63(x0_test, test_length, dt, transient)
    mean, std = train.mean(0), train.std(0)
    train, test = (train - mean) / std, (test - mean) / std
    if noise > 0:
        train = train + noise * rng.standard_normal(train.shape)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


# --- slow Lorenz-63: rho driven by a slow harmonic oscillator --------------------------------------

SLOW_RHO0, SLOW_AMPLITUDE, SLOW_PERIOD = 32.0, 6.0, 200.0


def lorenz63_slow_rhs(_t: float, s: np.ndarray, omega: float, rho0: float, amplitude: float) -> np.ndarray:
    """Right-hand side of the 5-d system ``(x, y, z, u, v)`` (module docstring)."""
    x, y, z, u, v = s
    rho = rho0 + amplitude * u
    return np.array([LORENZ63_SIGMA * (y - x), x * (rho - z) - y, x * y - LORENZ63_BETA * z, -omega * v, omega * u])


def integrate_lorenz63_slow(x0: np.ndarray, length: int, dt: float = 0.01, transient: int = 0,
                            period: float = SLOW_PERIOD, rho0: float = SLOW_RHO0,
                            amplitude: float = SLOW_AMPLITUDE) -> np.ndarray:
    """``length`` states ``[length, 5]`` (x, y, z, u, v) every ``dt`` after ``transient`` discarded samples."""
    omega = 2.0 * np.pi / period

    def rhs(t: float, s: np.ndarray) -> np.ndarray:
        return lorenz63_slow_rhs(t, s, omega, rho0, amplitude)

    return _integrate(rhs, x0, length, dt, transient, "slow Lorenz-63")


def lorenz63_slow_initial_conditions(seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """(train, test) initial states ``[5]`` drawn from ``seed``, and the generator (noise is drawn next)."""
    rng = np.random.default_rng([seed, 63, 5])

    def draw() -> np.ndarray:
        fast = np.array([0.0, 0.0, 25.0]) + rng.uniform(-10.0, 10.0, size=3)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        return np.concatenate([fast, [np.cos(phase), np.sin(phase)]])

    x0_train = draw()
    x0_test = draw()
    return x0_train, x0_test, rng


@lru_cache(maxsize=4)
def raw_lorenz63_slow(length: int, test_length: int, seed: int, dt: float, period: float, rho0: float,
                      amplitude: float, transient: int) -> tuple[np.ndarray, np.ndarray]:
    """Unstandardised (train, test) ``[T, 5]`` trajectories (read-only); deterministic given the arguments."""
    x0_train, x0_test, _ = lorenz63_slow_initial_conditions(seed)
    train = integrate_lorenz63_slow(x0_train, length, dt, transient, period, rho0, amplitude)
    test = integrate_lorenz63_slow(x0_test, test_length, dt, transient, period, rho0, amplitude)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


@lru_cache(maxsize=4)
def generated_lorenz63_slow(length: int, test_length: int, seed: int, dt: float, period: float, rho0: float,
                            amplitude: float, transient: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) standardised with the training statistics; noise on train only; read-only."""
    train, test = raw_lorenz63_slow(length, test_length, seed, dt, period, rho0, amplitude, transient)
    mean, std = train.mean(0), train.std(0)
    train, test = (train - mean) / std, (test - mean) / std
    if noise > 0:
        _, _, rng = lorenz63_slow_initial_conditions(seed)
        train = train + noise * rng.standard_normal(train.shape)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


# --- tasks ------------------------------------------------------------------------------------------

class _FileTask(DynamicsTask):
    train_file: ClassVar[DataFile]
    test_file: ClassVar[DataFile]

    @classmethod
    def data_files(cls, params: DynamicsParams) -> list[DataFile]:
        return [cls.train_file, cls.test_file]

    def trajectories(self) -> dict[str, np.ndarray]:
        return {"train": np.load(resolve(self.train_file, self.data_dir)),
                "test": np.load(resolve(self.test_file, self.data_dir))}


class Lorenz63Params(DynamicsParams):
    source: Literal["file", "generated"] = Field(
        "file", description="the GTF paper's files (noisy train, clean test) or a trajectory integrated here")
    length: int = Field(100_000, ge=100, le=MAX_GENERATED_LENGTH, description="generated: training steps")
    test_length: int = Field(100_000, ge=100, le=MAX_GENERATED_LENGTH, description="generated: test steps")
    seed: int = Field(0, ge=0, description="generated: initial conditions and noise")
    dt: float = Field(0.01, gt=0.0, description="generated: sampling interval (time units)")
    transient: int = Field(1000, ge=0, description="generated: initial samples discarded")
    noise: float = Field(0.0, ge=0.0, description="generated: observation noise std added to the training data")


class Lorenz63(_FileTask):
    name = "lorenz63"
    # the generator, for tests and notebooks (reach it through the registry's class)
    rhs = staticmethod(_lorenz63_rhs)
    integrate = staticmethod(integrate_lorenz63)
    generated = staticmethod(generated_lorenz63)
    summary = ("Lorenz-63 (3-d chaotic): GTF paper files (100000 steps, 5 % noisy train, clean test) or "
               "generated with solve_ivp at dt 0.01 (any length up to 1e6); free-run D_stsp / D_H / PE(20)")
    Params = Lorenz63Params
    train_file = LORENZ63_TRAIN
    test_file = LORENZ63_TEST

    @classmethod
    def data_files(cls, params: Lorenz63Params) -> list[DataFile]:
        return [] if getattr(params, "source", "file") == "generated" else [cls.train_file, cls.test_file]

    def trajectories(self) -> dict[str, np.ndarray]:
        p = self.params
        if p.source == "file":
            return super().trajectories()
        train, test = generated_lorenz63(p.length, p.test_length, p.seed, p.dt, p.transient, p.noise)
        return {"train": train, "test": test}


class Lorenz96(_FileTask):
    name = "lorenz96"
    summary = "Lorenz-96 (10-d chaotic, dendPLRNN paper files, 100000 steps each); GMM D_stsp (N >= 6)"
    train_file = LORENZ96_TRAIN
    test_file = LORENZ96_TEST


class BurstingNeuron(_FileTask):
    name = "bursting-neuron"
    summary = "bursting neuron model (3-d, dendPLRNN paper files, 100000 steps each)"
    train_file = BURSTING_TRAIN
    test_file = BURSTING_TEST


class Ecg(_FileTask):
    name = "ecg"
    summary = "ECG, 5-d delay embedding (GTF paper files, 100000 steps each)"
    train_file = ECG_TRAIN
    test_file = ECG_TEST


class EegParams(DynamicsParams):
    test_fraction: float = Field(
        0.2, gt=0.0, lt=0.9,
        description="tail of the EEG record used as test split (the published train and test files are identical)")


class Eeg(DynamicsTask):
    name = "eeg"
    summary = ("EEG (64 channels, 9640 steps; GTF paper data): train/test files are identical bytes, so the test "
               "split is the last 20 % of the record; GMM D_stsp")
    Params = EegParams

    @classmethod
    def data_files(cls, params: EegParams) -> list[DataFile]:
        return [EEG_TRAIN]

    def trajectories(self) -> dict[str, np.ndarray]:
        X = np.load(resolve(EEG_TRAIN, self.data_dir))
        n_test = int(round(len(X) * self.params.test_fraction))
        return {"train": X[: len(X) - n_test], "test": X[len(X) - n_test:]}


class Lorenz63SlowParams(DynamicsParams):
    length: int = Field(100_000, ge=100, le=MAX_GENERATED_LENGTH, description="training steps (before the val tail)")
    test_length: int = Field(100_000, ge=100, le=MAX_GENERATED_LENGTH, description="test steps")
    seed: int = Field(0, ge=0, description="initial conditions (fast state and slow phase, train and test) and noise")
    dt: float = Field(0.01, gt=0.0, description="sampling interval (time units)")
    period: float = Field(SLOW_PERIOD, gt=0.0, description="period of the slow oscillator driving rho (time units)")
    rho0: float = Field(SLOW_RHO0, description="mean of rho(t) = rho0 + amplitude * u(t)")
    amplitude: float = Field(SLOW_AMPLITUDE, ge=0.0,
                             description="rho swings in [rho0 - amplitude, rho0 + amplitude] (keep it above 24.74 for chaos)")
    transient: int = Field(1000, ge=0, description="initial samples discarded")
    noise: float = Field(0.0, ge=0.0, description="observation noise std (standardised units) added to the training data")


class Lorenz63Slow(DynamicsTask):
    name = "lorenz63-slow"
    # the generator, for tests and notebooks (reach it through the registry's class)
    rhs = staticmethod(lorenz63_slow_rhs)
    integrate = staticmethod(integrate_lorenz63_slow)
    initial_conditions = staticmethod(lorenz63_slow_initial_conditions)
    raw = staticmethod(raw_lorenz63_slow)
    generated = staticmethod(generated_lorenz63_slow)
    summary = ("Lorenz-63 with rho = 32 + 6 u driven by a slow oscillator (u, v) of period 200 (20000 steps at dt "
               "0.01); 5-d, all observed, generated; free-run D_stsp / D_H / PE(20)")
    Params = Lorenz63SlowParams

    @classmethod
    def data_files(cls, params: Lorenz63SlowParams) -> list[DataFile]:
        return []

    def trajectories(self) -> dict[str, np.ndarray]:
        p = self.params
        train, test = generated_lorenz63_slow(p.length, p.test_length, p.seed, p.dt, p.period, p.rho0, p.amplitude,
                                              p.transient, p.noise)
        return {"train": train, "test": test}
