"""Numbers in the README come from stored results by a command, never typed by hand.

A generated block is written as::

    <!-- generated: rnnbench suite score reference/v1-cpu --format md -->
    ...the command's standard output...
    <!-- end generated -->

``rnnbench readme README.md`` runs every block's command (in process; only ``rnnbench`` commands) and writes
their output between the markers; ``--check`` changes nothing and exits 1 when a block is out of date, so a
test keeps the README honest.
"""

from __future__ import annotations

import re
import shlex
from typing import Callable

BLOCK = re.compile(r"(<!-- generated: (?P<cmd>[^\n]*?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


class BlockError(ValueError):
    """A block whose command is not an rnnbench command, or failed."""


def blocks(text: str) -> list[tuple[str, str]]:
    """``(command, current body)`` of every generated block."""
    return [(m.group("cmd"), m.group("body")) for m in BLOCK.finditer(text)]


def regenerate(text: str, run: Callable[[list[str]], str]) -> str:
    """``text`` with every block's body replaced by ``run(argv)`` of its command (argv after ``rnnbench``)."""
    def replace(m: re.Match) -> str:
        argv = shlex.split(m.group("cmd"))
        if not argv or argv[0] != "rnnbench":
            raise BlockError(f"generated block command must start with rnnbench: {m.group('cmd')!r}")
        body = run(argv[1:])
        if body and not body.endswith("\n"):
            body += "\n"
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(replace, text)
