"""The batch command, `grade PATH... --out DIR`: decide what needs grading, hand it to the
pool, write each result as it arrives, then the class files (see grader.batch)."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from grader.report.writers import atomic_write
from grader.report.results import GradingResult, points, visible
from grader.batch.discover import expand_paths, result_names, shard
from grader.batch.outputs import gradebook_csv, write_class_files
from grader.batch.store import (
    OutputLock,
    fingerprint,
    read_results,
    stamp_of,
    sweep_temporary_files,
    write_results,
)


class _Display:
    """A rich progress bar with a running count of errors, or (--quiet) one plain line per
    submission, for logs."""

    def __init__(self, plain: bool, total: int, done: int):
        self.plain = plain
        self.errors = 0
        self.progress = None
        if not plain:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]grading"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("errors: {task.fields[errors]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True, highlight=False),
            )
            self.progress.start()
            self.task = self.progress.add_task("grading", total=total, completed=done, errors=0)

    def line(self, text: str) -> None:
        if self.progress is not None:
            from rich.text import Text

            self.progress.console.print(Text(text))  # submission names are students' text
        else:
            print(text, flush=True)

    def result(self, name: str, result: GradingResult, state: str) -> None:
        error = None if result.error is None else visible(result.error)
        self.errors += bool(error)
        text = (
            f"{visible(name)}: {points(result.score)} / {points(result.max_score)}"
            f"{' (error: ' + error + ')' if error else ''} [{state}]"
        )
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
    from grader.editions.assignment import load_assignment
    from grader.errors import UsageError

    try:
        forced = load_assignment(args.assignment) if args.assignment else None
        paths = expand_paths(args.paths)
        if not paths:
            raise UsageError("no submissions found in " + " ".join(args.paths))
        names = result_names(paths)  # over the whole list, so every shard names alike
        by_name = {name: path for path, name in names.items()}
        selected = shard(list(by_name), getattr(args, "shard", None))
        jobs = int(getattr(args, "jobs", 1) or 1)
        if jobs < 1:
            raise ValueError("--jobs must be at least 1")
    except (UsageError, ValueError) as exc:
        print(f"grade: {visible(exc)}", file=sys.stderr)
        return 2
    out = Path(args.out or "results")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with OutputLock(out):
            return _run_locked(args, forced, by_name, selected, jobs, out)
    except OutputLock.Busy as exc:
        print(f"grade: {visible(exc)}", file=sys.stderr)
        return 2


def editions_of(by_name: dict, selected: list[str], forced) -> tuple[dict, dict[str, str]]:
    """Each submission's edition, by the one rule `grade NB` uses too
    (grader.editions.assignment.for_submission), except that nobody is asked: a notebook that
    fits two editions equally is graded as one of them, chosen without looking at the other
    submissions, and its results say so."""
    if forced is not None:
        return {name: forced for name in selected}, {}
    from grader.editions.assignment import for_submission

    found, notes = {}, {}
    for name in selected:
        found[name], detection, _ = for_submission(by_name[name], ask_when_unclear=False)
        if detection.note:
            notes[name] = detection.note
    return found, notes


def _run_locked(args, forced, by_name, selected, jobs, out) -> int:
    from grader.engine.options import Options
    from grader.batch import pool

    sweep_temporary_files(out)
    editions, notes = editions_of(by_name, selected, forced)
    used = sorted({a.name for a in editions.values()}) or ([forced.name] if forced else [])
    first = {a.name: a for a in editions.values()}
    parts = list(dict.fromkeys(p.id for name in used for p in first.get(name, forced).parts))
    options = Options.from_args(args)
    key = options.stamp()
    if options.seed is None:
        # One secret seed for the whole batch (never written where students see it): the
        # parent's seed-dependent reference runs (D.1's fine-tuning) are then made once per
        # worker, not once per submission.
        options = replace(options, seed=int.from_bytes(os.urandom(6), "big"))
    entries: dict[str, GradingResult] = {}
    stamps: dict[str, dict] = {}
    todo: list[pool.Task] = []
    for name in selected:
        path = by_name[name]
        stamps[name] = fingerprint(path, editions[name], key)
        data = read_results(out / f"{name}.json")
        if data is not None and stamp_of(data) == stamps[name]:
            entries[name] = GradingResult.from_dict(data)
        else:
            todo.append(pool.Task(len(todo), name, str(path), editions[name].name, notes.get(name, "")))
    display = _Display(bool(args.quiet), total=len(selected), done=len(entries))
    for name in sorted(entries):
        if args.quiet:
            display.result(name, entries[name], "up to date")
    if entries:
        atomic_write(out / "gradebook.csv", gradebook_csv(entries, parts))

    def on_result(task, result: GradingResult):
        write_results(out / f"{task.name}.json", result, stamps[task.name])
        entries[task.name] = result
        atomic_write(out / "gradebook.csv", gradebook_csv(entries, parts))
        display.result(task.name, result, f"{result.execution_time:.1f} s")

    ungraded: dict[str, str] = {}  # the machine's or the grader's failures: nothing recorded

    def on_ungraded(task, why: str):
        ungraded[task.name] = why
        display.line(visible(f"{task.name}: not graded ({why}); nothing recorded, a re-run tries it again"))

    setup = {"assignments": used, "options": options, "threads": pool.worker_threads(jobs)}
    started = time.perf_counter()

    def terminated(signum, frame):  # a cancelled CI job: stop the workers, keep what is done
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        pool.run_pool(
            todo,
            setup,
            jobs,
            on_result,
            submission_timeout=getattr(args, "submission_timeout", None),
            log_dir=out / ".logs",
            on_ungraded=on_ungraded,
        )
    except pool.Refused as exc:
        display.close()
        left = len(selected) - len(entries)
        print(
            f"grade: {visible(exc)}; {left} submission{'s' if left != 1 else ''} not graded and "
            "nothing recorded for them",
            file=sys.stderr,
        )
        return 2
    except pool.PoolError as exc:
        display.close()
        print(f"grade: {visible(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        display.close()
        print(
            f"grade: interrupted; {len(entries)} results kept in {out}/, "
            "run the same command again to grade the rest",
            file=sys.stderr,
        )
        return 130
    display.close()
    seconds = time.perf_counter() - started
    write_class_files(
        entries, parts, out, ", ".join(used), getattr(args, "junit", None), plain=bool(args.quiet)
    )
    if getattr(args, "report", False):
        from grader.classreport.similarity import SimilarityOptions
        from grader.classreport.verb import write_class_report

        write_class_report([out], out / "class-report.html", out / "class-report.json", SimilarityOptions())
        print(f"Class report: {out / 'class-report.html'}")
    reused = len(selected) - len(todo)
    print(
        f"Graded {len(todo) - len(ungraded)} submissions ({reused} up to date) in {seconds:.1f} s "
        f"with {jobs} job{'s' if jobs > 1 else ''} into {out}/ (gradebook: {out / 'gradebook.csv'})"
    )
    if ungraded:
        print(
            f"{len(ungraded)} submission{'s' if len(ungraded) != 1 else ''} could not be graded on this "
            "machine (nothing recorded; the same command grades them again):",
            file=sys.stderr,
        )
        for name, why in sorted(ungraded.items()):
            print(visible(f"  {name}: {why}"), file=sys.stderr)
        return 2
    return 0
