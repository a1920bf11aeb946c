"""Grade a whole class: one results file each, a gradebook, pass rates, resume, shards.

    grade DIR --out OUT [--jobs N] [--shard i/n] [--junit FILE] [--quiet]
    grade merge OUT1 OUT2 ... --out MERGED [--junit FILE]

Each submission gets `OUT/<name>.json` (Gradescope's schema plus a `grader` block that makes
resuming safe), written atomically; `OUT/gradebook.csv` is rewritten after every submission,
`OUT/summary.csv` (pass rate per check) and the JUnit file at the end. Running the same command
again skips submissions whose results are up to date: same submission bytes, grader version,
assignment files and grading options (parts, --no-train, --timeout, device). Killing a batch
at any moment loses only the submissions being graded at that moment.

The parallel workers live in grader/pool.py. This module is imported by the scheduler, which
never imports torch: keep torch-importing modules (engine, sandbox, plugin) out of the
module level here.
"""
from __future__ import annotations

import argparse
import csv
import functools
import glob
import hashlib
import io
import json
import os
import re
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import __version__
from .assignment import Assignment
from .report import atomic_write
from .results import GradingResult

SUBMISSION_SUFFIXES = (".ipynb", ".py")
# Files of ours in an output folder that are not per-submission results.
OUTPUT_FILES = {"gradebook.csv", "summary.csv"}
# atomic_write's temporary files: ".<name>." plus mkstemp's 8 random characters.
_TEMPORARY = re.compile(r"^\..+\.(json|csv|xml)\.[A-Za-z0-9_]{8}$")


def expand_paths(items: list[str]) -> list[Path]:
    """Files, folders (their notebooks and .py files, recursively) and glob patterns.

    Inside a folder, everything named like a submission is listed, files or not: a folder
    called `x.ipynb` or a dangling link gets a gradebook row saying it cannot be read rather
    than silently nothing. Paths are made absolute but links are not resolved: a linked
    submission is recorded under the link's own name."""
    found: list[Path] = []
    for item in items:
        matches = [Path(m) for m in sorted(glob.glob(item))] if glob.has_magic(item) else []
        if not matches and (not glob.has_magic(item) or os.path.lexists(item)):
            matches = [Path(item)]  # also a real file whose name has [ ] * ?, e.g. "x[1].ipynb"
        for path in matches:
            if path.is_dir():
                found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUBMISSION_SUFFIXES
                                    and ".ipynb_checkpoints" not in p.parts))
            else:
                found.append(path)
    unique = list(dict.fromkeys(Path(os.path.abspath(p)) for p in found))
    return unique


def result_names(paths: list[Path]) -> dict[Path, str]:
    """A file name per submission: its stem, with parent folders added where stems collide."""
    depth = {p: 0 for p in paths}
    while True:
        candidates = {p: "__".join(p.with_suffix("").parts[-(depth[p] + 1):]) for p in paths}
        clashes = {n for n in candidates.values() if list(candidates.values()).count(n) > 1}
        if not clashes:
            return candidates
        for p, n in candidates.items():
            if n in clashes:
                depth[p] += 1


def shard(names: list[str], spec: str | None) -> list[str]:
    """`i/n`: the i-th (1-based) of n interleaved slices of the sorted names. Interleaving
    (every n-th submission) balances shards better than cutting the list in blocks when
    similar submissions sit next to each other."""
    ordered = sorted(names)
    if not spec:
        return ordered
    i, n = parse_shard(spec)
    return ordered[i - 1::n]


def parse_shard(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard wants i/n with 1 <= i <= n, e.g. 2/4 (got {spec!r})")
    return int(match[1]), int(match[2])


@functools.lru_cache(maxsize=None)
def _assignment_digest(folder: str, reference: str | None) -> str:
    digest = hashlib.sha256()
    for file in sorted(Path(folder).rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts:
            digest.update(file.name.encode() + file.read_bytes())
    if reference:
        for file in sorted(Path(reference).rglob("*.py")):
            digest.update(file.read_bytes())
    return digest.hexdigest()


def fingerprint(path: Path, assignment: Assignment, options: dict | None = None) -> dict:
    """What a results file must have been graded from to be reused: the submission's bytes,
    the grader's version, the assignment's files and (batch CLI) the grading options."""
    reference = assignment.reference_folder
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:  # unreadable: grading it says so; the stamp just never matches a file
        digest = None
    stamp = {"submission_sha256": digest,
             "grader_version": __version__, "assignment": assignment.name,
             "assignment_sha256": _assignment_digest(str(assignment.folder),
                                                     str(reference) if reference else None)}
    if options is not None:
        stamp["options"] = options
    return stamp


def read_results(json_path: Path) -> dict | None:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("grader"), dict) \
            or not isinstance(data.get("tests"), list):
        return None
    return data


def status_of(result: GradingResult) -> str:
    if result.error:
        return "error"
    return "complete" if all(c.passed for c in result.checks) else "graded"


# -- what the output folder says ----------------------------------------------------------------

def max_score_of(data: dict) -> float:
    """A results dict's out-of: its checks' points; for an unusable submission (no checks),
    the total recorded from the assignment's checks when it was graded."""
    if data.get("tests"):
        return sum(t["max_score"] for t in data["tests"])
    return float(data.get("grader", {}).get("max_score") or 0)


def _status(data: dict) -> str:
    if data.get("grader", {}).get("error"):
        return "error"
    return "complete" if all(t["status"] == "passed" for t in data.get("tests", [])) else "graded"


# A spreadsheet runs a cell that starts with one of these as a formula; submission names,
# error messages and check names come from students' files, so such text is quoted with a
# leading apostrophe (OWASP's advice against CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value) -> str:
    """A text cell for a CSV file that a spreadsheet will show as text, never run."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def gradebook_rows_csv(entries: dict[str, dict], parts: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "score", "max_score", *map(csv_text, parts), "status", "seconds",
                     "error"])
    for name in sorted(entries):
        data = entries[name]
        totals: dict[str, float] = {}
        for t in data.get("tests", []):
            part = (t.get("tags") or [""])[0]
            totals[part] = totals.get(part, 0.0) + t["score"]
        writer.writerow([csv_text(name), f"{data.get('score', 0):g}", f"{max_score_of(data):g}",
                         *(f"{totals.get(p, 0):g}" for p in parts), _status(data),
                         f"{data.get('execution_time', 0):.2f}",
                         csv_text(data["grader"].get("error") or "")])
    return buffer.getvalue()


def gradebook_csv(rows: list[tuple[str, GradingResult]], parts: list[str]) -> str:
    """The gradebook of (name, result) rows, in the order given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "score", "max_score", *map(csv_text, parts), "status", "seconds",
                     "error"])
    for name, result in rows:
        totals = result.parts()
        writer.writerow([csv_text(name), f"{result.score:g}", f"{result.max_score:g}",
                         *(f"{totals.get(p, (0, 0))[0]:g}" for p in parts),
                         status_of(result), f"{result.execution_time:.2f}", csv_text(result.error or "")])
    return buffer.getvalue()


def _checks_of(data: dict) -> list[dict]:
    """The checks a results dict was (or, unusable, would have been) graded on."""
    if data.get("tests"):
        return [{"name": t["name"], "part": (t.get("tags") or [""])[0], "passed": t["status"] == "passed",
                 "number": t.get("number", ""), "output": t.get("output", "")} for t in data["tests"]]
    return [{"name": c["name"], "part": c["part"], "passed": False, "number": c.get("number", ""),
             "output": ""} for c in data.get("grader", {}).get("expected_tests", [])]


def pass_rates(entries: dict[str, dict], parts: list[str]) -> list[dict]:
    """Per check: how many submissions passed it out of how many were graded on it (an
    unusable submission counts as failing every check it would have been graded on)."""
    order = {p: i for i, p in enumerate(parts)}
    stats: dict[tuple[str, str], dict] = {}
    for name in sorted(entries):
        for c in _checks_of(entries[name]):
            row = stats.setdefault((c["name"], c["part"]), {
                "check": c["name"], "part": c["part"], "passed": 0, "total": 0,
                "_order": (order.get(c["part"], len(order)), _number(c["number"]))})
            row["total"] += 1
            row["passed"] += bool(c["passed"])
    rows = sorted(stats.values(), key=lambda r: r["_order"])
    for row in rows:
        row.pop("_order")
        row["rate"] = row["passed"] / row["total"] if row["total"] else 0.0
    return rows


def _number(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 10**6


def summary_csv(rates: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["check", "part", "passed", "total", "rate"])
    for r in rates:
        writer.writerow([csv_text(r["check"]), csv_text(r["part"]), r["passed"], r["total"],
                         f"{r['rate']:.3f}"])
    return buffer.getvalue()


def junit_xml(entries: dict[str, dict], suite_name: str) -> str:
    """One test case per check per submission: classname = submission, name = check; a failed
    check's feedback is the failure's text. An unusable submission fails every check it would
    have been graded on, with the reason."""
    from junit_xml import TestCase, TestSuite, to_xml_report_string

    suites = []
    for name in sorted(entries):
        data = entries[name]
        error = data.get("grader", {}).get("error")
        cases = []
        for c in _checks_of(data):
            case = TestCase(c["name"], classname=name)
            if error:
                case.add_failure_info(message=f"Cannot grade: {error}", output=f"Cannot grade: {error}")
            elif not c["passed"]:
                first = (c["output"].strip().splitlines() or ["failed"])[0]
                case.add_failure_info(message=first[:200], output=c["output"] or "failed")
            cases.append(case)
        if not cases:  # nothing known about the checks: one case says what happened
            case = TestCase("grading", classname=name)
            if error:
                case.add_failure_info(message=f"Cannot grade: {error}", output=f"Cannot grade: {error}")
            cases.append(case)
        suites.append(TestSuite(f"{suite_name}: {name}", cases))
    return to_xml_report_string(suites, prettyprint=True)


def isolation_summary(entries: dict[str, dict]) -> str:
    """The sandbox protections across the batch (each set with how many submissions had it)."""
    seen: dict[str, int] = {}
    for data in entries.values():
        items = data["grader"].get("isolation") or []
        key = ", ".join(items) if items else "none (no sandbox started)"
        seen[key] = seen.get(key, 0) + 1
    if len(seen) == 1:
        return f"isolation: {next(iter(seen))}"
    return "isolation: " + "; ".join(f"[{n}x] {k}" for k, n in seen.items())


def print_summary(rates: list[dict], entries: dict[str, dict], plain: bool) -> None:
    graded = len(entries)
    errors = sum(1 for d in entries.values() if d["grader"].get("error"))
    print(isolation_summary(entries))
    if plain:
        print("Pass rate per check:")
        for r in rates:
            print(f"  {r['rate']:7.1%}  {r['passed']:>4}/{r['total']:<4}  {r['part']:5} {r['check']}")
        print(f"{graded} submissions, {errors} could not be graded")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Pass rate per check", expand=False)
    table.add_column("Part")
    table.add_column("Check")
    table.add_column("Passed", justify="right")
    table.add_column("Rate", justify="right")
    for r in rates:  # names as Text: merged results files may hold anything, even "[/red]"
        table.add_row(Text(r["part"]), Text(r["check"]), f"{r['passed']}/{r['total']}",
                      f"{r['rate']:.0%}")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"{graded} submissions, {errors} could not be graded")


def sweep_temporary_files(out_dir: Path) -> None:
    """Remove what a killed batch left half-written (atomic_write's temporary files)."""
    for path in out_dir.iterdir() if out_dir.is_dir() else []:
        if path.is_file() and _TEMPORARY.match(path.name):
            path.unlink(missing_ok=True)


class OutputLock:
    """One batch at a time per output folder (an flock, released by the kernel even when the
    batch is killed)."""

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
            raise RuntimeError(f"another batch is writing to {self.path.parent}/")
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# -- in-process sequential grading (the library API) ------------------------------------------

# -- the batch command --------------------------------------------------------------------------

class _Display:
    """A rich progress bar with a running count of errors, or (--quiet) one plain line per
    submission, for logs."""

    def __init__(self, plain: bool, total: int, done: int):
        self.plain = plain
        self.errors = 0
        self.progress = None
        if not plain:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.progress = Progress(
                TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(),
                TextColumn("errors: {task.fields[errors]}"), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True, highlight=False))
            self.progress.start()
            self.task = self.progress.add_task("grading", total=total, completed=done, errors=0)

    def line(self, text: str) -> None:
        if self.progress is not None:
            from rich.text import Text
            self.progress.console.print(Text(text))  # submission names are students' text
        else:
            print(text, flush=True)

    def result(self, name: str, data: dict, state: str) -> None:
        error = data["grader"].get("error")
        self.errors += bool(error)
        text = (f"{name}: {data['score']:g} / {max_score_of(data):g}"
                f"{' (error: ' + error + ')' if error else ''} [{state}]")
        if self.progress is None:
            self.line(text)
        else:
            if error:
                self.line(text)
            if state != "up to date":
                self.progress.update(self.task, advance=1, errors=self.errors)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_batch(args) -> int:
    """`grade PATH... --out DIR`: see the module docstring."""
    from .assignment import load_assignment
    from .errors import SubmissionError

    try:
        assignment = load_assignment(args.assignment)
        paths = expand_paths(args.paths)
        if not paths:
            raise SubmissionError("no submissions found in " + " ".join(args.paths))
        names = result_names(paths)  # over the whole list, so every shard names alike
        by_name = {name: path for path, name in names.items()}
        selected = shard(list(by_name), getattr(args, "shard", None))
        jobs = int(getattr(args, "jobs", 1) or 1)
        if jobs < 1:
            raise ValueError("--jobs must be at least 1")
    except (SubmissionError, ValueError) as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or "results")
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = OutputLock(out).__enter__()
    except RuntimeError as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_locked(args, assignment, by_name, selected, jobs, out)
    finally:
        lock.__exit__()


def _run_locked(args, assignment, by_name, selected, jobs, out) -> int:
    from . import pool
    from .options import Options

    sweep_temporary_files(out)
    parts = [p.id for p in assignment.parts]
    options = Options.from_args(args)
    key = options.stamp()
    if options.seed is None:
        # One secret seed for the whole batch (never written where students see it): the
        # parent's seed-dependent reference runs (D.1's fine-tuning) are then made once per
        # worker, not once per submission.
        options = replace(options, seed=int.from_bytes(os.urandom(6), "big"))
    entries: dict[str, dict] = {}
    stamps: dict[str, dict] = {}
    todo: list[pool.Task] = []
    for name in selected:
        path = by_name[name]
        stamps[name] = fingerprint(path, assignment, key)
        data = read_results(out / f"{name}.json")
        if data is not None and data["grader"].get("stamp") == stamps[name]:
            entries[name] = data
        else:
            todo.append(pool.Task(len(todo), name, str(path)))
    display = _Display(bool(args.quiet), total=len(selected), done=len(entries))
    for name in sorted(entries):
        if args.quiet:
            display.result(name, entries[name], "up to date")
    if entries:
        atomic_write(out / "gradebook.csv", gradebook_rows_csv(entries, parts))
    catalog: list[dict] = []

    def on_catalog(checks):
        catalog[:] = checks

    def on_result(task, data):
        meta = data["grader"]
        meta["stamp"] = stamps[task.name]
        if catalog:
            meta["max_score"] = sum(c["max_score"] for c in catalog)
            if meta.get("error") and not data.get("tests"):
                meta["expected_tests"] = catalog
        atomic_write(out / f"{task.name}.json", json.dumps(data, indent=2) + "\n")
        entries[task.name] = data
        atomic_write(out / "gradebook.csv", gradebook_rows_csv(entries, parts))
        display.result(task.name, data, f"{data.get('execution_time', 0):.1f} s")

    setup = {"assignment": assignment.name, "options": options,
             "threads": pool.worker_threads(jobs)}
    started = time.perf_counter()

    def terminated(signum, frame):  # a cancelled CI job: stop the workers, keep what is done
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        pool.run_pool(todo, setup, jobs, on_result, on_catalog,
                      submission_timeout=getattr(args, "submission_timeout", None),
                      log_dir=out / ".logs")
    except pool.PoolError as exc:
        display.close()
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        display.close()
        print(f"grade: interrupted; {len(entries)} results kept in {out}/, "
              "run the same command again to grade the rest", file=sys.stderr)
        return 130
    display.close()
    seconds = time.perf_counter() - started
    return finish(entries, parts, out, assignment.name, getattr(args, "junit", None),
                  plain=bool(args.quiet),
                  headline=f"Graded {len(todo)} submissions ({len(entries) - len(todo)} up to date) "
                           f"in {seconds:.1f} s with {jobs} job{'s' if jobs > 1 else ''} into {out}/ "
                           f"(gradebook: {out / 'gradebook.csv'})")


def finish(entries: dict[str, dict], parts: list[str], out: Path, suite: str, junit: str | None,
           plain: bool, headline: str) -> int:
    atomic_write(out / "gradebook.csv", gradebook_rows_csv(entries, parts))
    rates = pass_rates(entries, parts)
    atomic_write(out / "summary.csv", summary_csv(rates))
    if junit:
        atomic_write(junit, junit_xml(entries, suite))
    print_summary(rates, entries, plain)
    print(headline)
    return 0


# -- grade merge --------------------------------------------------------------------------------

def merge_main(argv: list[str]) -> int:
    """`grade merge OUT1 OUT2 ... --out MERGED`: join the results of several shards."""
    p = argparse.ArgumentParser(prog="grade merge",
                                description="Join batch outputs (e.g. shards) into one gradebook.")
    p.add_argument("dirs", nargs="+", metavar="OUT", help="output folders of `grade ... --out`")
    p.add_argument("--out", required=True, metavar="MERGED",
                   help="write MERGED/<name>.json, gradebook.csv and summary.csv here")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML file")
    p.add_argument("--quiet", action="store_true", help="plain-text summary")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    out = Path(args.out)
    found: dict[str, tuple[Path, dict]] = {}
    for folder in map(Path, args.dirs):
        if not folder.is_dir():
            print(f"grade merge: {folder} is not a folder", file=sys.stderr)
            return 2
        for path in sorted(folder.glob("*.json")):
            data = read_results(path)
            if data is None:
                continue
            if path.stem in found and found[path.stem][1] != data:
                print(f"grade merge: {path.stem} is in more than one folder; keeping {path}",
                      file=sys.stderr)
            found[path.stem] = (path, data)
    if not found:
        print("grade merge: no results files found in " + " ".join(args.dirs), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, (path, data) in found.items():
        target = out / f"{name}.json"
        if path.resolve() != target.resolve():
            atomic_write(target, path.read_text())
        entries[name] = data
    assignments = {d["grader"].get("assignment") for d in entries.values()}
    parts = _parts_of(assignments, entries)
    suite = ", ".join(sorted(a for a in assignments if a)) or "grading"
    return finish(entries, parts, out, suite, args.junit, plain=args.quiet,
                  headline=f"Merged {len(entries)} results from {len(args.dirs)} folders into {out}/ "
                           f"(gradebook: {out / 'gradebook.csv'})")


def _parts_of(assignments: set, entries: dict[str, dict]) -> list[str]:
    from .assignment import load_assignment
    from .errors import SubmissionError
    if len(assignments) == 1:
        try:
            return [p.id for p in load_assignment(next(iter(assignments))).parts]
        except SubmissionError:
            pass
    parts: dict[str, None] = {}
    for name in sorted(entries):
        for c in _checks_of(entries[name]):
            parts.setdefault(c["part"], None)
    return sorted(parts)
