"""Build submission notebooks for the grader's own tests by editing the reference notebook.

    make_notebook(tmp_path, "a1_relu_first", replace={"PoolUpsampleNet": SOURCE},
                  extra_cells=["%cd /content", "!pip install torchsummary"])

Edits, applied in this order:

* `replace`: {name: source} swaps a top-level `def`/`class` (with its decorators and the
  marker comments that close it) for `source`. The name must be defined exactly once, or be
  given as `(name, occurrence)` where occurrence indexes the definitions in notebook order
  (`("train", -1)` is the segmentation `train`).
* `within`: {name: {old: new}} plain text replacement inside one definition only (the three
  model classes share lines such as their `__init__` signature).
* `substitute`: {old: new} plain text replacement in every code cell containing `old`; each
  `old` must occur somewhere. Used for the D.1 regions, which are not definitions.
* `insert_cells`: [(position, source)] code cells inserted before cell `position`.
* `extra_cells`: code cells appended at the end.
* `kernel="python2"`: a Python 2 kernelspec, as old Colab exports have.

Cells get fixed ids, so the same call writes the same bytes every time.

`REPO` (the checkout) and the reference's paths are defined here once, for every test.
"""

from __future__ import annotations

import ast
import copy
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from grader.engine.load import load_submission

REPO = Path(__file__).resolve().parents[1]
REFERENCE_NOTEBOOK = REPO / "reference" / "pa2-w2021" / "a2-cnn.ipynb"
TEMPLATE_NOTEBOOK = REPO / "student_template" / "pa2-w2021" / "a2-cnn.ipynb"
REFERENCE_SOLUTION = REPO / "reference" / "pa2" / "solution.py"

# The reference's D.1 regions, as they stand in the notebook (region 1 inside the
# segmentation `train`, region 2 in both driver cells).
D1_SELECT = (
    "    for name, param in model.named_parameters():\n"
    '        if name.startswith("classifier.4."):\n'
    "            learned_parameters.append(param)\n"
)
D1_DRIVER = (
    "for param in model.parameters():\n"
    "    param.requires_grad = False\n"
    "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"
)

_cache: dict[Path, nbformat.NotebookNode] = {}


def read_notebook(path: Path = REFERENCE_NOTEBOOK) -> nbformat.NotebookNode:
    if path not in _cache:
        _cache[path] = nbformat.read(str(path), as_version=4)
    return copy.deepcopy(_cache[path])


def code(source: str) -> str:
    """Dedent a triple-quoted source and drop its first newline."""
    return textwrap.dedent(source).lstrip("\n")


def make_notebook(
    directory,
    name,
    *,
    replace=None,
    within=None,
    substitute=None,
    insert_cells=(),
    extra_cells=(),
    kernel=None,
    base=REFERENCE_NOTEBOOK,
) -> Path:
    nb = edit_notebook(
        read_notebook(base),
        replace=replace,
        within=within,
        substitute=substitute,
        insert_cells=insert_cells,
        extra_cells=extra_cells,
        kernel=kernel,
    )
    path = Path(directory) / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def edit_notebook(
    nb, *, replace=None, within=None, substitute=None, insert_cells=(), extra_cells=(), kernel=None
):
    for key, source in (replace or {}).items():
        name, occurrence = key if isinstance(key, tuple) else (key, None)
        _replace_definition(nb, name, occurrence, source)
    for key, edits in (within or {}).items():
        name, occurrence = key if isinstance(key, tuple) else (key, None)
        cell, start, end = _locate(nb, name, occurrence)
        lines = cell.source.splitlines(keepends=True)
        segment = "".join(lines[start:end])
        for old, new in edits.items():
            if old not in segment:
                raise ValueError(f"text not found in {name}:\n{old}")
            segment = segment.replace(old, new)
        cell.source = "".join(lines[:start]) + segment + "".join(lines[end:])
    for old, new in (substitute or {}).items():
        hits = 0
        for cell in nb.cells:
            if cell.cell_type == "code" and old in cell.source:
                cell.source = cell.source.replace(old, new)
                hits += 1
        if not hits:
            raise ValueError(f"text to substitute not found in any code cell:\n{old}")
    for k, (position, source) in enumerate(sorted(insert_cells, key=lambda p: -p[0])):
        nb.cells.insert(position, _cell(source, f"inserted-{k}"))
    for k, source in enumerate(extra_cells):
        nb.cells.append(_cell(source, f"extra-{k}"))
    if kernel == "python2":
        nb.metadata["kernelspec"] = {"display_name": "Python 2", "language": "python", "name": "python2"}
        nb.metadata["language_info"] = {
            "name": "python",
            "version": "2.7.18",
            "codemirror_mode": {"name": "ipython", "version": 2},
        }
    elif kernel is not None:
        raise ValueError(f"unknown kernel {kernel!r}")
    return nb


def located_cell(path, needle: str):
    """The (only) code cell containing `needle`, as the grader loads it: its `where` is how
    feedback locates it ("code cell 7 (starting `class UNet(nn.Module):`)")."""
    found = [c for c in load_submission(path).cells if needle in c.source]
    if len(found) != 1:
        raise ValueError(f"{needle!r} is in {len(found)} code cells of {path}")
    return found[0]


def as_python_file(nb, path) -> Path:
    """A .py submission: the code cells joined with `# %%` markers (Jupytext's format)."""
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    Path(path).write_text("".join(f"# %%\n{src}\n\n" for src in cells))
    return Path(path)


def _cell(source: str, cell_id: str):
    cell = new_code_cell(code(source))
    cell["id"] = cell_id
    return cell


def _definitions(nb, name):
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
                found.append((cell, node))
    return found


def _locate(nb, name, occurrence):
    """(cell, first line, end line) of a definition, 0-based, end exclusive; the closing
    marker comments and blank lines after its last statement belong to it."""
    found = _definitions(nb, name)
    if not found:
        raise ValueError(f"no definition of {name} in the notebook")
    if occurrence is None and len(found) > 1:
        raise ValueError(f"{name} is defined {len(found)} times; say which: ({name!r}, i)")
    cell, node = found[occurrence or 0]
    lines = cell.source.splitlines(keepends=True)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    end = node.end_lineno
    while end < len(lines) and (
        not lines[end].strip() or (lines[end][:1].isspace() and lines[end].lstrip().startswith("#"))
    ):
        end += 1
    return cell, start, end


def _replace_definition(nb, name, occurrence, source):
    cell, start, end = _locate(nb, name, occurrence)
    lines = cell.source.splitlines(keepends=True)
    new = code(source)
    if not new.endswith("\n"):
        new += "\n"
    tail = lines[end:]
    cell.source = "".join(lines[:start]) + new + ("\n" if tail else "") + "".join(tail)
