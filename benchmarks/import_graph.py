"""The shape of suite/: modules per folder, the depth of the module-level import graph, imports that run
upward across the layers (contract < toolbox < manifest/registry < store < run, analysis < suites, conformance
< faces), and the longest functions.

    python benchmarks/import_graph.py [--root PATH] [--top 8]
    python benchmarks/import_graph.py --smoke
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

LAYERS = [("suite.suites.cli", 6), ("suite.api", 6), ("suite.cli", 6), ("suite._version", 0), ("suite.datafiles", 0),
          ("suite.contracts", 0), ("suite.training", 1), ("suite.ops", 1), ("suite.models", 1), ("suite.metrics", 1),
          ("suite.tasklib", 1), ("suite.smt", 1), ("suite.adaptive_truncation", 1), ("suite.gradient_fidelity", 1),
          ("suite.registry", 2), ("suite.manifest_yaml", 2), ("suite.manifest", 2), ("suite.store", 3),
          ("suite.record", 3), ("suite.results", 3), ("suite.results_v1", 3), ("suite.lock", 3), ("suite.run", 4),
          ("suite.sweep", 4), ("suite.orchestrate", 4), ("suite.tune_callbacks", 4), ("suite.optuna_search", 4),
          ("suite.trial", 4), ("suite.trial_guard", 4), ("suite.context", 4), ("suite.wandb_run", 4),
          ("suite.envinfo", 4), ("suite.budget", 4), ("suite.plugin_shipping", 4), ("suite.analysis", 4),
          ("suite.ranking", 4), ("suite.stats", 4), ("suite.compare", 4), ("suite.plots", 4), ("suite.report", 4),
          ("suite.trajectories", 4), ("suite.suites", 5), ("suite.conformance", 5), ("suite.readme_blocks", 5)]


def layer(mod: str) -> int | None:
    if mod == "suite":
        return 6
    best = None
    for prefix, level in LAYERS:
        if mod == prefix or mod.startswith(prefix + "."):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), level)
    return None if best is None else best[1]


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted((root / "suite").rglob("*.py")):
        rel = p.relative_to(root).with_suffix("")
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        if "sys.modules[__name__] = _moved" in p.read_text():
            continue  # an alias kept for old imports
        out[".".join(parts)] = p
    return out


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m == "suite" or m.startswith("suite.")}


def resolve(mod: str, known: dict[str, Path]) -> str | None:
    while mod and mod not in known:
        mod = mod.rpartition(".")[0]
    return mod or None


def upward(root: Path) -> list[str]:
    known = modules(root)
    out = []
    for name, path in known.items():
        me = layer(name)
        for m in sorted(imports(path, top_level_only=False)):
            target = resolve(m, known) or m
            lt = layer(target)
            if me is not None and lt is not None and lt > me and target != name:
                out.append(f"{name} -> {target}")
            if name.startswith("suite.analysis") and target.startswith("suite.run"):
                out.append(f"{name} -> {target} (analysis imports run)")
            if name.startswith("suite.store") and target.startswith(("suite.run", "suite.analysis")):
                out.append(f"{name} -> {target} (store imports run or analysis)")
    return sorted(set(out))


def depth(root: Path) -> int:
    known = modules(root)
    graph = {n: {t for m in imports(p, True) if (t := resolve(m, known)) and t != n and t != "suite"}
             for n, p in known.items()}
    memo: dict[str, int] = {}

    def d(n: str, stack: tuple = ()) -> int:
        if n in memo:
            return memo[n]
        if n in stack:
            return 0
        memo[n] = 1 + max((d(t, stack + (n,)) for t in graph.get(n, ())), default=0)
        return memo[n]

    return max(d(n) for n in graph)


def longest_functions(root: Path, top: int) -> list[tuple[int, str]]:
    out = []
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return sorted(out, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    known = modules(args.root)
    folders = Counter(str(p.parent.relative_to(args.root)) for p in known.values())
    print("modules per folder: " + ", ".join(f"{k} {v}" for k, v in sorted(folders.items())))
    print(f"import depth (module level): {depth(args.root)}")
    up = upward(args.root)
    print(f"upward imports: {len(up)}")
    for line in up[: 3 if args.smoke else None]:
        print("  " + line)
    print("longest functions: " + ", ".join(f"{n} ({k} lines)" for k, n in longest_functions(args.root, args.top)))


if __name__ == "__main__":
    main()
