"""The suite file: schema, loading (every problem at once, with field path and line) and workload hashes.

A suite file (``suites/v1-cpu.yaml``) holds::

    suite: v1-cpu            # name; rows are tied to it
    version: 1               # bumped when a workload changes meaning (its hash changes anyway)
    seeds: [0, 1, 2]         # at least 3
    methods:                 # the reference entries: a label, the method plugin, the parameters it pins
      - {label: tbptt-m0, method: tbptt, params: {burn_in: 0}, fixed: [burn_in]}
    rulesets:
      tuned: {configs: 4, seed: 0, optimizer: {lr: {loguniform: [3.0e-4, 3.0e-2]}}}
    workloads:
      - name: cascaded-tanks
        task: {name: cascaded-tanks}
        model: {name: gru, params: {hidden_size: 16}}
        budget: {steps: 300}
        eval_every: {steps: 50}
        optimizer: {name: adam, lr: 0.01, grad_clip: 1.0}
        evaluation: {checkpoint: final}
        selection: {metric: rmse}
        target: 0.5          # validation value of the selection metric (time-to-target)

A workload's hash is the SHA-256 of its canonical JSON definition (everything above under the workload but its
description and target, which the trials do not depend on);
its first 8 hex digits are part of the experiment names its rows are stored under, so rows of a changed
workload can never be mixed with the new ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from suite.manifest import Evaluation, Optimizer, PluginRef, Resources, SelectionSpec
from suite.manifest_yaml import ManifestError, Problem, decode, lookup_line, parse_yaml

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
RULESETS = ("defaults", "tuned")
MIN_SEEDS = 3
MAX_BUDGET_STEPS = 10_000_000  #: a suite budget is counted in updates; more than 10^7 is a typo, not a workload


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepsBudget(Strict):
    """A suite budget is counted in parameter updates, so scores travel between machines."""

    steps: Annotated[int, Field(gt=0, le=MAX_BUDGET_STEPS)]


class Workload(Strict):
    name: str = Field(pattern=NAME, max_length=60)
    description: str = ""
    task: PluginRef
    model: PluginRef
    budget: StepsBudget
    eval_every: StepsBudget
    optimizer: Optimizer = Field(default_factory=Optimizer)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    target: float = Field(allow_inf_nan=False, description="validation value of the selection metric to reach")

    @model_validator(mode="after")
    def _eval_fits(self) -> Workload:
        if self.eval_every.steps > self.budget.steps:
            raise ValueError(f"eval_every.steps ({self.eval_every.steps}) exceeds budget.steps ({self.budget.steps})")
        return self

    def definition(self) -> dict[str, Any]:
        """The canonical definition the hash is taken of: everything the trials depend on (the description and
        the target, which only scoring reads, are left out, so re-wording or re-targeting keeps the rows)."""
        return self.model_dump(mode="json", exclude={"description", "target"})

    @property
    def hash(self) -> str:
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class SuiteMethod(Strict):
    """One reference entry: a method plugin with the parameters the suite pins for it (the same on every
    workload). ``fixed`` names pinned parameters the ``tuned`` ruleset must not vary (e.g. ``burn_in: 0``
    for TBPTT without burn-in); every other parameter of the method's declared search space is tuned."""

    label: str = Field(pattern=NAME, max_length=40)
    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    fixed: list[str] = Field(default_factory=list)


class TunedRuleset(Strict):
    configs: Annotated[int, Field(ge=1, le=1000)] = 4
    seed: Annotated[int, Field(ge=0)] = 0
    optimizer: dict[str, Any] = Field(default_factory=lambda: {"lr": {"loguniform": [3.0e-4, 3.0e-2]}})


class Rulesets(Strict):
    defaults: dict[str, Any] = Field(default_factory=dict)  #: no options: each entry as it ships
    tuned: TunedRuleset = Field(default_factory=TunedRuleset)


class SuiteFile(Strict):
    suite: str = Field(pattern=NAME, max_length=40)
    version: Annotated[int, Field(ge=1)]
    description: str = ""
    requires_rnnbench: str = Field("0.2", description="oldest rnnbench release (major.minor) whose rows score here")
    seeds: list[Annotated[int, Field(ge=0, lt=2**63)]] = Field(min_length=MIN_SEEDS)
    resources: Resources = Field(default_factory=Resources)
    methods: list[SuiteMethod] = Field(min_length=1)
    rulesets: Rulesets = Field(default_factory=Rulesets)
    workloads: list[Workload] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds repeat")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> SuiteFile:
        for what, names in (("workload", [w.name for w in self.workloads]), ("method label", [m.label for m in self.methods])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {what} name(s): {', '.join(dup)}")
        return self

    def workload(self, name: str) -> Workload:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(f"suite {self.suite} has no workload {name!r}; it has: {', '.join(w.name for w in self.workloads)}")

    def experiment(self, workload: Workload, ruleset: str) -> str:
        """The experiment name the rows of ``workload`` under ``ruleset`` are stored under."""
        return experiment_name(self.suite, workload.name, ruleset, workload.hash)


def experiment_name(suite: str, workload: str, ruleset: str, digest: str) -> str:
    return f"{suite}.{workload}.{ruleset}.{digest[:8]}"


def parse_experiment(name: str) -> tuple[str, str, str, str] | None:
    """``(suite, workload, ruleset, hash8)`` of a suite experiment name, or None for any other experiment."""
    parts = name.split(".")
    if len(parts) != 4 or parts[2] not in RULESETS or len(parts[3]) != 8:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def _problems_of(exc: ValidationError, lines: dict) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
        msg = err["msg"].removeprefix("Value error, ")
        out.append(Problem(path or "<suite>", msg, lookup_line(lines, loc)))
    return out


def builtin_suites_dir() -> Path | None:
    """``suites/`` of a checkout, or the copy inside an installed wheel."""
    root = Path(__file__).resolve().parents[1]
    for candidate in (root / "_builtin" / "suites", root.parent / "suites"):
        if candidate.is_dir():
            return candidate
    return None


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A suite file by path, or by name (``v1-cpu`` -> ``suites/v1-cpu.yaml``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"suite file {p} does not exist")
        return p
    folder = builtin_suites_dir()
    known = sorted(f.stem for f in folder.glob("*.yaml")) if folder else []
    if folder and (folder / f"{p.name}.yaml").is_file():
        return folder / f"{p.name}.yaml"
    raise FileNotFoundError(f"no suite named {str(name_or_path)!r}: give a suite file path or one of: "
                            f"{', '.join(known) or '(none installed)'}")


def load_suite(name_or_path: str | Path) -> tuple[SuiteFile, dict]:
    """Parse and validate the suite's own schema; returns the suite and the field-path -> line map.
    Raises :class:`ManifestError` listing every problem (plugin checks: :func:`suite.suites.compile.check_suite`)."""
    path = resolve_suite_path(name_or_path)
    text = decode(path.read_bytes(), str(path))
    data, lines = parse_yaml(text, str(path))
    try:
        return SuiteFile.model_validate(data), lines
    except ValidationError as exc:
        raise ManifestError(str(path), _problems_of(exc, lines)) from None


Ruleset = Literal["defaults", "tuned"]
