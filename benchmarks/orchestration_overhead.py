"""What rnnbench's driver costs on top of raw Ray Tune, for sweeps of trivial trials.

Both sides run the same trainable work -- :func:`suite.run.trial.execute_trial` on a toy-sysid GRU with one
update -- on the same local Ray instance, with the same resources, ``reuse_actors=True`` and the same
concurrency:

* **raw Ray Tune**: a ``Tuner`` over a ``grid_search`` of the trial specs, Tune's default loggers, no callbacks;
* **rnnbench**: ``run_sweep`` (batched Parquet rows, progress, compaction at the end), W&B disabled, then
  W&B offline (one run per trial, logged from the worker).

Printed: the wall time of each (best of ``--repeat``, the variants interleaved), the throughput ratio
raw / rnnbench (1.0 = no overhead; goal >= 0.95) and W&B offline / disabled (goal <= 1.1), and "W&B alone":
the same number of offline runs opened, logged and closed by the W&B SDK in one process with nothing else
running -- W&B's own cost, which rnnbench's logging actor moves off the trials' path but cannot remove (on a
machine whose cores the trials fill, it shows up in the wall time).

    python benchmarks/orchestration_overhead.py               # N = 16 and 200
    python benchmarks/orchestration_overhead.py --sizes 16 --repeat 1
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("RAY_ADDRESS", None)

from rich.console import Console  # noqa: E402

from suite.manifest import validate  # noqa: E402
from suite.registry import load_registry  # noqa: E402
from suite.run.orchestrate import run_sweep  # noqa: E402
from suite.run.sweep import expand  # noqa: E402


def manifest_for(n: int, name: str):
    registry = load_registry()
    data = {"name": name, "tasks": [{"name": "toy-sysid", "params": {"length": 40}}],
            "models": [{"name": "gru", "params": {"hidden_size": 4}}],
            "methods": [{"name": "bptt", "params": {"batch_size": 1}}],
            "seeds": list(range(n)), "budget": {"steps": 1}, "eval_every": {"steps": 1},
            "optimizer": {"name": "adam", "lr": 0.01}, "resources": {"cpu": 1}, "wandb": {"mode": "disabled"}}
    manifest = validate(data, registry)
    return manifest, expand(manifest, registry).trials


def _raw_trainable(config):
    from ray import tune

    from suite.run.sweep import TrialSpec
    from suite.run.trial import execute_trial

    execute_trial(TrialSpec.from_config(config["trial"]), {}, tune.report)


def raw_tune(n: int, root: Path, concurrency: int) -> float:
    from ray import tune

    _, trials = manifest_for(n, "raw")
    tuner = tune.Tuner(
        tune.with_resources(_raw_trainable, {"cpu": 1}),
        param_space={"trial": tune.grid_search([t.to_config() for t in trials])},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name="raw", storage_path=str(root / "ray"), verbose=0),
    )
    t0 = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - t0


def rnnbench(n: int, root: Path, concurrency: int, wandb: str) -> float:
    manifest, trials = manifest_for(n, "bench")
    quiet = Console(stderr=True, quiet=True)
    t0 = time.perf_counter()
    out = run_sweep(manifest, trials, results_dir=root / "results", wandb_mode=wandb, max_concurrent=concurrency,
                    console=quiet)
    elapsed = time.perf_counter() - t0
    assert len(out.statuses) == n and set(out.statuses.values()) == {"ok"}, out.statuses
    return elapsed


def wandb_alone(n: int, root: Path) -> float:
    """W&B's own floor: ``n`` offline runs opened, logged once and closed in one process, with the settings
    rnnbench uses (``suite.run.wandb_run.WandbRun``), no Ray and no training."""
    from suite.run.wandb_run import WandbRun, WandbSettings
    from suite.store.record import TrialRecord

    settings = WandbSettings(mode="offline", dir=str(root / "wandb"))
    t0 = time.perf_counter()
    for i in range(n):
        record = TrialRecord(experiment="floor", trial_key=f"{i:016x}", config_id="c", task="toy-sysid",
                             model="gru", method="bptt", seed=i, status="ok", run_id=f"r{i}")
        run = WandbRun(settings, record)
        run.log({"step": 1, "loss": 1.0})
        run.finish(record)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 200])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--smoke", action="store_true", help="seconds-long run for CI (2 trials, one repeat)")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.repeat = [2], 1
    import ray

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    print(f"{'N':>5} {'raw Tune s':>10} {'rnnbench s':>10} {'raw/rnnbench':>12} {'+W&B offline s':>14} "
          f"{'offline/disabled':>16} {'W&B alone s':>11}")
    for n in args.sizes:
        best = {"raw": float("inf"), "disabled": float("inf"), "offline": float("inf")}
        for _ in range(args.repeat):
            for variant in best:
                root = Path(tempfile.mkdtemp(prefix="rnnbench-orch-"))
                try:
                    t = raw_tune(n, root, args.cpus) if variant == "raw" else rnnbench(n, root, args.cpus, variant)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                best[variant] = min(best[variant], t)
        root = Path(tempfile.mkdtemp(prefix="rnnbench-orch-"))
        try:
            alone = wandb_alone(n, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"{n:>5} {best['raw']:>10.1f} {best['disabled']:>10.1f} {best['raw'] / best['disabled']:>12.2f} "
              f"{best['offline']:>14.1f} {best['offline'] / best['disabled']:>16.2f} {alone:>11.1f}", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
