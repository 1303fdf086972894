import numpy as np
import pytest
import torch

from suite.metrics import forecast_metrics, mae, mse


def test_mse_mae_hand_computed():
    # 2 windows x 2 horizon steps x 1 channel
    y = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])
    yhat = np.array([[[1.0], [1.0]], [[2.0], [1.0]]])
    # errors: 1, 0, 0, -2
    assert mse(y, yhat) == pytest.approx(5 / 4)
    assert mae(y, yhat) == pytest.approx(3 / 4)
    assert forecast_metrics(y, yhat) == {"mse": pytest.approx(1.25), "mae": pytest.approx(0.75)}


def test_averaged_over_channels_too():
    y = np.zeros((1, 1, 4))
    yhat = np.array([[[1.0, -1.0, 2.0, 0.0]]])
    assert mse(y, yhat) == pytest.approx(6 / 4)
    assert mae(y, yhat) == pytest.approx(4 / 4)


def test_torch_and_shape_check():
    assert mse(torch.zeros(3), torch.ones(3)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mae(np.zeros((2, 3)), np.zeros((3, 2)))
