"""Parallel-in-time training vs the sequential loop: time and peak memory against sequence length T.

Rows, all measured in the same run on the same inputs ``x [B, T, I]`` (float32):

* ``seq-loop``   sequential BPTT of a small GRU: the suite's functional ``GRU.step`` in a Python
                 loop over ``x.unbind(1)`` (the baseline every ratio refers to);
* ``fused-gru``  the same GRU through ``nn.GRU`` (cuDNN on CUDA), for reference;
* ``scan``       a diagonal linear recurrence of the same width (``mingru``), ``forward`` = parallel
                 scan (:func:`suite.ops.linear_scan`), backward = reverse scan;
* ``deer``       the GRU's states by DEER (dense Jacobians, implicit-function backward = BPTT);
* ``quasi-deer`` diagonal Jacobians forward and backward (the ELK repository's behaviour; the
                 gradient is approximate), from the GRU's closed-form ``jacobian_diagonal``.

For each T: forward time, forward+backward time (best of ``--repeat``), peak memory of one
forward+backward (CUDA: ``max_memory_allocated``; CPU: peak RSS increase over the start of the
call, after ``malloc_trim``, sampled every 0.5 ms -- approximate, allocator-dependent), the
ratios time(seq-loop) / time(row) (> 1: faster than the loop), and for the DEER rows the Newton
iterations and the forward cost per iteration. A row is skipped at lengths where its estimated
memory exceeds ``--mem-limit-gb`` (DEER stores B T D^2 Jacobians, quasi-DEER B T D diagonals)
or its time extrapolated from the previous
length exceeds ``--max-row-s`` (6 s in ``--quick``).

Then the scan check of the ops kernel: B = 16, T = 4096, D = 256, a diagonal recurrence solved by
a Python loop (unbind + stack, autograd) and by ``linear_scan``, forward+backward; it passes when
the scan is no slower than the loop.

CPU runs use one intra-op thread unless ``--threads`` says otherwise: trials run that way
(``resources.cpu: 1``), and on small 2-vCPU machines two OpenMP threads can make mid-sized ops
many times slower (seen here: a 256 x 256 matmul took 6 ms with 2 threads, 0.2 ms with 1).

    python benchmarks/parallel_in_time.py --quick            # < 2 minutes on 2 CPU cores
    python benchmarks/parallel_in_time.py                    # T in 1e2 .. 1e5
    python benchmarks/parallel_in_time.py --with-1e6 --device cuda
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from suite.contracts import IOSpec
from suite.ops import NewtonNotConverged, linear_recurrence_loop, linear_scan, sequential_rollout
from suite.registry import load_registry
from suite.training import newton

# --- measurement ----------------------------------------------------------------------------------

def _malloc_trim() -> None:
    """Return free heap memory to the OS, so that RSS growth from here on is new allocations."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory increase of the enclosed code (CUDA allocator, or sampled RSS on CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            gc.collect()
            _malloc_trim()
            self.base = _rss_bytes()
            self.top = self.base
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.top = max(self.top, _rss_bytes())
            time.sleep(0.0005)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.top, _rss_bytes()) - self.base


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn: Callable[[], Any], repeat: int, device: torch.device, warmup: bool = True,
              memory: PeakMemory | None = None) -> float:
    """Best wall time (s) of ``repeat`` calls (after one warm-up call); the last call runs inside ``memory``."""
    if warmup:
        fn()
        _sync(device)
    best = math.inf
    for i in range(repeat):
        if memory is not None and i == repeat - 1:
            with memory:
                t0 = time.perf_counter()
                fn()
                _sync(device)
                best = min(best, time.perf_counter() - t0)
        else:
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class Row:
    name: str
    fwd: float = math.nan
    fwdbwd: float = math.nan
    mem: float = math.nan
    iters: float = math.nan
    note: str = ""
    extra: dict = field(default_factory=dict)


# --- workloads ------------------------------------------------------------------------------------

def build_models(args: argparse.Namespace, device: torch.device):
    reg = load_registry()
    torch.manual_seed(0)
    gru_cls, scan_cls = reg.get("models", "gru"), reg.get("models", "mingru")
    gru = gru_cls(IOSpec("real", args.inputs), IOSpec("real", 1), gru_cls.Params(hidden_size=args.hidden))
    scan = scan_cls(IOSpec("real", args.inputs), IOSpec("real", 1), scan_cls.Params(hidden_size=args.hidden, scan_backend=args.backend))
    return gru.to(device), scan.to(device), reg.get("methods", "deer")


def workloads(gru, scan, deer_cls, backend: str = "auto") -> dict[str, Callable]:
    """name -> f(x) returning (outputs, newton iterations or None)."""
    cell = newton.FunctionalCell(gru)
    dense = newton.solver_options(deer_cls.Params(variant="dense", scan_backend=backend))
    quasi = newton.solver_options(deer_cls.Params(variant="quasi", backward="quasi", scan_backend=backend))

    def seq_loop(x):
        u = gru.encode(x)
        H = sequential_rollout(gru.step, gru.initial_state(x.shape[0]), u)
        return gru.readout(H, u), None

    def fused(x):
        return gru(x)[0], None

    def scan_fwd(x):
        return scan(x)[0], None

    def deer_fwd(opts):
        def run(x):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NewtonNotConverged)
                y, _, info = newton.deer_forward(gru, x, cell=cell, **opts)
            return y, info.iterations
        return run

    return {"seq-loop": seq_loop, "fused-gru": fused, "scan": scan_fwd, "deer": deer_fwd(dense),
            "quasi-deer": deer_fwd(quasi)}


def estimated_bytes(name: str, B: int, T: int, D: int) -> float:
    """Rough peak of one forward+backward (float32), used to skip rows that cannot fit."""
    # float32 values per (sequence, step), fitted to CPU measurements at D = 16 (allocator overheads
    # included); quasi-DEER's closed-form diagonal Jacobians are O(D) per step
    per = {"seq-loop": 100 * D, "fused-gru": 80 * D, "scan": 12 * D, "deer": 10 * D * D + 60 * D,
           "quasi-deer": 100 * D}[name]
    return 4.0 * B * T * per


def measure(name: str, fn: Callable, x: torch.Tensor, params: list[torch.Tensor], args: argparse.Namespace,
            device: torch.device) -> Row:
    row = Row(name)
    iters: list[int] = []

    def forward():
        with torch.no_grad():
            y, it = fn(x)
        if it is not None:
            iters.append(it)
        return y

    def forward_backward():
        y, it = fn(x)
        torch.autograd.grad(y.pow(2).mean(), params, allow_unused=True)
        return y

    T = x.shape[1]
    repeat = args.repeat if T <= 10_000 else 1
    # one-time costs are paid at the short lengths; on CUDA a new length can still cost a kernel
    # (re)compile, so every row but the slow Python loop warms up there
    warmup = T <= 1000 or (device.type == "cuda" and name != "seq-loop")
    row.fwd = best_time(forward, repeat, device, warmup)
    mem = PeakMemory(device)
    row.fwdbwd = best_time(forward_backward, repeat, device, warmup, memory=mem)
    row.mem = mem.peak / 2**20
    if iters:
        row.iters = sum(iters) / len(iters)
    return row


def length_table(args: argparse.Namespace, device: torch.device) -> None:
    gru, scan, deer_cls = build_models(args, device)
    fns = workloads(gru, scan, deer_cls, args.backend)
    only = set(args.rows.split(",")) if args.rows else set(fns)
    print(f"\n## time and peak memory vs T  (B={args.batch}, D={args.hidden}, I={args.inputs}, float32, "
          f"device={device}, threads={torch.get_num_threads()}, scan backend {args.backend}, best of {args.repeat})")
    print("ratios: t(seq-loop) / t(row), > 1 means faster than the sequential loop; "
          "mem: peak increase of one fwd+bwd\n")
    header = (f"{'T':>8} {'method':<11} {'fwd ms':>10} {'fwd+bwd ms':>11} {'x fwd':>7} {'x f+b':>7} "
              f"{'mem MiB':>9} {'Newton':>7} {'ms/iter':>8}")
    print(header)
    print("-" * len(header))
    last: dict[str, tuple[int, float]] = {}
    for T in args.lengths:
        torch.manual_seed(T)
        x = torch.randn(args.batch, T, args.inputs, device=device)
        rows: list[Row] = []
        for name, fn in fns.items():
            prev = last.get(name)
            if name not in only:
                continue
            params = list(scan.parameters()) if name == "scan" else list(gru.parameters())
            if estimated_bytes(name, args.batch, T, args.hidden) > args.mem_limit_gb * 2**30:
                rows.append(Row(name, note="skipped (memory)"))
                continue
            if name in ("seq-loop",) and T > args.max_loop_T:
                rows.append(Row(name, note=f"skipped (T > --max-loop-T {args.max_loop_T})"))
                continue
            if prev is not None and prev[1] * T / prev[0] > args.max_row_s:
                rows.append(Row(name, note=f"skipped (estimated fwd+bwd > --max-row-s {args.max_row_s:g} s)"))
                continue
            try:
                row = measure(name, fn, x, params, args, device)
            except RuntimeError as err:  # CUDA out of memory, or a kernel that refuses this length (cuDNN)
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                rows.append(Row(name, note=f"failed: {str(err).splitlines()[0][:90]}"))
                continue
            last[name] = (T, row.fwdbwd + row.fwd)
            rows.append(row)
        base = next((r for r in rows if r.name == "seq-loop"), None)
        for r in rows:
            if r.note:
                print(f"{T:>8} {r.name:<11} {r.note}")
                continue
            rf = base.fwd / r.fwd if base and not base.note else math.nan
            rb = base.fwdbwd / r.fwdbwd if base and not base.note else math.nan
            it = f"{r.iters:7.1f}" if not math.isnan(r.iters) else f"{'':>7}"
            per = f"{1e3 * r.fwd / r.iters:8.2f}" if not math.isnan(r.iters) and r.iters else f"{'':>8}"
            print(f"{T:>8} {r.name:<11} {1e3 * r.fwd:10.2f} {1e3 * r.fwdbwd:11.2f} {rf:7.2f} {rb:7.2f} "
                  f"{r.mem:9.1f} {it} {per}")
        print()


def scan_check(args: argparse.Namespace, device: torch.device) -> float:
    """B=16, T=4096, D=256 diagonal recurrence: loop vs linear_scan, forward+backward."""
    B, T, D = 16, 4096, 256
    torch.manual_seed(0)
    a = (torch.rand(B, T, D, device=device) * 0.2 + 0.8).requires_grad_(True)
    b = torch.randn(B, T, D, device=device).requires_grad_(True)
    w = torch.randn(B, T, D, device=device)

    def fwd_bwd(f):
        def run():
            h = f(a, b)
            torch.autograd.grad((h * w).sum(), (a, b))
        return run

    repeat = max(2, args.repeat)
    t_loop = best_time(fwd_bwd(linear_recurrence_loop), repeat, device)
    print(f"## scan check: B={B} T={T} D={D} diagonal, forward+backward, best of {repeat}")
    print(f"python loop (unbind+stack, autograd)  {1e3 * t_loop:9.1f} ms")
    if device.type == "cpu":
        backends = ["auto", "loop", "chunked"]
    else:
        backends = ["auto", "associative", "chunked"]
        if importlib.util.find_spec("accelerated_scan") is not None:
            backends.insert(1, "accelerated")
    ratios = {}
    for be in backends:
        t = best_time(fwd_bwd(lambda x, y, _be=be: linear_scan(x, y, backend=_be)), repeat, device)
        ratios[be] = t_loop / t
        print(f"linear_scan backend={be:<12} {1e3 * t:9.1f} ms   loop/scan = {ratios[be]:.2f}")
    verdict = "PASS" if ratios["auto"] >= 1.0 else "FAIL"
    print(f"check (backend auto no slower than the loop): ratio {ratios['auto']:.2f} -> {verdict}")
    return ratios["auto"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="T in 1e2..1e4, fewer repeats (< 2 min on 2 CPU cores)")
    p.add_argument("--with-1e6", action="store_true", help="also T = 1e6 (rows that fit in --mem-limit-gb)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--inputs", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--lengths", type=str, default=None, help="comma-separated T values (overrides the presets)")
    p.add_argument("--rows", type=str, default=None, help="comma-separated subset of rows")
    p.add_argument("--mem-limit-gb", type=float, default=8.0, help="skip rows estimated to need more")
    p.add_argument("--max-loop-T", type=int, default=10**6, help="skip the Python-loop baseline above this T")
    p.add_argument("--max-row-s", type=float, default=math.inf,
                   help="skip a row at T when its fwd + fwd+bwd time, extrapolated linearly from the last T, exceeds this")
    p.add_argument("--backend", default="auto", help="linear-scan backend of the scan and DEER rows")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: 1 on CPU, like a trial with resources.cpu = 1)")
    p.add_argument("--skip-scan-check", action="store_true")
    p.add_argument("--smoke", action="store_true", help="seconds-long run for CI (T = 100, one repeat, no scan check)")
    args = p.parse_args(argv)
    if args.smoke:
        args.lengths, args.repeat, args.batch, args.skip_scan_check = "100", 1, 2, True
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    if args.lengths:
        args.lengths = [int(float(v)) for v in args.lengths.split(",")]
    elif args.quick:
        args.lengths = [100, 1000, 10_000]
        args.repeat = min(args.repeat, 2)
        args.batch = 4
        args.max_row_s = min(args.max_row_s, 6.0)
    else:
        args.lengths = [100, 1000, 10_000, 100_000]
    if args.with_1e6:
        args.lengths.append(1_000_000)
    t0 = time.perf_counter()
    length_table(args, device)
    if not args.skip_scan_check:
        scan_check(args, device)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
