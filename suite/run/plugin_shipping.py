"""Plugin folders travel with the sweep, so every Ray node runs the driver's copy.

``--plugins DIR`` is read on the driver. Before the trials start, :func:`pack` reads each folder's files
(``.py`` and whatever data sits beside them; ``__pycache__`` and hidden files left out; at most
:data:`MAX_BYTES` in all) into a :class:`PluginPack` of the trial runtime (:class:`suite.run.runtime.TrialRuntime`),
which Ray's object store hands to every worker with the trial's parameters (``tune.with_parameters``). On a
worker, :func:`unpack` writes each folder once per content digest under
``<tmp>/rnnbench-plugins/<digest>/<folder name>/`` (atomically: written aside, then renamed) and the trial loads
its registry from there. So a cluster needs no shared path and no copy of the plugins on its nodes, and a folder
edited or removed on the driver after submission does not change what the trials run.

Why not Ray's ``runtime_env`` (``py_modules``/``working_dir``): a job's runtime environment is fixed when Ray
is initialised, and rnnbench is also driven inside a Ray session someone else started (``--address``, the
Python API, the tests' clusters); the object store reaches the workers in every case, with the same content
hashing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024 * 1024  #: a plugin folder is code and small data; larger is a mistake (or belongs in RNNBENCH_DATA)


class PluginShippingError(ValueError):
    """A plugin folder that cannot be shipped (too large, unreadable)."""


@dataclass(frozen=True)
class PluginPack:
    """One plugin folder as it travels: its files by relative path, named by a digest of their content."""

    name: str  #: the folder's name (kept on the nodes: plugins may refer to it)
    digest: str
    origin: str  #: where the folder was on the driver
    files: dict[str, bytes]

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "origin": self.origin, "files": self.files}

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> PluginPack:
        return cls(**d)


def pack(dirs: list[str] | tuple[str, ...]) -> list[PluginPack]:
    """A :class:`PluginPack` of each folder, in order."""
    packs, total = [], 0
    for d in dirs:
        root = Path(d).expanduser().resolve()
        files: dict[str, bytes] = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            data = path.read_bytes()
            total += len(data)
            if total > MAX_BYTES:
                raise PluginShippingError(f"--plugins {d}: the plugin folders hold more than {MAX_BYTES >> 20} MiB; "
                                          "keep code and small files there and put data under RNNBENCH_DATA")
            files[rel.as_posix()] = data
        h = hashlib.sha256()
        for rel, data in files.items():
            h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        packs.append(PluginPack(name=root.name, digest=h.hexdigest()[:16], origin=str(root), files=files))
    return packs


def shipped_root() -> Path:
    return Path(tempfile.gettempdir()) / "rnnbench-plugins"


def unpack(packs: Iterable[PluginPack]) -> list[str]:
    """Materialise shipped folders on this node (once per digest); their paths, in order."""
    out = []
    for p in packs:
        target = shipped_root() / p.digest / p.name
        if not target.is_dir():
            staging = shipped_root() / f".{p.digest}-{uuid.uuid4().hex[:8]}"
            for rel, data in p.files.items():
                f = staging / p.name / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
            (staging / p.name).mkdir(parents=True, exist_ok=True)
            target.parent.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target.parent)  # atomic: another trial on this node may have won the race
            except OSError:
                import shutil

                shutil.rmtree(staging, ignore_errors=True)
        out.append(str(target))
    return out
