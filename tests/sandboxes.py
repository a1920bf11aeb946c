"""A sandbox child on given source, for the tests that drive grader.sandbox directly
(tests/test_sandbox_escape.py, tests/test_wire_sandbox.py): the real child, forked from the
warm server, boxed in by whatever this machine allows."""

from __future__ import annotations

import ast

from submissions import REPO

from grader.sandbox import Limits, Sandbox


def statements(source: str) -> list[dict]:
    """The top-level statements of `source`, as the harvest hands them to the child (cell 0)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    return [
        {"cell": 0, "lineno": node.lineno, "source": "".join(lines[node.lineno - 1 : node.end_lineno])}
        for node in tree.body
    ]


def box(source: str, **limits) -> Sandbox:
    """A sandbox on `source` with the reference and the checks hidden, 5 s a request and 20 s to
    start unless `limits` (Limits' fields) say otherwise."""
    hidden = [str(REPO / "reference"), str(REPO / "assignments")]
    return Sandbox(
        statements(source),
        Limits(**({"request_seconds": 5, "boot_seconds": 20} | limits)),
        hidden_paths=hidden,
    )


def call(sandbox: Sandbox, name: str, *args, timeout=None):
    """What the child's function `name` returns for `args`."""
    return sandbox.request(
        "call", timeout, name=name, args=list(args), kwargs={}, grad_wrt=[], source_pattern=None
    )["output"]
