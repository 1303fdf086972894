"""Small pure cells ``f(params, h, u) -> h'`` used by the DEER tests."""
from __future__ import annotations

import torch


def gru_cell(p, h, x):
    z = torch.sigmoid(x @ p["Wz"].T + h @ p["Uz"].T + p["bz"])
    r = torch.sigmoid(x @ p["Wr"].T + h @ p["Ur"].T + p["br"])
    n = torch.tanh(x @ p["Wn"].T + (r * h) @ p["Un"].T + p["bn"])
    return (1 - z) * n + z * h


def gru_params(D, I, dtype=torch.float64, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = {}
    for k in ("Wz", "Wr", "Wn"):
        p[k] = torch.randn(D, I, generator=g, dtype=dtype) * scale
    for k in ("Uz", "Ur", "Un"):
        p[k] = torch.randn(D, D, generator=g, dtype=dtype) * scale
    for k in ("bz", "br", "bn"):
        p[k] = torch.randn(D, generator=g, dtype=dtype) * 0.1
    return p


def elman_cell(p, h, x):
    return torch.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])


def elman_jac(p, h, x):
    """Analytic Jacobian of :func:`elman_cell`: diag(1 - h'^2) W, shape [N, D, D]."""
    hn = elman_cell(p, h, x)
    return (1 - hn * hn).unsqueeze(-1) * p["W"]


def elman_params(D, I, dtype=torch.float64, w_scale=0.8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "W": torch.randn(D, D, generator=g, dtype=dtype) * w_scale / D ** 0.5,
        "U": torch.randn(D, I, generator=g, dtype=dtype) * 0.5,
        "b": torch.randn(D, generator=g, dtype=dtype) * 0.1,
    }


def elementwise_cell(p, h, x):
    """tanh(w * h + U x + b): its Jacobian is exactly diagonal."""
    return torch.tanh(p["w"] * h + x @ p["U"].T + p["b"])


def elementwise_jac_diag(p, h, x):
    """Analytic diagonal Jacobian of :func:`elementwise_cell`, shape [N, D]."""
    y = elementwise_cell(p, h, x)
    return p["w"] * (1 - y * y)


def elementwise_params(D, I, dtype=torch.float64, seed=2):
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(D, generator=g, dtype=dtype),
        "U": torch.randn(D, I, generator=g, dtype=dtype) * 0.5,
        "b": torch.randn(D, generator=g, dtype=dtype) * 0.1,
    }


def linear_cell(p, h, x):
    return h @ p["W"].T + x @ p["U"].T + p["b"]


def logistic_cell(p, h, x):
    """Chaotic logistic map r h (1 - h) per unit (r = 3.9), weakly driven by the input."""
    return p["r"] * h * (1 - h) + 1e-3 * (x @ p["U"].T)


def logistic_params(D, I, dtype=torch.float64, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {"r": torch.full((D,), 3.9, dtype=dtype), "U": torch.randn(D, I, generator=g, dtype=dtype)}


def strong_tanh_cell(p, h, x):
    """tanh(W h + U x) with a large gain: a chaotic-looking, strongly nonlinear map."""
    return torch.tanh(h @ p["W"].T + x @ p["U"].T)


def strong_tanh_params(D, I, dtype=torch.float64, gain=4.0, seed=4):
    g = torch.Generator().manual_seed(seed)
    return {
        "W": torch.randn(D, D, generator=g, dtype=dtype) * gain / D ** 0.5,
        "U": torch.randn(D, I, generator=g, dtype=dtype),
    }
