"""rnnbench: a benchmark suite for the ways recurrent networks are trained.

The engine lives here: plugin contracts (:mod:`suite.contracts`), the registry, manifests,
Ray Tune orchestration, the trial, the Parquet results store and the CLI. Training methods and
tasks are plugins in the top-level ``methods/`` and ``datasets/`` folders.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 2
