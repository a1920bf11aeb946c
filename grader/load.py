"""Stage 1, load: read a submission file into a list of code cells.

Notebooks are read and validated with nbformat; `.py` files are accepted too (split into
cells at `# %%` / `# In[ ]:` markers, the forms Jupytext and nbconvert write). Every problem
becomes a SubmissionError with a one-line reason, never a traceback.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SubmissionError

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Cell:
    # Position among the notebook's *code* cells, 0-based: markdown cells have no number a
    # student could see, so feedback counts code cells ("code cell 3").
    index: int
    source: str  # Python source; IPython magics already turned into calls by nbconvert
    # Why this cell cannot be used at all (a damaged file: its source is not text, or not
    # valid Unicode); the harvest then skips it with this reason, like a cell that does not
    # parse. `source` is then only good for guessing what the cell defined.
    problem: str | None = None
    execution_count: int | None = None  # Jupyter's `In [n]`, when the notebook was run
    name: str | None = None  # how to call it instead of "code cell N" (a kernel's `In [n]`)

    @property
    def label(self) -> str:
        """Short: in tracebacks ("code cell 3", line 5)."""
        return self.name or f"code cell {self.index + 1}"

    @property
    def where(self) -> str:
        """How a student finds the cell: its number among code cells, Jupyter's execution
        count when there is one, and its first line."""
        details = [f"In [{self.execution_count}]"] if self.execution_count is not None else []
        first = next((line.strip() for line in self.source.splitlines() if line.strip()), "")
        first = "".join(ch if ch.isprintable() else "?" for ch in first)
        if first and not self.problem:
            details.append("starting `" + (first if len(first) <= 60 else first[:57] + "...") + "`")
        return f"{self.label} ({', '.join(details)})" if details else self.label


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
        raise SubmissionError(f"{path}: cannot be read: it is a directory, not a notebook or .py file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise SubmissionError(f"{path}: cannot be read: not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_SUBMISSION_BYTES:
            raise SubmissionError(f"{path}: {size // 2**20} MiB is too large for a submission")
        raw = path.read_bytes()
    except OSError as exc:  # no permission, or gone since the listing
        raise SubmissionError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    if path.suffix == ".py":
        parts = _PY_CELL_SPLIT.split(text)
        cells = tuple(Cell(i, part) for i, part in enumerate(parts))  # `# %%` cells are all code
        return LoadedSubmission(path, cells, "python")
    return LoadedSubmission(path, _notebook_cells(path, text), "notebook")


def _notebook_cells(path: Path, text: str) -> tuple[Cell, ...]:
    import nbformat

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SubmissionError(
            f"{path}: not a valid notebook: broken JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
        )
    except RecursionError:  # the JSON decoder recurses once per nested [ or {
        raise SubmissionError(_TOO_DEEP.format(path=path)) from None
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: not a valid notebook: the JSON is not an object")
    major = data.get("nbformat")
    if major != 4:
        raise SubmissionError(
            f"{path}: notebook format v{major} is not supported; open it in Jupyter and save it "
            "again to convert it to v4"
        )
    # A damaged cell source (a number, null, a list holding non-strings) costs only that cell:
    # blank it before nbformat, which would fail on the whole notebook, and say why later.
    damaged = _blank_damaged_sources(path, data)
    try:
        nb = nbformat.reads(json.dumps(data) if damaged else text, as_version=4)
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError as exc:
            # Colab and old Jupyter write slightly off-schema files; the code cells are what
            # matter, so only a notebook without a usable cell list is rejected.
            if not isinstance(nb.get("cells"), list):
                raise SubmissionError(f"{path}: not a valid notebook: {_first_line(exc)}")
    except SubmissionError:
        raise
    except RecursionError:  # nbformat's reader and jsonschema recurse on nesting too
        raise SubmissionError(_TOO_DEEP.format(path=path)) from None
    except Exception as exc:  # nbformat raises several types for malformed content
        raise SubmissionError(f"{path}: not a valid notebook: {_first_line(exc)}")
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        number = len(cells)  # among code cells
        count = cell.get("execution_count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        if index in damaged:
            cells.append(Cell(number, "", damaged[index], count))
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        try:
            source.encode("utf-8")
        except UnicodeEncodeError as exc:
            # JSON can escape a lone surrogate ("\ud800"); no Python source can hold one.
            line = source.count("\n", 0, exc.start) + 1
            readable = source.encode("utf-8", "replace").decode("utf-8")
            cells.append(
                Cell(
                    number,
                    readable,
                    f"line {line}: the text is not valid Unicode "
                    f"(a lone surrogate, U+{ord(source[exc.start]):04X})",
                    count,
                )
            )
            continue
        source = unwrap_python_cell_magic(source)
        # IPython's own translation (what nbconvert's ipython2python runs): `%cd x` becomes
        # get_ipython().run_line_magic(...), a module-level call the harvest drops.
        try:
            source = _ipython_transformer().transform_cell(source)
        except Exception:
            pass  # leave it as written: the harvest reports the cell as unparsable
        cells.append(Cell(number, source, execution_count=count))
    return tuple(cells)


_TOO_DEEP = "{path}: the notebook cannot be read: its JSON is nested too deeply"


@functools.cache
def _ipython_transformer():
    """IPython's cell transformer, made once (importing it directly rather than through
    nbconvert saves a quarter of a second of imports per grading)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def _blank_damaged_sources(path: Path, data: dict) -> dict[int, str]:
    """Replace each cell source that is not text with "" (in `data`); return {cell index:
    why}. A cell that is not even a JSON object makes the notebook unusable."""
    cells = data.get("cells")
    if not isinstance(cells, list):
        return {}  # nbformat's validation says what is wrong
    damaged = {}
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise SubmissionError(
                f"{path}: not a valid notebook: cell {index + 1} is {_json_kind(cell)}, not an object"
            )
        source = cell.get("source", "")
        if isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source)):
            continue
        what = (
            _json_kind(source)
            if not isinstance(source, list)
            else "a list holding " + _json_kind(next(s for s in source if not isinstance(s, str)))
        )
        damaged[index] = f"its source is {what}, not text (the notebook file is damaged)"
        cell["source"] = ""
    return damaged


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


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
