"""From a suite to ordinary manifests: rulesets, the quasi-random tuned configurations, applicability.

For one workload and ruleset, :func:`workload_manifest` builds the manifest that runs the given entries on it:
one task, one model, the workload's update budget, evaluation, selection and optimizer, the suite's seeds and
resources, and one manifest method per configuration:

* ``defaults``: each entry once, with the parameters the suite pins (the rest as the plugin ships them);
* ``tuned``: ``N`` configurations per entry, drawn from a scrambled Halton sequence with the ruleset's fixed seed
  over the method's declared ``search_space`` (minus the entry's ``fixed`` parameters) and the ruleset's
  optimizer space, so every method gets the same N and the same draws for a space of the same shape.

An entry whose method requires a capability the workload's model lacks, or whose method refuses the task's
inputs/outputs (:meth:`suite.contracts.Method.not_applicable`), is *not applicable* there: it is left out of the
manifest and reported as such, never as failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from suite.contracts import IOSpec, Method
from suite.manifest import Manifest, ManifestError, Problem, validate
from suite.registry import Registry, UnknownPluginError
from suite.suites.spec import SuiteFile, SuiteMethod, Workload

OPT_PREFIX = "optimizer."


@dataclass
class CompiledWorkload:
    """A workload's manifest under one ruleset, with the entries left out and the label of every configuration."""

    workload: Workload
    ruleset: str
    experiment: str
    data: dict[str, Any]  #: the manifest as plain data (YAML-ready)
    labels: list[str] = field(default_factory=list)  #: label of data["methods"][i]
    not_applicable: dict[str, str] = field(default_factory=dict)  #: label -> reason


def _draw(space: dict[str, Any], u: float) -> Any:
    """Map ``u`` in [0, 1) to a value of one space in manifest syntax."""
    (kind, arg), = space.items()
    if kind in ("choice", "grid"):
        return arg[min(int(u * len(arg)), len(arg) - 1)]
    lo, hi = float(arg[0]), float(arg[1])
    if kind == "uniform":
        return lo + (hi - lo) * u
    if kind == "loguniform":
        return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    if kind == "randint":  # [lo, hi), as numpy and the manifest's random search
        return int(lo + math.floor((hi - lo) * u))
    raise ValueError(f"unknown space {kind!r}")


def quasi_random_configs(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points of ``space`` (name -> space) from a scrambled Halton sequence with ``seed``, keys sorted."""
    names = sorted(space)
    if not names:
        return [{} for _ in range(n)]
    from scipy.stats import qmc

    points = qmc.Halton(d=len(names), scramble=True, seed=seed).random(n)
    return [{k: _draw(space[k], float(u)) for k, u in zip(names, row)} for row in points]


def tuned_entries(entry: SuiteMethod, method_cls: type, suite: SuiteFile) -> list[dict[str, Any]]:
    """The manifest method entries of ``entry`` under the ``tuned`` ruleset."""
    declared = method_cls.search_space
    if declared is None:
        raise ValueError(f"method {entry.method!r} declares no search_space, so it cannot enter the tuned ruleset "
                         f"(add `search_space = {{param: {{uniform: [lo, hi]}}, ...}}` to the method class)")
    rs = suite.rulesets.tuned
    space = {k: v for k, v in declared.items() if k not in entry.fixed}
    space.update({OPT_PREFIX + k: v for k, v in rs.optimizer.items()})
    out = []
    for cfg in quasi_random_configs(space, rs.configs, rs.seed):
        params = {**entry.params, **{k: v for k, v in cfg.items() if not k.startswith(OPT_PREFIX)}}
        opt = {**(entry.optimizer or {}), **{k[len(OPT_PREFIX):]: v for k, v in cfg.items() if k.startswith(OPT_PREFIX)}}
        out.append({"name": entry.method, "params": params, "optimizer": opt})
    return out


def applicability(entry: SuiteMethod, workload: Workload, registry: Registry) -> str | None:
    """Why ``entry`` does not apply to ``workload`` (None: it applies)."""
    method_cls = registry.get("methods", entry.method)
    model_cls = registry.get("models", workload.model.name)
    missing = set(method_cls.requires) - set(model_cls.capabilities)
    if missing:
        return f"model {workload.model.name} lacks {', '.join(sorted(missing))}"
    if method_cls.not_applicable.__func__ is Method.not_applicable.__func__:
        return None  # the method refuses no task: no need to build one
    inp, outp = task_io(registry.get("tasks", workload.task.name), workload.task.params)
    return method_cls.not_applicable(inp, outp)


def task_io(task_cls: type, params: dict[str, Any]) -> tuple[IOSpec, IOSpec]:
    """A task's input/output specs: from the task itself when its data are at hand, else from its family
    (language and pixel tasks read tokens, the others real values; sizes unknown, given as 0)."""
    from suite.datafiles import default_data_dir

    try:
        task = task_cls(task_cls.Params.model_validate(params), default_data_dir())
        return task.input, task.output
    except Exception:  # noqa: BLE001  (missing data or a task that cannot be built here: fall back to its family)
        kind = "tokens" if getattr(task_cls, "family", "") in ("language", "pixels") else "real"
        return IOSpec(kind, 0), IOSpec(kind, 0)


def workload_manifest(suite: SuiteFile, workload: Workload, ruleset: str, entries: list[SuiteMethod],
                      registry: Registry) -> CompiledWorkload:
    """The manifest that runs ``entries`` on ``workload`` under ``ruleset`` (see the module docstring)."""
    experiment = suite.experiment(workload, ruleset)
    compiled = CompiledWorkload(workload, ruleset, experiment, {})
    methods: list[dict[str, Any]] = []
    for entry in entries:
        reason = applicability(entry, workload, registry)
        if reason:
            compiled.not_applicable[entry.label] = reason
            continue
        if ruleset == "defaults":
            ref = {"name": entry.method, "params": dict(entry.params)}
            if entry.optimizer:
                ref["optimizer"] = dict(entry.optimizer)
            configs = [ref]
        else:
            configs = tuned_entries(entry, registry.get("methods", entry.method), suite)
        methods += configs
        compiled.labels += [entry.label] * len(configs)
    compiled.data = {
        "name": experiment,
        "description": f"suite {suite.suite} v{suite.version}, workload {workload.name} "
                       f"(sha256 {workload.hash}), ruleset {ruleset}",
        "tasks": [workload.task.model_dump(mode="json")],
        "models": [workload.model.model_dump(mode="json")],
        "methods": methods,
        "seeds": list(suite.seeds),
        "budget": workload.budget.model_dump(),
        "eval_every": workload.eval_every.model_dump(),
        "optimizer": workload.optimizer.model_dump(mode="json", exclude_none=True),
        "evaluation": workload.evaluation.model_dump(mode="json"),
        "selection": workload.selection.model_dump(mode="json"),
        "resources": suite.resources.model_dump(mode="json", exclude_none=True),
        "wandb": {"project": f"rnnbench-{suite.suite}", "tags": [suite.suite, workload.name, ruleset]},
    }
    return compiled


def validated(compiled: CompiledWorkload, registry: Registry) -> Manifest:
    """The compiled manifest, validated as any manifest (raises :class:`ManifestError`)."""
    return validate(compiled.data, registry, source=f"{compiled.experiment} (compiled)")


def entry_for_method(name: str, registry: Registry, label: str | None = None) -> SuiteMethod:
    """A new method as a suite entry: the plugin as it ships (``defaults``) or its declared space (``tuned``)."""
    registry.get("methods", name)  # UnknownPluginError names the known ones
    return SuiteMethod(label=label or name.replace("_", "-"), method=name)


def check_suite(suite: SuiteFile, lines: dict, registry: Registry, source: str,
                rulesets: tuple[str, ...] = ("defaults", "tuned")) -> None:
    """Every plugin-level problem of a suite at once (unknown plugins, bad parameters, a metric the task does
    not have, a method without a search space for ``tuned``), with field paths and lines."""
    from suite.manifest_yaml import lookup_line

    problems: list[Problem] = []
    for i, entry in enumerate(suite.methods):
        try:
            cls = registry.get("methods", entry.method)
        except UnknownPluginError as exc:
            problems.append(Problem(f"methods[{i}].method", str(exc), lookup_line(lines, ("methods", i, "method"))))
            continue
        if "tuned" in rulesets and cls.search_space is None:
            problems.append(Problem(f"methods[{i}].method", f"method {entry.method!r} declares no search_space: it "
                                    "cannot enter the tuned ruleset", lookup_line(lines, ("methods", i, "method"))))
        unknown = [k for k in entry.fixed if k not in cls.Params.model_fields]
        if unknown:
            problems.append(Problem(f"methods[{i}].fixed", f"not parameters of {entry.method}: {', '.join(unknown)}",
                                    lookup_line(lines, ("methods", i, "fixed"))))
    known = [e for e in suite.methods if e.method in registry.names("methods")]
    for w_i, workload in enumerate(suite.workloads):
        where = f"workloads[{w_i}] ({workload.name})"
        line = lookup_line(lines, ("workloads", w_i, "name"))
        try:
            for ruleset in rulesets:
                usable = [e for e in known if ruleset == "defaults" or registry.get("methods", e.method).search_space is not None]
                compiled = workload_manifest(suite, workload, ruleset, usable, registry)
                if compiled.data["methods"]:
                    manifest = validated(compiled, registry)
                    _check_metric(manifest, workload, registry)
        except ManifestError as exc:
            problems += [Problem(f"{where}: {p.path}", p.message, line) for p in exc.problems]
        except UnknownPluginError as exc:
            problems.append(Problem(where, str(exc), line))
        except (ValueError, TypeError) as exc:
            problems.append(Problem(where, str(exc), line))
    if problems:
        raise ManifestError(source, problems)


def _check_metric(manifest: Manifest, workload: Workload, registry: Registry) -> None:
    task_cls = registry.get("tasks", workload.task.name)
    metric = workload.selection.metric or task_cls.primary_metric
    spec = next((m for m in task_cls.metrics if m.name == metric), None)
    if spec is None:
        raise ValueError(f"selection metric {metric!r} is not a metric of task {workload.task.name} "
                         f"({', '.join(m.name for m in task_cls.metrics)})")
    if spec.low is not None and workload.target < spec.low or spec.high is not None and workload.target > spec.high:
        raise ValueError(f"target {workload.target} lies outside the range of {metric} [{spec.low}, {spec.high}]")
