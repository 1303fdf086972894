"""The results folder's layout, spelled in this module only.

::

    RESULTS/
      trials/<experiment>/*.parquet        one row per trial (TrialRecord), the store's tables
      curves/<experiment>/*.parquet        one row per (trial, step, split, metric)
      experiments/<experiment>/run-*.json  a run record per sweep (manifest, environment, counts)
      suite-manifests/<experiment>.yaml    the compiled manifest of a suite workload that ran
      locks/<experiment>.lock              the driver that runs an experiment now
      logs/<experiment>/<trial>.log        each trial's captured output (local stores)
      checkpoints/<experiment>/<trial>.pt  best-validation parameters of long trials (local stores)
      ray/                                 Ray Tune's own experiment state (never needed to read results)
      wandb/                               offline W&B runs

Only ``trials``, ``curves``, ``experiments`` and ``suite-manifests`` are results; the rest is machinery that
a compacted reference store leaves out.
"""

from __future__ import annotations

TRIALS = "trials"
CURVES = "curves"
TABLES = (TRIALS, CURVES)  #: the Parquet tables, one folder per experiment
EXPERIMENTS = "experiments"
SUITE_MANIFESTS = "suite-manifests"
LOCKS = "locks"
LOGS = "logs"
CHECKPOINTS = "checkpoints"
RAY = "ray"
WANDB = "wandb"
#: what a store kept in a repository holds (reference/...): the tables and the run records
RESULT_FOLDERS = (TRIALS, CURVES, EXPERIMENTS, SUITE_MANIFESTS)


def lock_file(experiment: str) -> tuple[str, str]:
    """``(folder, name)`` of an experiment's lock, relative to RESULTS."""
    return LOCKS, f"{experiment}.lock"
