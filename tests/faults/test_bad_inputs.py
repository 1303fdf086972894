"""A bank of malformed manifests and CLI calls: every one exits 2 with the problem (and the field) named, no
traceback, no sweep started, and the results already in the store stay byte-identical."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TOY_MANIFEST
from typer.testing import CliRunner

from suite.cli import app
from suite.store.record import TrialRecord, records_to_table
from suite.store.results import ResultsStore

runner = CliRunner()
BASE = TOY_MANIFEST.format(name="toy")


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


DEEP = "a: " + "[" * 10_000 + "]" * 10_000 + "\n"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BIG_GRID = edit("params: {window: 30, batch_size: 8}",
                "params: {window: {grid: [" + ", ".join(str(i) for i in range(31, 61)) + "]}, batch_size: {grid: ["
                + ", ".join(str(i) for i in range(1, 31)) + "]}, burn_in: {grid: [" + ", ".join(str(i) for i in range(30))
                + "]}, stride: {grid: [" + ", ".join(str(i) for i in range(1, 31)) + "]}, shuffle: {grid: [true, false]}}")

# (id, manifest text or bytes, [fragments that must all appear in the output])
MANIFESTS: list[tuple[str, str | bytes, list[str]]] = [
    ("name-too-long", edit("name: toy", "name: " + "a" * 300), ["name", "at most 100"]),
    ("name-space", edit("name: toy", "name: my sweep"), ["name", "pattern"]),
    ("name-path", edit("name: toy", "name: ../escape"), ["name", "pattern"]),
    ("name-empty", edit("name: toy", "name: ''"), ["name"]),
    ("tasks-empty", edit("tasks:\n  - name: toy-sysid\n    params: {length: 120}", "tasks: []"), ["tasks", "at least 1"]),
    ("tasks-missing", edit("tasks:\n  - name: toy-sysid\n    params: {length: 120}\n", ""), ["tasks", "Field required"]),
    ("task-unknown", edit("  - name: toy-sysid", "  - name: toy"), ["tasks[0].name", "unknown task 'toy'"]),
    ("task-param-range", edit("{length: 120}", "{length: -5}"), ["tasks[0].params.length", "greater than or equal"]),
    ("task-param-typo", edit("{length: 120}", "{lenght: 120}"), ["tasks[0].params.lenght", "unknown parameter"]),
    ("task-params-list", edit("{length: 120}", "[1, 2]"), ["tasks[0].params", "dictionary"]),
    ("model-unknown", edit("  - name: gru", "  - name: gruu"), ["models[0].name", "Did you mean 'gru'"]),
    ("model-param-zero", edit("{hidden_size: 8}", "{hidden_size: 0}"), ["models[0].params.hidden_size"]),
    ("model-param-text", edit("{hidden_size: 8}", "{hidden_size: big}"), ["models[0].params.hidden_size"]),
    ("methods-empty", edit("methods:\n  - name: bptt\n  - name: tbptt\n    params: {window: 30, batch_size: 8}",
                           "methods: []"), ["methods", "at least 1"]),
    ("method-unknown", edit("  - name: bptt", "  - name: bptx"), ["methods[0].name", "unknown method 'bptx'"]),
    ("method-param-negative", edit("{window: 30, batch_size: 8}", "{window: -3}"), ["methods[1].params.window", "greater than 0"]),
    ("grid-empty", edit("{window: 30, batch_size: 8}", "{window: {grid: []}}"), ["methods[1].params.window", "non-empty list"]),
    ("uniform-reversed", edit("{window: 30, batch_size: 8}", "{window: {uniform: [10, 5]}}"), ["methods[1].params.window", "low must be below high"]),
    ("uniform-under-grid", edit("{window: 30, batch_size: 8}", "{window: {uniform: [5, 10]}}"), ["methods[1].params.window", "algorithm: random"]),
    ("unknown-space", edit("{window: 30, batch_size: 8}", "{window: {grod: [5]}}"), ["methods[1].params.window"]),
    ("burn-in-over-window", edit("{window: 30, batch_size: 8}", "{window: 30, burn_in: 30}"), ["methods[1].params", "burn_in"]),
    ("method-param-literal", edit("{window: 30, batch_size: 8}", "{mode: sideways}"), ["methods[1].params.mode"]),
    ("method-without-name", edit("  - name: bptt\n", "  - params: {}\n"), ["methods[0].name", "Field required"]),
    ("method-lr-negative", edit("  - name: bptt\n", "  - name: bptt\n    optimizer: {lr: -1}\n"), ["methods[0].optimizer.lr", "positive"]),
    ("method-optimizer-unknown-field", edit("  - name: bptt\n", "  - name: bptt\n    optimizer: {learning_rate: 0.1}\n"),
     ["methods[0].optimizer.learning_rate", "unknown field"]),
    ("method-optimizer-name", edit("  - name: bptt\n", "  - name: bptt\n    optimizer: {name: adamx}\n"),
     ["methods[0].optimizer.name", "unknown optimizer"]),
    ("method-optimizer-list", edit("  - name: bptt\n", "  - name: bptt\n    optimizer: [1]\n"), ["methods[0].optimizer"]),
    ("method-budget-zero", edit("  - name: bptt\n", "  - name: bptt\n    budget: {steps: 0}\n"), ["methods[0].budget.steps", "greater than 0"]),
    ("method-budget-empty", edit("  - name: bptt\n", "  - name: bptt\n    budget: {}\n"), ["methods[0].budget", "exactly one"]),
    ("seeds-repeated", edit("seeds: [0, 1]", "seeds: [0, 0]"), ["seeds", "distinct"]),
    ("seeds-bool", edit("seeds: [0, 1]", "seeds: [true]"), ["seeds[0]", "valid integer"]),
    ("seeds-negative", edit("seeds: [0, 1]", "seeds: [-1]"), ["seeds[0]", "greater than or equal to 0"]),
    ("seeds-huge", edit("seeds: [0, 1]", "seeds: [1180591620717411303424]"), ["seeds[0]", "less than"]),
    ("seeds-float", edit("seeds: [0, 1]", "seeds: [1.5]"), ["seeds[0]", "integer"]),
    ("seeds-empty", edit("seeds: [0, 1]", "seeds: []"), ["seeds", "at least 1"]),
    ("seeds-text", edit("seeds: [0, 1]", "seeds: '0'"), ["seeds", "list"]),
    ("budget-zero", edit("budget: {steps: 6}", "budget: {steps: 0}"), ["budget.steps", "greater than 0"]),
    ("budget-fraction", edit("budget: {steps: 6}", "budget: {steps: 1.5}"), ["budget.steps", "integer"]),
    ("budget-bool", edit("budget: {steps: 6}", "budget: {steps: true}"), ["budget.steps", "integer"]),
    ("budget-text", edit("budget: {steps: 6}", "budget: {steps: '6'}"), ["budget.steps", "integer"]),
    ("budget-inf", edit("budget: {steps: 6}", "budget: {time_s: .inf}"), ["budget.time_s", "finite"]),
    ("budget-nan", edit("budget: {steps: 6}", "budget: {time_s: .nan}"), ["budget.time_s", "got nan"]),
    ("budget-negative-time", edit("budget: {steps: 6}", "budget: {time_s: -1}"), ["budget.time_s", "greater than 0"]),
    ("budget-two-kinds", edit("budget: {steps: 6}", "budget: {steps: 6, epochs: 2}"), ["budget", "exactly one"]),
    ("budget-1e30-steps", edit("budget: {steps: 6}", "budget: {steps: 1000000000000000000000000000000}"),
     ["budget.steps", "above the largest steps budget", "typo"]),
    ("budget-year-of-seconds", edit("budget: {steps: 6}", "budget: {time_s: 31536000}"), ["budget.time_s", "30 days"]),
    ("budget-none", edit("budget: {steps: 6}", "budget: {}"), ["budget", "exactly one"]),
    ("budget-missing", edit("budget: {steps: 6}\n", ""), ["budget", "Field required"]),
    ("budget-unknown-unit", edit("budget: {steps: 6}", "budget: {minutes: 6}"), ["budget.minutes", "unknown field"]),
    ("eval-after-budget", edit("eval_every: {steps: 3}", "eval_every: {steps: 10}"), ["eval_every.steps", "lower eval_every"]),
    ("eval-zero", edit("eval_every: {steps: 3}", "eval_every: {steps: 0}"), ["eval_every.steps", "greater than 0"]),
    ("eval-two-kinds", edit("eval_every: {steps: 3}", "eval_every: {steps: 3, epochs: 1}"), ["eval_every", "exactly one"]),
    ("eval-inf", edit("eval_every: {steps: 3}", "eval_every: {seconds: .inf}"), ["eval_every.seconds", "finite"]),
    ("lr-negative", edit("lr: 0.01", "lr: -0.01"), ["optimizer.lr", "positive number"]),
    ("lr-text", edit("lr: 0.01", "lr: fast"), ["optimizer.lr", "got 'fast'"]),
    ("lr-zero", edit("lr: 0.01", "lr: 0"), ["optimizer.lr", "positive number"]),
    ("lr-nan", edit("lr: 0.01", "lr: .nan"), ["optimizer.lr", "positive number"]),
    ("lr-bool", edit("lr: 0.01", "lr: true"), ["optimizer.lr", "positive number"]),
    ("lr-loguniform-negative", edit("lr: 0.01", "lr: {loguniform: [-1, 1]}"), ["optimizer.lr", "loguniform"]),
    ("lr-grid-negative", edit("lr: 0.01", "lr: {grid: [0.1, -0.1]}"), ["optimizer.lr", "got -0.1"]),
    ("weight-decay-negative", edit("lr: 0.01", "lr: 0.01, weight_decay: -1"), ["optimizer.weight_decay", ">= 0"]),
    ("momentum-too-big", edit("name: adam, lr: 0.01", "name: sgd, lr: 0.01, momentum: 1.5"), ["optimizer.momentum", "[0, 1)"]),
    ("grad-clip-negative", edit("lr: 0.01", "lr: 0.01, grad_clip: -1"), ["optimizer.grad_clip", "positive"]),
    ("optimizer-name", edit("name: adam, lr", "name: adamx, lr"), ["optimizer.name"]),
    ("betas-out-of-range", edit("lr: 0.01", "lr: 0.01, betas: [1.5, 0.9]"), ["optimizer.betas"]),
    ("optimizer-unknown-field", edit("lr: 0.01", "lr: 0.01, nesterov: true"), ["optimizer.nesterov", "unknown field"]),
    ("cpu-zero", edit("resources: {cpu: 1}", "resources: {cpu: 0}"), ["resources.cpu", "greater than 0"]),
    ("cpu-negative", edit("resources: {cpu: 1}", "resources: {cpu: -1}"), ["resources.cpu"]),
    ("cpu-text", edit("resources: {cpu: 1}", "resources: {cpu: many}"), ["resources.cpu", "number"]),
    ("gpu-negative", edit("resources: {cpu: 1}", "resources: {cpu: 1, gpu: -1}"), ["resources.gpu"]),
    ("cuda-without-gpu", edit("resources: {cpu: 1}", "resources: {cpu: 1, device: cuda}"), ["resources.device", "gpu > 0"]),
    ("dtype-unknown", edit("resources: {cpu: 1}", "resources: {cpu: 1, dtype: float16}"), ["resources.dtype"]),
    ("retries-negative", edit("resources: {cpu: 1}", "resources: {cpu: 1, retries: -1}"), ["resources.retries"]),
    ("time-limit-zero", edit("resources: {cpu: 1}", "resources: {cpu: 1, time_limit_s: 0}"), ["resources.time_limit_s"]),
    ("resources-unknown-field", edit("resources: {cpu: 1}", "resources: {cpu: 1, ram: 4}"), ["resources.ram", "unknown field"]),
    ("time-limit-below-budget", edit("budget: {steps: 6}\neval_every: {steps: 3}", "budget: {time_s: 10}\neval_every: {seconds: 2}").replace(
        "resources: {cpu: 1}", "resources: {cpu: 1, time_limit_s: 5}"), ["resources.time_limit_s", "every trial would time out"]),
    ("search-unknown", BASE + "search: {algorithm: bayes}\n", ["search.algorithm"]),
    ("search-zero-samples", BASE + "search: {algorithm: random, num_samples: 0}\n", ["search.num_samples", "greater than 0"]),
    ("randint-floats", edit("{window: 30, batch_size: 8}", "{window: {randint: [1.5, 3]}}") + "search: {algorithm: random}\n",
     ["methods[1].params.window", "randint needs integers"]),
    ("scheduler-factor", BASE + "scheduler: {name: asha, reduction_factor: 1}\n", ["scheduler.reduction_factor", "greater than 1"]),
    ("scheduler-unknown", BASE + "scheduler: {name: pbt}\n", ["scheduler.name"]),
    ("selection-metric-unknown", BASE + "selection: {metric: foo}\n", ["selection.metric", "no metric 'foo'", "rmse"]),
    ("selection-test-split", BASE + "selection: {split_weights: {test: 1}}\n", ["selection.split_weights"]),
    ("selection-no-weight", BASE + "selection: {split_weights: {val: 0}}\n", ["selection.split_weights", "positive weight"]),
    ("selection-negative-weight", BASE + "selection: {split_weights: {val: -1}}\n", ["selection.split_weights.val"]),
    ("diagnostics-bool", BASE + "diagnostics: {gradient_fidelity: maybe}\n", ["diagnostics.gradient_fidelity", "boolean"]),
    ("diagnostics-unknown", BASE + "diagnostics: {probe: 3}\n", ["diagnostics.probe", "unknown field"]),
    ("wandb-mode", edit("wandb: {mode: disabled}", "wandb: {mode: sometimes}"), ["wandb.mode"]),
    ("wandb-project-empty", edit("wandb: {mode: disabled}", "wandb: {mode: disabled, project: ''}"), ["wandb.project"]),
    ("plugins-missing", BASE + "plugins: [/no/such/plugin/folder]\n", ["plugins[0]", "does not exist"]),
    ("max-concurrent-zero", BASE + "max_concurrent: 0\n", ["max_concurrent", "greater than 0"]),
    ("unknown-field", BASE + "surprise: 1\n", ["surprise", "unknown field"]),
    ("data-dir-number", BASE + "data_dir: 5\n", ["data_dir", "string"]),
    ("matrix-too-large", BIG_GRID, ["trials, more than 1,000,000", "shrink the grids"]),
    ("yaml-syntax", BASE + "oops: [1, 2\n", ["invalid YAML"]),
    ("yaml-duplicate-top", BASE + "budget: {steps: 7}\n", ["budget", "duplicate key"]),
    ("yaml-duplicate-nested", edit("{length: 120}", "{length: 120, length: 60}"), ["tasks[0].params.length", "duplicate key"]),
    ("yaml-python-tag", edit("name: toy", "name: !!python/object/apply:os.system ['echo pwned']"), ["not allowed"]),
    ("yaml-alias-bomb", BOMB, ["expands to more than"]),
    ("yaml-deep", DEEP, ["nested"]),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["binary file"]),
    ("latin-1", "name: caf\xe9\n".encode("latin-1"), ["not UTF-8"]),
    ("empty-file", "", ["empty"]),
    ("top-level-list", "- name: toy\n", ["must be a YAML mapping"]),
    ("top-level-scalar", "just a sentence\n", ["must be a YAML mapping"]),
    ("too-large", "# " + "x" * (1 << 20) + "\n" + BASE, ["bytes", "right file"]),
    ("every-problem-at-once", edit("seeds: [0, 1]", "seeds: [0, 0]").replace("lr: 0.01", "lr: -1").replace(
        "{window: 30, batch_size: 8}", "{window: {uniform: [5, 10]}}"),
     ["seeds", "optimizer.lr", "methods[1].params.window", "3 problem(s)"]),
]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Earlier results: experiment "toy" (the bank's manifest name) and "exp", in parts and compacted."""
    root = tmp_path_factory.mktemp("bank") / "results"
    s = ResultsStore(root)
    for i, exp in enumerate(["toy", "exp", "exp"]):
        s.write([TrialRecord(experiment=exp, trial_key=f"{exp}-{i}", config_id="c", task="toy-sysid", model="gru",
                             method="bptt", seed=i, method_params={"batch_size": 4}, status="ok",
                             primary_metric="rmse", direction="min", selection_score=0.5,
                             metrics={"val": {"rmse": 0.5}, "test": {"rmse": 0.6}},
                             metric_specs={"rmse": {"direction": "min", "unit": ""}}, run_id=f"r{i}")])
    s.compact("toy")
    return root


def check(result, fragments: list[str], store: Path, before: dict[str, str]) -> None:
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and (result.exception is None or isinstance(result.exception, SystemExit)), out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in {out!r}"
    assert _digest(store) == before


@pytest.mark.parametrize("case, text, fragments", MANIFESTS, ids=[c[0] for c in MANIFESTS])
def test_bad_manifest(case, text, fragments, tmp_path, store):
    path = tmp_path / "manifest.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = _digest(store)
    check(runner.invoke(app, ["validate", str(path)]), fragments, store, before)
    check(runner.invoke(app, ["run", str(path), "--results", str(store), "--wandb", "disabled"]), fragments, store, before)


@pytest.fixture
def good_manifest(tmp_path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(TOY_MANIFEST.format(name="fresh"))
    return path


def _corrupt(kind: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "part-9999999999999-bad.parquet"
    good = next(folder.glob("*.parquet"), None)
    if kind == "truncated":
        target.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "text":
        target.write_text("this is not parquet")
    elif kind == "mistyped":
        table = pq.read_table(good)
        i = table.schema.get_field_index("status")
        pq.write_table(table.set_column(i, "status", pa.array([1] * table.num_rows, pa.int64())), target)
    elif kind == "version-0":
        r = TrialRecord("exp", "v0", "c", "t", "m", "me", 0, schema_version=0)
        pq.write_table(records_to_table([r]), target)
    elif kind == "foreign":
        pq.write_table(pa.table({"x": [1, 2]}), target)


CORRUPT = [("truncated", "not a readable Parquet"), ("empty", "not a readable Parquet"), ("text", "not a readable Parquet"),
           ("mistyped", "column 'status' has type int64"), ("version-0", "schema_version 0"),
           ("foreign", "lacks the identity column")]


@pytest.mark.parametrize("kind, fragment", CORRUPT, ids=[c[0] for c in CORRUPT])
@pytest.mark.parametrize("command", ["leaderboard", "curves", "compact", "run"])
def test_unreadable_store_parts_are_named(kind, fragment, command, tmp_path, store):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    _corrupt(kind, copy / "trials" / ("toy" if command == "run" else "exp"))  # run: resuming the broken experiment
    before = _digest(copy)
    toy = tmp_path / "toy.yaml"
    toy.write_text(BASE)
    args = {"leaderboard": ["leaderboard", str(copy)], "curves": ["curves", str(copy), "--metric", "rmse"],
            "compact": ["compact", str(copy)],
            "run": ["run", str(toy), "--results", str(copy), "--wandb", "disabled", "--resume"]}[command]
    check(runner.invoke(app, args), [fragment, "part-9999999999999-bad.parquet", "Move them out"], copy, before)


def _cli_cases(store: Path, good: Path, tmp: Path) -> list[tuple[list[str], list[str]]]:
    a_file = tmp / "a-file"
    a_file.write_text("x")
    garbage = tmp / "garbage.jsonl"
    garbage.write_text("{not json\n")
    toy = tmp / "toy.yaml"
    toy.write_text(BASE)
    tanks = tmp / "tanks.yaml"
    tanks.write_text(edit("  - name: toy-sysid\n    params: {length: 120}", "  - name: cascaded-tanks"))
    run = ["run", str(good), "--results", str(tmp / "r"), "--wandb", "disabled"]
    return [
        (["validate", str(tmp / "missing.yaml")], ["cannot read manifest"]),
        (["validate", str(toy), "--set", "budget.epoch=5"], ["did you mean 'epochs'", "(from --set budget.epoch=5)"]),
        (["validate", str(toy), "--set", "optimiser.lr=0.1"], ["did you mean 'optimizer'", "(from --set optimiser.lr=0.1)"]),
        (["validate", str(toy), "--set", "methods[0].params.batch_sise=4"], ["did you mean 'batch_size'", "from --set"]),
        (["validate", str(tmp)], ["is a directory"]),
        ([*run, "--set", "seeds=[0,"], ["seeds", "not valid YAML"]),
        ([*run, "--set", "methods[7].name=x"], ["methods[7]", "does not exist"]),
        ([*run, "--set", "budget"], ["path=value"]),
        ([*run, "--set", "budget.steps=-1"], ["budget.steps", "greater than 0"]),
        ([*run, "--set", "name=has space"], ["name", "pattern"]),
        (["run", str(good), "--results", str(a_file), "--wandb", "disabled"], ["is a file"]),
        ([*run, "--storage", "/proc/rnnbench-cannot-write-here"], ["cannot write Ray Tune's storage", "--storage"]),
        ([*run, "--plugins", "/no/such/folder"], ["no such folder"]),
        ([*run, "--retry-failed"], ["add --resume"]),
        ([*run, "--max-concurrent", "0"], ["Invalid value", "--max-concurrent"]),
        ([*run, "--wandb", "sometimes"], ["Invalid value", "--wandb"]),
        ([*run, "--num-cpus", "0"], ["Invalid value", "--num-cpus"]),
        ([*run, "--address", "127.0.0.1:1"], ["cannot reach a Ray cluster", "ray start --head"]),
        (["run", str(toy), "--results", str(store), "--wandb", "disabled"], ["already holds", "--resume"]),
        (["run", str(tanks), "--results", str(tmp / "r"), "--wandb", "disabled", "--data-dir", str(tmp / "nodata")],
         ["missing data file sysid/cascaded_tanks/dataBenchmark.mat", "sha256"]),
        (["leaderboard", str(tmp / "nothing")], ["no trial rows"]),
        (["leaderboard", str(store), "--experiment", "nope"], ["no experiment 'nope'", "exp, toy"]),
        (["leaderboard", str(store), "--task", "nope"], ["no trials of task 'nope'", "toy-sysid"]),
        (["leaderboard", str(store), "--metric", "nope"], ["no test metric 'nope'", "rmse"]),
        (["leaderboard", str(store), "--split-by", "nope"], ["no parameter 'nope'", "method.batch_size"]),
        (["leaderboard", str(store), "--format", "xml"], ["Invalid value", "--format"]),
        (["curves", str(store), "--metric", "nope"], ["no trial or curve rows"]),
        (["curves", str(tmp / "nothing"), "--metric", "K"], ["no trial or curve rows"]),
        (["compact", str(tmp / "nothing")], ["no results store"]),
        (["import-rows", str(store), str(tmp / "missing.jsonl")], ["cannot import"]),
        (["import-rows", str(store), str(garbage)], ["cannot import"]),
        (["list", "gizmos"], ["Invalid value"]),
        (["nonsense-command"], ["No such command"]),
    ]


def test_bad_cli_calls(tmp_path, store, good_manifest):
    before = _digest(store)
    cases = _cli_cases(store, good_manifest, tmp_path)
    assert len(cases) >= 30
    failures = []
    for args, fragments in cases:
        result = runner.invoke(app, args, env={"RNNBENCH_OFFLINE": "1"})
        try:
            check(result, fragments, store, before)
        except AssertionError as exc:
            failures.append(f"{args}: {exc}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "r" / "trials").exists()  # no call ran a trial


def test_bank_size():
    """The bank holds at least 100 bad inputs (manifests x 2 commands, store faults x 4 commands, CLI calls)."""
    assert len(MANIFESTS) * 2 + len(CORRUPT) * 4 + 30 >= 100
    assert json.dumps([c[0] for c in MANIFESTS])  # ids are plain strings


def test_ray_that_fails_to_start_is_one_line(tmp_path, good_manifest, monkeypatch):
    """Seen on a loaded machine: 'the current node timed out during startup' as a 40-line traceback."""
    import ray

    def failing_init(*args, **kwargs):
        raise RuntimeError("The current node timed out during startup. This could happen because some of the "
                           "Ray processes failed to startup.\n  File ...\n  more lines")

    monkeypatch.setattr(ray, "init", failing_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    result = runner.invoke(app, ["run", str(good_manifest), "--results", str(tmp_path / "r"), "--wandb", "disabled"])
    assert result.exit_code == 2, result.output
    assert "could not start a local Ray instance" in result.output and "timed out during startup" in result.output
    assert "Traceback" not in result.output and "more lines" not in result.output


def test_an_unreachable_object_store_is_one_line(tmp_path, good_manifest, monkeypatch):
    """s3:// with an endpoint that does not answer: `leaderboard` and `run` say so in one line (exit 2), not
    with a pyarrow traceback, and `run` writes nothing."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    uri = "s3://nobucket/sweeps?endpoint_override=127.0.0.1:9&scheme=http"  # port 9 (discard): refused
    for args in (["leaderboard", uri], ["run", str(good_manifest), "--results", uri, "--wandb", "disabled"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "cannot read the results store s3://nobucket/sweeps" in result.output, result.output
        assert "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.parquet"))
