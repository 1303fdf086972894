"""Plugin discovery: built-in folders, user folders and entry points.

Sources, in order (the first definition of a name wins; later duplicates are listed as errors):

1. built-in models (``suite/models/*.py``), methods (``methods/*.py``) and tasks (``datasets/*.py``);
   in an installed wheel the two plugin folders live in ``suite/_builtin/``;
2. folders given with ``--plugins DIR`` or listed under ``plugins:`` in a manifest (every ``*.py``
   below them not starting with ``_`` or ``test_``);
3. entry points in the groups ``rnnbench.methods``, ``rnnbench.tasks`` and ``rnnbench.models``
   (each pointing at a plugin class or a module holding plugin classes).

A plugin is any subclass of :class:`~suite.contracts.Method`, :class:`~suite.contracts.Task` or
:class:`~suite.contracts.RecurrentModel` that defines ``name`` in its own module. A file that fails
to import is kept as a :class:`PluginInfo` with its error, so ``rnnbench list`` still works.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from suite.contracts import PLUGIN_BASES, Method, RecurrentModel, Task

KINDS = ("methods", "tasks", "models")
ENTRY_POINT_GROUPS = {kind: f"rnnbench.{kind}" for kind in KINDS}
_FOLDER_KIND = {"methods": "methods", "datasets": "tasks", "tasks": "tasks", "models": "models"}


class UnknownPluginError(KeyError):
    """An unknown plugin name; the message lists the known names and how to add plugins."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class PluginInfo:
    """One discovered plugin, or a plugin file that failed to import (``error`` set)."""

    kind: str  # "methods" | "tasks" | "models" | "unknown" (a broken file outside a kind folder)
    name: str
    origin: str
    cls: type | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.cls is not None

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: name, summary, parameter schema with defaults, capabilities."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "origin": self.origin}
        if self.error is not None:
            out["error"] = self.error
            return out
        cls = self.cls
        assert cls is not None
        out["summary"] = getattr(cls, "summary", "") or (inspect.getdoc(cls) or "").split("\n")[0]
        out["params"] = _param_table(cls.Params)
        if issubclass(cls, RecurrentModel):
            out["capabilities"] = sorted(cls.capabilities)
        elif issubclass(cls, Method):
            out["requires"] = sorted(cls.requires)
            out["search_space"] = getattr(cls, "search_space", None)
        elif issubclass(cls, Task):
            out["family"] = cls.family
            out["metrics"] = [
                {"name": m.name, "direction": m.direction, "unit": m.unit} for m in cls.metrics
            ]
            out["primary_metric"] = getattr(cls, "primary_metric", None)
        return out


def _param_table(schema: type) -> list[dict[str, Any]]:
    rows = []
    for name, f in schema.model_fields.items():
        ann = f.annotation
        choices = _literal_choices(ann)
        if choices is not None:
            type_name = "one of " + ", ".join(repr(c) for c in choices)
        else:
            type_name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
            if type_name == "Literal":
                type_name = str(ann).replace("typing.", "")
        default = None if f.is_required() else f.get_default(call_default_factory=True)
        rows.append(
            {
                "name": name,
                "type": type_name,
                "default": default,
                "required": f.is_required(),
                "description": f.description or "",
                **({"choices": list(choices)} if choices is not None else {}),
            }
        )
    return rows


def _literal_choices(ann: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` annotation (also inside ``Optional``), else None."""
    import typing

    if typing.get_origin(ann) is typing.Literal:
        return typing.get_args(ann)
    args = typing.get_args(ann)
    literals = [a for a in args if typing.get_origin(a) is typing.Literal]
    if literals:
        return tuple(v for a in literals for v in typing.get_args(a)) + ((None,) if type(None) in args else ())
    return None


def builtin_dir(folder: str) -> Path | None:
    """The built-in plugin folder ``methods`` or ``datasets``, in a wheel or in a checkout."""
    pkg = Path(__file__).resolve().parent
    for candidate in (pkg / "_builtin" / folder, pkg.parent / folder):
        if candidate.is_dir():
            return candidate
    return None


def _plugin_classes(module: ModuleType) -> Iterable[tuple[str, type]]:
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ != module.__name__ or inspect.isabstract(obj):
            continue
        for kind, base in PLUGIN_BASES.items():
            if issubclass(obj, base) and obj is not base and "name" in obj.__dict__:
                yield kind, obj


def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.parent.resolve()).encode()).hexdigest()[:8]
    mod_name = f"rnnbench_plugins.p{digest}.{path.stem}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return module


def _short_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass
class Registry:
    """All plugins visible to this process. Build with :func:`load_registry`."""

    plugins: dict[str, dict[str, PluginInfo]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginInfo] = field(default_factory=list)

    # --- building -------------------------------------------------------------------------
    def _add(self, kind: str, name: str, cls: type, origin: str) -> None:
        existing = self.plugins[kind].get(name)
        if existing is not None:
            if existing.cls is cls:
                return
            self.failures.append(
                PluginInfo(kind, name, origin, error=f"duplicate {kind[:-1]} name {name!r}: already defined by {existing.origin}")
            )
            return
        self.plugins[kind][name] = PluginInfo(kind, name, origin, cls=cls)

    def add_module(self, module: ModuleType, origin: str) -> None:
        for kind, cls in _plugin_classes(module):
            self._add(kind, cls.name, cls, origin)

    def add_file(self, path: Path, kind_hint: str = "unknown") -> None:
        try:
            module = _import_file(path)
        except Exception as exc:  # a broken plugin must not break the CLI
            self.failures.append(PluginInfo(kind_hint, path.stem, str(path), error=_short_error(exc)))
            return
        self.add_module(module, str(path))

    def add_folder(self, folder: Path, kind_hint: str | None = None) -> None:
        for path in sorted(Path(folder).rglob("*.py")):
            if path.name.startswith(("_", "test_")) or "__pycache__" in path.parts:
                continue
            hint = kind_hint or _FOLDER_KIND.get(path.parent.name, "unknown")
            self.add_file(path, hint)

    def add_entry_points(self) -> None:
        for kind, group in ENTRY_POINT_GROUPS.items():
            for ep in entry_points(group=group):
                origin = f"entry point {ep.name} = {ep.value}"
                try:
                    obj = ep.load()
                except Exception as exc:
                    self.failures.append(PluginInfo(kind, ep.name, origin, error=_short_error(exc)))
                    continue
                if inspect.ismodule(obj):
                    self.add_module(obj, origin)
                elif inspect.isclass(obj) and issubclass(obj, PLUGIN_BASES[kind]) and "name" in obj.__dict__:
                    self._add(kind, obj.name, obj, origin)
                else:
                    self.failures.append(
                        PluginInfo(kind, ep.name, origin, error=f"entry point must name a {kind[:-1]} class or a module")
                    )

    # --- lookup ---------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> type:
        info = self.plugins[kind].get(name)
        if info is not None:
            assert info.cls is not None
            return info.cls
        broken = [f for f in self.failures if f.name == name]
        if broken:
            raise UnknownPluginError(f"{kind[:-1]} {name!r} failed to load: {broken[0].error} ({broken[0].origin})")
        known = sorted(self.plugins[kind])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        failed = [f for f in self.failures if f.kind in (kind, "unknown")]
        broken_note = ""
        if failed:  # the plugin may live in a file that failed to import: say so, with the error
            broken_note = " These plugin files failed to load and may define it: " + "; ".join(
                f"{f.origin}: {f.error}" for f in failed[:5]) + "."
        raise UnknownPluginError(
            f"unknown {kind[:-1]} {name!r}.{hint} Known {kind}: {', '.join(known) or '(none)'}.{broken_note} "
            f"Add your own with --plugins DIR (or `plugins:` in the manifest) or an "
            f"'{ENTRY_POINT_GROUPS[kind]}' entry point; `rnnbench list {kind}` shows what is installed."
        )

    def names(self, kind: str) -> list[str]:
        return sorted(self.plugins[kind])

    def listing(self, kind: str) -> list[PluginInfo]:
        ok = [self.plugins[kind][n] for n in self.names(kind)]
        broken = [f for f in self.failures if f.kind in (kind, "unknown")]
        return ok + broken


def load_registry(plugin_dirs: Iterable[str | Path] = ()) -> Registry:
    """Discover built-in, folder and entry-point plugins. Cached per set of folders."""
    key = tuple(str(Path(d).expanduser().resolve()) for d in plugin_dirs)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    reg = Registry()
    for info in pkgutil.iter_modules(importlib.import_module("suite.models").__path__):
        if info.name.startswith("_"):
            continue
        name = f"suite.models.{info.name}"
        try:
            reg.add_module(importlib.import_module(name), name)
        except Exception as exc:
            reg.failures.append(PluginInfo("models", info.name, name, error=_short_error(exc)))
    for folder, kind in (("methods", "methods"), ("datasets", "tasks")):
        path = builtin_dir(folder)
        if path is not None:
            reg.add_folder(path, kind)
    for d in key:
        if not Path(d).is_dir():
            reg.failures.append(PluginInfo("unknown", Path(d).name, d, error=f"plugin folder {d} does not exist"))
            continue
        reg.add_folder(Path(d))
    reg.add_entry_points()
    _CACHE[key] = reg
    return reg


_CACHE: dict[tuple[str, ...], Registry] = {}
