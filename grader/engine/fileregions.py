"""Student regions inside a submitted `.py` file, found by what the code does.

Some assignments have students edit a few lines of a larger file they did not write (a
training script, a loss module of a third-party tree). The grader never runs such a file: it
takes out the student's statements and runs them inside trusted code (grader.engine.transplant).
An assignment describes each region in `[file_regions.<name>]`:

    file = "loss"                       # which of [files.*] it is in
    function = "ComputeLoss.__call__"   # the function (or Class.method) that holds it
    # and one of:
    loop_over = "named_parameters"      # the `for` statement whose iterable calls this
    binds = "lcls"                      # the statements that assign this name ...
    defining = true                     # ... only those that do not read it (not a wrapper after)
    in_loop = true                      # ... only those inside a loop (not the set-up or scaling)
    description = "..."                 # how feedback names the region

Markers and indentation are never used: students delete markers and real files nest 2-space
code in an 8-space block. A region is the matching statement(s) plus the helper statements
next to them that only they use (`pw = torch.tensor(...)` right before `BCEcls = ...(pos_weight=pw)`,
`BCEcls.reduction = ...` right after). Everything else in the file is not run; with a copy of
the handout's file (`starter_env`) the edits outside the regions are listed as notes.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

from grader.errors import AssignmentError

FILE_REGION_KEYS = {"file", "function", "loop_over", "binds", "defining", "in_loop", "description"}


@dataclass(frozen=True)
class FileStatement:
    """One statement of a region, as written in its file."""

    file: str  # the path inside the submission, as the student's editor shows it
    lineno: int
    end_lineno: int
    source: str  # its lines, indented as in the file

    def to_wire(self) -> dict:
        return {"file": self.file, "lineno": self.lineno, "source": self.source}

    @property
    def where(self) -> str:
        lines = (
            f"line {self.lineno}"
            if self.end_lineno == self.lineno
            else f"lines {self.lineno}-{self.end_lineno}"
        )
        return f"{self.file} {lines}"


@dataclass(frozen=True)
class FileRegion:
    """A region found in a file: its statements and the file's top-level imports, which the
    transplanted statements may use (`F.binary_cross_entropy_with_logits` after `import
    torch.nn.functional as F`)."""

    name: str
    statements: tuple[FileStatement, ...]
    imports: tuple[FileStatement, ...]

    def to_wire(self) -> dict:
        return {
            "statements": [s.to_wire() for s in self.statements],
            "imports": [s.to_wire() for s in self.imports],
        }

    @property
    def where(self) -> str:
        first, last = self.statements[0], self.statements[-1]
        if first.lineno == last.end_lineno:
            return f"{first.file} line {first.lineno}"
        return f"{first.file} lines {first.lineno}-{last.end_lineno}"

    def source(self) -> str:
        """The region's code, dedented, for code the student can paste."""
        import textwrap

        return "\n".join(textwrap.dedent(_strip_first_indent(s.source)).rstrip() for s in self.statements)


def _strip_first_indent(source: str) -> str:
    """A statement's first line starts at its column; the others keep theirs. Indent the first
    line like the second so that dedent sees one block."""
    lines = source.splitlines()
    if len(lines) > 1:
        rest = [ln for ln in lines[1:] if ln.strip()]
        indent = min((len(ln) - len(ln.lstrip()) for ln in rest), default=0)
        first_indent = len(lines[0]) - len(lines[0].lstrip())
        if rest and indent < first_indent:
            return "\n".join([lines[0]] + [" " * (first_indent - indent) + ln for ln in lines[1:]])
    return source


@dataclass(frozen=True)
class FileRegionSpec:
    name: str
    file: str
    function: str
    loop_over: str | None = None
    binds: str | None = None
    defining: bool = False
    in_loop: bool = False
    description: str = ""

    @classmethod
    def from_dict(cls, path, name: str, data: dict) -> "FileRegionSpec":
        where = f"[file_regions.{name}]"
        if not isinstance(data, dict):
            raise AssignmentError(f"{path}: {where} must be a table")
        unknown = sorted(set(data) - FILE_REGION_KEYS)
        if unknown:
            raise AssignmentError(
                f"{path}: unknown key {unknown[0]!r} in {where} "
                f"(known: {', '.join(sorted(FILE_REGION_KEYS))})"
            )
        for key in ("file", "function"):
            if not isinstance(data.get(key), str):
                raise AssignmentError(f"{path}: {where} needs {key!r} (a text)")
        if (data.get("loop_over") is None) == (data.get("binds") is None):
            raise AssignmentError(f"{path}: {where} needs exactly one of 'loop_over', 'binds'")
        return cls(
            name,
            data["file"],
            data["function"],
            data.get("loop_over"),
            data.get("binds"),
            bool(data.get("defining", False)),
            bool(data.get("in_loop", False)),
            str(data.get("description", f"the {name} region")),
        )


class RegionNotFound(Exception):
    pass


def parse_file(text: str, file: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        raise RegionNotFound(f"{file} does not parse: line {exc.lineno}: {exc.msg}") from None


def find_function(tree: ast.Module, path: str) -> ast.FunctionDef | None:
    """`name` or `Class.method` at the file's top level; the last definition wins, as in Python."""
    node: ast.AST = tree
    for part in path.split("."):
        found = None
        for child in getattr(node, "body", []):
            if (
                isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and child.name == part
            ):
                found = child
        if found is None:
            return None
        node = found
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def extract(text: str, file: str, spec: FileRegionSpec) -> FileRegion:
    """The region `spec` describes in `text` (the file's content; `file`: its name in feedback)."""
    tree = parse_file(text, file)
    function = find_function(tree, spec.function)
    if function is None:
        raise RegionNotFound(f"{file} has no `{spec.function}` ({spec.description} is there)")
    blocks = list(_blocks(function.body, in_loop=False))
    anchors = _anchors(blocks, spec)
    if not anchors:
        raise RegionNotFound(f"{spec.description} was not found in `{spec.function}` of {file}")
    block, _ = next((b, loop) for b, loop in blocks if anchors[0] in b)
    chosen = [s for s in anchors if s in block]
    first, last = block.index(chosen[0]), block.index(chosen[-1])
    if spec.binds is not None:
        members = _with_helpers(block, block[first : last + 1], function)
    else:
        members = chosen  # the loop itself; what it iterates over comes from the harness
    lines = text.splitlines(keepends=True)
    statements = tuple(_statement(lines, file, node) for node in members)
    imports = tuple(
        _statement(lines, file, node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
    )
    return FileRegion(spec.name, statements, imports)


def _statement(lines, file, node) -> FileStatement:
    start = node.lineno
    source = "".join(lines[start - 1 : node.end_lineno])
    return FileStatement(file, start, node.end_lineno, source)


def _blocks(body: list, in_loop: bool):
    """Every statement list of a function (its body, the branches and loop bodies inside it,
    not nested functions or classes), with whether it runs inside a loop."""
    yield body, in_loop
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        loop = isinstance(node, (ast.For, ast.AsyncFor, ast.While))
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                yield from _blocks(inner, in_loop or (loop and field == "body"))
        for handler in getattr(node, "handlers", []):
            yield from _blocks(handler.body, in_loop)
        for case in getattr(node, "cases", []):
            yield from _blocks(case.body, in_loop)


def _anchors(blocks, spec: FileRegionSpec) -> list:
    found = []
    for block, in_loop in blocks:
        for node in block:
            if spec.loop_over is not None:
                if isinstance(node, (ast.For, ast.AsyncFor)) and _calls(node.iter, spec.loop_over):
                    return [node]  # the first such loop
                continue
            if spec.in_loop and not in_loop:
                continue
            if spec.binds in _bound(node) and not (spec.defining and spec.binds in _read(node)):
                found.append(node)
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    return found[:1] if spec.defining else found


def _calls(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        or (isinstance(node.func, ast.Name) and node.func.id == name)
    )


def _bound(node: ast.AST) -> set[str]:
    """Names a simple statement assigns (`a = ...`, `a, b = ...`, `a += ...`, `a: T = ...`)."""
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    names = set()
    for target in targets:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
    return names


def _read(node: ast.AST) -> set[str]:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        names.add(node.target.id)  # `x += y` reads x
    return names


def _mutated(node: ast.AST) -> str | None:
    """The name whose object a statement changes without rebinding it (`x.attr = ...`,
    `x[i] = ...`, `x.method(...)`), else None."""
    target = None
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        target = node.value.func
    while isinstance(target, (ast.Attribute, ast.Subscript)):
        target = target.value
        if isinstance(target, ast.Name):
            return target.id
    return None


def _with_helpers(block: list, members: list, function) -> list:
    """`members` with the statements right before them that only feed them (a helper name not
    read anywhere else in the function, computed from local names rather than straight from
    the function's arguments, which is how the set-up around a region reads) and right after
    them that only change what they bound."""
    members = list(members)
    arguments = {a.arg for a in function.args.args + function.args.kwonlyargs}
    start = block.index(members[0])
    while start > 0:
        before = block[start - 1]
        bound = _bound(before)
        used = set().union(*(_read(m) for m in members))
        if not bound or not bound <= used or _read(before) & arguments:
            break
        if bound & _reads_outside(function, members + [before]):
            break
        members.insert(0, before)
        start -= 1
    end = block.index(members[-1])
    bound_here = set().union(*(_bound(m) for m in members))
    while end + 1 < len(block):
        after = block[end + 1]
        if _mutated(after) not in bound_here or _bound(after):
            break
        members.append(after)
        end += 1
    return members


def _reads_outside(function, statements: list) -> set[str]:
    """Names the function reads outside `statements`."""
    inside = {id(node) for s in statements for node in ast.walk(s)}
    return {
        node.id
        for node in ast.walk(function)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in inside
    }


# -- what else the student changed ------------------------------------------------------------
def _does_something(line: str) -> bool:
    """Not blank and not only a comment (students delete and add the markers freely)."""
    return bool(line.strip()) and not re.fullmatch(r"\s*#.*", line)


def edits_outside(text: str, starter: str, regions: list[FileRegion], file: str, limit: int = 5) -> list[str]:
    """Notes for the lines of `text` that differ from the handout's `starter` and lie outside
    the regions (they are not graded and not run); whitespace at line ends is ignored."""
    mine = [ln.rstrip() for ln in text.splitlines()]
    theirs = [ln.rstrip() for ln in starter.splitlines()]
    graded = {line for r in regions for s in r.statements for line in range(s.lineno, s.end_lineno + 1)}
    changed = []
    matcher = difflib.SequenceMatcher(a=theirs, b=mine, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "delete" and not any(_does_something(ln) for ln in theirs[i1:i2])):
            continue
        lines = [n for n in range(j1 + 1, j2 + 1) if n not in graded and _does_something(mine[n - 1])]
        if tag == "delete":
            changed.append((j1 + 1, j1, "removed"))
        elif lines:
            changed.append((lines[0], lines[-1], "changed"))
    notes = []
    for start, end, what in changed[:limit]:
        place = f"line {start}" if end <= start else f"lines {start}-{end}"
        if what == "removed":
            notes.append(f"{file}: handout lines removed before {place}; only the graded regions are run")
        else:
            first = mine[start - 1].strip()
            shown = first if len(first) <= 60 else first[:57] + "..."
            notes.append(
                f"{file} {place} (`{shown}`) differ from the handout's file and are not graded: "
                "only the graded regions are run"
            )
    if len(changed) > limit:
        notes.append(f"{file}: {len(changed) - limit} more edits outside the graded regions")
    return notes
