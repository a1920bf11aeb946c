"""`check()`: a student's self-check from inside the running notebook.

    from grader import check
    check()          # every public check
    check("A.1")     # one part, by its id (several may be given)

It judges the objects defined in the kernel right now (the classes and functions of the cells
that have been run), with the same public checks, on the same stored data, and prints the same
table and feedback as `grade NOTEBOOK`. Nothing is sent to another process: an in-process
proxy calls the sandbox child's request handlers (grader.sandbox.child.Child, its `op_*` methods)
directly on the kernel's namespace, so the checks' code is shared with the real grading.
Requests and answers still go through grader.sandbox.wire, so a check sees copies, as in the sandbox.

Module-level regions (e.g. a driver cell) are read from the kernel's input history (`In`),
the latest run of a matching cell first, or from the notebook file with
`check(notebook="NOTEBOOK")` (the assignment names the file students hand in).

No time limits apply (it is the student's own kernel: interrupt it to stop), the kernel's
random state is restored afterwards, and the kernel's own objects are not modified (checks
build fresh ones).
"""

from __future__ import annotations

import ast
import re
import sys
import time
from types import SimpleNamespace

from grader.sandbox.child import Child, _compile, _source_of, describe_exception, not_defined_text
from grader.errors import StudentCodeError
from grader.engine.load import Cell
from grader.engine.proxy import Submission
from grader.sandbox import Limits

last_result = None  # the GradingResult of the latest check(), for scripts and tests


def check(
    *parts: str,
    namespace: dict | None = None,
    notebook: str | None = None,
    assignment: str | None = None,
    folder: str | None = None,
    console=None,
) -> None:
    """Run the public checks on what this kernel defines and print the feedback. Parts: the
    assignment's part ids, e.g. "A.1" (default: all). An edition that grades files besides
    the notebook (W2022's train.py and utils/loss.py) reads them from `folder`, by default
    the current folder and everything below it (in Colab: the cloned tree you `%cd` into).
    The result is kept in grader.student.selfcheck.last_result."""
    global last_result
    if namespace is None:
        namespace = sys._getframe(1).f_globals  # the notebook's (the caller's) globals
    last_result = run(parts, namespace, notebook=notebook, assignment=assignment, folder=folder)
    from grader.report.writers import terminal

    terminal(last_result, console=console)


def run(
    parts=(),
    namespace: dict | None = None,
    notebook: str | None = None,
    assignment: str | None = None,
    folder: str | None = None,
):
    """check() without printing: returns the GradingResult."""
    from grader.engine.checkrun import run_checks
    from grader.errors import SubmissionError, UsageError
    from grader.engine.options import Options
    from grader.engine.regions import RegionNotFound, extract_region
    from grader.report.results import GradingResult

    started = time.perf_counter()
    namespace = namespace if namespace is not None else sys.modules["__main__"].__dict__
    result = GradingResult(submission=notebook or "this kernel", assignment=assignment or "?", device="cpu")
    # Student code run by the checks may seed or draw random numbers, or change torch's
    # thread count: the kernel gets its own state back.
    saved = _kernel_state()
    try:
        spec, loaded = _edition(assignment, notebook)
        result.assignment = spec.name
        cells, source = history_cells(namespace, notebook, loaded)
        regions, region_errors = {}, {}
        for name, region in spec.regions.items():
            try:
                regions[name] = extract_region(cells, region)
            except RegionNotFound as exc:
                region_errors[name] = f"{exc} ({source}): {_region_hint(spec.notebook)}"
        _file_regions(spec, folder, regions, region_errors, result.notes)
        submission = KernelSubmission(namespace, cells, regions, region_errors)
        options = Options(
            device="cpu",
            public_only=True,
            parts=tuple(parts),
            pytest_args=(
                "-p",
                "no:faulthandler",
                "-p",
                "no:threadexception",
                "--capture=sys",
            ),
        )
        run_checks(submission, spec, options, result)
    except (SubmissionError, UsageError) as exc:
        result.error = str(exc)
    finally:
        _restore_kernel_state(saved)
        result.execution_time = time.perf_counter() - started
    return result


def _edition(name: str | None, notebook: str | None):
    """The edition to check against: named, the only one installed (a student's wheel), or
    detected from the notebook file; a kernel alone does not say which edition it is. With
    it, the notebook file as detection loaded it (None: not loaded), so it is read once."""
    from grader.editions.assignment import available, for_submission, load_assignment
    from grader.errors import UsageError

    if name is None and notebook is not None and len(available()) > 1:
        spec, _, loaded = for_submission(notebook)  # the one rule (grader.editions.assignment)
        return spec, loaded
    if name is None and len(available()) > 1:
        raise UsageError(
            f"several editions are installed ({', '.join(available())}): "
            "call check(assignment=...) with one, or check(notebook=...) with your notebook file"
        )
    return load_assignment(name), None


def _file_regions(spec, folder, regions: dict, region_errors: dict, notes: list) -> None:
    """The regions in the files the edition grades besides the notebook, read from `folder`
    (default: the current folder, searched below it)."""
    import os
    from pathlib import Path

    from grader.engine.files import file_regions, find_files, wanted_files

    wanted = wanted_files(spec)
    if not wanted:
        return
    where = Path(folder or os.getcwd())
    found, errors = file_regions(find_files(where, wanted), spec.file_regions, notes)
    regions.update(found)
    hint = f"looked in {where} and below: run check() there, or check(folder=...) with your files' folder"
    region_errors.update(
        {n: f"{why} ({hint})" if "not found in the" in why else why for n, why in errors.items()}
    )


def _region_hint(notebook: str | None) -> str:
    """How to let check() see a module-level cell it could not find in the kernel's history."""
    call = f"check(notebook={notebook!r})" if notebook else "check(notebook=...)"
    return f"run that cell once, or call {call} with your notebook file"


def _kernel_state() -> dict:
    import random

    import numpy as np
    import torch

    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
        "threads": torch.get_num_threads(),
    }


def _restore_kernel_state(saved: dict) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(saved["torch"])
    np.random.set_state(saved["numpy"])
    random.setstate(saved["random"])
    if torch.get_num_threads() != saved["threads"]:
        torch.set_num_threads(saved["threads"])


def history_cells(namespace: dict, notebook: str | None, loaded=None) -> tuple[tuple[Cell, ...], str]:
    """The cells to look for regions in: the notebook file's (`loaded`: already read), or the
    kernel's input history (newest first, so the latest run of a cell wins)."""
    if notebook:
        from grader.engine.load import load_submission

        return (loaded or load_submission(notebook)).cells, notebook
    history = namespace.get("In") or namespace.get("_ih") or []
    cells = [
        Cell(i - 1, src, name=f"In [{i}]")
        for i, src in enumerate(history)
        if isinstance(src, str) and src.strip()
    ]
    return tuple(reversed(cells)), "the cells run in this kernel"


class KernelSubmission(Submission):
    """The `submission` proxy of grader.engine.proxy, answered in this process: the request helpers
    (build, call, run_region, call_until_optimizer, ...) are Submission's own; only ask() and
    the name lookups differ."""

    def __init__(self, namespace: dict, cells, regions: dict, region_errors: dict):
        # No harvest and no sandbox: Submission's helpers only read the sandbox's limits
        # (timeouts, which do not apply in the kernel).
        super().__init__(None, SimpleNamespace(limits=Limits(), boot=None), regions, region_errors)
        self.namespace = namespace
        self.child = _KernelChild(namespace, cells)

    def defines(self, name: str) -> bool:
        return name in self.namespace

    def require(self, *names: str) -> None:
        for name in names:
            if not self.defines(name):
                raise StudentCodeError(self.why_missing(name))

    def why_missing(self, name: str) -> str:
        return f"`{name}` is not defined in this kernel: run the cell that defines it, then check again"

    def _boot(self):
        pass

    def use_child_for(self, hidden: bool) -> None:
        pass  # a student's own kernel runs public checks only

    def check_finished(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            self.child.objects.pop(handle, None)

    def ask(self, op: str, timeout: float | None = None, _memo: tuple | None = None, **payload):
        from grader.sandbox import format_error, wire

        handler = getattr(self.child, "op_" + op, None)
        if handler is None:
            raise ValueError(f"unknown request {op!r}")
        payload = wire.decode(wire.encode(payload))  # the handlers get copies, as in the sandbox
        try:
            answer = handler(**payload)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit from student code too
            raise StudentCodeError(format_error(describe_exception(exc))) from None
        return wire.decode(wire.encode(answer))


# Library objects built for the checks (a torchvision DeepLabV3 takes seconds): kept between
# check() calls; every request gets a deep copy, so they are never changed.
_PRISTINE: dict = {}


class _KernelChild(Child):
    """The sandbox child's request handlers, on the kernel's namespace."""

    def __init__(self, namespace: dict, cells):
        super().__init__(conn=None, statements=[])
        self.ns = namespace
        self.cells = cells
        self.pristine = _PRISTINE

    def lookup(self, name: str, source_pattern: str | None = None, wanted: str | None = None):
        if source_pattern is None:
            return super().lookup(name)
        current = self.ns.get(name)
        if (
            current is not None
            and getattr(current, "__code__", None) is not None
            and re.search(source_pattern, _source_of(current))
        ):
            return current
        # The kernel's latest `name` is another definition (the notebook defines `train`
        # twice): take the newest matching definition from the history, defined afresh.
        for cell in self.cells:
            try:
                tree = ast.parse(cell.source)
            except SyntaxError:
                continue
            lines = cell.source.splitlines(keepends=True)
            for node in reversed(tree.body):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    source = "".join(lines[first - 1 : node.end_lineno])
                    if re.search(source_pattern, source):
                        scope = dict(self.ns)
                        exec(_compile(source, cell.label, first), scope)
                        return scope[name]
        raise NameError(not_defined_text(name, wanted) + " in this kernel")
