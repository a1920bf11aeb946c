"""Submissions of several files: a notebook, or a folder holding the notebook and the other
files its edition names.

An edition (or its family) lists the extra files in `[files.<key>]`:

    name = "loss.py"                     # the file's name
    places = ["utils/loss.py"]           # where it usually sits (preferred when several match)
    contains = ['class\\s+Loss\\b']       # what its content must match (regular expressions)
    tasks = ["T.2"]                      # the tasks graded from it: an edition without them
                                         # never looks for the file
    description = "utils/loss.py of the course's starter tree"
    starter_env = "COURSE_STARTER_DIR"   # optional: a folder with the handout's copy, to list
                                         # the student's edits outside the graded regions

A file is found anywhere in the submission folder by its name and content (a student keeps
`loss.py` beside `train.py`, the tree keeps it in `utils/`, Gradescope's upload flattens
folders), else by content alone under another name. A missing file is not a load error: the
regions in it are missing, so the checks of its part fail with a message naming the file.
A plain notebook has no other files.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from grader.errors import AssignmentError, SubmissionError
from grader.engine.fileregions import FileRegionSpec, RegionNotFound, edits_outside, extract

FILE_KEYS = {"name", "places", "contains", "tasks", "description", "starter_env"}
NOTEBOOK_SUFFIX = ".ipynb"
MAX_FILE_BYTES = 5 * 2**20
MAX_FILES_LOOKED_AT = 5000
SKIPPED_FOLDERS = {".ipynb_checkpoints", "__pycache__", ".git"}


@dataclass(frozen=True)
class FileSpec:
    key: str
    name: str
    places: tuple[str, ...] = ()
    contains: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    description: str = ""
    starter_env: str | None = None

    @classmethod
    def from_dict(cls, path, key: str, data: dict) -> "FileSpec":
        where = f"[files.{key}]"
        if not isinstance(data, dict):
            raise AssignmentError(f"{path}: {where} must be a table")
        unknown = sorted(set(data) - FILE_KEYS)
        if unknown:
            raise AssignmentError(
                f"{path}: unknown key {unknown[0]!r} in {where} (known: {', '.join(sorted(FILE_KEYS))})"
            )
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise AssignmentError(f"{path}: {where} needs 'name' (the file's name, e.g. \"train.py\")")
        lists = {}
        for field in ("places", "contains", "tasks"):
            value = data.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AssignmentError(f"{path}: {where} {field} must be a list of texts")
            lists[field] = tuple(value)
        for pattern in lists["contains"]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise AssignmentError(f"{path}: {where} contains: not a valid regular expression ({exc})")
        return cls(
            key,
            data["name"],
            lists["places"],
            lists["contains"],
            lists["tasks"],
            str(data.get("description", data["name"])),
            data.get("starter_env"),
        )

    def looks_right(self, text: str) -> bool:
        return all(re.search(p, text) for p in self.contains)


def read_specs(path, data: dict) -> tuple[dict[str, FileSpec], dict[str, FileRegionSpec]]:
    """The `[files]` and `[file_regions]` tables of an edition (merged with its family's),
    checked: a mistake names the file and the key."""
    files_table = data.get("files", {})
    regions_table = data.get("file_regions", {})
    for name, table in (("files", files_table), ("file_regions", regions_table)):
        if not isinstance(table, dict):
            raise AssignmentError(f"{path}: [{name}] must be a table of tables")
    files = {k: FileSpec.from_dict(path, k, v) for k, v in files_table.items()}
    regions = {k: FileRegionSpec.from_dict(path, k, v) for k, v in regions_table.items()}
    for name, spec in regions.items():
        if spec.file not in files:
            raise AssignmentError(
                f"{path}: [file_regions.{name}] is in file {spec.file!r}, which [files] does not list"
            )
    clash = sorted(set(regions) & set(data.get("regions", {})))
    if clash:
        raise AssignmentError(f"{path}: {clash[0]!r} is both a [regions] and a [file_regions] entry")
    return files, regions


def wanted_files(assignment) -> dict[str, FileSpec]:
    """The extra files this edition grades from (those of a task one of its parts has)."""
    tasks = {p.task for p in assignment.parts}
    return {k: f for k, f in assignment.files.items() if not f.tasks or tasks & set(f.tasks)}


# -- a submission folder ----------------------------------------------------------------------
def _walk(folder: Path):
    """Files under `folder`, sorted, without checkpoint, cache or git folders; at most
    MAX_FILES_LOOKED_AT (a cloned tree has about fifty)."""
    count = 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS)
        for name in sorted(names):
            count += 1
            if count > MAX_FILES_LOOKED_AT:
                return
            yield Path(root) / name


def notebooks_in(folder: Path) -> list[Path]:
    return [p for p in _walk(folder) if p.suffix == NOTEBOOK_SUFFIX and p.is_file()]


def is_submission_folder(folder: Path) -> bool:
    """One student's folder: exactly one notebook, and other Python files with it (a folder of
    several notebooks, or a notebook alone, is graded file by file, as before)."""
    notebooks = notebooks_in(folder)
    return len(notebooks) == 1 and any(p.suffix == ".py" for p in _walk(folder))


def notebook_of(path: Path, preferred: str | None = None) -> Path:
    """The notebook a submission is: `path` itself, or the one notebook in the folder `path`
    (the edition's notebook name first when there are several)."""
    path = Path(path)
    if not path.is_dir() or path.suffix in (NOTEBOOK_SUFFIX, ".py"):
        return path  # a file, or a folder named like one (its loading says it cannot be read)
    notebooks = notebooks_in(path)
    if preferred:
        named = [p for p in notebooks if p.name == preferred]
        if named:
            return min(named, key=lambda p: (len(p.relative_to(path).parts), str(p)))
    if len(notebooks) == 1:
        return notebooks[0]
    if not notebooks:
        raise SubmissionError(f"{path}: the folder holds no notebook (.ipynb)")
    shown = ", ".join(str(p.relative_to(path)) for p in notebooks[:5])
    raise SubmissionError(
        f"{path}: the folder holds {len(notebooks)} notebooks ({shown}); keep one"
        + (f", or name it {preferred}" if preferred else "")
    )


@dataclass(frozen=True)
class FoundFile:
    spec: FileSpec
    path: Path
    shown: str  # its path inside the submission, as feedback names it
    text: str
    note: str | None = None  # how it was chosen, when that was not obvious


def find_file(folder: Path, spec: FileSpec, taken: set[Path]) -> FoundFile | str:
    """The file `spec` describes in `folder`, or why there is none (one line)."""
    named, other = [], []
    for path in _walk(folder):
        if path in taken or path.suffix == NOTEBOOK_SUFFIX or not path.is_file():
            continue
        if path.name != spec.name and path.suffix != ".py":
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_bytes().decode("utf-8-sig", "replace")
        except OSError:
            continue
        if path.name == spec.name:
            named.append((path, text))
        elif spec.contains and spec.looks_right(text):
            other.append((path, text))
    fitting = [(p, t) for p, t in named if spec.looks_right(t)]
    candidates = fitting or other
    if not candidates:
        if named:
            shown = named[0][0].relative_to(folder).as_posix()
            return f"{shown} is not the handout's {spec.name}: it has no " + " / ".join(
                f"`{_readable(p)}`" for p in spec.contains if not re.search(p, named[0][1])
            )
        return f"{spec.name} was not found in the submission"

    def rank(item):
        rel = item[0].relative_to(folder).as_posix()
        placed = any(rel == place or rel.endswith("/" + place) for place in spec.places)
        return (not placed, rel.count("/"), rel)

    candidates.sort(key=rank)
    path, text = candidates[0]
    shown = path.relative_to(folder).as_posix()
    note = None
    if len(candidates) > 1:
        others = ", ".join(p.relative_to(folder).as_posix() for p, _ in candidates[1:4])
        note = f"several files could be {spec.name} ({others}); graded {shown}"
    elif not fitting:
        note = f"{spec.name} was not found by name; graded {shown}, which has its content"
    return FoundFile(spec, path, shown, text, note)


def _readable(pattern: str) -> str:
    """A content pattern in words for a student: `class\\s+ComputeLoss` -> `class ComputeLoss`."""
    text = re.sub(r"\\b", "", pattern)
    text = re.sub(r"\\s[+*]?", " ", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return re.sub(r"[\^$]", "", text).strip()


def find_files(path: Path, specs: dict[str, FileSpec]) -> dict[str, FoundFile | str]:
    """Each wanted file of a submission, or why it is missing."""
    path = Path(path)
    if not path.is_dir() or path.suffix in (NOTEBOOK_SUFFIX, ".py"):
        return {
            key: f"{spec.name} was not handed in: this submission is the notebook alone "
            f"(hand in a folder, or upload {spec.name} together with the notebook)"
            for key, spec in specs.items()
        }
    found: dict[str, FoundFile | str] = {}
    taken: set[Path] = set()
    for key, spec in specs.items():
        found[key] = find_file(path, spec, taken)
        if isinstance(found[key], FoundFile):
            taken.add(found[key].path)
    return found


def file_regions(found: dict, region_specs: dict, notes: list[str]) -> tuple[dict, dict]:
    """The regions in the found files ({name: FileRegion}) and, for the others, why they are
    missing ({name: one line}); `notes` gets how each file was found and what of it is graded."""
    regions, errors = {}, {}
    for name, spec in region_specs.items():
        file = found.get(spec.file)
        if file is None:
            continue  # a file this edition does not grade from
        if isinstance(file, str):
            errors[name] = f"{spec.description}: {file}"
            continue
        try:
            regions[name] = extract(file.text, file.shown, spec)
        except RegionNotFound as exc:
            errors[name] = str(exc)
    for file in found.values():
        if not isinstance(file, FoundFile):
            continue
        if file.note:
            notes.append(file.note)
        mine = [r for n, r in regions.items() if region_specs[n].file == file.spec.key]
        if mine:
            places = ", ".join(
                f"{r.where.split(' ', 1)[1]} ({region_specs[r.name].description})" for r in mine
            )
            notes.append(f"Graded from {file.shown}: {places}; nothing else in it is run.")
        starter = _starter_copy(file.spec)
        if starter is not None:
            notes.extend(edits_outside(file.text, starter, mine, file.shown))
    return regions, errors


def _starter_copy(spec: FileSpec) -> str | None:
    """The handout's copy of the file, from the folder the instructor named in the
    environment variable `spec.starter_env` (found there as in a submission)."""
    folder = os.environ.get(spec.starter_env or "", "")
    if not folder or not Path(folder).is_dir():
        return None
    found = find_file(Path(folder), spec, set())
    return found.text if isinstance(found, FoundFile) else None


def file_stage(ctx) -> None:
    """Pipeline stage (grader.engine.pipeline): the extra files and the regions in them."""
    specs = wanted_files(ctx.assignment)
    if not specs:
        return
    found = find_files(ctx.path, specs)
    regions, errors = file_regions(found, ctx.assignment.file_regions, ctx.result.notes)
    ctx.regions.update(regions)
    ctx.region_errors.update(errors)


def submission_digest(path: Path) -> str | None:
    """SHA-256 of a submission: a file's bytes, or a folder's files (names and bytes)."""
    path = Path(path)
    try:
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_dir():
            digest = hashlib.sha256()
            for file in _walk(path):
                if file.is_file():
                    digest.update(file.relative_to(path).as_posix().encode() + b"\0")
                    digest.update(hashlib.sha256(file.read_bytes()).digest())
            return digest.hexdigest()
    except OSError:
        return None
    return None
