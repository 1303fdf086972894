"""Reading a manifest's YAML safely: limits, line numbers, duplicate keys, ``--set`` overrides.

Rejected with a named problem (never a traceback, never minutes of work): a file that is not UTF-8 text,
larger than :data:`MAX_BYTES`, nested deeper than :data:`MAX_DEPTH`, or whose aliases expand to more than
:data:`MAX_VALUES` values (a "billion laughs" document); YAML tags that build Python objects; duplicate
keys in a mapping (YAML says the last wins, which silently drops a setting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_BYTES = 1 << 20  #: a manifest is a sweep description, not data
MAX_DEPTH = 64  #: nesting levels of mappings and lists
MAX_VALUES = 200_000  #: scalars and collections after alias expansion


@dataclass
class Problem:
    """One problem of a manifest: the field path (``methods[1].params.window``), what is wrong, the line."""

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
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems))


def decode(raw: bytes, source: str) -> str:
    """The text of a manifest file, or a ManifestError saying why it is not a YAML text file."""
    if len(raw) > MAX_BYTES:
        raise ManifestError(source, [Problem("", f"the file has {len(raw)} bytes; a manifest has at most {MAX_BYTES} "
                                                 "(is this the right file?)")])
    if b"\x00" in raw:
        raise ManifestError(source, [Problem("", "this is a binary file, not a YAML manifest")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(source, [Problem("", f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the manifest "
                                                 "as UTF-8", line)]) from None


def _measure(node: yaml.Node) -> tuple[int, int]:
    """(values after alias expansion, depth) of a composed document, in time linear in its distinct nodes."""
    sizes: dict[int, tuple[int, int]] = {}

    def visit(n: yaml.Node, level: int) -> tuple[int, int]:
        if level > MAX_DEPTH:
            raise _TooDeep()
        if id(n) in sizes:
            return sizes[id(n)]
        if isinstance(n, yaml.MappingNode):
            children = [c for kv in n.value for c in kv]
        elif isinstance(n, yaml.SequenceNode):
            children = n.value
        else:
            children = []
        size, depth = 1, 0
        for c in children:
            s, d = visit(c, level + 1)
            size, depth = size + s, max(depth, d + 1)
            if size > MAX_VALUES:
                break
        sizes[id(n)] = (size, depth)
        return size, depth

    return visit(node, 0)


class _TooDeep(Exception):
    pass


def _duplicates(node: yaml.Node, path: tuple[Any, ...], out: list[Problem], seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[Any, int] = {}
        for key, value in node.value:
            k = key.value
            if k in keys:
                out.append(Problem(_format(path + (k,)), f"duplicate key (first on line {keys[k]}); YAML would "
                                   "silently keep only the last one", key.start_mark.line + 1))
            else:
                keys[k] = key.start_mark.line + 1
            _duplicates(value, path + (k,), out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicates(item, path + (i,), out, seen)


def _format(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node) -> dict[tuple, int]:
    """Field path -> line, for the first occurrence of each path (aliases are not followed twice)."""
    out: dict[tuple, int] = {}
    stack: list[tuple[yaml.Node, tuple]] = [(node, ())]
    seen: set[int] = set()
    while stack:
        n, path = stack.pop()
        out.setdefault(path, n.start_mark.line + 1)
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                out[path + (key.value,)] = key.start_mark.line + 1
                stack.append((value, path + (key.value,)))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                stack.append((item, path + (i,)))
    return out


def lookup_line(lines: dict[tuple, int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Safe-load ``text`` within the limits above; returns the data and a field-path -> line map."""

    def fail(message: str, line: int | None = None) -> ManifestError:
        return ManifestError(source, [Problem("", message, line)])

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise fail(f"the YAML is nested too deeply (more than {MAX_DEPTH} levels are not a manifest)") from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    if node is None:
        raise fail("the manifest is empty; it must be a YAML mapping (see manifests/quickstart.yaml)")
    try:
        size, _ = _measure(node)
    except _TooDeep:
        raise fail(f"the YAML is nested more than {MAX_DEPTH} levels deep") from None
    if size > MAX_VALUES:
        raise fail(f"the YAML expands to more than {MAX_VALUES} values (through anchors and aliases); "
                   "a manifest that large is not a sweep description")
    duplicates: list[Problem] = []
    _duplicates(node, (), duplicates, set())
    if duplicates:
        raise ManifestError(source, duplicates)
    try:
        data = yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 (SafeLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    if not isinstance(data, dict):
        raise fail("a manifest must be a YAML mapping (name: ..., tasks: ..., ...), not a "
                   f"{type(data).__name__}", 1)
    return data, _line_map(node)


def _yaml_error(exc: yaml.YAMLError, source: str) -> ManifestError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    if "constructor" in str(exc) or "tag" in str(problem):
        problem = f"{problem} (YAML tags that build Python objects are not allowed)"
    return ManifestError(source, [Problem("", f"invalid YAML: {problem}", line)])


# --- --set overrides -------------------------------------------------------------------------------
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``path=value`` (YAML value) in place, e.g. ``budget.epochs=5``, ``methods[0].params.window=50``."""
    if "=" not in assignment:
        raise ValueError(f"--set expects path=value, got {assignment!r}")
    path, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"--set {path}: the value {raw!r} is not valid YAML ({problem}); quote strings, "
                         "e.g. --set 'name=\"my sweep\"'") from None
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
