"""How this run executes a trial, typed: :class:`TrialRuntime`.

What defines a trial is its :class:`~suite.run.spec.TrialSpec` (part of its key); the runtime is the rest,
the same for every trial of a sweep and no part of any key: where the data and the plugins are, where the
trial's output and checkpoints go, W&B, and whether the worker may be killed at its time limit. The driver
builds it from its :class:`~suite.run.options.RunOptions` and store (:mod:`suite.run.orchestrate`); it crosses
the Ray boundary as plain data (:meth:`TrialRuntime.to_config` / :meth:`TrialRuntime.from_config`). A run
option a trial needs is added to ``RunOptions`` and carried here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from suite.run import plugin_shipping
from suite.run.plugin_shipping import PluginPack
from suite.run.wandb_run import WandbSettings


@dataclass(frozen=True)
class TrialRuntime:
    """The trial's surroundings (see the module docstring); every field has a default that suits a trial run
    in-process (tests, ``rnnbench check``)."""

    data_dir: str | None = None  #: the benchmark data directory (None: the tasks' default, RNNBENCH_DATA)
    plugin_dirs: tuple[str, ...] = ()  #: plugin folders by path (used where no packs travel)
    plugin_packs: tuple[PluginPack, ...] = ()  #: the folders themselves, for nodes without the driver's paths
    kill_on_overrun: bool = False  #: a worker blocked past its time limit is killed from outside (trial_killer)
    wandb: WandbSettings | None = None  #: None: no W&B run
    log_dir: str | None = None  #: the trial's output is captured to ``<log_dir>/<trial_key>.log``
    checkpoint_dir: str | None = None  #: best_val checkpoints go to ``<checkpoint_dir>/<trial_key>.pt``
    log_root: str | None = None  #: what a record's ``log_path`` is relative to

    def plugin_folders(self) -> tuple[str, ...]:
        """The plugin folders a trial loads: the shipped copies when the runtime carries them, else the paths."""
        if self.plugin_packs:
            return tuple(plugin_shipping.unpack(self.plugin_packs))
        return self.plugin_dirs

    # --- the Ray boundary --------------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "plugin_dirs": list(self.plugin_dirs),
                "plugin_packs": [p.to_config() for p in self.plugin_packs], "kill_on_overrun": self.kill_on_overrun,
                "wandb": self.wandb.to_dict() if self.wandb else None, "log_dir": self.log_dir,
                "checkpoint_dir": self.checkpoint_dir, "log_root": self.log_root}

    @classmethod
    def from_config(cls, d: Mapping[str, Any] | None) -> TrialRuntime:
        """From plain data (:meth:`to_config`, or a part of it: the rest is the defaults)."""
        d = dict(d or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"a trial runtime: unknown keys {unknown}; known: {', '.join(known)}")
        if "plugin_dirs" in d:
            d["plugin_dirs"] = tuple(str(p) for p in d["plugin_dirs"] or ())
        if "plugin_packs" in d:
            d["plugin_packs"] = tuple(p if isinstance(p, PluginPack) else PluginPack.from_config(p)
                                      for p in d["plugin_packs"] or ())
        if "wandb" in d and not isinstance(d["wandb"], WandbSettings):
            d["wandb"] = WandbSettings.from_dict(d["wandb"])
        return cls(**d)

    @classmethod
    def of(cls, value: TrialRuntime | Mapping[str, Any] | None) -> TrialRuntime:
        """``value`` typed: a runtime as it is, plain data through :meth:`from_config`, None the defaults."""
        return value if isinstance(value, TrialRuntime) else cls.from_config(value)
