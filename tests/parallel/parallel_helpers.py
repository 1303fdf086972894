"""Shared helpers of the parallel-in-time tests: plugin classes and their modules from the registry."""

from __future__ import annotations

import sys
from functools import lru_cache
from types import ModuleType

from suite.contracts import IOSpec
from suite.registry import Registry, load_registry


@lru_cache(maxsize=1)
def registry() -> Registry:
    return load_registry()


def plugin(kind: str, name: str) -> type:
    return registry().get(kind, name)


def module_of(kind: str, name: str) -> ModuleType:
    return sys.modules[plugin(kind, name).__module__]


def make_model(name: str, inputs: int, outputs: int, **params):
    cls = plugin("models", name)
    return cls(IOSpec("real", inputs), IOSpec("real", outputs), cls.Params(**params))
