"""Student regions that live at module level (for example a driver cell that edits a model
before calling `train`). The harvest drops such code, so an assignment describes where each
region is, and this module extracts it from the notebook.

A region is found by what its cell does, not by the `YOUR CODE GOES HERE` markers (students
delete and move them): the cell must match every `cell_patterns` regex; among several, the
first that matches `prefer_patterns` wins. The region is that cell's top-level statements,
minus definitions (the harvest has them) and minus statements that call one of `drop_calls`
(the set-up and the training call around the student's lines).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from grader.engine.harvest import Statement, Unparsable, _bound_names, dotted_name, parse_cell
from grader.engine.load import Cell


@dataclass(frozen=True)
class RegionSpec:
    name: str
    cell_patterns: tuple[str, ...]
    prefer_patterns: tuple[str, ...] = ()
    drop_calls: tuple[str, ...] = ()
    description: str = ""  # how feedback names the cell

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "RegionSpec":
        return cls(
            name,
            tuple(data["cell_patterns"]),
            tuple(data.get("prefer_patterns", ())),
            tuple(data.get("drop_calls", ())),
            data.get("description", f"the {name} cell"),
        )


class RegionNotFound(Exception):
    pass


def extract_region(cells: tuple[Cell, ...], spec: RegionSpec) -> list[Statement]:
    candidates = [c for c in cells if all(re.search(p, c.source) for p in spec.cell_patterns)]
    if not candidates:
        raise RegionNotFound(f"{spec.description} was not found in the notebook")
    preferred = [c for c in candidates if all(re.search(p, c.source) for p in spec.prefer_patterns)]
    cell = (preferred or candidates)[0]
    try:
        tree = parse_cell(cell)
    except Unparsable as exc:
        raise RegionNotFound(f"{spec.description}, {cell.where}, does not parse: {exc}")
    lines = cell.source.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if _calls_any(node, spec.drop_calls):
            continue
        source = "".join(lines[node.lineno - 1 : node.end_lineno])
        kept.append(Statement(cell.index, node.lineno, source, _bound_names(node)))
    return kept


def _calls_any(node: ast.AST, names: tuple[str, ...]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            called = dotted_name(sub.func)
            if any(called == n or called.endswith("." + n) for n in names):
                return True
    return False
