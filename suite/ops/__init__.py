"""Numerical kernels: sequential oracles, parallel linear scans, DEER-family Newton solvers."""
from .rollout import linear_recurrence_loop, sequential_rollout
from .scan import BACKENDS, linear_scan, linear_scan_dense

__all__ = [
    "sequential_rollout",
    "linear_recurrence_loop",
    "linear_scan",
    "linear_scan_dense",
    "BACKENDS",
]
