"""System-identification tasks from nonlinearbenchmark.org (real data, official splits).

Protocol (see :mod:`suite.tasklib.sysid`): free-run simulation over the whole split from a zero
state; the benchmark's initialisation window is excluded from RMSE / NRMSE / fit %.
"""

from __future__ import annotations

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
