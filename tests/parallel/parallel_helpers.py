"""Shared helpers of the parallel-in-time tests: plugin classes from the registry."""

from __future__ import annotations

from functools import lru_cache

from suite.contracts import IOSpec
from suite.registry import Registry, load_registry


@lru_cache(maxsize=1)
def registry() -> Registry:
    return load_registry()


def plugin(kind: str, name: str) -> type:
    return registry().get(kind, name)


def make_model(name: str, inputs: int, outputs: int, **params):
    cls = plugin("models", name)
    return cls(IOSpec("real", inputs), IOSpec("real", outputs), cls.Params(**params))
