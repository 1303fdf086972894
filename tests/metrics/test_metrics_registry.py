import pytest

import suite.metrics as metrics
from suite.metrics import METRICS, MetricInfo, get_metric_info

REQUIRED = {
    "rmse": "min", "nrmse": "min", "fit": "max", "r2": "max", "mse_std": "min",
    "mse": "min", "mae": "min", "ce": "min", "ppl": "min", "bpc": "min", "bpp": "min",
    "acc": "max", "dstsp": "min", "dh": "min", "pe20": "min",
}


def test_registry_covers_all_metric_names_with_direction():
    for name, direction in REQUIRED.items():
        info = get_metric_info(name)
        assert info.name == name and info.direction == direction and info.unit and info.description


def test_dict_returning_functions_use_registered_names():
    import numpy as np

    y = np.arange(10.0)
    keys = set(metrics.sysid_metrics(y, y + 0.1, 2, 0.0, 1.0))
    keys |= set(metrics.forecast_metrics(y, y))
    keys |= {k for k in metrics.CrossEntropyAccumulator().result() if k not in ("bits", "n_tokens")}
    keys |= set(metrics.dsr_metrics(y, y))
    assert keys <= set(METRICS)


def test_metric_info_validation_and_better():
    with pytest.raises(ValueError):
        MetricInfo("x", "1", "up", "bad")
    assert get_metric_info("fit").better(90.0, 80.0)
    assert get_metric_info("rmse").better(0.1, 0.2)
    with pytest.raises(KeyError):
        get_metric_info("nope")
