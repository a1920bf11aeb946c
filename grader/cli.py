"""`grade PATH`: grade one submission and print the table; see --help.

`grade PATH...` or `grade --out DIR ...` grades a batch. Other verbs (`grade merge ...`) are
listed in SUBCOMMANDS, each implemented by a `main(argv) -> int` in its own module.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import shutil
import sys
import tempfile

from grader.verbs import parse_or_status

SUBCOMMANDS = {
    # verb: "module:function" taking the remaining argv and returning an exit status
    "merge": "grader.batch.merge:main",
    "gradescope-zip": "grader.authoring.gradescope:main",
    "build-public": "grader.public.build:main",
    "release": "grader.authoring.release:main",
    "assign": "grader.authoring.masters:main",
    "report": "grader.classreport.verb:main",
    "slurm": "grader.batch.slurm:main",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grade", description="Grade a PyTorch assignment notebook.")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="submissions: .ipynb or .py files, a student's folder (one notebook and the "
        "files it goes with), class folders, or glob patterns",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="batch mode: write DIR/<name>.json per submission "
        "and DIR/gradebook.csv; re-running skips submissions already graded",
    )
    p.add_argument("--assignment", help="assignment edition (default: detected from the notebook)")
    p.add_argument("--json", metavar="FILE", help="write Gradescope's results.json here")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where training checks run (default: auto = CUDA when present)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="wall-time limit, in seconds, for loading the notebook and for each request "
        "to the student's code (default: the assignment's, 20 s, scaled by this machine's speed)",
    )
    p.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="the whole grading's time budget; checks not run when it is spent fail as too "
        "slow (default: 4 times the reference notebook's grading time on this machine, as the "
        "assignment states it and a calibration run scales it, at least 180 s)",
    )
    p.add_argument("--no-train", action="store_true", help="skip the training checks")
    p.add_argument(
        "--html", metavar="FILE", help="write a self-contained feedback page (checks, messages, pictures)"
    )
    p.add_argument(
        "--part",
        action="append",
        metavar="ID",
        help="grade only this part (repeatable), e.g. --part A.1 --part D.2",
    )
    p.add_argument(
        "--public-only",
        action="store_true",
        help="run only the public checks, as a student's installation does "
        "(automatic when no reference solution is installed)",
    )
    p.add_argument(
        "--hidden-details",
        metavar="VISIBILITY",
        choices=["visible", "after_due_date", "after_published", "hidden"],
        help="--json for students (Gradescope): show hidden checks' name, points and "
        "pass/fail only, their messages in a separate entry of this visibility",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="instructor side: replay a grading's secret challenges (the seed it "
        "printed) instead of drawing new ones",
    )
    p.add_argument(
        "--allow-unsafe-sandbox",
        action="store_true",
        help="grade with the reference installed even where the sandbox cannot "
        "isolate the file system (every result carries the warning)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the score line (batch: plain log lines instead of a progress bar)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also print each check's seconds and where the grading's time went (stages, "
        "slowest checks); results.json's `grader` block has them either way",
    )
    batch = p.add_argument_group("batch mode (see docs/batch.md)")
    batch.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="grade N submissions at a time (worker processes; default 1)",
    )
    batch.add_argument(
        "--shard", metavar="I/N", help="grade only the I-th of N interleaved slices of the sorted submissions"
    )
    batch.add_argument(
        "--junit", metavar="FILE", help="write a JUnit XML file: one test case per check per submission"
    )
    batch.add_argument(
        "--report",
        action="store_true",
        help="also write the class report, DIR/class-report.html and .json, with each student's "
        "feedback page (grade report: docs/class-report.md)",
    )
    batch.add_argument(
        "--submission-timeout",
        type=float,
        default=1800,
        metavar="SECONDS",
        help="stop grading a submission after this long in all (default 1800)",
    )
    return p


def main(argv=None) -> int:
    from grader.sandbox.server import forget_working_folder

    forget_working_folder()
    # Hypothesis keeps a cache folder (`.hypothesis/`) in the working folder even without a
    # database, and torch one in /tmp (`torchinductor_<user>`, made when an optimizer is
    # built): both go into a private folder of this run, removed at its end, so a grading
    # leaves nothing behind in the folder it is run from or in /tmp (a shared, predictable
    # folder could also be planted by another user). A batch's workers inherit it.
    if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        cache = tempfile.mkdtemp(prefix="grader-cache-")
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(cache, "hypothesis")
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache, "torchinductor"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        module_name, function = SUBCOMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module_name), function)(argv[1:])
    args = parse_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    class_folder = _is_class_folder(args.paths[0], args.assignment)
    if args.out or len(args.paths) > 1 or args.shard or args.junit or class_folder:
        # Batch mode: a scheduler that never imports torch, and worker processes (grader.batch.pool).
        from grader.batch.scheduler import run_batch

        return run_batch(args)
    from grader.report.results import visible

    args.path = args.paths[0]
    if not os.path.lexists(args.path):  # a typo or a verb that does not exist: the person's
        print(visible(f"grade: {args.path}: no such file or folder"), file=sys.stderr)
        return 2
    # Start the warm sandbox server first (it imports no torch here): it imports torch,
    # pytest and the engine in its own process, then builds the library objects the assignments
    # ask for ([checks] prebuild); meanwhile this process tells the edition.
    from grader.batch.pool import run_in_worker, start_server
    from grader.editions.assignment import for_submission
    from grader.errors import UsageError

    start_server()
    try:
        assignment, detection, loaded = for_submission(args.path, args.assignment)
    except UsageError as exc:
        print(f"grade: {visible(exc)}", file=sys.stderr)
        return 2
    if not args.quiet and args.assignment is None:
        print(visible(detection.line()))
    # The grading runs in a process forked from that server, as a batch's workers do: torch is
    # then held once, by the server, and not also by this process (grader.batch.pool).
    # (Named by this module's real name: under `python -m grader.cli` it is __main__, where the
    # grading process would look for the function in vain.)
    # It gets the notebook as read here, and does not read it (nor import nbconvert) again.
    this = importlib.import_module(__spec__.name if __spec__ else __name__)
    code = run_in_worker(this.grade_and_report, args, assignment.name, loaded)
    if code is None:  # no process could be started that way: grade here
        return grade_and_report(args, assignment.name, loaded)
    if code not in (0, 1, 2, 130):
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        _report_failure(args, assignment.name, f"the grading process ended ({why})")
        return 2
    return code


def grade_and_report(args, assignment_name: str, loaded=None) -> int:
    """Grade one submission and write what `args` asks for (terminal, --json, --html): the
    exit status. Run in the process grader.batch.pool.run_in_worker starts."""
    from grader.editions.assignment import load_assignment
    from grader.engine.options import Options
    from grader.engine.pipeline import grade
    from grader.errors import MachineError, UsageError
    from grader.report.results import points, visible
    from grader.report.writers import terminal, write_json

    assignment = load_assignment(assignment_name)
    failure = None
    try:
        result = grade(args.path, assignment, Options.from_args(args).resolved(), loaded=loaded)
    except UsageError as exc:
        print(f"grade: {visible(exc)}", file=sys.stderr)
        return 2
    except MachineError as exc:  # this machine cannot grade: not the student's failure
        failure = str(exc)
    except Exception as exc:  # the grader itself broke: not the student's failure either
        failure = f"internal error in the grader: {type(exc).__name__}: {exc}"
    if failure is not None:
        _report_failure(args, assignment_name, failure)
        return 2
    if args.json:
        write_json(result, args.json, args.hidden_details)
    if args.html:
        from grader.report.writers import write_html

        write_html(result, args.html)
    if args.quiet:
        print(f"Score: {points(result.score)} / {points(result.max_score)}")
    else:
        terminal(result, timings=args.verbose)
    return result.exit_code


def _report_failure(args, assignment_name: str, failure: str) -> None:
    """A grading that could not be done: one line, and a results.json that says why (so that
    Gradescope shows why there is no score)."""
    from grader.report.results import GradingResult, visible
    from grader.report.writers import write_json

    print(f"grade: {visible(failure)}", file=sys.stderr)
    if args.json:
        write_json(GradingResult(args.path, assignment_name, error=failure), args.json, args.hidden_details)


def _is_class_folder(path: str, assignment: str | None) -> bool:
    """A folder of several notebooks is a batch; a folder with one is one student's
    submission (its notebook and the other files its edition names), and so is one that holds
    the notebook of the edition named with --assignment (an upload with a stray notebook)."""
    from pathlib import Path

    from grader.engine.files import notebooks_in

    folder = Path(path)
    if not folder.is_dir() or folder.suffix in (".ipynb", ".py"):
        return False
    notebooks = notebooks_in(folder)
    if len(notebooks) == 1:
        return False
    if assignment:
        from grader.editions.assignment import load_assignment
        from grader.errors import SubmissionError

        try:
            name = load_assignment(assignment).notebook
        except SubmissionError:
            return True  # the batch reports the unknown assignment
        return not any(p.name == name for p in notebooks)
    return True


def entry_point() -> None:
    _exit_at_once(main())


def _exit_at_once(code: int) -> None:
    """Exit with `code` after the exit handlers (the run's cache folder is removed), without
    the interpreter's teardown (grader.sandbox.server.exit_now). Where a thread that is not a
    daemon still runs, exit normally (the interpreter waits for it)."""
    import threading

    if not isinstance(code, int):  # None or a message: sys.exit says what it means
        sys.exit(code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    from grader.sandbox.server import exit_now

    atexit._run_exitfuncs()
    exit_now(code)


if __name__ == "__main__":
    entry_point()
