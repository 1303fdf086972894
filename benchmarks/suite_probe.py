"""Size a suite's workloads: one seed of every applicable entry (``defaults``) for a few updates, in process,
and the estimated wall time of a full trial (setup + updates x the measured time per update + evaluations x the
measured time per evaluation).

    python benchmarks/suite_probe.py suites/v1-cpu.yaml [--steps 10] [--workload NAME ...] [--smoke]

Prints one line per (workload, entry) and, at the end, the estimated reference run (both rulesets) on the
number of cores given by ``--cores``. ``--smoke`` probes two updates of the first workload's first entry only
(CI keeps this script from rotting).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.registry import load_registry  # noqa: E402
from suite.run.sweep import expand  # noqa: E402
from suite.run.trial import execute_trial  # noqa: E402
from suite.suites.compile import validated, workload_manifest  # noqa: E402
from suite.suites.spec import load_suite  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workload", action="append", default=[])
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    suite, _ = load_suite(args.suite)
    registry = load_registry()
    workloads = [w for w in suite.workloads if not args.workload or w.name in args.workload]
    entries = [e for e in suite.methods if not args.label or e.label in args.label]
    if args.smoke:
        workloads, entries, args.steps = workloads[:1], entries[:1], 2
    total = 0.0
    for w in workloads:
        compiled = workload_manifest(suite, w, "defaults", entries, registry)
        for label, reason in compiled.not_applicable.items():
            print(f"{w.name:16s} {label:15s} not applicable: {reason}", flush=True)
        if not compiled.data["methods"]:
            continue
        matrix = expand(validated(compiled, registry), registry)
        specs = [s for s in matrix.trials if s.seed == suite.seeds[0]]
        for label, spec in zip(compiled.labels, specs):
            probe = dataclasses.replace(spec, budget={"steps": args.steps}, eval_every={"steps": args.steps},
                                        resources={**spec.resources.to_config(), "time_limit_s": 600})
            t0 = time.perf_counter()
            rec = execute_trial(probe, {"data_dir": os.environ.get("RNNBENCH_DATA")}, lambda _: None)
            wall = time.perf_counter() - t0
            per_step = (rec.train_time_s or wall) / max(rec.steps or args.steps, 1)
            evals_probe = 2  # one periodic evaluation and the final one
            eval_s = max(wall - (rec.train_time_s or 0.0), 0.0) / evals_probe
            n_evals = w.budget.steps // w.eval_every.steps + 1
            estimate = wall + (w.budget.steps - args.steps) * per_step + (n_evals - evals_probe) * eval_s
            total += estimate * len(suite.seeds)
            print(f"{w.name:16s} {label:15s} {rec.status:8s} probe {wall:6.1f} s  {per_step * 1e3:8.1f} ms/update  "
                  f"eval {eval_s:5.1f} s  full trial ~{estimate:6.0f} s", flush=True)
            if rec.status != "ok":
                print(f"    {rec.error[:300]}", flush=True)
    tuned = suite.rulesets.tuned.configs
    print(f"estimated reference run: defaults {total / 3600 / args.cores:.2f} h, tuned (N={tuned}) "
          f"{total * tuned / 3600 / args.cores:.2f} h on {args.cores} cores")


if __name__ == "__main__":
    main()
