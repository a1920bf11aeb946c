"""The checks stage: run the assignment's checks (pytest) on a submission, or list them
without grading. The pytest command line for both lives here, so a listing selects exactly
the checks a grading runs."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import time
from dataclasses import dataclass

from grader.public import expectations as public
from grader.public import store
from grader.editions.assignment import Assignment
from grader.engine.options import Options
from grader.report.results import GradingResult


def pytest_args(assignment: Assignment, options: Options, targets: list | None = None) -> list[str]:
    """How the checks are run. `targets`: the files or folders to collect (default: the
    whole assignment folder, or only its public checks when those are all that can run: see
    grader.public.expectations)."""
    # The common folder of the family's checks and an edition's own (conftest.py files apply
    # below their own folder only).
    folder = str(assignment.folder if len(assignment.check_folders) == 1 else assignment.folder.parent)
    if targets is None:
        targets = public.check_targets(assignment, public.public_only(assignment, options))
    return [
        *map(str, targets),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        # Its collection after the checks (a full gc.collect, for warnings about exceptions
        # in finalizers) is nothing a grading reports.
        "-p",
        "no:unraisableexception",
        "--import-mode=importlib",
        "--rootdir",
        folder,
        "--confcutdir",
        folder,
        "-o",
        "addopts=",
        "-o",
        "python_files=test_*.py",
        "--no-header",
        "-W",
        "ignore",
        *options.pytest_args,
    ]


def _pytest_quietly(args: list[str], plugins: list, assignment: Assignment | None = None) -> None:
    """pytest prints its own progress; the grader prints its own report instead."""
    import pytest

    if assignment is not None:
        _forget_other_families_checks(assignment)
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main(args, plugins=plugins)


def _forget_other_families_checks(assignment: Assignment) -> None:
    """pytest (--import-mode=importlib) names a check module by its path under the rootdir,
    the family's folder, and reuses a module of that name if one is loaded: after one
    family's `public/test_x.py` or `conftest.py`, another family's file of the same name
    would run the first one's checks. One process grades several families (a batch worker),
    so the check modules of other families are dropped before these run. Helpers imported
    with import_sibling have names of their own and stay."""
    from grader.editions.assignment import data_root

    root = data_root("assignments")
    if root is None:
        return
    root = os.path.join(os.path.realpath(root), "")
    keep = tuple(os.path.join(os.path.realpath(f), "") for f in assignment.check_folders)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or name.startswith("_grader_sibling_"):
            continue
        path = _real_path(file)
        if path.startswith(root) and not path.startswith(keep):
            del sys.modules[name]


def _real_path(file: str) -> str:
    """A module file's path with its folder's symbolic links resolved. By folder, and cached: a
    process holds thousands of modules (torch's) in a few hundred folders, and resolving every
    file took a quarter of a second, a third of a warm check()."""
    folder, name = os.path.split(file)
    return os.path.join(_real_folder(folder), name)


@functools.lru_cache(maxsize=None)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


@dataclass
class Prepared:
    """What a grading's checks get from the trusted side: the reference (None: public checks
    only), the secret seed of its challenges, and the expectations (grader.public.expectations)."""

    reference: object
    seed: int | None
    expectations: public.Expectations


def prepare_checks(assignment: Assignment, options: Options, eager: bool = False) -> Prepared:
    """Load the reference and draw the seed. `eager`: compute the expectations now (the
    stored cases and the secret challenges) unless only training checks will run; else the
    first check that asks computes them."""
    # the one rule for public-only gradings
    reference = None if public.public_only(assignment, options) else assignment.load_reference()
    seed = None
    if reference is not None:
        seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(6), "big")
    expectations = public.Expectations(assignment, reference, challenge_seed=seed)
    if eager and not (options.kinds and set(options.kinds) <= {"training"}):
        started = time.perf_counter()
        try:
            expectations.cases()
        except Exception:  # the check that asks for them fails with the reason, as before
            pass
        expectations.seconds = time.perf_counter() - started
    return Prepared(reference, seed, expectations)


def run_checks(
    submission,
    assignment: Assignment,
    options: Options,
    result: GradingResult,
    prepared: Prepared | None = None,
) -> None:
    """Run the assignment's checks on `submission` (a proxy: grader.engine.proxy, or the in-process
    one of grader.student.selfcheck) and put their results into `result`. Without the reference
    solution only the public checks run, and the result says so. `prepared`: prepare_checks's
    (made now when not given)."""
    from grader.engine.plugin import GradingPlugin

    prepared = prepared or prepare_checks(assignment, options)
    reference, seed, expectations = prepared.reference, prepared.seed, prepared.expectations
    public_only = reference is None
    if not public_only:
        result.challenge_seed = seed
    plugin = GradingPlugin(
        submission,
        reference,
        assignment,
        options.device,
        options.selects,
        expected=expectations.cases,
        secret=seed,
    )
    _pytest_quietly(
        pytest_args(assignment, options, public.check_targets(assignment, public_only)), [plugin], assignment
    )
    if plugin.collection_errors:
        raise RuntimeError(
            "the assignment's checks could not be loaded:\n" + "\n".join(plugin.collection_errors)
        )
    result.checks = plugin.ordered_results()
    spent = expectations.seconds or plugin.expectations_seconds
    if spent:
        result.timings.setdefault("stages", {})["expectations"] = spent
    result.notes.extend(expectations.notes)
    not_graded = assignment.data.get("not_graded")
    if not_graded:  # parts of the handout this grader has no checks for (yet)
        result.notes.append(f"Not graded here (grade them by hand): {'; '.join(map(str, not_graded))}.")
    if public_only:
        result.notes.insert(0, public.public_only_note(expectations, plugin.results))


def collect_checks(assignment: Assignment, options: Options) -> list[dict]:
    """The checks a grading with these options runs, in order, from pytest's collection alone
    (no submission needed): name, part, kind, points as max_score, visibility, number.

    This is where an unusable submission's max_score comes from in a batch: the checks it
    would have been graded on. It follows --part, --no-train and PYTEST_ADDOPTS exactly like
    a grading does. (Imports pytest: the batch calls it in a worker.)"""
    import pytest

    from grader.engine.plugin import GradingPlugin, check_name

    listed: list[dict] = []

    class Catalog:
        @pytest.hookimpl(trylast=True)  # after GradingPlugin has selected and ordered them
        def pytest_collection_modifyitems(self, items):
            for item in items:
                marks = plugin.marks(item)
                listed.append(
                    {
                        "name": check_name(item, marks),
                        "part": str(marks.get("part", "")),
                        "kind": str(marks.get("kind", "")),
                        "max_score": float(marks.get("points", 1)),
                        "visibility": str(marks.get("visibility", "visible")),
                        "number": str(len(listed) + 1),
                    }
                )

    plugin = GradingPlugin(None, None, assignment, options.device, options.selects)
    _pytest_quietly([*pytest_args(assignment, options), "--collect-only"], [plugin, Catalog()], assignment)
    return listed if not plugin.collection_errors else []


def list_checks(assignment: Assignment, public_checks: bool) -> list[dict]:
    """Name, part, kind and points of the public or the hidden checks, in report order
    (collected by pytest, nothing run): what `grade build-public` publishes."""
    from grader.engine.plugin import GradingPlugin, check_name, check_title, grade_marks

    class Collector:
        items: list = []

        def pytest_collection_finish(self, session):
            self.items = list(session.items)

    collector = Collector()
    plugin = GradingPlugin(None, None, assignment, "cpu", all_tasks=True)
    folder = store.public_folder(assignment)
    if public_checks:
        if not store.has_public_checks(assignment):
            return []
        targets, extra = [folder], []
    else:
        targets, extra = assignment.check_folders, [f"--ignore={folder}"]
    args = pytest_args(assignment, Options(), targets) + ["--collect-only", *extra]
    _pytest_quietly(args, [plugin, collector], assignment)
    if plugin.collection_errors:
        raise RuntimeError(
            "the assignment's checks could not be collected:\n" + "\n".join(plugin.collection_errors)
        )
    out = []
    for item in collector.items:
        marks = grade_marks(item)
        points = float(marks.get("points", 1))
        out.append(
            {
                "name": check_name(item),
                "title": check_title(item),
                "subject": marks.get("subject"),
                "part": str(marks.get("part", "")),
                "kind": str(marks.get("kind", "")),
                "points": int(points) if points.is_integer() else points,
            }
        )
    return out
