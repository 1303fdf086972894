"""Manifests: the YAML sweep files, their schema, validation with field paths and line numbers.

A manifest names tasks, models and methods (each with parameters), seeds, a budget, the
evaluation frequency, the optimizer, resources per trial, the search, an optional scheduler,
the selection metric and W&B settings. Any parameter value may be a search space::

    window: {grid: [50, 100]}          # every value (grid search)
    lr: {loguniform: [1.0e-4, 1.0e-2]} # sampled (search: random / optuna)

:func:`load_manifest` reads the file safely (:mod:`suite.manifest_yaml`: size, nesting and alias limits,
duplicate keys, no Python-object tags), applies ``--set path=value`` overrides, and :func:`validate` checks
the schema, every plugin's own parameter schema, and what only the whole manifest tells (search spaces
against the search algorithm, the selection metric against the tasks, the evaluation frequency against
the budget, the size of the trial matrix, ...). Every problem is reported at once, with its field path
and line, in a :class:`ManifestError`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from suite.manifest_yaml import (
    ManifestError,
    Problem,
    apply_override,
    decode,
    lookup_line,
    parse_yaml,
)
from suite.registry import Registry, UnknownPluginError

__all__ = ["Manifest", "ManifestError", "Problem", "apply_override", "check_space", "is_space", "load_manifest",
           "space_candidates", "validate", "MAX_TRIALS"]

SPACE_KEYS = ("grid", "choice", "uniform", "loguniform", "randint")
MAX_TRIALS = 1_000_000  #: a larger matrix is almost certainly a mistake (and would take minutes to expand)
MAX_SEED = 2**63  #: seeds are stored as int64


def _number(value: Any) -> Any:
    """Numbers only: YAML ``true`` or ``"5"`` is not a duration or a weight."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be a number")
    return value


def _integer(value: Any) -> Any:
    """Integers only: YAML ``true``, ``"5"`` or ``2.5`` is not a count."""
    if isinstance(value, (bool, str)) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be an integer")
    return value


Count = Annotated[int, BeforeValidator(_integer), Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OneOf(Strict):
    @model_validator(mode="after")
    def _exactly_one(self) -> _OneOf:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(type(self).model_fields)} (got {given or 'none'})")
        return self


MAX_BUDGET = {"epochs": 10**6, "steps": 10**9, "time_s": 30 * 86400}
_BUDGET_WHY = {"epochs": "a million passes over the data", "steps": "a billion updates, weeks of GPU time at 1 ms each",
               "time_s": "30 days of training per trial"}


def _bounded(name: str) -> AfterValidator:
    """A budget above its bound is a typo, not a plan (and would overflow counters and ETAs): say so."""
    def check(v: Any) -> Any:
        if v is not None and v > MAX_BUDGET[name]:
            raise ValueError(f"{v:g} is above the largest {name} budget, {MAX_BUDGET[name]:g} ({_BUDGET_WHY[name]}); "
                             "a larger value is almost certainly a typo")
        return v
    return AfterValidator(check)


class BudgetSpec(_OneOf):
    """Training budget per trial: exactly one of epochs, optimizer steps, or seconds of training
    (validated here, bounded by :data:`MAX_BUDGET`; the trial runs with :class:`suite.run.budget.Budget`)."""

    epochs: Annotated[Count | None, _bounded("epochs")] = None
    steps: Annotated[Count | None, _bounded("steps")] = None
    time_s: Annotated[Seconds | None, _bounded("time_s")] = None


class EvalEverySpec(_OneOf):
    """Evaluation frequency on the validation split: exactly one of epochs, steps, seconds
    (the trial runs with :class:`suite.run.budget.EvalEvery`)."""

    epochs: Count | None = None
    steps: Count | None = None
    seconds: Seconds | None = None


class Optimizer(Strict):
    """The optimizer the context builds for a method. ``lr``, ``weight_decay``, ``momentum`` and
    ``grad_clip`` may be search spaces; their values are checked by :func:`optimizer_problems`."""

    name: Literal["adam", "adamw", "sgd", "radam", "rmsprop"] = "adam"
    lr: Any = 1e-3
    weight_decay: Any = 0.0
    momentum: Any = 0.0
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] | None = None
    grad_clip: Any = None


class PluginRef(Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class MethodRef(PluginRef):
    optimizer: dict[str, Any] | None = None  #: overrides of the sweep's optimizer for this method
    budget: BudgetSpec | None = None  #: replaces the sweep's budget for this method (a paper's protocol); equal budgets are the default


class Resources(Strict):
    cpu: Annotated[float, BeforeValidator(_number), Field(gt=0, le=1024, allow_inf_nan=False)] = 1.0
    gpu: Annotated[float, BeforeValidator(_number), Field(ge=0, le=64, allow_inf_nan=False)] = 0.0
    time_limit_s: Seconds | None = None  #: a trial running longer ends as `timeout`
    retries: Annotated[int, BeforeValidator(_integer), Field(ge=0, le=100)] = 1  #: restarts after a lost worker
    #: each trial's captured output is cut to its first and last half of this many MiB (a line says what was dropped)
    log_limit_mib: Annotated[float, BeforeValidator(_number), Field(gt=0, le=10_000, allow_inf_nan=False)] = 16.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"


class Search(Strict):
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: Count = 1  #: random/optuna: configurations drawn (per grid point)
    seed: Annotated[int, BeforeValidator(_integer), Field(ge=0, lt=MAX_SEED)] = 0


class Scheduler(Strict):
    name: Literal["asha"] = "asha"
    grace_period: Count = 1  #: in evaluations
    reduction_factor: Annotated[float, BeforeValidator(_number), Field(gt=1.0, allow_inf_nan=False)] = 2.0
    max_t: Count = 100  #: in evaluations


Weight = Annotated[float, BeforeValidator(_number), Field(ge=0, allow_inf_nan=False)]


class SelectionSpec(Strict):
    """How a configuration is selected: a task metric, weighted over splits (val by default).

    The burn-in paper selects on 0.7 x train + 0.3 x validation MSE: ``split_weights: {train: 0.7, val: 0.3}``.
    The trial scores with :class:`suite.run.budget.Selection`.
    """

    metric: str | None = None  #: default: the task's primary metric
    split_weights: dict[Literal["train", "val"], Weight] = Field(default_factory=lambda: {"val": 1.0})

    @field_validator("split_weights")
    @classmethod
    def _some_weight(cls, v: dict[str, float]) -> dict[str, float]:
        if not any(w > 0 for w in v.values()):
            raise ValueError("at least one split needs a positive weight")
        return v


class Evaluation(Strict):
    """Which parameters the final metrics are measured at.

    ``final`` (default): the parameters at the end of the budget. ``best_val``: the parameters of the
    evaluation with the best selection score during training (kept in memory; for trials that train longer
    than ``to_disk_after_s`` also written to ``RESULTS/checkpoints/<experiment>/<trial_key>.pt``), as the
    Aicher et al. tables report test at the best validation checkpoint."""

    checkpoint: Literal["final", "best_val"] = "final"
    to_disk_after_s: Seconds = 600.0


class Diagnostics(Strict):
    """Optional measurements taken at every evaluation (their time is not charged to the budget)."""

    gradient_fidelity: bool = False  #: cosine / relative error of the method's gradient vs full BPTT
    probe_sequences: Count = 8  #: sequences in the fixed probe batch
    probe_length: Count | None = 512  #: probe length in steps (None: whole sequences)


class WandbSettings(Strict):
    project: str = Field("rnnbench", min_length=1, max_length=128)
    entity: str | None = None
    group: str | None = Field(None, max_length=128)  #: default: the experiment name
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list)
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"


Seed = Annotated[int, Field(ge=0, lt=MAX_SEED, strict=True)]


class Manifest(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    plugins: list[str] = Field(default_factory=list)
    data_dir: str | None = None
    tasks: list[PluginRef] = Field(min_length=1)
    models: list[PluginRef] = Field(min_length=1)
    methods: list[MethodRef] = Field(min_length=1)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=10_000)
    budget: BudgetSpec
    eval_every: EvalEverySpec = Field(default_factory=lambda: EvalEverySpec(epochs=1))
    optimizer: Optimizer = Field(default_factory=Optimizer)
    resources: Resources = Field(default_factory=Resources)
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler | None = None
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)
    wandb: WandbSettings = Field(default_factory=WandbSettings)
    max_concurrent: Count | None = None

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds must be distinct (repeated: {repeated}); a repeated seed would run the same trial twice")
        return v


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_field(loc: tuple[Any, ...]) -> str:
    """``unknown field``, with the closest known field of the section it is in."""
    parent = tuple(p for p in loc[:-1] if not isinstance(p, int))
    sections: dict[tuple[str, ...], type[BaseModel]] = {
        (): Manifest, ("budget",): BudgetSpec, ("eval_every",): EvalEverySpec, ("optimizer",): Optimizer,
        ("resources",): Resources, ("search",): Search, ("scheduler",): Scheduler, ("selection",): SelectionSpec,
        ("evaluation",): Evaluation, ("diagnostics",): Diagnostics, ("wandb",): WandbSettings, ("tasks",): PluginRef,
        ("models",): PluginRef, ("methods",): MethodRef, ("methods", "budget"): BudgetSpec}
    model = sections.get(parent)
    if model is None:
        return "unknown field"
    known = list(model.model_fields)
    return f"unknown field{_did_you_mean(str(loc[-1]), known)}; known: {', '.join(known)}"


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- search spaces -----------------------------------------------------------------------------------
def is_space(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACE_KEYS


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_space(value: Any) -> str | None:
    """A problem with a search-space spec, or None."""
    (kind, arg), = value.items()
    if kind in ("grid", "choice"):
        if not isinstance(arg, list) or not arg:
            return f"{kind} needs a non-empty list"
        if len(arg) > 10_000:
            return f"{kind} has {len(arg)} values; at most 10000"
    else:
        if not (isinstance(arg, list) and len(arg) == 2 and all(_is_num(a) for a in arg)):
            return f"{kind} needs [low, high] (two finite numbers)"
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


def _space_size(value: Any, algorithm: str, num_samples: int) -> int:
    if not is_space(value) or check_space(value):
        return 1
    kind = next(iter(value))
    if kind == "grid" or (kind == "choice" and algorithm == "grid"):
        return len(value[kind])
    return num_samples


# --- checks ----------------------------------------------------------------------------------------
_OPTIMIZER_RANGES = {
    "lr": (lambda v: v > 0, "a learning rate must be a positive number"),
    "weight_decay": (lambda v: v >= 0, "weight_decay must be a number >= 0"),
    "momentum": (lambda v: 0 <= v < 1, "momentum must be a number in [0, 1)"),
    "grad_clip": (lambda v: v > 0, "grad_clip must be a positive number (or null for no clipping)"),
}


def optimizer_problems(spec: Any, path: str, lines: dict, line_path: tuple, overrides: bool = False) -> list[Problem]:
    """Problems of the values of an optimizer mapping; for a method's ``overrides`` (a plain mapping the
    schema does not check) also unknown fields and optimizer names."""
    if not isinstance(spec, dict):
        return []
    out = []
    for field_name, (ok, message) in _OPTIMIZER_RANGES.items():
        if field_name not in spec or (field_name == "grad_clip" and spec[field_name] is None):
            continue
        value = spec[field_name]
        where = (f"{path}.{field_name}", lookup_line(lines, line_path + (field_name,)))
        if is_space(value):
            if err := check_space(value):
                out.append(Problem(where[0], err, where[1]))
                continue
            bad = [c for c in space_candidates(value) if not (_is_num(c) and ok(c))]
        else:
            bad = [] if _is_num(value) and ok(value) else [value]
        if bad:
            out.append(Problem(where[0], f"{message} (got {bad[0]!r})", where[1]))
    if not overrides:
        return out
    for key in spec:
        if key not in Optimizer.model_fields:
            out.append(Problem(f"{path}.{key}", f"unknown field; known: {', '.join(Optimizer.model_fields)}",
                               lookup_line(lines, line_path + (key,))))
    if "name" in spec and spec["name"] not in Optimizer.model_fields["name"].annotation.__args__:
        out.append(Problem(f"{path}.name", f"unknown optimizer {spec['name']!r}; known: adam, adamw, sgd, radam, rmsprop",
                           lookup_line(lines, line_path + ("name",))))
    return out


def _validate_plugin_params(schema: type[BaseModel], params: dict[str, Any], path: str) -> list[Problem]:
    """Every value of every axis is checked (with the other axes at their first value): linear in the
    number of values, however large the product of the grids."""
    problems: list[Problem] = []
    for key, value in params.items():
        if is_space(value) and (err := check_space(value)):
            problems.append(Problem(f"{path}.params.{key}", err))
    if problems:
        return problems
    axes = {k: space_candidates(v) for k, v in params.items()}
    base = {k: c[0] for k, c in axes.items()}
    points = [base] + [{**base, k: c} for k, cands in axes.items() for c in cands[1:]]
    seen: set[tuple[str, str]] = set()
    for point in points:
        try:
            schema.model_validate(point)
        except ValidationError as exc:
            for err in exc.errors():
                sub = format_path(tuple(err["loc"]))
                p = f"{path}.params.{sub}" if sub else f"{path}.params"
                if err["type"] == "extra_forbidden":
                    msg = (f"unknown parameter{_did_you_mean(str(err['loc'][-1]), list(schema.model_fields))}; known: "
                           f"{', '.join(schema.model_fields) or '(none)'}")
                else:
                    msg = f"{err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"
                if (p, msg) not in seen:
                    seen.add((p, msg))
                    problems.append(Problem(p, msg))
    return problems


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _plugin_problems(data: dict[str, Any], registry: Registry, lines: dict) -> tuple[list[Problem], dict[str, list[type]]]:
    problems: list[Problem] = []
    classes: dict[str, list[type]] = {"tasks": [], "models": [], "methods": []}
    for section in ("tasks", "models", "methods"):
        for i, ref in enumerate(_list(data, section)):
            if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
                continue
            path = f"{section}[{i}]"
            try:
                cls = registry.get(section, ref["name"])
            except UnknownPluginError as exc:
                problems.append(Problem(f"{path}.name", str(exc), lookup_line(lines, (section, i, "name"))))
                continue
            classes[section].append(cls)
            params = ref.get("params") or {}
            if not isinstance(params, dict):
                continue
            for p in _validate_plugin_params(cls.Params, params, path):
                parts = tuple(int(x) if x.isdigit() else x for x in re.findall(r"[^.\[\]]+", p.path))
                p.line = lookup_line(lines, parts)
                problems.append(p)
            if section == "methods":
                problems += optimizer_problems(ref.get("optimizer"), f"{path}.optimizer", lines, (section, i, "optimizer"),
                                               overrides=True)
    return problems, classes


def _param_values(data: dict[str, Any]) -> list[tuple[str, tuple, Any]]:
    out: list[tuple[str, tuple, Any]] = []
    for section in ("tasks", "models", "methods"):
        for i, ref in enumerate(_list(data, section)):
            params = ref.get("params") if isinstance(ref, dict) else None
            for k, v in (params.items() if isinstance(params, dict) else []):
                out.append((f"{section}[{i}].params.{k}", (section, i, "params", k), v))
            opt = ref.get("optimizer") if isinstance(ref, dict) and section == "methods" else None
            for k, v in (opt.items() if isinstance(opt, dict) else []):
                out.append((f"{section}[{i}].optimizer.{k}", (section, i, "optimizer", k), v))
    opt = data.get("optimizer")
    for k, v in (opt.items() if isinstance(opt, dict) else []):
        out.append((f"optimizer.{k}", ("optimizer", k), v))
    return out


def trial_count(data: dict[str, Any]) -> int:
    """The size of the trial matrix (an upper bound: capability skips and repeated values not removed)."""
    search = data.get("search") if isinstance(data.get("search"), dict) else {}
    algorithm, n = search.get("algorithm", "grid"), search.get("num_samples", 1)
    n = n if isinstance(n, int) and n > 0 else 1

    def product(values: Any) -> int:
        total = 1
        for v in values.values() if isinstance(values, dict) else []:
            total *= _space_size(v, algorithm, n)
        return total

    base_opt = data.get("optimizer") if isinstance(data.get("optimizer"), dict) else {}
    tasks = sum(product(r.get("params")) for r in _list(data, "tasks") if isinstance(r, dict))
    models = sum(product(r.get("params")) for r in _list(data, "models") if isinstance(r, dict))
    methods = sum(product(r.get("params")) * product({**base_opt, **(r.get("optimizer") or {})})
                  for r in _list(data, "methods") if isinstance(r, dict) and isinstance(r.get("optimizer") or {}, dict))
    seeds = len(_list(data, "seeds")) or 1
    return tasks * models * methods * seeds


def _whole_manifest_problems(data: dict[str, Any], manifest: Manifest | None, classes: dict[str, list[type]],
                             lines: dict) -> list[Problem]:
    """What only the whole manifest tells: spaces vs the search, metric vs tasks, frequency vs budget, size."""
    out: list[Problem] = []
    search = data.get("search") if isinstance(data.get("search"), dict) else {}
    if search.get("algorithm", "grid") == "grid":
        for path, loc, value in _param_values(data):
            if is_space(value) and next(iter(value)) not in ("grid", "choice"):
                out.append(Problem(path, f"{next(iter(value))} needs `search: {{algorithm: random}}` (or optuna); "
                                         "grid search enumerates grid/choice only", lookup_line(lines, loc)))
    out += optimizer_problems(data.get("optimizer"), "optimizer", lines, ("optimizer",))
    n = trial_count(data)
    if n > MAX_TRIALS:
        out.append(Problem("", f"the manifest expands to {n:,} trials, more than {MAX_TRIALS:,}; shrink the grids "
                               "or split the sweep into several manifests"))
    for i, folder in enumerate(_list(data, "plugins")):
        if not isinstance(folder, str) or not Path(folder).is_dir():
            out.append(Problem(f"plugins[{i}]", f"plugin folder {folder!r} does not exist",
                               lookup_line(lines, ("plugins", i))))
    if manifest is None:
        return out
    metric = manifest.selection.metric
    if metric is not None:
        for cls in classes["tasks"]:
            names = [m.name for m in cls.metrics]
            if metric not in names:
                out.append(Problem("selection.metric", f"task {cls.name!r} has no metric {metric!r}; its metrics: "
                                   f"{', '.join(names)}", lookup_line(lines, ("selection", "metric"))))
    res = manifest.resources
    if res.device == "cuda" and res.gpu == 0:
        out.append(Problem("resources.device", "device: cuda needs resources.gpu > 0 (a trial gets a GPU only when it "
                           "asks for one)", lookup_line(lines, ("resources", "device"))))
    budgets = [("budget", manifest.budget)] + [(f"methods[{i}].budget", m.budget) for i, m in enumerate(manifest.methods)
                                               if m.budget is not None]
    every = manifest.eval_every
    for path, budget in budgets:
        for b_key, e_key in (("epochs", "epochs"), ("steps", "steps"), ("time_s", "seconds")):
            b, e = getattr(budget, b_key), getattr(every, e_key)
            if b is not None and e is not None and e > b:
                out.append(Problem(f"eval_every.{e_key}", f"evaluates every {e:g} {e_key} but {path} is {b:g} "
                                   f"{b_key}: no evaluation would run before the end; lower eval_every",
                                   lookup_line(lines, ("eval_every", e_key))))
    if res.time_limit_s is not None and manifest.budget.time_s is not None and res.time_limit_s < manifest.budget.time_s:
        out.append(Problem("resources.time_limit_s", f"the time limit ({res.time_limit_s:g} s) is below the training "
                           f"budget ({manifest.budget.time_s:g} s): every trial would time out",
                           lookup_line(lines, ("resources", "time_limit_s"))))
    return out


def validate(data: dict[str, Any], registry: Registry, source: str = "<manifest>", lines: dict | None = None) -> Manifest:
    """Validate raw manifest data against the schema and the registered plugins; every problem at once."""
    lines = lines or {}
    problems: list[Problem] = []
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = _unknown_field(loc) if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("extra_forbidden", "missing") and "input" in err and not isinstance(err["input"], dict):
                msg += f" (got {err['input']!r})"
            problems.append(Problem(format_path(loc), msg, lookup_line(lines, loc)))
    plugin_problems, classes = _plugin_problems(data, registry, lines)
    problems += plugin_problems
    problems += _whole_manifest_problems(data, manifest, classes, lines)
    unique = list({(p.path, p.message): p for p in problems}.values())
    if unique or manifest is None:
        raise ManifestError(source, unique)
    return manifest


def load_manifest(path: str | Path, registry_for: Any, overrides: list[str] = ()) -> Manifest:
    """Read, override and validate a manifest file.

    ``registry_for(plugin_dirs) -> Registry`` builds the registry once the manifest's own
    ``plugins:`` list is known (so plugins it names can be validated).
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ManifestError(source, [Problem("", "this is a directory; give a manifest file (e.g. manifests/quickstart.yaml)")]) from None
    except OSError as exc:
        raise ManifestError(source, [Problem("", f"cannot read manifest: {exc.strerror or exc}")]) from None
    data, lines = parse_yaml(decode(raw, source), source)
    for assignment in overrides:
        try:
            apply_override(data, assignment)
        except ValueError as exc:
            raise ManifestError(source, [Problem(assignment.split("=", 1)[0], str(exc))]) from None
    plugins = data.get("plugins") or []
    base = path.resolve().parent
    if isinstance(plugins, list):
        data["plugins"] = [str((base / p).resolve()) if isinstance(p, str) and not Path(p).is_absolute() else p
                           for p in plugins]
    folders = [p for p in (data.get("plugins") or []) if isinstance(p, str)] if isinstance(data.get("plugins"), list) else []
    try:
        return validate(data, registry_for(folders), source, lines)
    except ManifestError as exc:
        if not overrides:
            raise
        raise ManifestError(source, [_attribute_override(p, overrides) for p in exc.problems]) from None


def _attribute_override(problem: Problem, overrides: list[str] | tuple[str, ...]) -> Problem:
    """A problem in a field that ``--set`` gave says so, instead of pointing at a line of the file."""
    for assignment in overrides:
        target = assignment.split("=", 1)[0].strip()
        inside = problem.path.startswith(target + ".") or problem.path.startswith(target + "[")
        above = bool(problem.path) and (target.startswith(problem.path + ".") or target.startswith(problem.path + "["))
        if problem.path == target or inside or above:
            return Problem(problem.path, f"{problem.message} (from --set {assignment})", None)
    return problem
