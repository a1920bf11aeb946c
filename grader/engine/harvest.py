"""The harvest stage: keep what defines things, drop what does work.

A notebook is never run top to bottom: training loops, downloads, magics and shell lines
would take minutes or reach the network. From each cell we keep, in notebook order:
imports, `def`, `class`, assignments of inert values (literals, names, a few pure
constructors), and `if`/`try` blocks made only of those. Everything else at module level is
dropped. A cell that does not parse costs only what it defines; the reason is kept so that a
check that needs one of those names can say exactly why it is missing.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from grader.engine.load import Cell, LoadedSubmission

# Calls that only build values. Assignments whose value calls anything else (a download, a
# training run, a model built from the hub) are dropped.
PURE_CALLS = frozenset(
    {
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "str",
        "int",
        "float",
        "bool",
        "range",
        "len",
        "min",
        "max",
        "abs",
        "round",
        "sorted",
        "zip",
        "enumerate",
        "getattr",
        "torch.device",
        "torch.cuda.is_available",
        "os.path.join",
        "os.environ.get",
        "math.sqrt",
        "math.ceil",
        "math.floor",
        "np.array",
        "numpy.array",
    }
)


@dataclass(frozen=True)
class Statement:
    """One kept top-level statement, with where it came from."""

    cell: int  # the cell's position among code cells (Cell.index, 0-based)
    lineno: int  # first line within the cell (1-based)
    source: str
    defines: tuple[str, ...]  # top-level names it binds

    def to_wire(self) -> dict:
        return {"cell": self.cell, "lineno": self.lineno, "source": self.source}


@dataclass
class Harvest:
    statements: list[Statement] = field(default_factory=list)
    # Per dropped unparsable cell: the reason, and the names it would probably have defined.
    broken_cells: list[tuple[Cell, str, tuple[str, ...]]] = field(default_factory=list)
    dropped: int = 0  # number of top-level statements not kept (calls, loops, ...)
    cells: tuple[Cell, ...] = ()

    def defined_names(self) -> set[str]:
        return {name for st in self.statements for name in st.defines}

    def why_missing(self, name: str) -> str:
        """A one-line explanation for a name the checks need but the harvest does not have."""
        for cell, reason, names in reversed(self.broken_cells):
            if name in names:
                return f"`{name}` is in {cell.where}, which does not parse: {reason}"
        return f"`{name}` is not defined anywhere in the submission"

    def diagnostics(self) -> list[str]:
        return [f"{cell.where} skipped: {reason}" for cell, reason, _ in self.broken_cells]

    def where(self, statement: Statement) -> str:
        """Where a kept statement is, as a student finds it."""
        cell = self.cells[statement.cell] if 0 <= statement.cell < len(self.cells) else None
        located = (
            cell.where
            if cell is not None and cell.index == statement.cell
            else f"code cell {statement.cell + 1}"
        )
        return f"{located}, line {statement.lineno}"


def harvest(submission: LoadedSubmission, pure_calls: frozenset[str] = PURE_CALLS) -> Harvest:
    result = Harvest(cells=submission.cells)
    for cell in submission.cells:
        try:
            tree = parse_cell(cell)
            kept = [node for node in tree.body if _keep(node, pure_calls)]
            _check_compiles(kept, cell)
        except Unparsable as exc:
            result.broken_cells.append((cell, str(exc), _guess_definitions(cell.source)))
            continue
        result.dropped += len(tree.body) - len(kept)
        lines = cell.source.splitlines(keepends=True)
        for node in kept:
            # Decorators start above `def`; include them.
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            source = "".join(lines[first - 1 : node.end_lineno])
            result.statements.append(Statement(cell.index, first, source, _bound_names(node)))
    return result


class Unparsable(Exception):
    """A cell that cannot be turned into code; the message is a one-line reason."""


TOO_COMPLEX = "too deeply nested or too complex for Python to parse"


def parse_cell(cell: Cell) -> ast.Module:
    """The cell's syntax tree, or Unparsable with a reason naming the line where it can."""
    if cell.problem:
        raise Unparsable(cell.problem)
    try:
        return ast.parse(cell.source)
    except SyntaxError as exc:
        raise Unparsable(describe_syntax_error(exc)) from None
    except (RecursionError, MemoryError):
        # The parser recurses once per nesting level: `x = 1+1+...+1` with 200,000 terms
        # (or 5,000) is that many levels deep.
        raise Unparsable(TOO_COMPLEX) from None
    except ValueError as exc:  # Python 3.10/3.11 report a null byte this way
        raise Unparsable(f"{exc}") from None


def _check_compiles(nodes: list[ast.stmt], cell: Cell) -> None:
    """The compiler recurses deeper than the parser: a statement the parser took can still
    be too complex to compile (a 1,000-term sum). Say so here, with the cell, rather than
    when the sandbox runs it. Other compile errors are left to the sandbox, which reports
    them per statement."""
    try:
        compile(ast.Module(body=nodes, type_ignores=[]), cell.label, "exec", dont_inherit=True)
    except (RecursionError, MemoryError):
        raise Unparsable(TOO_COMPLEX) from None
    except (SyntaxError, ValueError):
        pass


def describe_syntax_error(exc: SyntaxError) -> str:
    where = f"line {exc.lineno}: " if exc.lineno else ""  # a null byte has no line
    return f"{where}SyntaxError: {exc.msg}"


def _keep(node: ast.stmt, pure_calls: frozenset[str]) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(isinstance(t, (ast.Name, ast.Tuple)) for t in node.targets) and _inert(
            node.value, pure_calls
        )
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and (node.value is None or _inert(node.value, pure_calls))
    if isinstance(node, ast.If):
        if _is_main_guard(node.test):
            return False
        return _inert(node.test, pure_calls) and all(_keep(n, pure_calls) for n in node.body + node.orelse)
    if isinstance(node, ast.Try):
        blocks = node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
        return all(_keep(n, pure_calls) or isinstance(n, ast.Pass) for n in blocks)
    return False


def _inert(expr: ast.expr, pure_calls: frozenset[str]) -> bool:
    """True when evaluating `expr` cannot do real work: no calls but the pure ones. A lambda
    is a definition: its body runs only when called, so it is not looked into."""
    todo = [expr]
    while todo:
        sub = todo.pop()
        if isinstance(sub, ast.Lambda):
            todo.extend(sub.args.defaults + [d for d in sub.args.kw_defaults if d])
            continue
        if isinstance(sub, ast.Call) and dotted_name(sub.func) not in pure_calls:
            return False
        if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        todo.extend(ast.iter_child_nodes(sub))
    return True


def _is_main_guard(test: ast.expr) -> bool:
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def dotted_name(node: ast.expr) -> str:
    """`torch.cuda.empty_cache` for the call target of `torch.cuda.empty_cache()`, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _bound_names(node: ast.stmt) -> tuple[str, ...]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return (node.name,)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return tuple((a.asname or a.name).split(".")[0] for a in node.names)
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.append(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
            names.append(sub.name)
    return tuple(names)


_DEFINITION = re.compile(r"^(?:class|def|async\s+def)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*=[^=]", re.MULTILINE)


def _guess_definitions(source: str) -> tuple[str, ...]:
    """Names an unparsable cell was probably defining, for the 'why is X missing' message."""
    return tuple(a or b for a, b in _DEFINITION.findall(source))
