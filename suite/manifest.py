"""Manifests: the YAML sweep files, their schema, validation with field paths and line numbers.

A manifest names tasks, models and methods (each with parameters), seeds, a budget, the
evaluation frequency, the optimizer, resources per trial, the search, an optional scheduler,
the selection metric and W&B settings. Any parameter value may be a search space::

    window: {grid: [50, 100]}          # every value (grid search)
    lr: {loguniform: [1.0e-4, 1.0e-2]} # sampled (search: random / optuna)

:func:`load_manifest` parses safely (YAML tags that build Python objects are rejected), applies
``--set path=value`` overrides, validates against this schema *and* against each plugin's own
parameter schema, and raises :class:`ManifestError` listing every problem with its field path.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from suite.registry import Registry, UnknownPluginError

SPACE_KEYS = ("grid", "choice", "uniform", "loguniform", "randint")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(Strict):
    """Training budget per trial: exactly one of epochs, optimizer steps, or seconds of training."""

    epochs: PositiveInt | None = None
    steps: PositiveInt | None = None
    time_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Budget:
        given = [k for k in ("epochs", "steps", "time_s") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of epochs, steps, time_s (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("epochs", "steps", "time_s") if getattr(self, k) is not None)

    @property
    def amount(self) -> float:
        return float(getattr(self, self.kind))


class EvalEvery(Strict):
    """Evaluation frequency on the validation split: exactly one of epochs, steps, seconds."""

    epochs: PositiveInt | None = None
    steps: PositiveInt | None = None
    seconds: PositiveFloat | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EvalEvery:
        given = [k for k in ("epochs", "steps", "seconds") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of epochs, steps, seconds (got {given or 'none'})")
        return self


class Optimizer(Strict):
    """The optimizer the context builds for a method (values may be search spaces)."""

    name: Literal["adam", "adamw", "sgd", "radam", "rmsprop"] = "adam"
    lr: Any = 1e-3
    weight_decay: Any = 0.0
    momentum: Any = 0.0
    betas: tuple[float, float] | None = None
    grad_clip: Any = None


class PluginRef(Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class MethodRef(PluginRef):
    optimizer: dict[str, Any] | None = None  #: overrides of the sweep's optimizer for this method
    budget: Budget | None = None  #: replaces the sweep's budget for this method (a paper's protocol); equal budgets are the default


class Resources(Strict):
    cpu: PositiveFloat = 1.0
    gpu: float = Field(0.0, ge=0.0)
    time_limit_s: PositiveFloat | None = None  #: a trial running longer ends as `timeout`
    retries: int = Field(1, ge=0)  #: restarts after an infrastructure failure (worker lost)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"


class Search(Strict):
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: PositiveInt = 1  #: random/optuna: configurations drawn (per grid point)
    seed: int = 0


class Scheduler(Strict):
    name: Literal["asha"] = "asha"
    grace_period: PositiveInt = 1  #: in evaluations
    reduction_factor: float = Field(2.0, gt=1.0)
    max_t: PositiveInt = 100  #: in evaluations


class Selection(Strict):
    """How a configuration is selected: a task metric, weighted over splits (val by default).

    The burn-in paper selects on 0.7 x train + 0.3 x validation MSE: ``split_weights: {train: 0.7, val: 0.3}``.
    """

    metric: str | None = None  #: default: the task's primary metric
    split_weights: dict[Literal["train", "val"], float] = Field(default_factory=lambda: {"val": 1.0})


class Diagnostics(Strict):
    """Optional measurements taken at every evaluation (their time is not charged to the budget)."""

    gradient_fidelity: bool = False  #: cosine / relative error of the method's gradient vs full BPTT
    probe_sequences: PositiveInt = 8  #: sequences in the fixed probe batch
    probe_length: PositiveInt | None = 512  #: probe length in steps (None: whole sequences)


class WandbSettings(Strict):
    project: str = "rnnbench"
    entity: str | None = None
    group: str | None = None  #: default: the experiment name
    tags: list[str] = Field(default_factory=list)
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"


class Manifest(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    plugins: list[str] = Field(default_factory=list)
    data_dir: str | None = None
    tasks: list[PluginRef] = Field(min_length=1)
    models: list[PluginRef] = Field(min_length=1)
    methods: list[MethodRef] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    budget: Budget
    eval_every: EvalEvery = Field(default_factory=lambda: EvalEvery(epochs=1))
    optimizer: Optimizer = Field(default_factory=Optimizer)
    resources: Resources = Field(default_factory=Resources)
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler | None = None
    selection: Selection = Field(default_factory=Selection)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)
    wandb: WandbSettings = Field(default_factory=WandbSettings)
    max_concurrent: PositiveInt | None = None


# --- errors -------------------------------------------------------------------------------------
@dataclass
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or '<manifest>'}{where}: {self.message}"


class ManifestError(Exception):
    """Every problem found in a manifest; ``str()`` lists them one per line."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems))


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- YAML with line numbers ------------------------------------------------------------------------
def _line_map(node: yaml.Node, path: tuple[Any, ...] = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[path + (key.value,)] = key.start_mark.line + 1
            _line_map(value, path + (key.value,), out)
            out[path + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


def _lookup_line(lines: dict[tuple, int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Safe-load ``text``; YAML errors (including Python-object tags) become a ManifestError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 (SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        if "constructor" in str(exc) or "tag" in str(problem):
            problem = f"{problem} (YAML tags that build Python objects are not allowed)"
        raise ManifestError(source, [Problem("", f"invalid YAML: {problem}", line)]) from None
    if not isinstance(data, dict):
        raise ManifestError(source, [Problem("", "a manifest must be a YAML mapping", 1)])
    return data, (_line_map(node) if node is not None else {})


# --- --set overrides -------------------------------------------------------------------------------
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``path=value`` (YAML value) in place, e.g. ``budget.epochs=5``, ``methods[0].params.window=50``."""
    if "=" not in assignment:
        raise ValueError(f"--set expects path=value, got {assignment!r}")
    path, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    parts: list[Any] = [int(i) if i else k for k, i in _PART.findall(path.strip())]
    if not parts:
        raise ValueError(f"--set: empty path in {assignment!r}")
    cur: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                raise ValueError(f"--set {path}: index [{part}] does not exist")
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                raise ValueError(f"--set {path}: {part!r} is not inside a mapping")
            cur = cur.setdefault(part, [] if isinstance(nxt, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise ValueError(f"--set {path}: index [{last}] does not exist")
        cur[last] = value
    else:
        if not isinstance(cur, dict):
            raise ValueError(f"--set {path}: {last!r} is not inside a mapping")
        cur[last] = value


# --- search spaces -----------------------------------------------------------------------------------
def is_space(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACE_KEYS


def check_space(value: Any) -> str | None:
    """A problem with a search-space spec, or None."""
    (kind, arg), = value.items()
    if kind in ("grid", "choice"):
        if not isinstance(arg, list) or not arg:
            return f"{kind} needs a non-empty list"
    else:
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, (int, float)) for a in arg)):
            return f"{kind} needs [low, high]"
        if not arg[0] < arg[1]:
            return f"{kind}: low must be below high"
        if kind == "loguniform" and arg[0] <= 0:
            return "loguniform needs low > 0"
        if kind == "randint" and not all(isinstance(a, int) for a in arg):
            return "randint needs integers"
    return None


def space_candidates(value: Any) -> list[Any]:
    """Values that must all validate: every grid/choice entry, or the two ends of a range."""
    if not is_space(value):
        return [value]
    (kind, arg), = value.items()
    if kind in ("grid", "choice"):
        return list(arg)
    return [arg[0], arg[1] - 1 if kind == "randint" else arg[1]]


def _validate_plugin_params(schema: type[BaseModel], params: dict[str, Any], path: str) -> list[Problem]:
    problems: list[Problem] = []
    for key, value in params.items():
        if is_space(value) and (err := check_space(value)):
            problems.append(Problem(f"{path}.params.{key}", err))
    if problems:
        return problems
    axes = {k: space_candidates(v) for k, v in params.items()}
    combos = itertools.product(*axes.values()) if axes else [()]
    seen: set[str] = set()
    for combo in itertools.islice(combos, 2000):
        try:
            schema.model_validate(dict(zip(axes, combo)))
        except ValidationError as exc:
            for err in exc.errors():
                sub = format_path(tuple(err["loc"]))
                p = f"{path}.params.{sub}" if sub else f"{path}.params"
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    msg = f"unknown parameter; known: {', '.join(schema.model_fields) or '(none)'}"
                if (p, msg) not in seen:
                    seen.add((p, msg))  # type: ignore[arg-type]
                    problems.append(Problem(p, f"{msg} (got {err.get('input')!r})" if err["type"] != "extra_forbidden" else msg))
    return problems


def validate(data: dict[str, Any], registry: Registry, source: str = "<manifest>", lines: dict | None = None) -> Manifest:
    """Validate raw manifest data against the schema and the registered plugins."""
    lines = lines or {}
    problems: list[Problem] = []
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(Problem(format_path(loc), msg, _lookup_line(lines, loc)))
    # plugin names and parameters are checked on the raw data, so every problem is reported at once
    for section, kind in (("tasks", "tasks"), ("models", "models"), ("methods", "methods")):
        refs = data.get(section)
        for i, ref in enumerate(refs if isinstance(refs, list) else []):
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                continue
            path = f"{section}[{i}]"
            try:
                cls = registry.get(kind, ref["name"])
            except UnknownPluginError as exc:
                problems.append(Problem(f"{path}.name", str(exc), _lookup_line(lines, (section, i, "name"))))
                continue
            params = ref.get("params") or {}
            if not isinstance(params, dict):
                continue
            for p in _validate_plugin_params(cls.Params, params, path):
                parts = tuple(int(x) if x.isdigit() else x for x in re.findall(r"[^.\[\]]+", p.path))
                p.line = _lookup_line(lines, parts)
                problems.append(p)
    if manifest is None:
        raise ManifestError(source, problems)
    for field in ("lr", "weight_decay", "momentum", "grad_clip"):
        v = getattr(manifest.optimizer, field)
        if is_space(v) and (err := check_space(v)):
            problems.append(Problem(f"optimizer.{field}", err, _lookup_line(lines, ("optimizer", field))))
    for i, m in enumerate(manifest.methods):
        for key in (m.optimizer or {}):
            if key not in Optimizer.model_fields:
                problems.append(Problem(f"methods[{i}].optimizer.{key}", "unknown field", _lookup_line(lines, ("methods", i, "optimizer", key))))
    if manifest.search.algorithm == "grid":
        for path, value in _all_param_values(manifest):
            if is_space(value) and next(iter(value)) not in ("grid", "choice"):
                problems.append(
                    Problem(path, f"{next(iter(value))} needs `search: {{algorithm: random}}` (grid search enumerates grid/choice only)")
                )
    if problems:
        raise ManifestError(source, problems)
    return manifest


def _all_param_values(m: Manifest) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for section in ("tasks", "models", "methods"):
        for i, ref in enumerate(getattr(m, section)):
            out += [(f"{section}[{i}].params.{k}", v) for k, v in ref.params.items()]
    out += [(f"optimizer.{k}", getattr(m.optimizer, k)) for k in ("lr", "weight_decay", "momentum", "grad_clip")]
    for i, ref in enumerate(m.methods):
        out += [(f"methods[{i}].optimizer.{k}", v) for k, v in (ref.optimizer or {}).items()]
    return out


def load_manifest(path: str | Path, registry_for: Any, overrides: list[str] = ()) -> Manifest:
    """Read, override and validate a manifest file.

    ``registry_for(plugin_dirs) -> Registry`` builds the registry once the manifest's own
    ``plugins:`` list is known (so plugins it names can be validated).
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(source, [Problem("", f"cannot read manifest: {exc.strerror or exc}")]) from None
    data, lines = parse_yaml(text, source)
    for assignment in overrides:
        try:
            apply_override(data, assignment)
        except ValueError as exc:
            raise ManifestError(source, [Problem(assignment.split("=", 1)[0], str(exc))]) from None
    plugins = data.get("plugins") or []
    base = path.resolve().parent
    if isinstance(plugins, list):
        data["plugins"] = [str((base / p).resolve()) if not Path(str(p)).is_absolute() else str(p) for p in plugins]
    return validate(data, registry_for(data.get("plugins") or []), source, lines)
