"""``rnnbench suite run``: compile each (workload, ruleset) to a manifest, keep it beside the results, run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from suite.registry import Registry
from suite.store import layout
from suite.suites.compile import CompiledWorkload, validated, workload_manifest
from suite.suites.spec import SuiteFile, SuiteMethod

MANIFEST_FOLDER = layout.SUITE_MANIFESTS  #: under RESULTS: the compiled manifest of every experiment that ran


@dataclass
class SuiteRunOutcome:
    """What a suite run did, per experiment."""

    ran: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, dict[str, str]] = field(default_factory=dict)  #: experiment -> label -> reason
    experiments: list[str] = field(default_factory=list)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0


def plan(suite: SuiteFile, entries: list[SuiteMethod], rulesets: list[str], registry: Registry,
         workloads: list[str] | None = None) -> list[CompiledWorkload]:
    """Every (workload, ruleset) manifest of a suite run, in the suite's order (validated)."""
    out = []
    for w in suite.workloads:
        if workloads and w.name not in workloads:
            continue
        for ruleset in rulesets:
            compiled = workload_manifest(suite, w, ruleset, entries, registry)
            if compiled.data["methods"]:
                validated(compiled, registry)
            out.append(compiled)
    return out


def write_manifest(compiled: CompiledWorkload, folder: Path) -> Path:
    """The compiled manifest as a YAML file (what ran, readable and re-runnable with ``rnnbench run``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{compiled.experiment}.yaml"
    header = (f"# compiled by `rnnbench suite run` from suite workload {compiled.workload.name} "
              f"(ruleset {compiled.ruleset}); labels of the methods, in order: {', '.join(compiled.labels)}\n")
    path.write_text(header + yaml.safe_dump(compiled.data, sort_keys=False, width=120))
    return path


def run_plan(compiled_list: list[CompiledWorkload], results: str, manifest_dir: Path, run: Callable[..., Any],
             say: Callable[[str], None], **run_kwargs: Any) -> SuiteRunOutcome:
    """Run every compiled manifest with ``run`` (:func:`suite.api.run`), stopping at an interruption."""
    outcome = SuiteRunOutcome()
    for i, compiled in enumerate(compiled_list, 1):
        exp = compiled.experiment
        outcome.experiments.append(exp)
        if compiled.not_applicable:
            outcome.not_applicable[exp] = dict(compiled.not_applicable)
            for label, reason in compiled.not_applicable.items():
                say(f"  {compiled.workload.name}: {label} not applicable ({reason})")
        if not compiled.data["methods"]:
            say(f"[{i}/{len(compiled_list)}] {compiled.workload.name} ({compiled.ruleset}): nothing applicable, skipped")
            continue
        say(f"[{i}/{len(compiled_list)}] {compiled.workload.name} ({compiled.ruleset}): "
            f"{len(compiled.data['methods'])} configurations x {len(compiled.data['seeds'])} seeds -> {exp}")
        path = write_manifest(compiled, manifest_dir)
        result = run(path, results=results, **run_kwargs)
        outcome.ran += result.ran
        outcome.statuses.update(result.statuses)
        outcome.notes += result.notes
        outcome.wall_time_s += result.wall_time_s
        if result.interrupted or result.rescue:
            outcome.interrupted = True
            outcome.notes.append(result.rescue or f"interrupted during {exp}")
            break
    return outcome
