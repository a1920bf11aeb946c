"""The grading pipeline: an ordered list of small stages, each with one job.

    load -> harvest -> regions -> files -> sandbox -> limits -> prepare -> isolation -> checks
                                                                         (grader.engine.checkrun)

(sandbox forks the first child and isolation waits for it to confine itself: the trusted
side's work, limits and prepare, runs in between.)

Each stage reads and fills one GradingContext. A stage that finds the submission unusable
raises SubmissionError; everything else a student gets wrong ends up as failed checks.
"""

from __future__ import annotations

import functools
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from grader.engine import harvest as harvest_mod
from grader.editions.assignment import Assignment
from grader.engine.budget import Budget, machine_speed, reference_seconds
from grader.engine.files import file_stage, notebook_of
from grader.engine.checkrun import Prepared, collect_checks, prepare_checks, run_checks
from grader.errors import MachineError, StudentCodeError, SubmissionError, UnsafeSandbox
from grader.engine.load import LoadedSubmission, load_submission
from grader.engine.options import Options
from grader.engine.provided import provided_definitions, supply_provided
from grader.engine.proxy import Submission
from grader.engine.regions import RegionNotFound, extract_region
from grader.report.results import GradingResult
from grader.sandbox import Limits, Sandbox, has_file_system_isolation
from grader.report.timings import timed


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
    budget: Budget | None = None
    prepared: Prepared | None = None
    started: float = field(default_factory=time.monotonic)


def load_stage(ctx: GradingContext) -> None:
    # A folder submission is graded from its notebook; its other files come in file_stage.
    notebook = notebook_of(ctx.path, ctx.assignment.notebook)
    if ctx.loaded is None or Path(ctx.loaded.path) != Path(notebook):  # not read while choosing the edition
        ctx.loaded = load_submission(notebook)


def harvest_stage(ctx: GradingContext) -> None:
    pure = harvest_mod.PURE_CALLS | frozenset(ctx.assignment.pure_calls)
    ctx.harvest = harvest_mod.harvest(ctx.loaded, pure)
    if not ctx.harvest.statements and not ctx.harvest.broken_cells:
        raise SubmissionError(f"{ctx.path}: the submission has no code")
    ctx.result.notes.extend(ctx.harvest.diagnostics())
    # Definitions the handout provides, lost with an unparsable cell: put back (grader.engine.provided).
    provided = provided_definitions(ctx.assignment.data.get("harvest", {}).get("provided"))
    ctx.result.notes.extend(supply_provided(ctx.harvest, provided))


def region_stage(ctx: GradingContext) -> None:
    for name, spec in ctx.assignment.regions.items():
        try:
            ctx.regions[name] = extract_region(ctx.loaded.cells, spec)
        except RegionNotFound as exc:
            ctx.region_errors[name] = str(exc)


def prepare_stage(ctx: GradingContext) -> None:
    """What the checks need from the trusted side, done while the first child starts and
    confines itself (sandbox_stage forks it; it runs in another process, forked from the
    warm server, and sees none of this process's memory). The libraries the assignment's checks
    use in the grader ([checks] preload, e.g. torchvision for a library model they rebuild),
    the reference, the secret seed, the stored expectations and the secret challenges."""
    for name in ctx.assignment.data.get("checks", {}).get("preload", []):
        try:
            importlib.import_module(name)
        except ImportError:  # the check that needs it says so
            pass
    ctx.prepared = prepare_checks(ctx.assignment, ctx.options, eager=True)
    _freeze_imports()


@functools.cache  # once per process: a batch worker grades many submissions
def _freeze_imports() -> None:
    """Hide what is imported by now (torch, pytest, the checks' libraries) from the cyclic
    garbage collector: each full collection during the checks (pytest and hypothesis ask for
    some) then takes microseconds instead of a fifth of a second."""
    import gc

    gc.collect()
    gc.freeze()


def sandbox_stage(ctx: GradingContext) -> None:
    limits = Limits()
    stated = {k: v for k, v in ctx.assignment.limits.items() if k != "reference_seconds"}
    for key, value in (stated | ctx.options.limit_overrides).items():
        if not hasattr(limits, key):
            raise ValueError(f"unknown limit {key!r}")
        setattr(limits, key, type(getattr(limits, key))(value))
    if ctx.options.device == "cuda":
        # The CUDA driver reserves tens of GB of address space: RLIMIT_AS cannot bound it.
        limits.memory_bytes = 0
        ctx.result.notes.append("training on CUDA: the sandbox has no address-space limit")
    hidden = [str(p) for p in ctx.assignment.secret_paths]
    ctx.sandbox = Sandbox(
        [st.to_wire() for st in ctx.harvest.statements],
        limits,
        hidden,
        device=ctx.options.device,
    )
    # Forked now, it confines itself while this process sets the time limits and prepares the
    # checks (limits_stage, prepare_stage); isolation_stage waits for it. It runs no student
    # code before the first check asks, and only the limits it applies to itself (memory,
    # CPU, files) go with it: the wall-time limits are the grader's, set next.
    ctx.sandbox.launch_child()


def limits_stage(ctx: GradingContext) -> None:
    # Time limits as the assignment states them hold on the calibration machine: scaled by
    # this machine's speed (grader.engine.budget, 0.06 s to measure). Limits
    # given on the command line hold as given.
    speed = machine_speed()
    limits = ctx.sandbox.limits
    for key in ("request_seconds", "boot_seconds", "library_seconds"):
        if key not in ctx.options.limit_overrides:
            setattr(limits, key, getattr(limits, key) * speed)
    kinds = {"checks"}
    if "training" not in ctx.options.skip_kinds and (
        not ctx.options.kinds or "training" in ctx.options.kinds
    ):
        kinds.add("training")
    ctx.budget = Budget.for_grading(
        reference_seconds(ctx.assignment.limits, kinds), speed, ctx.options.budget_seconds
    )
    ctx.budget.started = ctx.started
    ctx.result.budget_seconds = round(ctx.budget.seconds, 1)
    ctx.sandbox.budget = ctx.budget


def isolation_stage(ctx: GradingContext) -> None:
    # The first child says which protections held; an instructor's grading (reference
    # installed) refuses to go on without file-system isolation unless told to.
    try:
        isolation = ctx.sandbox.await_child()
    except StudentCodeError as exc:  # before any student code: the machine's problem
        raise MachineError(f"the sandbox could not start: {exc}")
    ctx.result.isolation = isolation
    from grader.public import expectations as public

    if not has_file_system_isolation(isolation):
        if public.public_only(ctx.assignment, ctx.options):
            return  # a student's self-check: nothing secret is installed
        missing = "; ".join(i for i in isolation if i.startswith("no ")) or "no landlock"
        if not ctx.options.allow_unsafe_sandbox:
            raise UnsafeSandbox(
                f"refusing to grade with the reference installed: the sandbox cannot hide the "
                f"file system ({missing}). Run on Linux >= 5.13 with Landlock enabled (see "
                f"docs/security.md), or pass --allow-unsafe-sandbox to accept the risk"
            )
        ctx.result.notes.insert(
            0,
            f"WARNING: graded without file-system isolation ({missing}): "
            "the submission could read the reference",
        )


def check_stage(ctx: GradingContext) -> None:
    submission = Submission(ctx.harvest, ctx.sandbox, ctx.regions, ctx.region_errors)
    run_checks(submission, ctx.assignment, ctx.options, ctx.result, ctx.prepared)
    boot = ctx.sandbox.boot
    if boot is not None:
        for index, reason in sorted(boot.fatal.items()):
            st = ctx.harvest.statements[index]
            ctx.result.notes.append(f"{ctx.harvest.where(st)} skipped: {reason}")
        from grader.sandbox import format_error

        for problem in boot.problems:
            st = ctx.harvest.statements[problem["index"]]
            if _missing_package(st, problem["error"]):
                continue
            ctx.result.notes.append(f"{ctx.harvest.where(st)} raised {format_error(problem['error'])}")


def _missing_package(statement, error: dict) -> bool:
    """An import of a package the grader does not install (cv2, google.colab, ...): nothing
    the student can act on. A check that needs the name fails and says so by itself."""
    return error.get("type") == "ModuleNotFoundError" and statement.source.lstrip().startswith(
        ("import ", "from ")
    )


def checks_it_would_run(assignment: Assignment, options: Options) -> list[dict]:
    """The checks an unusable submission fails (its score is then out of the full points)."""
    try:
        return collect_checks(assignment, options)
    except Exception:  # the checks cannot even be listed: the result has none
        return []


STAGES = [
    load_stage,
    harvest_stage,
    region_stage,
    file_stage,
    sandbox_stage,
    limits_stage,
    prepare_stage,
    isolation_stage,
    check_stage,
]


def grade(
    path: str | Path,
    assignment: Assignment,
    options: Options | None = None,
    loaded: LoadedSubmission | None = None,
) -> GradingResult:
    """Grade one submission with `assignment`. `loaded`: the notebook as already read while its
    edition was chosen (grader.editions.assignment.for_submission), read only once."""
    started = time.perf_counter()
    ctx = GradingContext(Path(path), assignment, options or Options(), loaded=loaded)
    ctx.result = GradingResult(submission=str(path), assignment=assignment.name, device=ctx.options.device)
    try:
        for stage in STAGES:
            with timed(ctx.result.timings, stage.__name__.removesuffix("_stage")):
                stage(ctx)
    except SubmissionError as exc:
        ctx.result.mark_unusable(str(exc), checks_it_would_run(assignment, ctx.options))
    finally:
        if ctx.sandbox is not None:
            ctx.sandbox.close()
            ctx.result.peak_memory_bytes = ctx.sandbox.peak_memory_bytes or None
        ctx.result.execution_time = time.perf_counter() - started
    return ctx.result
