"""Long-horizon time-series forecasting tasks: ETTh1/2, ETTm1/2, Weather, Exchange-rate, ILI.

Protocol (see :mod:`suite.tasklib.forecasting`): Time-Series-Library splits and z-scoring with the
training statistics; training data in the burn-in paper's seq2seq form (``y_t = x_{t+1..t+H}``);
evaluation feeds ``lookback`` rows from the zero state per window and scores the last output as
the ``horizon``-step forecast: MSE (primary) and MAE on the z-scored scale.

Files and splits (rows verified against the shared data directory)
------------------------------------------------------------------

============  =============================  =======  ==========  ======================
task          file                           rows     channels    train / val / test
============  =============================  =======  ==========  ======================
etth1, etth2  ETTh{1,2}.csv                  17420    7           8640 / 2880 / 2880
ettm1, ettm2  ETTm{1,2}.csv.gz               69680    7           34560 / 11520 / 11520
weather       weather.csv.gz (Latin-1)       52696    21          36887 / 5270 / 10539
exchange-rate exchange_rate.csv              7588     8           5311 / 760 / 1517
ili           national_illness.csv           966      7           676 / 97 / 193
============  =============================  =======  ==========  ======================

Every file has a ``date`` column first (dropped) and the target ``OT`` last. ETT uses the first
20 months only (12 / 4 / 4 months), as in Informer / TSLib. ILI defaults to lookback 36 and
horizon 24 (its usual setting; horizons 24-60), the others to 96 / 96.

Sources: ETTh1/ETTh2 download from the official ETDataset repository at a fixed commit. The
ETTm and Weather copies here are gzip-compressed and the Weather / Exchange / ILI files are the
Autoformer release copies (a Google Drive folder with no stable per-file URL), so those entries
have no download URL: their checksums would not match the raw files anyway.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from suite.contracts import Params
from suite.datafiles import DataFile, resolve
from suite.tasklib.forecasting import ForecastParams, ForecastTask, ratio_split_sizes

_ETT_COMMIT = "450ea779973f463406e3c75e4ec154ebc1add6f5"
_ETT_RAW = f"https://raw.githubusercontent.com/zhouhaoyi/ETDataset/{_ETT_COMMIT}/ETT-small/{{name}}"
_ETT_SOURCE = (
    "ETT (Electricity Transformer Temperature), H. Zhou et al., 'Informer', AAAI 2021; official "
    "repository zhouhaoyi/ETDataset, ETT-small/{name} (CC BY-ND 4.0){note}"
)
_AUTOFORMER = (
    "Autoformer release copy (H. Wu et al., 'Autoformer', NeurIPS 2021; dataset folder linked from "
    "thuml/Autoformer and thuml/Time-Series-Library)"
)

ETTH1 = DataFile(
    path="forecasting/ett/ETTh1.csv",
    sha256="f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    url=_ETT_RAW.format(name="ETTh1.csv"),
    source=_ETT_SOURCE.format(name="ETTh1.csv", note=""),
)
ETTH2 = DataFile(
    path="forecasting/ett/ETTh2.csv",
    sha256="a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    url=_ETT_RAW.format(name="ETTh2.csv"),
    source=_ETT_SOURCE.format(name="ETTh2.csv", note=""),
)
ETTM1 = DataFile(
    path="forecasting/ett/ETTm1.csv.gz",
    sha256="73c18304514c26a5cddba02e6538513a0e23b2fbb59752535adbf541c9edc672",
    url=None,
    source=_ETT_SOURCE.format(
        name="ETTm1.csv", note=f"; gzip of the official file ({_ETT_RAW.format(name='ETTm1.csv')})"
    ),
)
ETTM2 = DataFile(
    path="forecasting/ett/ETTm2.csv.gz",
    sha256="5122051efae7be24b40bedc80ee445bd18298552b940084f0dbe329c5157110a",
    url=None,
    source=_ETT_SOURCE.format(
        name="ETTm2.csv", note=f"; gzip of the official file ({_ETT_RAW.format(name='ETTm2.csv')})"
    ),
)
WEATHER = DataFile(
    path="forecasting/weather/weather.csv.gz",
    sha256="862e9b447a3933f14b6f2d3d686a35d3adb5a486f97acfa46869be0e4bb682db",
    url=None,
    source="Weather: Max Planck Institute for Biogeochemistry, Jena weather station, 2020, 10-minute, 21 "
    f"variables (https://www.bgc-jena.mpg.de/wetter/); {_AUTOFORMER}, gzip-compressed",
)
EXCHANGE_RATE = DataFile(
    path="forecasting/exchange_rate/exchange_rate.csv",
    sha256="d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
    url=None,
    source="Exchange rate of 8 countries 1990-2016 (G. Lai et al., 'LSTNet', SIGIR 2018; "
    f"laiguokun/multivariate-time-series-data); {_AUTOFORMER}",
)
ILI = DataFile(
    path="forecasting/illness/national_illness.csv",
    sha256="8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
    url=None,
    source=f"Influenza-like illness, US CDC ILINet (FluView), weekly 2002-2020; {_AUTOFORMER}",
)


@lru_cache(maxsize=16)
def _read_table(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The numeric columns (the leading date column dropped) of a CSV, plain or gzip, Latin-1."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="latin-1") as f:
        frame = pd.read_csv(f)
    frame = frame.drop(columns=frame.columns[0])  # the date column
    values = frame.to_numpy(dtype=np.float64)
    values.setflags(write=False)
    return values, tuple(str(c) for c in frame.columns)


def read_table(file: DataFile, data_dir: Path | None) -> tuple[np.ndarray, list[str]]:
    """Verify ``file`` and read it (cached per path and modification time)."""
    path = resolve(file, data_dir)
    stat = path.stat()
    values, columns = _read_table(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return values, list(columns)


class _CsvForecastTask(ForecastTask):
    """A forecasting task reading one CSV ``file`` (date column first, target ``OT``)."""

    file: ClassVar[DataFile]

    @classmethod
    def data_files(cls, params: Params) -> list[DataFile]:
        return [cls.file]

    def raw(self) -> tuple[np.ndarray, list[str]]:
        return read_table(self.file, self.data_dir)


class _Ratio712(_CsvForecastTask):
    @classmethod
    def split_sizes(cls, n_rows: int) -> tuple[int, int, int]:
        return ratio_split_sizes(n_rows)


class _EttHourly(_CsvForecastTask):
    @classmethod
    def split_sizes(cls, n_rows: int) -> tuple[int, int, int]:
        month = 30 * 24
        return 12 * month, 4 * month, 4 * month


class _EttMinutely(_CsvForecastTask):
    @classmethod
    def split_sizes(cls, n_rows: int) -> tuple[int, int, int]:
        month = 30 * 24 * 4
        return 12 * month, 4 * month, 4 * month


class ETTh1(_EttHourly):
    name = "etth1"
    summary = "ETTh1 (hourly transformer load / oil temperature, 7 channels): 8640/2880/2880 rows, MSE/MAE z-scored"
    file = ETTH1


class ETTh2(_EttHourly):
    name = "etth2"
    summary = "ETTh2 (hourly, 7 channels): 8640/2880/2880 rows, MSE/MAE z-scored"
    file = ETTH2


class ETTm1(_EttMinutely):
    name = "ettm1"
    summary = "ETTm1 (15-minute, 7 channels): 34560/11520/11520 rows, MSE/MAE z-scored"
    file = ETTM1


class ETTm2(_EttMinutely):
    name = "ettm2"
    summary = "ETTm2 (15-minute, 7 channels): 34560/11520/11520 rows, MSE/MAE z-scored"
    file = ETTM2


class Weather(_Ratio712):
    name = "weather"
    summary = "Weather (Jena 2020, 10-minute, 21 channels): 7:1:2 split, MSE/MAE z-scored"
    file = WEATHER


class ExchangeRate(_Ratio712):
    name = "exchange-rate"
    summary = "Exchange rates (8 currencies, daily 1990-2016): 7:1:2 split, MSE/MAE z-scored"
    file = EXCHANGE_RATE


class IliParams(ForecastParams):
    lookback: int = Field(36, ge=1, description="look-back window L fed to the model from the zero state")
    horizon: int = Field(24, ge=1, description="forecast horizon H (usually 24, 36, 48 or 60 weeks)")


class Ili(_Ratio712):
    name = "ili"
    summary = "Influenza-like illness (US CDC, weekly, 7 channels): 7:1:2 split, L=36, H=24-60, MSE/MAE z-scored"
    Params = IliParams
    file = ILI
