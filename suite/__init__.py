"""rnnbench: a benchmark suite for the ways recurrent networks are trained.

The engine lives here: plugin contracts (:mod:`suite.contracts`), the registry, manifests,
Ray Tune orchestration, the trial, the Parquet results store and the CLI. Training methods and
tasks are plugins in the top-level ``methods/`` and ``datasets/`` folders.

The Python API (:mod:`suite.api`) is importable from here without loading torch or Ray until it is used::

    import suite
    suite.run("manifests/quickstart.yaml", results="results")
    suite.leaderboard("results")
    suite.load_results("results").trials()
"""

from typing import Any

from suite._version import SCHEMA_VERSION, __version__  # noqa: F401  (re-exported)

_API = ("run", "load_results", "leaderboard", "prepare", "UsageError")


def __getattr__(name: str) -> Any:  # PEP 562: the API is imported on first use
    if name in _API:
        from suite import api

        return getattr(api, name)
    raise AttributeError(f"module 'suite' has no attribute {name!r}")
