"""System-identification tasks from nonlinearbenchmark.org (real data, official splits).

Protocol (see :mod:`suite.tasklib.sysid`): free-run simulation over the whole split from a zero
state; the benchmark's initialisation window is excluded from RMSE / NRMSE / fit %.

Conventions (split lengths verified against the files of the shared data directory)
------------------------------------------------------------------------------------

* ``cascaded-tanks``: train/val = uEst/yEst (1024; default val_fraction 0.2 -> 819 / 205),
  test = uVal/yVal (1024). Init window 5.

* ``silverbox``: SNLS80mV.mat, input V1, output V2 (131072 samples, fs = 610.35 Hz), the
  nonlinear_benchmarks split: multisine = [40650:127400) (86750 samples); its first 75 %
  (int(0.75 * 86750) = 65062) is train + val, the rest (21688) the multisine test. Train/val is a
  contiguous split of those 65062 samples: the last ``val_fraction`` (default 0.2 -> 13012) is
  validation, the first 52050 training. ``test`` chooses the test record: "multisine" (21688),
  "arrow" = [100:40575) (40475) or "arrow-no-extrapolation" = the first 32000 of the arrow.
  Init window 50 (nonlinear_benchmarks).
* ``emps``: train + val = DATA_EMPS.mat (24841 samples, 1 kHz), test = DATA_EMPS_PULSES.mat
  (24841); input ``vir`` (motor force, N), output ``qm`` (position, m). Validation = the last
  ``val_fraction`` (default 0.2 -> 4968) of DATA_EMPS, train the first 19873. Init window 20.
* ``bouc-wen``: no official training set exists; training uses the record *generated* with the
  official simulator by the dynoNet authors (dynonet_generated_train.h5, multisine, 40960
  samples, fs = 750 Hz). Validation = its last ``val_fraction`` (default 0.2 -> 8192; train
  32768). dynonet_generated_test.h5 is NOT used: it is bit-for-bit the official test signals, so
  validating on it would leak the test set. Test = official uval/yval_multisine.mat (8192) or,
  with ``test: sinesweep``, uval/yval_sinesweep.mat (153000). Init window 50: the benchmark
  defines none; 50 matches Silverbox / Wiener-Hammerstein (the multisine test record starts in
  its periodic steady state, so some zero-state transient remains past sample 50 for every
  model alike).
* ``silverbox-paper``, ``wiener-hammerstein-paper``, ``rlc-paper``: the exact CSV splits of the
  burn-in TBPTT paper (Schiller et al., ICLR 2026; jdschille/rnn-training, MIT), one row per
  signal. Silverbox / W-H: row 0 = input u, row 1 = output y; 20000 / 10000 / 10000 samples.
  RLC (6667 / 3333 / 3333): row 0 = time [s] (dt = 0.5 us), row 1 = input voltage v_in,
  row 2 = capacitor voltage v_C, row 3 = inductor current i_L (identified from the data:
  dv_C/dt is proportional to i_L with C ~ 273 nF). As in the paper's loader (input = row -3,
  outputs = rows -2: reversed), the input is v_in and the outputs are (i_L, v_C) in that
  order; time is not used. Init window 0: the paper evaluates the whole sequence from a zero
  state, so rmse / nrmse / fit / r2 cover the whole sequence too; ``mse_std`` (standardised
  with the training statistics, whole sequence) is the paper's reported number and these
  tasks' primary metric (RLC's rmse averages amperes and volts).

Download URLs are the official sources as used by the nonlinear_benchmarks package (Google Drive
files of nonlinearbenchmark.org for Silverbox and EMPS, 4TU.ResearchData for Bouc-Wen), the raw
GitHub files of jdschille/rnn-training at a fixed commit for the paper CSVs, and forgi86/dynonet for
the generated Bouc-Wen record; every file is verified against its SHA-256 after download.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import h5py
import numpy as np
import scipy.io
from pydantic import Field

from suite.contracts import Params
from suite.datafiles import DataFile, resolve
from suite.tasklib.sysid import SysIdTask, sysid_metric_specs

CASCADED_TANKS = DataFile(
    path="sysid/cascaded_tanks/dataBenchmark.mat",
    sha256="cb2f88d4388be4d3f2a24c6402fba804976aac5f2e1f26cda59ea0a38d016eab",
    url="https://data.4tu.nl/file/d4810b78-6cdd-48fe-8950-9bd601e5f47f/3b697e42-01a4-4979-a370-813a456c36f5",
    member="CascadedTanksFiles/dataBenchmark.mat",
    source="Cascaded Tanks benchmark, Schoukens, Mattson, Wigren, Noël (2016), nonlinearbenchmark.org (4TU.ResearchData, DOI 10.4121/12960104)",
)


class CascadedTanksParams(Params):
    val_fraction: float = Field(
        0.2, ge=0.0, lt=0.9,
        description="tail of the estimation record held out for validation (0: validate on the training record)",
    )


class CascadedTanks(SysIdTask):
    name = "cascaded-tanks"
    summary = "Cascaded Tanks (1024 + 1024 samples, Ts = 4 s): train on Est, test on Val, 5-sample init window"
    Params = CascadedTanksParams
    metrics = sysid_metric_specs("V")
    init_window = 5
    unit = "V"

    @classmethod
    def data_files(cls, params: Params) -> list[DataFile]:
        return [CASCADED_TANKS]

    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        mat = scipy.io.loadmat(resolve(CASCADED_TANKS, self.data_dir))
        u_est, y_est = mat["uEst"][:, 0], mat["yEst"][:, 0]
        n_val = int(round(len(u_est) * self.params.val_fraction))
        n_train = len(u_est) - n_val
        val = (u_est[n_train:], y_est[n_train:]) if n_val else (u_est, y_est)
        return {
            "train": (u_est[:n_train], y_est[:n_train]),
            "val": val,
            "test": (mat["uVal"][:, 0], mat["yVal"][:, 0]),
        }


_NB = "nonlinearbenchmark.org; split conventions of the nonlinear_benchmarks package (G. Beintema, BSD-3)"
_SILVERBOX_URL = "https://drive.google.com/uc?export=download&id=17iS-6oBUUgrmiAcrZoG9S5sOaljZnDSy"
_EMPS_URL = "https://drive.google.com/uc?export=download&id=1zwoXYa9-3f8NQ0ohzmjpF7UxbNgRTHkS"
_BOUC_WEN_URL = "https://data.4tu.nl/file/7060f9bc-8289-411e-8d32-57bef2740d32/cd40469c-5064-4968-ae59-88cbb850264b"
_BURNIN_RAW = "https://raw.githubusercontent.com/jdschille/rnn-training/{commit}/02_public_datasets/code/data/{name}"
_BURNIN_SOURCE = (
    "burn-in TBPTT paper's split (Schiller, Heinrich, Lopez, Mueller, 'Tuning the burn-in phase in training "
    "recurrent neural networks improves their performance', ICLR 2026), repository jdschille/rnn-training (MIT)"
)

SILVERBOX = DataFile(
    path="sysid/silverbox/SNLS80mV.mat",
    sha256="5c7413a52255af0cb4e2f93fb6903beb92b08965ba1e6ad0a6ffedfed8477ed4",
    url=_SILVERBOX_URL,
    member="SilverboxFiles/SNLS80mV.mat",
    source="Silverbox benchmark, T. Wigren and J. Schoukens, 'Three free data sets for development and "
    f"benchmarking in nonlinear system identification', ECC 2013; SilverboxFiles.zip from {_NB}",
)

EMPS_TRAIN = DataFile(
    path="sysid/emps/DATA_EMPS.mat",
    sha256="6cf6814ae14618795da0101aae2bb97ff0c6351b0501b5492751b02b07facf7e",
    url=_EMPS_URL,
    member="DATA_EMPS.mat",
    source="EMPS benchmark, A. Janot, M. Gautier and M. Brunot, 'Data set and reference models of EMPS', "
    f"Workshop on Nonlinear System Identification Benchmarks 2019; EMPS.zip from {_NB}",
)
EMPS_TEST = DataFile(
    path="sysid/emps/DATA_EMPS_PULSES.mat",
    sha256="0eab75bb1f6b16228ee78791343a88bf9bfd9a51036ac9807d7b5fc11c0e1704",
    url=_EMPS_URL,
    member="DATA_EMPS_PULSES.mat",
    source=EMPS_TRAIN.source,
)

_BW_SOURCE = (
    "Bouc-Wen hysteretic benchmark, J.P. Noel and M. Schoukens, 'Hysteretic benchmark with a dynamic "
    f"nonlinearity', Workshop on Nonlinear System Identification Benchmarks 2016 (4TU.ResearchData); {_NB}"
)
BOUC_WEN_TEST = {
    (signal, var): DataFile(
        path=f"sysid/bouc_wen/{var}val_{signal}.mat",
        sha256=sha,
        url=_BOUC_WEN_URL,
        member=f"BoucWenFiles/Test signals/Validation signals/{var}val_{signal}.mat",
        source=_BW_SOURCE,
    )
    for signal, var, sha in (
        ("multisine", "u", "3eb9abc0aef66b97beaf003fbcb45b43a4e28d7e82db5bf8abc1c931b92106ed"),
        ("multisine", "y", "05e462f7c508c26c8e69549e2b80ff5acea2828b399175c8bdd3fa70eb9905bc"),
        ("sinesweep", "u", "fefd6c08bbf3b27f13f61a15ea0dd8c63211c5924e99f6ca43760d1f25ce9ed3"),
        ("sinesweep", "y", "52b49f7ff62487bf75efbed95bf759b06d8bad1127a8e63bc242e119d72bc57b"),
    )
}
BOUC_WEN_GENERATED_TRAIN = DataFile(
    path="sysid/bouc_wen/dynonet_generated_train.h5",
    sha256="a4df68f6101a22f9fc5032e98b3e773fc108a291378ef9cf69d1b128c7ac44a4",
    url="https://raw.githubusercontent.com/forgi86/dynonet/ddf684275d2874a814c5010bfc3ce91a84b2b3b9/"
    "examples/BW/data/Test%20signals/train.h5",
    source="GENERATED training record (not measured): simulated with the official Bouc-Wen simulator "
    "(BoucWen_NewmarkIntegration.p) by M. Forgione and D. Piga, dynoNet (Int. J. Adapt. Control Signal "
    "Process. 2021), repository forgi86/dynonet examples/BW",
)


def _burnin(name: str, commit: str, sha256: str) -> DataFile:
    return DataFile(
        path=f"sysid/burnin_paper/{name}",
        sha256=sha256,
        url=_BURNIN_RAW.format(commit=commit, name=name),
        source=_BURNIN_SOURCE,
    )


_C06, _CD0 = "06bf19193c61c748155fd73e76fe49a20439d727", "d0a27576ffcf24632dd83c6bef9520e9535e427b"
BURNIN_SILVERBOX = {
    "train": _burnin("data_silverbox_train_20000.csv", _CD0, "11275e7c3560ecdfde3b7e9f6e96021c634554d4480b670a31a01a418a416e60"),
    "val": _burnin("data_silverbox_val_10000.csv", _C06, "97ff3f6f3fb44aca1d5a2364b8544604e87ed94309ece1a333c0408dd413b66e"),
    "test": _burnin("data_silverbox_test_10000.csv", _C06, "b2bbce4df897f6d40c6ff6c3de5fbbcf9b32a7edb481d4498134efcd39d72a8c"),
}
BURNIN_WIENER_HAMMERSTEIN = {
    "train": _burnin("data_WienerHammerBenchmark_train_20000.csv", _CD0, "175945138951ea53083bb2b075feb4ce4908c4deeca06117fb1e87c2be1d6bd2"),
    "val": _burnin("data_WienerHammerBenchmark_val_10000.csv", _CD0, "f013dd665cb4079278e7b1595b5aa6631a7e7d9c227890f9c74a2089794ca56e"),
    "test": _burnin("data_WienerHammerBenchmark_test_10000.csv", _C06, "24d07e2c404c6df7dc0f6b6532aa8bcbc8817674cff55bef217ab9528edc55cf"),
}
BURNIN_RLC = {
    "train": _burnin("data_rlc_train_6667.csv", _CD0, "d5c4b9d874e254b1edce08449e0ebe3b203d8d588d161767004a014fc5c9aa9c"),
    "val": _burnin("data_rlc_val_3333.csv", _C06, "0c1b7adbbfb7c0644a8260231f9d020dcf3449d996b36b6517f8a6be70f4dbbd"),
    "test": _burnin("data_rlc_test_3333.csv", _CD0, "6e085d323bc644279914c871adf0aba3fdf4a3ba408e447aa01be5503b5caf01"),
}


def _tail_split(u: np.ndarray, y: np.ndarray, val_fraction: float) -> tuple[tuple, tuple]:
    """(train, val): the last ``val_fraction`` of a record is validation (0: validate on the record)."""
    n_val = int(round(len(u) * val_fraction))
    n_train = len(u) - n_val
    if n_val == 0:
        return (u, y), (u, y)
    return (u[:n_train], y[:n_train]), (u[n_train:], y[n_train:])


class _ValFraction(Params):
    val_fraction: float = Field(
        0.2, gt=0.0, lt=0.9, description="tail of the training record held out for validation",
    )


# --- Silverbox -----------------------------------------------------------------------------

SILVERBOX_ARROW = (100, 40575)
SILVERBOX_ARROW_NO_EXTRAPOLATION = 32000
SILVERBOX_MULTISINE = (40650, 127400)


class SilverboxParams(_ValFraction):
    test: Literal["multisine", "arrow", "arrow-no-extrapolation"] = Field(
        "multisine",
        description="test record: multisine (last 25 % of [40650:127400)), arrow [100:40575) or its first 32000 samples",
    )


class Silverbox(SysIdTask):
    name = "silverbox"
    summary = (
        "Silverbox (Duffing-like circuit, fs 610 Hz): train/val on the first 75 % of the multisine (80/20), "
        "test multisine | arrow | arrow-no-extrapolation, 50-sample init window"
    )
    Params = SilverboxParams
    metrics = sysid_metric_specs("V")
    init_window = 50
    unit = "V"

    @classmethod
    def data_files(cls, params: Params) -> list[DataFile]:
        return [SILVERBOX]

    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        mat = scipy.io.loadmat(resolve(SILVERBOX, self.data_dir))
        u, y = mat["V1"][0], mat["V2"][0]
        a, b = SILVERBOX_MULTISINE
        u_ms, y_ms = u[a:b], y[a:b]
        s = int(len(u_ms) * 0.75)
        train, val = _tail_split(u_ms[:s], y_ms[:s], self.params.val_fraction)
        a, b = SILVERBOX_ARROW
        test = {
            "multisine": (u_ms[s:], y_ms[s:]),
            "arrow": (u[a:b], y[a:b]),
            "arrow-no-extrapolation": (u[a:b][:SILVERBOX_ARROW_NO_EXTRAPOLATION], y[a:b][:SILVERBOX_ARROW_NO_EXTRAPOLATION]),
        }[self.params.test]
        return {"train": train, "val": val, "test": test}


# --- EMPS ----------------------------------------------------------------------------------


class Emps(SysIdTask):
    name = "emps"
    summary = (
        "EMPS (electro-mechanical positioning, 1 kHz): force vir -> position qm; train/val = DATA_EMPS (80/20), "
        "test = DATA_EMPS_PULSES, 20-sample init window"
    )
    Params = _ValFraction
    metrics = sysid_metric_specs("m")
    init_window = 20
    unit = "m"

    @classmethod
    def data_files(cls, params: Params) -> list[DataFile]:
        return [EMPS_TRAIN, EMPS_TEST]

    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        est = scipy.io.loadmat(resolve(EMPS_TRAIN, self.data_dir))
        tst = scipy.io.loadmat(resolve(EMPS_TEST, self.data_dir))
        train, val = _tail_split(est["vir"][:, 0], est["qm"][:, 0], self.params.val_fraction)
        return {"train": train, "val": val, "test": (tst["vir"][:, 0], tst["qm"][:, 0])}


# --- Bouc-Wen ------------------------------------------------------------------------------


class BoucWenParams(_ValFraction):
    test: Literal["multisine", "sinesweep"] = Field(
        "multisine", description="official test record: multisine (8192 samples) or sine sweep (153000)",
    )


class BoucWen(SysIdTask):
    name = "bouc-wen"
    summary = (
        "Bouc-Wen hysteresis (fs 750 Hz): train/val on a GENERATED multisine record (dynoNet, official simulator; "
        "80/20), test on the official multisine | sinesweep, 50-sample init window"
    )
    Params = BoucWenParams
    metrics = sysid_metric_specs("m")
    init_window = 50
    unit = "m"

    @classmethod
    def data_files(cls, params: Params) -> list[DataFile]:
        test = getattr(params, "test", "multisine")
        return [BOUC_WEN_GENERATED_TRAIN, BOUC_WEN_TEST[(test, "u")], BOUC_WEN_TEST[(test, "y")]]

    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        with h5py.File(resolve(BOUC_WEN_GENERATED_TRAIN, self.data_dir), "r") as h5:
            u_gen, y_gen = h5["multisine/u"][:, 0], h5["multisine/y"][:, 0]
        train, val = _tail_split(u_gen, y_gen, self.params.val_fraction)
        test = self.params.test
        u_test = scipy.io.loadmat(resolve(BOUC_WEN_TEST[(test, "u")], self.data_dir))[f"uval_{test}"][0]
        y_test = scipy.io.loadmat(resolve(BOUC_WEN_TEST[(test, "y")], self.data_dir))[f"yval_{test}"][0]
        return {"train": train, "val": val, "test": (u_test, y_test)}


# --- the burn-in paper's CSV splits -----------------------------------------------------------


class _BurninPaperTask(SysIdTask):
    """CSV splits, one row per signal; ``input_row`` is u, ``output_rows`` the outputs in order."""

    files: ClassVar[dict[str, DataFile]]
    input_row: ClassVar[int] = 0
    output_rows: ClassVar[tuple[int, ...]] = (1,)
    init_window = 0  # the paper's protocol: whole sequence, zero initial state
    primary_metric = "mse_std"  # the paper's number; unit-free (RLC mixes amperes and volts)

    @classmethod
    def data_files(cls, params: Params) -> list[DataFile]:
        return [cls.files[s] for s in cls.splits]

    def signals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for split in self.splits:
            rows = np.loadtxt(resolve(self.files[split], self.data_dir), delimiter=",", ndmin=2)
            out[split] = (rows[self.input_row], rows[list(self.output_rows)].T)
        return out


class SilverboxPaper(_BurninPaperTask):
    name = "silverbox-paper"
    summary = "Silverbox, the burn-in paper's CSV split (20000/10000/10000), whole-sequence metrics (init window 0)"
    metrics = sysid_metric_specs("V")
    unit = "V"
    files = BURNIN_SILVERBOX


class WienerHammersteinPaper(_BurninPaperTask):
    name = "wiener-hammerstein-paper"
    summary = "Wiener-Hammerstein 2009, the burn-in paper's CSV split (20000/10000/10000), whole-sequence metrics"
    metrics = sysid_metric_specs("V")
    unit = "V"
    files = BURNIN_WIENER_HAMMERSTEIN


class RlcPaper(_BurninPaperTask):
    name = "rlc-paper"
    summary = "nonlinear RLC circuit, the burn-in paper's CSV split (6667/3333/3333): v_in -> (i_L, v_C), whole-sequence metrics"
    metrics = sysid_metric_specs("")  # mixed units: A and V
    unit = ""
    files = BURNIN_RLC
    input_row = 1
    output_rows = (3, 2)  # (i_L, v_C): the paper's loader reverses the last two rows
