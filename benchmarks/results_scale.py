"""How the results store and the leaderboard scale with the number of trial rows.

For each size, synthetic trial records (tasks x models x methods x configurations x seeds, some failed)
are written through the real writer path -- batched parts of ``--batch`` rows, as the driver's
ResultsWriter flushes them -- then compacted. Then it times, in the same run:

* ``leaderboard(store)``: the rnnbench leaderboard over the store (selection + aggregation in duckdb);
* ``store.trials()``: every live row with every column, as a pandas DataFrame;
* a reference: a plain duckdb group-by over the same Parquet files (mean test metric per configuration);
* ``rnnbench leaderboard STORE`` as a command (a fresh process: imports included), by its CPU time;

and prints the ratios leaderboard / reference, with the bytes on disk. Each in-process measurement is the best
of 3 runs, in wall seconds and in CPU seconds of this process (all its threads: duckdb runs several); the
command's CPU seconds are the child's user + system time (``getrusage``), the best of 3. On a shared machine
compare the ratios and the CPU seconds, not the wall seconds.

    python benchmarks/results_scale.py                    # 10^3, 10^4, 10^5, 10^6 rows
    python benchmarks/results_scale.py --sizes 1000 10000 # quicker
    python benchmarks/results_scale.py --stores /tmp/scale  # keep the stores there; a later run reads them again
                                                            # (writing 10^6 rows takes minutes) and leaves
                                                            # the write and compact columns empty
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from suite.analysis.ranking import leaderboard
from suite.store.record import TrialRecord
from suite.store.results import ResultsStore


def synthetic(start: int, count: int, seeds: int = 5, rng: np.random.Generator | None = None) -> list[TrialRecord]:
    """Trial records ``start .. start + count``: 4 tasks x 3 models x 4 methods, ``seeds`` seeds per configuration."""
    rng = rng or np.random.default_rng(start)
    out = []
    for i in range(start, start + count):
        config, seed = divmod(i, seeds)
        task, model, method = f"task{config % 4}", f"model{(config // 4) % 3}", f"method{(config // 12) % 4}"
        failed = rng.random() < 0.02
        val, test = float(rng.random()), float(rng.random())
        out.append(TrialRecord(
            experiment="scale", trial_key=f"k{i:08d}", config_id=f"c{config:08d}", task=task, model=model,
            method=method, seed=seed, method_params={"window": 10 + config % 97, "burn_in": float(config % 7) / 10},
            model_params={"hidden_size": 8 * (1 + config % 4)}, optimizer={"name": "adam", "lr": 1e-3 * (1 + config % 5)},
            budget={"epochs": 100}, status="diverged" if failed else "ok", error="non-finite loss" if failed else None,
            primary_metric="rmse", direction="min", selection_score=None if failed else val,
            metrics={} if failed else {"val": {"rmse": val}, "test": {"rmse": test}},
            metric_specs={"rmse": {"direction": "min", "unit": "V"}}, steps=1000, samples=10_000, epochs=100,
            wall_time_s=10 + rng.random(), train_time_s=9.0, peak_rss_bytes=2**27, cpu=1.0, gpu_fraction=0.0,
            hostname="node", torch_version="2.13.0", started_at=1.7e9 + i, finished_at=1.7e9 + i + 10,
            run_id=f"r{i}",
        ))
    return out


def timed(fn, repeat: int = 3) -> tuple[float, float, object]:
    """(best wall s, best CPU s of this process, the last result) over ``repeat`` calls."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu, result


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def command_cpu(root: Path, repeat: int = 3) -> float:
    """Best CPU seconds (user + system) of ``rnnbench leaderboard ROOT`` in a fresh process."""
    root_dir = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root_dir), os.environ.get("PYTHONPATH")]))}
    best = float("inf")
    for _ in range(repeat):
        c0 = _children_cpu()
        subprocess.run([sys.executable, "-m", "suite.cli", "leaderboard", str(root)], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
        best = min(best, _children_cpu() - c0)
    return best


def measure(n: int, batch: int, root: Path) -> dict[str, float]:
    store = ResultsStore(root)
    write_s = compact_s = parts = float("nan")
    if not (root / "trials").exists():  # else a store kept by --stores
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            store.write(synthetic(start, min(batch, n - start)))
        write_s = time.perf_counter() - t0
        parts = len(list((root / "trials" / "scale").glob("*.parquet")))
        t0 = time.perf_counter()
        store.compact()
        compact_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in (root / "trials").rglob("*.parquet"))
    board_s, board_cpu, board = timed(lambda: leaderboard(store))
    trials_s, _, trials = timed(lambda: store.trials(), repeat=1 if n >= 10**6 else 3)
    files = f"{root}/trials/*/*.parquet"
    ref_s, ref_cpu, _ = timed(lambda: duckdb.sql(
        f"SELECT task, model, method, config_id, avg(test_primary) FROM read_parquet('{files}', union_by_name=true) "
        "WHERE status = 'ok' GROUP BY ALL").fetchall())
    assert len(trials) == n and len(board) == 4 * 3 * 4
    return {"rows": n, "parts": parts, "write_s": write_s, "compact_s": compact_s, "mib": size / 2**20,
            "leaderboard_s": board_s, "leaderboard_cpu": board_cpu, "trials_s": trials_s, "duckdb_ref_s": ref_s,
            "duckdb_ref_cpu": ref_cpu, "command_cpu": command_cpu(root, repeat=1 if n >= 10**6 else 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    ap.add_argument("--batch", type=int, default=50_000, help="rows per written part (a driver flush)")
    ap.add_argument("--smoke", action="store_true", help="seconds-long run for CI (10^3 rows)")
    ap.add_argument("--stores", type=Path, help="keep the stores in this folder (rows-N/) and reuse those there")
    args = ap.parse_args()
    if args.smoke:
        args.sizes = [1000]
    print(f"{'rows':>8} {'parts':>5} {'write s':>8} {'compact s':>9} {'MiB':>7} {'leaderboard s':>13} "
          f"{'trials() s':>10} {'duckdb ref s':>12} {'lb / ref':>8} {'lb cpu s':>8} {'ref cpu s':>9} "
          f"{'cpu lb/ref':>10} {'command cpu s':>13}")
    for n in args.sizes:
        root = args.stores / f"rows-{n}" if args.stores else Path(tempfile.mkdtemp(prefix="rnnbench-scale-"))
        try:
            r = measure(n, min(args.batch, max(1, n // 4)), root)
        finally:
            if not args.stores:
                shutil.rmtree(root, ignore_errors=True)
        print(f"{r['rows']:>8} {r['parts']:>5.0f} {r['write_s']:>8.2f} {r['compact_s']:>9.2f} {r['mib']:>7.2f} "
              f"{r['leaderboard_s']:>13.3f} {r['trials_s']:>10.3f} {r['duckdb_ref_s']:>12.3f} "
              f"{r['leaderboard_s'] / r['duckdb_ref_s']:>8.2f} {r['leaderboard_cpu']:>8.3f} {r['duckdb_ref_cpu']:>9.3f} "
              f"{r['leaderboard_cpu'] / r['duckdb_ref_cpu']:>10.2f} {r['command_cpu']:>13.3f}", flush=True)


if __name__ == "__main__":
    main()
