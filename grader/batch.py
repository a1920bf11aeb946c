"""Grade many submissions in one warm process: one results file each, and a gradebook.

Each submission gets `<out>/<name>.json` (Gradescope's schema plus a `grader` block that makes
resuming safe), written atomically; `<out>/gradebook.csv` is rewritten after every submission.
Running the same command again skips submissions whose results are up to date: same
submission bytes, same grader version, same assignment files.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
from pathlib import Path

from . import __version__
from .assignment import Assignment
from .engine import Options, grade
from .report import atomic_write, to_gradescope_dict
from .results import CheckResult, GradingResult

SUBMISSION_SUFFIXES = (".ipynb", ".py")


def expand_paths(items: list[str]) -> list[Path]:
    """Files, folders (their notebooks and .py files, recursively) and glob patterns."""
    found: list[Path] = []
    for item in items:
        matches = [Path(m) for m in sorted(glob.glob(item))] if glob.has_magic(item) else [Path(item)]
        for path in matches:
            if path.is_dir():
                found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUBMISSION_SUFFIXES
                                    and p.is_file() and ".ipynb_checkpoints" not in p.parts))
            else:
                found.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def result_names(paths: list[Path]) -> dict[Path, str]:
    """A file name per submission: its stem, with parent folders added where stems collide."""
    names: dict[Path, str] = {}
    depth = {p: 0 for p in paths}
    while True:
        candidates = {p: "__".join(p.with_suffix("").parts[-(depth[p] + 1):]) for p in paths}
        clashes = {n for n in candidates.values() if list(candidates.values()).count(n) > 1}
        if not clashes:
            return candidates
        for p, n in candidates.items():
            if n in clashes:
                depth[p] += 1


def fingerprint(path: Path, assignment: Assignment) -> dict:
    digest = hashlib.sha256()
    for file in sorted(assignment.folder.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts:
            digest.update(file.name.encode() + file.read_bytes())
    folder = assignment.reference_folder
    if folder:
        for file in sorted(folder.rglob("*.py")):
            digest.update(file.read_bytes())
    return {"submission_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None,
            "grader_version": __version__, "assignment": assignment.name,
            "assignment_sha256": digest.hexdigest()}


def load_if_current(json_path: Path, stamp: dict) -> GradingResult | None:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("grader", {}).get("stamp") != stamp:
        return None
    return from_results_dict(data)


def from_results_dict(data: dict) -> GradingResult:
    meta = data.get("grader", {})
    result = GradingResult(submission=meta.get("submission", ""), assignment=meta.get("assignment", ""),
                           execution_time=data.get("execution_time", 0.0), error=meta.get("error"),
                           notes=meta.get("notes", []), device=meta.get("device", "cpu"))
    for t in data.get("tests", []):
        tags = t.get("tags", ["", ""]) + ["", ""]
        result.checks.append(CheckResult(
            name=t["name"], part=tags[0], kind=tags[1], max_score=t["max_score"], score=t["score"],
            passed=t["status"] == "passed", output=t.get("output", ""),
            visibility=t.get("visibility", "visible"), number=t.get("number", "")))
    return result


def results_dict(result: GradingResult, stamp: dict) -> dict:
    data = to_gradescope_dict(result)
    data["grader"] = {"submission": result.submission, "assignment": result.assignment,
                      "error": result.error, "notes": result.notes, "device": result.device,
                      "stamp": stamp}
    return data


def status_of(result: GradingResult) -> str:
    if result.error:
        return "error"
    return "complete" if all(c.passed for c in result.checks) else "graded"


def gradebook_csv(rows: list[tuple[str, GradingResult]], parts: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "score", "max_score", *parts, "status", "seconds", "error"])
    for name, result in rows:
        totals = result.parts()
        writer.writerow([name, f"{result.score:g}", f"{result.max_score:g}",
                         *(f"{totals.get(p, (0, 0))[0]:g}" for p in parts),
                         status_of(result), f"{result.execution_time:.2f}", result.error or ""])
    return buffer.getvalue()


def grade_many(paths: list[Path], assignment: Assignment, options: Options, out_dir: Path,
               on_result=None) -> list[tuple[str, GradingResult]]:
    """Grade each submission in turn (skipping up-to-date ones); returns (name, result) rows."""
    names = result_names(paths)
    rows: list[tuple[str, GradingResult]] = []
    parts = [p.id for p in assignment.parts]
    for path in paths:
        name = names[path]
        json_path = out_dir / f"{name}.json"
        stamp = fingerprint(path, assignment)
        result = load_if_current(json_path, stamp)
        skipped = result is not None
        if result is None:
            try:
                result = grade(path, assignment, options)
            except Exception as exc:  # never let one submission stop the batch
                result = GradingResult(submission=str(path), assignment=assignment.name,
                                       error=f"internal error in the grader: {type(exc).__name__}: {exc}")
            atomic_write(json_path, json.dumps(results_dict(result, stamp), indent=2) + "\n")
        rows.append((name, result))
        atomic_write(out_dir / "gradebook.csv", gradebook_csv(rows, parts))
        if on_result:
            on_result(name, result, skipped)
    return rows
