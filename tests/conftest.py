"""The session's batches: PA2 notebooks graded in bulk by the real `grade` command.

Test modules declare the notebooks they need as module-level dicts of `make_notebook`
arguments (tests/submissions.py): `NOTEBOOKS = {name: {...}}` (graded in one batch) and
`HOSTILE_NOTEBOOKS` (graded in a second batch with `--timeout 5`, parts A.1-C.1 and D.2 only:
hostile code sits in the model classes, and D.1's checks build DeepLabV3 inside the child
within the student's time limit, which a busy machine can exceed in 5 s). A test reads them
through the fixtures `graded` and `graded_hostile` (a `Graded` per notebook name,
tests/grading.py), or `main_batch` and `hostile_batch` (the folders, the exit status, the output);
each waits for its batch.

When the batches start: the fixture `batches` writes every notebook that the session's
collected modules declare into a temporary folder and starts each batch as one subprocess,
`python -m grader.cli DIR --out OUT` (tests/batches.py), then returns at once. Every slow
(end-to-end) module requests it for all its tests,

    pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

so the batches start with the first slow test, whichever file runs first, and grade while the
other slow tests run; `make test-fast` runs no slow test and starts none. A module that must
not run beside them waits for them (`batches`, then `Batch.wait()`).

The grader's short training runs (checks of kind "training", about 100 s per notebook on this
CPU) are another suite's subject: these batches pass `--no-train`. Set
GRADER_TESTS_WITH_TRAINING=1 to keep them (the expectations here then also cover them).
"""

from __future__ import annotations

import pytest

from batches import (
    HOSTILE_BATCH_LIMIT,
    HOSTILE_PARTS,
    HOSTILE_TIMEOUT,
    Batch,
    declared_notebooks,
    output_root,
    start_batch,
)
from grading import Graded


@pytest.fixture(scope="session")
def batches(request, tmp_path_factory) -> dict[str, Batch]:
    """Start the main and the hostile batch ({"main": Batch, "hostile": Batch}, each only if
    some collected module declares its notebooks) and return without waiting; at the end of
    the session, stop what still runs."""
    root = output_root(tmp_path_factory)
    items = request.session.items
    started = {}
    main = declared_notebooks(items, "NOTEBOOKS")
    if main:
        started["main"] = start_batch("main", main, root)
    hostile = declared_notebooks(items, "HOSTILE_NOTEBOOKS")
    if hostile:
        started["hostile"] = start_batch(
            "hostile", hostile, root, ("--timeout", HOSTILE_TIMEOUT), HOSTILE_BATCH_LIMIT, HOSTILE_PARTS
        )
    yield started
    for batch in started.values():
        if batch.process.poll() is None:
            batch.process.kill()
            batch.process.wait()


def finished(batches: dict[str, Batch], kind: str, declared_in: str) -> Batch:
    if kind not in batches:
        pytest.fail(f"no collected test module declares {declared_in}: there is no {kind} batch")
    return batches[kind].wait()


@pytest.fixture(scope="session")
def main_batch(batches) -> Batch:
    return finished(batches, "main", "NOTEBOOKS")


@pytest.fixture(scope="session")
def graded(main_batch) -> dict[str, Graded]:
    return main_batch.results()


@pytest.fixture(scope="session")
def hostile_batch(batches) -> Batch:
    return finished(batches, "hostile", "HOSTILE_NOTEBOOKS")


@pytest.fixture(scope="session")
def graded_hostile(hostile_batch) -> dict[str, Graded]:
    return hostile_batch.results()
