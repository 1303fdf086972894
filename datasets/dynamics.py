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


def integrate_lorenz63(x0: np.ndarray, length: int, dt: float = 0.01, transient: int = 0) -> np.ndarray:
    """``length`` states ``[length, 3]`` sampled every ``dt`` after ``transient`` discarded samples."""
    from scipy.integrate import solve_ivp

    total = transient + length
    state = np.asarray(x0, dtype=np.float64)
    out = np.empty((total, 3))
    out[0] = state
    done, chunk = 1, 100_000  # integrate in pieces: bounded t_eval arrays, same result as one call
    while done < total:
        n = min(chunk, total - done)
        t_eval = np.arange(1, n + 1) * dt
        sol = solve_ivp(_lorenz63_rhs, (0.0, n * dt), out[done - 1], method="DOP853", t_eval=t_eval,
                        rtol=1e-10, atol=1e-10)
        if not sol.success:
            raise RuntimeError(f"Lorenz-63 integration failed: {sol.message}")
        out[done: done + n] = sol.y.T
        done += n
    return out[transient:]


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
