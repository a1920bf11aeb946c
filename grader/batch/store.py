"""A batch's output folder: one results file per submission, stamped with what it was graded
from so a re-run knows which are up to date; one batch at a time per folder."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from pathlib import Path

from grader.engine.files import submission_digest

from grader import __version__
from grader.editions.assignment import Assignment
from grader.report.writers import atomic_write
from grader.report.results import GradingResult

# atomic_write's temporary files: ".<name>." plus mkstemp's 8 random characters.
_TEMPORARY = re.compile(r"^\..+\.(json|csv|xml)\.[A-Za-z0-9_]{8}$")


@functools.lru_cache(maxsize=None)
def _assignment_digest(folders: tuple[str, ...], reference: str | None) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for file in sorted(Path(folder).rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(file.name.encode() + file.read_bytes())
    if reference:
        digest.update(Path(reference).read_bytes())
    return digest.hexdigest()


def fingerprint(path: Path, assignment: Assignment, options: dict | None = None) -> dict:
    """What a results file must have been graded from to be reused: the submission's bytes,
    the grader's version, the assignment's files and (batch CLI) the grading options
    (grader.engine.options.Options.stamp)."""
    reference = assignment.module_path if assignment.has_reference else None
    # A file's bytes, or a folder submission's files; None when unreadable (grading says so).
    digest = submission_digest(path)
    stamp = {
        "submission_sha256": digest,
        "grader_version": __version__,
        "assignment": assignment.name,
        "assignment_sha256": _assignment_digest(
            tuple(map(str, dict.fromkeys([assignment.folder, assignment.edition_folder]))),
            str(reference) if reference else None,
        ),
    }
    if options is not None:
        stamp["options"] = options
    return stamp


def read_results(json_path: Path) -> dict | None:
    """A results file's data, or None when it is not one (unreadable, not ours)."""
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("grader"), dict)
        or not isinstance(data.get("tests"), list)
    ):
        return None
    return data


def stamp_of(data: dict) -> dict | None:
    return data["grader"].get("stamp")


def write_results(json_path: Path, result: GradingResult, stamp: dict | None) -> None:
    data = result.to_dict()
    data["grader"]["stamp"] = stamp
    atomic_write(json_path, json.dumps(data, indent=2) + "\n")


def sweep_temporary_files(out_dir: Path) -> None:
    """Remove what a killed batch left half-written (atomic_write's temporary files)."""
    for path in out_dir.iterdir() if out_dir.is_dir() else []:
        if path.is_file() and _TEMPORARY.match(path.name):
            path.unlink(missing_ok=True)


class OutputLock:
    """One batch at a time per output folder (an flock, released by the kernel even when the
    batch is killed)."""

    class Busy(RuntimeError):
        """Another batch holds the folder."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / ".lock"
        self.fd = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise OutputLock.Busy(f"another batch is writing to {self.path.parent}/")
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
