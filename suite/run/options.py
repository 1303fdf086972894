"""How to run a sweep, as one typed object carried from the CLI to the Python API to the orchestrator, so a new
run option is added here (and as a flag in the CLI) instead of in four signatures."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

#: old keyword names of ``run_sweep`` -> fields (the call sites of rnnbench 0.2 keep working)
_LEGACY = {"results_dir": "results", "wandb_mode": "wandb"}


@dataclass(frozen=True)
class RunOptions:
    results: str = "results"  #: results directory or URI (file://, s3://, ...)
    storage: str | None = None  #: Ray Tune storage (shared on clusters); default RESULTS/ray
    address: str | None = None  #: join a Ray cluster (auto, ray://..., host:port); None: a private local instance
    resume: bool = False  #: run only the trials without a row
    retry: tuple[str, ...] = ()  #: with resume: also rerun rows of these statuses (error, timeout, diverged)
    max_concurrent: int | None = None  #: trials at once (default: the manifest's, else what the resources allow)
    wandb: str | None = None  #: W&B mode: offline, online, disabled (default: the manifest's)
    data_dir: str | None = None  #: benchmark data directory
    plugin_dirs: tuple[str, ...] = ()  #: extra plugin folders (shipped to every node)
    num_cpus: int | None = None  #: CPUs of the local Ray instance
    force_unlock: bool = False  #: take over a lock left by a driver that is gone
    wait_for_resources_s: float = 0.0  #: wait this long for a node with the resources a trial needs
    flush_every: int = 200  #: finished trials per written part
    flush_s: float = 5.0  #: seconds between written parts
    compact: bool = True  #: compact the experiment when the sweep ends
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  #: reserved for plugins of the engine

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RunOptions:
        """Options from keyword arguments, old names (``results_dir``, ``wandb_mode``) included; unknown names
        are an error that lists the known ones."""
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in kwargs.items():
            name = _LEGACY.get(key, key)
            if name not in known:
                raise TypeError(f"unknown run option {key!r}; options: {', '.join(sorted(known))}")
            if name in ("retry", "plugin_dirs") and value is not None:
                value = tuple(str(v) for v in value)
            if name == "results" and value is not None:
                value = str(value)
            if name == "data_dir" and value is not None:
                value = str(value)
            values[name] = value if value is not None or name not in ("retry", "plugin_dirs") else ()
        return cls(**values)

    def merged(self, **kwargs: Any) -> RunOptions:
        """These options with the given keyword arguments (old names included) replacing their fields."""
        if not kwargs:
            return self
        given = RunOptions.from_kwargs(**kwargs)
        return replace(self, **{_LEGACY.get(k, k): getattr(given, _LEGACY.get(k, k)) for k in kwargs})
