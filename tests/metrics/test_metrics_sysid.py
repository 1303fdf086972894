import math

import numpy as np
import pytest
import torch

from suite.metrics import fit_percent, nrmse, r2, rmse, standardized_mse, sysid_metrics


def test_rmse_hand_computed():
    assert rmse([1, 2, 3], [1, 2, 4]) == pytest.approx(math.sqrt(1 / 3))


def test_rmse_skip_respected():
    # the large error sits in the skipped init window
    y = np.array([0.0, 1.0, 2.0, 3.0])
    yhat = np.array([10.0, 1.0, 2.0, 4.0])
    assert rmse(y, yhat, skip=1) == pytest.approx(math.sqrt(1 / 3))
    assert rmse(y, yhat, skip=0) == pytest.approx(math.sqrt(101 / 4))


def test_nrmse_fit_r2_hand_computed():
    y, yhat = [1, 2, 3], [1, 2, 4]
    # std([1,2,3]) (population) = sqrt(2/3) -> nrmse = sqrt(1/3)/sqrt(2/3) = 1/sqrt(2)
    assert nrmse(y, yhat) == pytest.approx(1 / math.sqrt(2))
    assert fit_percent(y, yhat) == pytest.approx(100 * (1 - 1 / math.sqrt(2)))
    assert r2(y, yhat) == pytest.approx(0.5)  # = 1 - SS_res/SS_tot = 1 - 1/2


def test_nrmse_uses_std_after_skip():
    y = np.array([100.0, 1.0, 2.0, 3.0])
    yhat = np.array([0.0, 1.0, 2.0, 4.0])
    assert nrmse(y, yhat, skip=1) == pytest.approx(1 / math.sqrt(2))


def test_r2_argument_order_y_true_first():
    y_true, y_pred = [1, 2, 3], [1, 2, 4]
    # swapped (burn-in reference bug): 1 - (1/3)/var([1,2,4]) = 1 - (1/3)/(42/27) = 33/42
    assert r2(y_true, y_pred) == pytest.approx(0.5)
    assert r2(y_pred, y_true) == pytest.approx(33 / 42)
    assert r2(y_true, y_pred) != pytest.approx(r2(y_pred, y_true))


def test_multichannel_is_mean_of_per_channel():
    y = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 2.0]])
    yhat = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 2.0]])
    # ch0: rmse sqrt(1/3), nrmse 1/sqrt2 ; ch1: rmse sqrt(1/3), std([0,0,2]) = sqrt(8/9)
    n1 = math.sqrt(1 / 3) / math.sqrt(8 / 9)
    assert rmse(y, yhat) == pytest.approx(math.sqrt(1 / 3))
    assert nrmse(y, yhat) == pytest.approx((1 / math.sqrt(2) + n1) / 2)
    assert r2(y, yhat) == pytest.approx(((1 - 0.5) + (1 - n1**2)) / 2)
    np.testing.assert_allclose(nrmse(y, yhat, per_channel=True), [1 / math.sqrt(2), n1])


def test_r2_matches_sklearn_definition():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 3))
    yhat = y + 0.3 * rng.normal(size=(200, 3))
    ss_res = ((y - yhat) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    assert r2(y, yhat) == pytest.approx(np.mean(1 - ss_res / ss_tot))


def test_torch_input_accepted():
    y = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert rmse(y, torch.tensor([1.0, 2.0, 4.0])) == pytest.approx(math.sqrt(1 / 3))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        rmse([1, 2, 3], [1, 2])


def test_standardized_mse_hand_computed():
    y = np.array([[1.0, 10.0], [3.0, 20.0]])
    yhat = np.array([[2.0, 10.0], [3.0, 30.0]])
    mean, std = np.array([2.0, 15.0]), np.array([2.0, 5.0])
    # standardized errors: ch0 (0.5, 0), ch1 (0, 2) -> mean of squares (0.25+0+0+4)/4
    assert standardized_mse(y, yhat, mean, std) == pytest.approx(4.25 / 4)
    # scalar statistics
    assert standardized_mse([1, 2, 3], [1, 2, 4], 0.0, 2.0) == pytest.approx((0.25) / 3)


def test_sysid_metrics_dict():
    y = np.array([5.0, 1.0, 2.0, 3.0])
    yhat = np.array([0.0, 1.0, 2.0, 4.0])
    d = sysid_metrics(y, yhat, init_window=1, y_mean=0.0, y_std=2.0)
    assert d["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert d["nrmse"] == pytest.approx(1 / math.sqrt(2))
    assert d["fit"] == pytest.approx(100 * (1 - 1 / math.sqrt(2)))
    assert d["r2"] == pytest.approx(0.5)
    # whole sequence, not skipped: errors (5, 0, 0, 1)/2 -> (6.25 + 0.25)/4
    assert d["mse_std"] == pytest.approx(6.5 / 4)
    ss_tot = ((y - y.mean()) ** 2).sum()
    assert d["r2_full"] == pytest.approx(1 - 26 / ss_tot)
