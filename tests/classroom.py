"""Submissions for the batch and Gradescope tests, made by editing the reference notebook's
source text (self-contained: these tests need nothing from the other suites' helpers)."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

REPO = Path(__file__).resolve().parents[1]
REFERENCE_NOTEBOOK = REPO / "reference" / "pa2-w2021" / "a2-cnn.ipynb"
TEMPLATE_NOTEBOOK = REPO / "student_template" / "pa2-w2021" / "a2-cnn.ipynb"

_reference = None


def reference_notebook() -> nbformat.NotebookNode:
    global _reference
    if _reference is None:
        _reference = nbformat.read(str(REFERENCE_NOTEBOOK), as_version=4)
    return copy.deepcopy(_reference)


def make_notebook(folder, name, substitute=None, extra_cells=()) -> Path:
    """The reference notebook with each `old` text of `substitute` replaced by `new` in every
    code cell (each must occur somewhere) and `extra_cells` appended."""
    nb = reference_notebook()
    for old, new in (substitute or {}).items():
        hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        if not hits:
            raise ValueError(f"not in any code cell of the reference: {old!r}")
        for cell in hits:
            cell.source = cell.source.replace(old, new)
    for k, source in enumerate(extra_cells):
        cell = new_code_cell(source)
        cell["id"] = f"extra-{k}"
        nb.cells.append(cell)
    path = Path(folder) / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def as_python_file(path) -> Path:
    """The reference as a .py submission (code cells joined with `# %%` markers)."""
    cells = [c.source for c in reference_notebook().cells if c.cell_type == "code"]
    Path(path).write_text("".join(f"# %%\n{src}\n\n" for src in cells))
    return Path(path)
