"""Which files of a batch are submissions, the name each one's results get, and shards."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from grader.errors import UsageError
from grader.engine.files import is_submission_folder

SUBMISSION_SUFFIXES = (".ipynb", ".py")


def expand_paths(items: list[str]) -> list[Path]:
    """Files, folders (their notebooks and .py files, recursively) and glob patterns.

    A folder holding one notebook and other Python files is one student's submission (the
    notebook and the files its edition names, grader.engine.files), wherever it appears: given as a
    path, or as a subfolder of a class folder.

    Inside a folder, everything named like a submission is listed, files or not: a folder
    called `x.ipynb` or a dangling link gets a gradebook row saying it cannot be read rather
    than silently nothing. Paths are made absolute but links are not resolved: a linked
    submission is recorded under the link's own name."""
    found: list[Path] = []
    for item in items:
        matches = [Path(m) for m in sorted(glob.glob(item))] if glob.has_magic(item) else []
        if not matches and os.path.lexists(item):
            matches = [Path(item)]  # also a real file whose name has [ ] * ?, e.g. "x[1].ipynb"
        elif not matches and not glob.has_magic(item):
            # The instructor's mistake (a typo, a verb that does not exist): never a result.
            raise UsageError(f"{item}: no such file or folder")
        for path in matches:
            if path.is_dir() and path.suffix not in SUBMISSION_SUFFIXES:
                found.extend(_submissions_in(path))
            else:
                found.append(path)
    return list(dict.fromkeys(Path(os.path.abspath(p)) for p in found))


def _submissions_in(folder: Path) -> list[Path]:
    if is_submission_folder(folder):
        return [folder]
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name == ".ipynb_checkpoints":
            continue
        if entry.suffix in SUBMISSION_SUFFIXES:
            found.append(entry)  # a folder or dangling link named so gets a row saying why
        elif entry.is_dir():
            found.extend(_submissions_in(entry))
    return found


def result_names(paths: list[Path]) -> dict[Path, str]:
    """A file name per submission: its stem, with parent folders added where stems collide."""
    depth = {p: 0 for p in paths}
    while True:
        candidates = {p: "__".join(_stem(p).parts[-(depth[p] + 1) :]) for p in paths}
        clashes = {n for n in candidates.values() if list(candidates.values()).count(n) > 1}
        if not clashes:
            return candidates
        for p, n in candidates.items():
            if n in clashes:
                depth[p] += 1


def _stem(path: Path) -> Path:
    """A file without its suffix; a folder submission as it is named (`alice.smith`)."""
    return path if path.is_dir() and path.suffix not in SUBMISSION_SUFFIXES else path.with_suffix("")


def shard(names: list[str], spec: str | None) -> list[str]:
    """`i/n`: the i-th (1-based) of n interleaved slices of the sorted names. Interleaving
    (every n-th submission) balances shards better than cutting the list in blocks when
    similar submissions sit next to each other."""
    ordered = sorted(names)
    if not spec:
        return ordered
    i, n = parse_shard(spec)
    return ordered[i - 1 :: n]


def parse_shard(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard wants i/n with 1 <= i <= n, e.g. 2/4 (got {spec!r})")
    return int(match[1]), int(match[2])
