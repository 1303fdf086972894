"""Numerical kernels: sequential oracles, parallel linear scans, DEER-family Newton solvers."""
from .kalman import lm_smoother_mean
from .newton import DeerInfo, NewtonNotConverged, deer_solve, default_tolerances, gtf_deer_solve
from .rollout import linear_recurrence_loop, sequential_rollout
from .scan import BACKENDS, linear_scan, linear_scan_dense

__all__ = [
    "sequential_rollout",
    "linear_recurrence_loop",
    "linear_scan",
    "linear_scan_dense",
    "BACKENDS",
    "deer_solve",
    "gtf_deer_solve",
    "DeerInfo",
    "NewtonNotConverged",
    "default_tolerances",
    "lm_smoother_mean",
]
