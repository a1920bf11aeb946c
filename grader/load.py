"""Stage 1, load: read a submission file into a list of code cells.

Notebooks are read and validated with nbformat; `.py` files are accepted too (split into
cells at `# %%` / `# In[ ]:` markers, the forms Jupytext and nbconvert write). Every problem
becomes a SubmissionError with a one-line reason, never a traceback.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SubmissionError

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Cell:
    index: int  # position among the notebook's cells (markdown included), 0-based
    source: str  # Python source; IPython magics already turned into calls by nbconvert

    @property
    def label(self) -> str:
        return f"cell {self.index + 1}"


@dataclass(frozen=True)
class LoadedSubmission:
    path: Path
    cells: tuple[Cell, ...]
    kind: str  # "notebook" or "python"


_PY_CELL_SPLIT = re.compile(r"^# (?:%%|In\[[ 0-9]*\]:).*$", re.MULTILINE)


def load_submission(path: str | Path) -> LoadedSubmission:
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: no such file")
    if path.is_dir():
        raise SubmissionError(f"{path}: is a directory, not a notebook or .py file")
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"{path}: {size // 2**20} MiB is too large for a submission")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    if path.suffix == ".py":
        parts = _PY_CELL_SPLIT.split(text)
        cells = tuple(Cell(i, part) for i, part in enumerate(parts))
        return LoadedSubmission(path, cells, "python")
    return LoadedSubmission(path, _notebook_cells(path, text), "notebook")


def _notebook_cells(path: Path, text: str) -> tuple[Cell, ...]:
    import nbformat
    from nbconvert.filters.strings import ipython2python

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError(
            f"{path}: not a valid notebook: broken JSON at line {exc.lineno} column {exc.colno} "
            f"({exc.msg})"
        )
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: not a valid notebook: the JSON is not an object")
    major = data.get("nbformat")
    if major != 4:
        raise SubmissionError(
            f"{path}: notebook format v{major} is not supported; open it in Jupyter and save it "
            "again to convert it to v4"
        )
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed content
        raise SubmissionError(f"{path}: not a valid notebook: {_first_line(exc)}")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        # Colab and old Jupyter write slightly off-schema files; the code cells are what
        # matter, so only a notebook without a usable cell list is rejected.
        if not isinstance(nb.get("cells"), list):
            raise SubmissionError(f"{path}: not a valid notebook: {_first_line(exc)}")
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        source = unwrap_python_cell_magic(source)
        # nbconvert's own IPython -> Python translation: `%cd x` becomes
        # get_ipython().run_line_magic(...), a module-level call the harvest drops.
        try:
            source = ipython2python(source)
        except Exception:
            pass  # leave it as written: the harvest reports the cell as unparsable
        cells.append(Cell(index, source))
    return tuple(cells)


# Cell magics whose body is ordinary Python that defines things in the notebook's namespace.
PYTHON_CELL_MAGICS = ("time", "capture", "prun", "timeit", "debug")


def unwrap_python_cell_magic(source: str) -> str:
    """`%%time` over a cell still defines its classes: keep the body, drop the magic line.
    (IPython would turn the whole cell into one call the harvest drops.)"""
    first, _, body = source.lstrip().partition("\n")
    if first.startswith("%%") and first[2:].split(" ", 1)[0] in PYTHON_CELL_MAGICS:
        return "\n" + body  # keep line numbers as in the cell
    return source


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
