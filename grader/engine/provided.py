"""Definitions the handout provides, put back when a submission lost them.

Some starters hand students a finished definition in the same cell as the code they must
write (a helper class above the class to complete). When that cell does not parse, the
harvest loses the provided definition too, and every later cell that uses it fails although
the student never had to touch it. An assignment lists such definitions as data:

    [harvest.provided]
    HelperConv = '''
    import torch
    class HelperConv(torch.nn.Module):
        ...
    '''

Each source must be self-contained (its own imports) and define its name. When the harvest
has no definition of a name (its cell does not parse, or it was deleted), the provided source
is inserted where the lost cell was (else before the first statement that mentions the name)
and a note says so; a submission's own definition, edited or not, always wins.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from grader.errors import AssignmentError
from grader.engine.harvest import Harvest, Statement


@dataclass(frozen=True)
class ProvidedStatement(Statement):
    """A provided definition in the harvest: tracebacks name it, not a student's cell."""

    label: str = ""

    def to_wire(self) -> dict:
        return {"cell": self.label, "lineno": self.lineno, "source": self.source}


def provided_definitions(table, where: str = "[harvest.provided]") -> dict[str, str]:
    """The assignment's provided definitions, checked: each value is Python source that
    defines its key at top level."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise AssignmentError(f"{where} must be a table of name = source")
    out = {}
    for name, source in table.items():
        if not isinstance(source, str):
            raise AssignmentError(f"{where} {name}: the source must be a string")
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise AssignmentError(f"{where} {name}: does not parse (line {exc.lineno}: {exc.msg})")
        defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        if name not in defined:
            raise AssignmentError(f"{where} {name}: the source does not define {name}")
        out[name] = source.strip("\n") + "\n"
    return out


def supply_provided(harvest: Harvest, provided: dict[str, str]) -> list[str]:
    """Insert the provided definition of every name the harvest lacks; returns the notes."""
    notes = []
    have = harvest.defined_names()
    for name, source in provided.items():
        if name in have:
            continue
        lost_in = next((cell for cell, _, names in reversed(harvest.broken_cells) if name in names), None)
        position, cell_index = _position(harvest, name, lost_in)
        statement = ProvidedStatement(
            cell=cell_index,
            lineno=1,
            source=source,
            defines=(name,),
            label=f"the handout's {name}",
        )
        harvest.statements.insert(position, statement)
        if lost_in is not None:
            notes.append(
                f"`{name}` is in {lost_in.where}, which does not parse: the handout's own "
                f"{name} was used in its place"
            )
        else:
            notes.append(f"`{name}` is not defined in the notebook: the handout's own {name} was used")
    return notes


def _position(harvest: Harvest, name: str, lost_in) -> tuple[int, int]:
    """Where the definition goes among the kept statements, and the cell it stands for."""
    statements = harvest.statements
    if lost_in is not None:
        after = next((i for i, st in enumerate(statements) if st.cell > lost_in.index), len(statements))
        return after, lost_in.index
    mentions = re.compile(rf"\b{re.escape(name)}\b")
    first = next((i for i, st in enumerate(statements) if mentions.search(st.source)), len(statements))
    cell = statements[first].cell if first < len(statements) else -1
    return first, cell
