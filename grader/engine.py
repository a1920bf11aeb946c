"""The grading pipeline: an ordered list of small stages, each with one job.

    load -> harvest -> regions -> sandbox -> checks

Each stage reads and fills one GradingContext. A stage that finds the submission unusable
raises SubmissionError; everything else a student gets wrong ends up as failed checks.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import harvest as harvest_mod
from .assignment import Assignment
from .errors import StudentCodeError, SubmissionError, UnsafeSandbox
from .load import LoadedSubmission, load_submission
from .proxy import Submission
from .regions import RegionNotFound, extract_region
from .results import GradingResult
from .sandbox import Limits, Sandbox, has_file_system_isolation


@dataclass
class Options:
    device: str = "cpu"
    # Limits given on the command line; they win over the assignment's [limits].
    limit_overrides: dict = field(default_factory=dict)
    select: object = None  # predicate on a check's markers, e.g. to skip training checks
    pytest_args: tuple = ()
    # Run only the public checks (grader.public), as on a student's machine. Automatic when
    # the reference solution is not installed.
    public_only: bool = False
    # Grade with the reference installed even where the sandbox could not isolate the file
    # system (each result then carries the warning).
    allow_unsafe_sandbox: bool = False
    # The secret seed of the instructor side's challenges (grader.public.Expectations) and of
    # the hidden checks' hypothesis inputs. None: drawn from os.urandom for each grading;
    # `--seed` replays a run.
    seed: int | None = None


@dataclass
class GradingContext:
    path: Path
    assignment: Assignment
    options: Options
    loaded: LoadedSubmission | None = None
    harvest: harvest_mod.Harvest | None = None
    regions: dict = field(default_factory=dict)
    region_errors: dict = field(default_factory=dict)
    sandbox: Sandbox | None = None
    result: GradingResult | None = None


def load_stage(ctx: GradingContext) -> None:
    ctx.loaded = load_submission(ctx.path)


def harvest_stage(ctx: GradingContext) -> None:
    pure = harvest_mod.PURE_CALLS | frozenset(ctx.assignment.pure_calls)
    ctx.harvest = harvest_mod.harvest(ctx.loaded, pure)
    if not ctx.harvest.statements and not ctx.harvest.broken_cells:
        raise SubmissionError(f"{ctx.path}: the submission has no code")
    ctx.result.notes.extend(ctx.harvest.diagnostics())


def region_stage(ctx: GradingContext) -> None:
    for name, spec in ctx.assignment.regions.items():
        try:
            ctx.regions[name] = extract_region(ctx.loaded.cells, spec)
        except RegionNotFound as exc:
            ctx.region_errors[name] = str(exc)


def sandbox_stage(ctx: GradingContext) -> None:
    limits = Limits()
    for key, value in (ctx.assignment.limits | ctx.options.limit_overrides).items():
        if not hasattr(limits, key):
            raise ValueError(f"unknown limit {key!r}")
        setattr(limits, key, type(getattr(limits, key))(value))
    if ctx.options.device == "cuda":
        # The CUDA driver reserves tens of GB of address space: RLIMIT_AS cannot bound it.
        limits.memory_bytes = 0
        ctx.result.notes.append("training on CUDA: the sandbox has no address-space limit")
    hidden = [str(p) for p in (ctx.assignment.reference_folder, ctx.assignment.folder) if p]
    ctx.sandbox = Sandbox([st.to_wire() for st in ctx.harvest.statements], limits, hidden,
                          device=ctx.options.device)
    # The first child says which protections held; an instructor's grading (reference
    # installed) refuses to go on without file-system isolation unless told to.
    try:
        isolation = ctx.sandbox.start_child()
    except StudentCodeError as exc:  # before any student code: the machine's problem
        raise SubmissionError(f"the sandbox could not start: {exc}")
    ctx.result.isolation = isolation
    from . import public
    if not has_file_system_isolation(isolation):
        if public.public_only(ctx.assignment, ctx.options):
            return  # a student's self-check: nothing secret is installed
        missing = "; ".join(i for i in isolation if i.startswith("no ")) or "no landlock"
        if not ctx.options.allow_unsafe_sandbox:
            raise UnsafeSandbox(
                f"refusing to grade with the reference installed: the sandbox cannot hide the "
                f"file system ({missing}). Run on Linux >= 5.13 with Landlock enabled (see "
                f"docs/security.md), or pass --allow-unsafe-sandbox to accept the risk")
        ctx.result.notes.insert(0, f"WARNING: graded without file-system isolation ({missing}): "
                                   "the submission could read the reference")


def check_stage(ctx: GradingContext) -> None:
    submission = Submission(ctx.harvest, ctx.sandbox, ctx.regions, ctx.region_errors)
    run_checks(submission, ctx.assignment, ctx.options, ctx.result)
    boot = ctx.sandbox.boot
    if boot is not None:
        for index, reason in sorted(boot.fatal.items()):
            st = ctx.harvest.statements[index]
            ctx.result.notes.append(f"cell {st.cell + 1}, line {st.lineno} skipped: {reason}")
        for problem in boot.problems:
            st = ctx.harvest.statements[problem["index"]]
            from .sandbox import format_error
            ctx.result.notes.append(f"cell {st.cell + 1}, line {st.lineno} raised "
                                    f"{format_error(problem['error'])}")


def pytest_args(assignment: Assignment, options: Options, targets: list | None = None) -> list[str]:
    """How the checks are run (also used to list them without grading, grader.batch).
    `targets`: the files or folders to collect (default: the whole assignment folder, or only
    its public checks when those are all that can run: see grader.public)."""
    from . import public

    folder = str(assignment.folder)
    if targets is None:
        targets = public.check_targets(assignment, public.public_only(assignment, options))
    return [*map(str, targets), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--import-mode=importlib",
            "--rootdir", folder, "--confcutdir", folder, "-o", "addopts=", "-o", "python_files=test_*.py",
            "--no-header", "-W", "ignore", *options.pytest_args]


STAGES = [load_stage, harvest_stage, region_stage, sandbox_stage, check_stage]


def run_checks(submission, assignment: Assignment, options: Options, result: GradingResult) -> None:
    """Run the assignment's checks (pytest) on `submission` (a proxy: grader.proxy, or the
    in-process one of grader.selfcheck) and put their results into `result`. Without the
    reference solution only the public checks run, and the result says so."""
    import pytest

    from . import public
    from .plugin import GradingPlugin

    reference = None if options.public_only else assignment.load_reference()
    public_only = reference is None
    seed = None
    if not public_only:
        seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(6), "big")
        result.challenge_seed = seed
    expectations = public.Expectations(assignment, reference, challenge_seed=seed)
    plugin = GradingPlugin(submission, reference, assignment, options.device, options.select,
                           expected=expectations.cases, secret=seed)
    with _quiet_stdout():
        pytest.main(pytest_args(assignment, options,
                                public.check_targets(assignment, public_only)), plugins=[plugin])
    if plugin.collection_errors:
        raise RuntimeError("the assignment's checks could not be loaded:\n"
                           + "\n".join(plugin.collection_errors))
    result.checks = plugin.results
    result.notes.extend(expectations.notes)
    if public_only:
        result.notes.insert(0, public.public_only_note(expectations, plugin.results))


def grade(path: str | Path, assignment: Assignment, options: Options | None = None) -> GradingResult:
    started = time.perf_counter()
    ctx = GradingContext(Path(path), assignment, options or Options())
    ctx.result = GradingResult(submission=str(path), assignment=assignment.name,
                               device=ctx.options.device)
    try:
        for stage in STAGES:
            stage(ctx)
    except SubmissionError as exc:
        ctx.result.error = str(exc)
    finally:
        if ctx.sandbox is not None:
            ctx.sandbox.close()
        ctx.result.execution_time = time.perf_counter() - started
    return ctx.result


class _quiet_stdout:
    """pytest prints its own progress; the grader prints its own report instead."""

    def __enter__(self):
        import io
        import sys
        self._saved = sys.stdout
        sys.stdout = io.StringIO()

    def __exit__(self, *exc):
        import sys
        captured = sys.stdout.getvalue()
        sys.stdout = self._saved
        self.captured = captured
