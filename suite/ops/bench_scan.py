"""Micro-benchmark: loop vs parallel scan (forward and forward+backward).

Run: ``PYTHONPATH=. python -m suite.ops.bench_scan [--B 16 --T 4096 --D 256 --dense]``.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from .rollout import linear_recurrence_loop
from .scan import linear_scan, linear_scan_dense


def _best_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--T", type=int, default=4096)
    p.add_argument("--D", type=int, default=256)
    p.add_argument("--dense", action="store_true")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--backends", default="loop,chunked")
    args = p.parse_args()
    torch.manual_seed(0)
    B, T, D = args.B, args.T, args.D
    if args.dense:
        a = torch.randn(B, T, D, D) / (2 * D ** 0.5)
        scan = linear_scan_dense
    else:
        a = torch.rand(B, T, D) * 0.2 + 0.8
        scan = linear_scan
    b = torch.randn(B, T, D)
    a.requires_grad_(True)
    b.requires_grad_(True)
    w = torch.randn(B, T, D)

    def fwd(f):
        with torch.no_grad():
            return f(a, b)

    def fwd_bwd(f):
        h = f(a, b)
        torch.autograd.grad((h * w).sum(), (a, b))

    impls = {"python-loop(unbind+stack, autograd)": linear_recurrence_loop}
    for be in args.backends.split(","):
        impls[f"linear_scan[{be}]"] = (lambda x, y, _be=be: scan(x, y, backend=_be))
    print(f"B={B} T={T} D={D} dense={args.dense} threads={torch.get_num_threads()} (best of {args.repeat}, ms)")
    for name, f in impls.items():
        print(f"{name:40s} fwd {_best_ms(lambda: fwd(f), args.repeat):8.1f}"
              f"   fwd+bwd {_best_ms(lambda: fwd_bwd(f), args.repeat):8.1f}")


if __name__ == "__main__":
    main()
