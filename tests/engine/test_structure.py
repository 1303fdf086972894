"""The structure the README promises: plugins import only the suite (never each other), a new method needs
only suite.contracts and suite.training, and the suite's modules import each other without a cycle."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FOLDERS = ("methods", "datasets")


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules imported by ``path`` (``from a.b import c`` -> ``a.b``); top_level_only: not inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_plugins_never_import_each_other_or_registry_internals():
    offenders = []
    for folder in PLUGIN_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for mod in _imports(path):
                if mod.split(".")[0] in PLUGIN_FOLDERS or mod == "suite.registry":
                    offenders.append(f"{path.relative_to(ROOT)} imports {mod}")
            if "_import_file" in path.read_text():
                offenders.append(f"{path.relative_to(ROOT)} loads files through the registry's internals")
    assert not offenders, offenders


def test_methods_import_only_the_contract_the_toolbox_and_libraries():
    allowed_suite = ("suite.contracts", "suite.training", "suite.ops", "suite.training.adaptive_truncation", "suite.smt",
                     "suite.training.gradient_fidelity")
    example = ROOT / "tests" / "fixtures" / "example_plugins" / "tbptt_annealed.py"
    suite_imports = {m for m in _imports(example) if m.split(".")[0] == "suite"}
    assert suite_imports <= {"suite.contracts", "suite.training"}, suite_imports  # a TBPTT variant: one file, two imports
    for path in sorted((ROOT / "methods").glob("*.py")):
        bad = {m for m in _imports(path) if m.split(".")[0] == "suite" and not m.startswith(allowed_suite)}
        assert not bad, f"{path.name} reaches into the engine: {sorted(bad)}"


def test_suite_modules_import_without_a_cycle():
    """Module-level imports between suite modules form a DAG (function-level lazy imports are allowed)."""
    files = {_module_name(p): p for p in (ROOT / "suite").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        for mod in _imports(path, top_level_only=True):
            while mod and mod not in files:  # `from suite.x import y` where y is a name, not a module
                mod = mod.rpartition(".")[0]
            if mod and mod != name and mod != "suite":
                deps.add(mod)
        graph[name] = deps
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _import_graph():
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "benchmarks" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_hold_no_import_runs_upward():
    """contract < toolbox < manifest/registry < store < run, analysis < suites, conformance < faces (api, cli);
    analysis never imports run, the store imports neither; lazy imports inside functions count too."""
    offenders = _import_graph().upward(ROOT)
    assert not offenders, "imports running upward:\n" + "\n".join(offenders)


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    graph = _import_graph()
    shutil.copytree(ROOT / "suite", tmp_path / "suite")
    bad = tmp_path / "suite" / "store" / "results.py"
    bad.write_text(bad.read_text() + "\n\ndef _oops():\n    from suite.run.orchestrate import run_sweep  # noqa\n")
    assert any("suite.store.results -> suite.run.orchestrate" in x for x in graph.upward(tmp_path))


def test_every_module_lives_in_a_room():
    """suite/ holds only the contract, the registry, the manifest and the faces at the top; the rest is in the
    rooms (run, store, analysis, training and its toolbox folders, suites). Old paths are aliases of the new."""
    graph = _import_graph()
    top = {n for n, p in graph.modules(ROOT).items() if n.count(".") == 1 and p.name != "__init__.py"}
    assert top == {"suite._version", "suite.api", "suite.cli", "suite.conformance", "suite.contracts", "suite.datafiles",
                   "suite.manifest", "suite.manifest_yaml", "suite.readme_blocks", "suite.registry"}, sorted(top)
    import suite.results
    import suite.store.results

    assert suite.results is suite.store.results  # `from suite.results import ResultsStore` keeps working


#: folder names under RESULTS that only suite/store/layout.py spells ("trials" and "curves" are also the
#: duckdb table names, so they are not listed)
LAYOUT_ONLY = {"locks", "logs", "checkpoints", "experiments", "suite-manifests"}


def _layout_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in LAYOUT_ONLY]


def test_only_the_layout_module_spells_the_results_folders():
    offenders = [f"{path.parent.relative_to(ROOT)}/{hit}" for path in sorted((ROOT / "suite").rglob("*.py"))
                 if path.name != "layout.py" for hit in _layout_literals(path)]
    assert not offenders, "use suite.store.layout instead of spelling a results folder:\n" + "\n".join(offenders)


def test_the_layout_rule_catches_a_spelled_folder(tmp_path):
    bad = tmp_path / "spelled.py"
    bad.write_text('FOLDER = "locks"\nOTHER = "trials"\n')
    assert _layout_literals(bad) == ["spelled.py:1: 'locks'"]
