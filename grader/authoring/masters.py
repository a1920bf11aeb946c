"""`grade assign MASTER.ipynb... [--check]`: one master notebook per edition is the source of
the starter students get, of the filled-in reference notebook and (for one master per
family) of the importable reference module. docs/master-notebooks.md explains it at length.

The convention (nbgrader's and Otter Assign's solution markers, plus two cell tags):

* In a code cell, the lines between `### BEGIN SOLUTION` and `### END SOLUTION` (any number
  of leading `#`, the marker alone on its line) are the answer: removed from the starter,
  kept in the reference notebook and the module. The delimiter lines themselves appear
  nowhere. Nothing replaces a removed answer, so whatever the starter shows around it (its
  own `YOUR CODE GOES HERE` lines, a class whose untouched `forward` has no body and so does
  not parse) is written in the master outside the delimiters, exactly as students see it.
* The lines between `### BEGIN PROMPT` and `### END PROMPT` are the opposite: starter only
  (a `pass`, a `raise NotImplementedError`, a hint), removed from the reference and module.
  Otter Assign uses the same words. The lines are kept as written.
* Cells tagged `module` are ordinary notebook cells (in both notebooks) whose reference text
  also goes into the module: the graded definitions. Cells tagged `module-only` are
  grader-side extras (reference variants, wrappers around a region that sits in a driver
  cell or inside a longer function): module only, in neither notebook. Untagged cells are
  notebook only. A module-only cell holding only comments is a heading: it is glued to the
  next piece; other pieces are separated by two blank lines, in notebook order.
* A wrapper never copies an answer: in a module-only cell, a line `### SOLUTION FROM <id>`
  is replaced by the answer lines of cell `<id>` (which must have exactly one solution
  region), re-indented to the line's indentation. The code the notebook shows and the code
  the grader runs are therefore the same lines by construction, not by a check.
* The notebook's metadata says what the master is for: `metadata.grader.assignment` names
  the edition (its outputs' places come from `grader.editions.assignment.load_assignment`), and
  `metadata.grader.module` is `"write"` for the one master that is the module's source, or
  `"check"` (the default) for masters sharing another's module: their graded definitions
  (every top-level class and def of their module cells) must equal the module's, compared as
  ASTs without docstrings, and a difference is a one-line error naming the definition.

Why markers and tags: a master is an ordinary notebook an instructor edits and runs in
Jupyter; markers are the two autograders' de-facto standard and survive any editor, while
tags are the notebook format's own place for per-cell roles. Outputs are deterministic: the
master's cell ids are kept, outputs and execution counts are dropped, `metadata.grader`
and the two tags are removed, and a file whose bytes would not change is not rewritten.
`--check` writes nothing and exits 1 when any output is out of date.
"""

from __future__ import annotations

import ast
import copy
import difflib
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import UsageError
from grader.verbs import run_verb, verb_parser

MODULE_TAG = "module"
MODULE_ONLY_TAG = "module-only"
METADATA_KEY = "grader"
MODULE_MODES = ("write", "check")
VOLATILE_CELL_METADATA = ("execution",)  # what running the master in Jupyter adds

_MARKER = re.compile(r"^\s*#+\s*(BEGIN|END)\s+(SOLUTION|PROMPT)\s*$")
_NEAR_MARKER = re.compile(r"^\s*#+\s*(BEGIN|END)\s+(SOLUTION|PROMPT)", re.IGNORECASE)
_INCLUDE = re.compile(r"^(\s*)#+\s*SOLUTION\s+FROM\s+(\S+)\s*$")
_NEAR_INCLUDE = re.compile(r"^\s*#+\s*SOLUTION\s+FROM\b", re.IGNORECASE)


class MasterError(UsageError):
    """The master notebook cannot be used: a person's mistake, reported in one line."""


@dataclass
class MasterCell:
    """One cell of the master and what each output makes of it."""

    index: int
    id: str
    kind: str  # "code", "markdown", "raw"
    role: str  # "notebook", "module" (notebook and module) or "module-only"
    starter: str  # the text the starter shows
    reference: str  # the text of the reference notebook and the module
    regions: list[list[str]] = field(default_factory=list)  # each solution region's lines

    @property
    def label(self) -> str:
        return f"cell {self.id}"


@dataclass
class Master:
    path: Path
    notebook: object  # the nbformat NotebookNode as read
    edition: str
    module_mode: str
    cells: list[MasterCell]

    def cell(self, cell_id: str) -> MasterCell | None:
        return next((c for c in self.cells if c.id == cell_id), None)


# --------------------------------------------------------------------------------------
# Reading a master
# --------------------------------------------------------------------------------------
def read_master(path: Path) -> Master:
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise MasterError(f"{path}: no such file")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a broken file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MasterError(f"{path}: not a readable notebook ({first})") from None
    meta = nb.metadata.get(METADATA_KEY)
    if not isinstance(meta, dict) or not isinstance(meta.get("assignment"), str) or not meta["assignment"]:
        raise MasterError(
            f"{path}: no metadata.{METADATA_KEY}.assignment (the edition this master describes)"
        )
    mode = meta.get("module", "check")
    if mode not in MODULE_MODES:
        raise MasterError(
            f"{path}: metadata.{METADATA_KEY}.module must be one of {', '.join(MODULE_MODES)}, not {mode!r}"
        )
    cells, seen = [], {}
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id")
        if not cell_id:
            raise MasterError(f"{path}: cell #{index} has no id (a master needs nbformat 4.5 cell ids)")
        if cell_id in seen:
            raise MasterError(f"{path}: cells #{seen[cell_id]} and #{index} have the same id {cell_id!r}")
        seen[cell_id] = index
        cells.append(_read_cell(path, index, cell))
    return Master(path, nb, meta["assignment"], mode, cells)


def _read_cell(path: Path, index: int, cell) -> MasterCell:
    tags = set(cell.get("metadata", {}).get("tags", []))
    if {MODULE_TAG, MODULE_ONLY_TAG} <= tags:
        raise MasterError(f"{path}: cell {cell['id']} is tagged both {MODULE_TAG!r} and {MODULE_ONLY_TAG!r}")
    role = MODULE_ONLY_TAG if MODULE_ONLY_TAG in tags else MODULE_TAG if MODULE_TAG in tags else "notebook"
    source = cell.get("source", "")
    kind = cell.get("cell_type")
    where = f"{path}: cell {cell['id']}"
    if role != "notebook" and kind != "code":
        raise MasterError(f"{where}: only code cells can be tagged {role!r}")
    if kind != "code":
        for n, line in enumerate(source.split("\n"), 1):
            if _NEAR_MARKER.match(line) or _NEAR_INCLUDE.match(line):
                raise MasterError(f"{where} line {n}: markers work in code cells only, not in {kind} cells")
        return MasterCell(index, cell["id"], kind, role, source, source)
    starter, reference, regions = [], [], []
    state, opened = None, 0
    for n, line in enumerate(source.split("\n"), 1):
        marker = _MARKER.match(line)
        if marker is None and _NEAR_MARKER.match(line):
            raise MasterError(
                f"{where} line {n}: {line.strip()!r} is not a marker (write `### BEGIN SOLUTION`, "
                "`### END SOLUTION`, `### BEGIN PROMPT` or `### END PROMPT` alone on the line)"
            )
        if marker is None and _NEAR_INCLUDE.match(line):
            if role != MODULE_ONLY_TAG:
                raise MasterError(
                    f"{where} line {n}: `SOLUTION FROM` works in {MODULE_ONLY_TAG!r} cells only"
                )
            if not _INCLUDE.match(line):
                raise MasterError(f"{where} line {n}: write `### SOLUTION FROM <cell id>` alone on the line")
        if marker:
            verb, what = marker.groups()
            if verb == "BEGIN":
                if state:
                    raise MasterError(
                        f"{where} line {n}: BEGIN {what} inside the {state} region opened at line {opened}"
                    )
                state, opened = what, n
                if what == "SOLUTION":
                    regions.append([])
            else:
                if state != what:
                    raise MasterError(f"{where} line {n}: END {what} without a BEGIN {what} before it")
                state = None
            continue
        if state == "SOLUTION":
            reference.append(line)
            regions[-1].append(line)
        elif state == "PROMPT":
            starter.append(line)
        else:
            starter.append(line)
            reference.append(line)
    if state:
        raise MasterError(f"{where} line {opened}: BEGIN {state} is never closed by END {state}")
    return MasterCell(index, cell["id"], kind, role, "\n".join(starter), "\n".join(reference), regions)


# --------------------------------------------------------------------------------------
# The two notebooks
# --------------------------------------------------------------------------------------
def notebook_text(master: Master, which: str) -> str:
    """The starter (`which="starter"`) or the reference notebook, as the bytes to write."""
    import nbformat

    nb = copy.deepcopy(master.notebook)
    nb.metadata.pop(METADATA_KEY, None)
    cells = []
    for mc, cell in zip(master.cells, nb.cells):
        if mc.role == MODULE_ONLY_TAG:
            continue
        cell.source = mc.starter if which == "starter" else mc.reference
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        metadata = cell.get("metadata", {})
        tags = [t for t in metadata.get("tags", []) if t not in (MODULE_TAG, MODULE_ONLY_TAG)]
        if tags:
            metadata["tags"] = tags
        else:
            metadata.pop("tags", None)
        for key in VOLATILE_CELL_METADATA:
            metadata.pop(key, None)
        cells.append(cell)
    nb.cells = cells
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        first = (str(exc).strip().splitlines() or ["invalid"])[0]
        raise MasterError(f"{master.path}: the {which} notebook would not be valid ({first})") from None
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------
def _resolve_includes(master: Master, mc: MasterCell) -> str:
    out = []
    for n, line in enumerate(mc.reference.split("\n"), 1):
        include = _INCLUDE.match(line)
        if include is None:
            out.append(line)
            continue
        indent, source_id = include.groups()
        where = f"{master.path}: {mc.label} line {n}"
        source = master.cell(source_id)
        if source is None:
            raise MasterError(f"{where}: SOLUTION FROM {source_id}: there is no cell with that id")
        if len(source.regions) != 1:
            raise MasterError(
                f"{where}: SOLUTION FROM {source_id}: that cell has {len(source.regions)} solution "
                "regions, and SOLUTION FROM needs exactly one"
            )
        body = textwrap.dedent("\n".join(source.regions[0])).strip("\n")
        if not body.strip():
            raise MasterError(f"{where}: SOLUTION FROM {source_id}: its solution region is empty")
        out.extend(indent + part if part.strip() else "" for part in body.split("\n"))
    return "\n".join(out)


def module_pieces(master: Master) -> list[tuple[MasterCell, str]]:
    """(cell, its code) for each cell that goes into the module, in notebook order."""
    pieces = []
    for mc in master.cells:
        if mc.role == MODULE_TAG:
            text = mc.reference
        elif mc.role == MODULE_ONLY_TAG:
            text = _resolve_includes(master, mc)
        else:
            continue
        text = text.strip("\n")
        if not text.strip():
            continue
        try:
            ast.parse(text)
        except SyntaxError as exc:
            raise MasterError(
                f"{master.path}: {mc.label}: its module code does not parse (line {exc.lineno}: {exc.msg})"
            ) from None
        pieces.append((mc, text))
    return pieces


def _is_heading(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.split("\n"))


def module_text(master: Master) -> str:
    pieces = module_pieces(master)
    if not pieces:
        raise MasterError(
            f"{master.path}: it writes the module, yet no cell is tagged "
            f"{MODULE_TAG!r} or {MODULE_ONLY_TAG!r}"
        )
    defined: dict[str, MasterCell] = {}
    for mc, text in pieces:
        for node in _definitions(ast.parse(text)):
            if node.name in defined:
                raise MasterError(
                    f"{master.path}: {node.name} is defined twice for the module "
                    f"({defined[node.name].label} and {mc.label})"
                )
            defined[node.name] = mc
    out = pieces[0][1]
    for (_, before), (_, text) in zip(pieces, pieces[1:]):
        out += ("\n" if _is_heading(before) else "\n\n\n") + text
    out += "\n"
    # Comment lines lose trailing blanks (the notebooks keep them: real starters have some),
    # unless that would change the code (a '#' line inside a string).
    stripped = "\n".join(line.rstrip() if line.lstrip().startswith("#") else line for line in out.split("\n"))
    if ast.dump(ast.parse(stripped)) == ast.dump(ast.parse(out)):
        out = stripped
    return out


def _definitions(tree: ast.Module) -> list[ast.AST]:
    return [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]


def _without_docstrings(node: ast.AST) -> ast.AST:
    node = copy.deepcopy(node)
    for n in ast.walk(node):
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = n.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    n.body = body[1:] or [ast.Pass()]
    return node


def _first_difference(ours: ast.AST, theirs: ast.AST) -> str:
    """Where two definitions first differ, as one short phrase (their code is compared as
    `ast.unparse` prints it, so layout and comments never count)."""
    a, b = ast.unparse(ours).split("\n"), ast.unparse(theirs).split("\n")
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            left = a[i1].strip() if i1 < i2 else ""
            right = b[j1].strip() if j1 < j2 else ""
            left, right = _around_first_difference(left, right)
            return f"{left or '(nothing)'!r} in the master, {right or '(nothing)'!r} in the module"
    return "the code differs"  # same text, different trees: not expected


def _around_first_difference(a: str, b: str, before: int = 20, width: int = 60) -> tuple[str, str]:
    start = max(0, len(os.path.commonprefix([a, b])) - before)

    def cut(text: str) -> str:
        piece = text[start : start + width]
        return ("..." if start else "") + piece + ("..." if start + width < len(text) else "")

    return cut(a), cut(b)


def check_definitions(master: Master, module_path: Path) -> int:
    """Every top-level class/def of the master's module cells equals the module's, ignoring
    docstrings and comments; the first one that does not is a MasterError. The number checked."""
    if not module_path.is_file():
        raise MasterError(
            f"{master.path}: no reference module {_shown(module_path)} to check the master against"
        )
    try:
        theirs = {n.name: n for n in _definitions(ast.parse(module_path.read_text(encoding="utf-8")))}
    except SyntaxError as exc:
        raise MasterError(f"{_shown(module_path)}: does not parse (line {exc.lineno}: {exc.msg})") from None
    checked = 0
    for mc, text in module_pieces(master):
        for node in _definitions(ast.parse(text)):
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            where = f"{master.path}: {kind} {node.name} ({mc.label})"
            if node.name not in theirs:
                raise MasterError(f"{where} is not defined in {_shown(module_path)}")
            ours_clean, theirs_clean = _without_docstrings(node), _without_docstrings(theirs[node.name])
            if ast.dump(ours_clean) != ast.dump(theirs_clean):
                difference = _first_difference(ours_clean, theirs_clean)
                raise MasterError(f"{where} differs from {_shown(module_path)}: {difference}")
            checked += 1
    return checked


# --------------------------------------------------------------------------------------
# What a master makes, and the verb
# --------------------------------------------------------------------------------------
def outputs(master: Master) -> tuple[dict[Path, str], Path, int]:
    """The files the master makes ({path: text}, in a fixed order), the reference module's
    path, and how many definitions were checked against it (0 for the module's own master)."""
    from grader.editions.assignment import load_assignment

    assignment = load_assignment(master.edition)
    template_folder = Path(assignment.template_folder)
    reference_folder = Path(assignment.reference_folder or master.path.resolve().parent)
    files = {
        template_folder / assignment.notebook: notebook_text(master, "starter"),
        reference_folder / assignment.notebook: notebook_text(master, "reference"),
    }
    module_path = Path(assignment.module_path)
    checked = 0
    if master.module_mode == "write":
        files[module_path] = module_text(master)
    else:
        checked = check_definitions(master, module_path)
    return files, module_path, checked


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    parser = verb_parser(
        "grade assign",
        "Make the starter notebook, the reference notebook and (for the module's own master) "
        "the reference module from a master notebook; see docs/master-notebooks.md.",
    )
    parser.add_argument(
        "masters", nargs="+", metavar="MASTER", help="master notebooks (reference/<edition>/master.ipynb)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when an output is not what the master makes",
    )

    def body(args) -> int:
        masters = [read_master(Path(name)) for name in args.masters]
        # The module's own master first, so that the others are checked against its new module.
        masters.sort(key=lambda m: m.module_mode != "write")
        stale = []
        for master in masters:
            files, module_path, checked = outputs(master)
            if master.module_mode == "write":
                role = f"makes {_shown(module_path)}"
            else:
                role = f"{checked} definition(s) match {_shown(module_path)}"
            print(f"{_shown(master.path)} ({master.edition}; {role}):")
            for path, text in files.items():
                current = path.read_bytes() if path.is_file() else None
                if current == text.encode("utf-8"):
                    status = "up to date"
                elif args.check:
                    status = "OUT OF DATE"
                    stale.append(path)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(text.encode("utf-8"))
                    status = "written"
                print(f"  {_shown(path)}: {status}")
        if stale:
            print(f"{len(stale)} file(s) out of date: run `grade assign` on their masters")
            return 1
        return 0

    return run_verb(parser, argv, body)
