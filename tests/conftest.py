"""Shared fixtures: PA2 notebooks graded in bulk by the real `grade` command.

Test modules declare the notebooks they need as module-level dicts of `make_notebook`
arguments: `NOTEBOOKS = {name: {...}}` (graded in one batch) and `HOSTILE_NOTEBOOKS` (graded in
a second batch with `--timeout 5`, parts A.1-C.1 and D.2 only: hostile code sits in the model
classes, and D.1's checks build DeepLabV3 inside the child within the student's time limit,
which a busy machine can exceed in 5 s). At the start of the session every notebook of the
collected modules is written into a temporary folder and each batch is started as one
subprocess, `python -m grader.cli DIR --out OUT`; the two batches run while the other tests
do. The fixtures `graded` and `graded_hostile` wait for their batch and give a `Graded` per
notebook name.

The grader's short training runs (checks of kind "training", about 100 s per notebook on this
CPU) are another suite's subject: these batches pass `--no-train`. Set
GRADER_TESTS_WITH_TRAINING=1 to keep them (the expectations here then also cover them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from submissions import REPO, make_notebook

PARTS = ("A.1", "B.1", "C.1", "D.1", "D.2")
HOSTILE_TIMEOUT = 5  # --timeout of the hostile batch, seconds
HOSTILE_PARTS = ("A.1", "B.1", "C.1", "D.2")
MAIN_BATCH_LIMIT = 3600  # a generous timeout (a hung batch), not a speed bound: see benchmarks
HOSTILE_BATCH_LIMIT = 1800

# Checks of the D parts share kinds; tests name them by what they check.
CHECK_KEYS = {
    "classifier[4] becomes": "head",
    "every parameter is frozen": "frozen",
    "'out' has shape": "out_shape",
    "reach the optimizer": "optimizer",
    "Loss values match": "values",
    "Loss is finite": "properties",
    "Gradients flow": "gradient",
}


def grader_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)  # the grader runs its checks with pytest too
    env["PYTHONPATH"] = str(REPO)  # grade this checkout, not an installed copy
    return env


def grader_command(*args, train=False) -> list[str]:
    """`python -m grader.cli ARGS`, with --no-train unless asked (or GRADER_TESTS_WITH_TRAINING)."""
    skip = [] if train or os.environ.get("GRADER_TESTS_WITH_TRAINING") else ["--no-train"]
    return [sys.executable, "-m", "grader.cli", *map(str, args), *skip]


def check_key(test: dict) -> str:
    for fragment, key in CHECK_KEYS.items():
        if fragment in test["name"]:
            return key
    return test["tags"][1]


@dataclass
class Graded:
    """One results file of a batch (Gradescope schema plus the `grader` block)."""

    name: str
    data: dict
    graded_parts: tuple = PARTS  # the parts the batch asked for

    @property
    def score(self) -> float:
        return self.data["score"]

    @property
    def max_score(self) -> float:
        return sum(t["max_score"] for t in self.tests)

    @property
    def tests(self) -> list[dict]:
        return self.data["tests"]

    @property
    def error(self):
        return self.data["grader"]["error"]

    @property
    def notes(self) -> list[str]:
        return self.data["grader"]["notes"]

    @property
    def execution_time(self) -> float:
        return self.data["execution_time"]

    def part_tests(self, part: str) -> list[dict]:
        return [t for t in self.tests if t["tags"][0] == part]

    def parts(self) -> dict[str, tuple[float, float]]:
        return {
            p: (sum(t["score"] for t in self.part_tests(p)), sum(t["max_score"] for t in self.part_tests(p)))
            for p in self.graded_parts
        }

    def failed(self, part: str) -> set[str]:
        return {check_key(t) for t in self.part_tests(part) if t["status"] != "passed"}

    def check(self, part: str, key: str) -> dict:
        found = [t for t in self.part_tests(part) if check_key(t) == key]
        assert len(found) == 1, f"{self.name}: {len(found)} checks {part}/{key}"
        return found[0]

    def feedback(self, part: str, key: str) -> str:
        return self.check(part, key)["output"]

    def summary(self) -> str:
        lines = [f"{self.name}: {self.score:g}/{self.max_score:g} error={self.error!r}"]
        lines += [
            f"  {t['tags'][0]} {check_key(t)} {t['status']}: {t['output'][:300]!r}"
            for t in self.tests
            if t["status"] != "passed"
        ]
        lines += [f"  note: {n[:200]}" for n in self.notes]
        return "\n".join(lines)

    def expect(self, lost: dict[str, set[str]] | None = None):
        """Exactly the checks in `lost` ({part: {key, ...}}) fail, each scoring 0, and every
        other check of every part has full marks."""
        lost = lost or {}
        assert self.error is None, self.summary()
        assert {t["tags"][0] for t in self.tests} == set(self.graded_parts), self.summary()
        for t in self.tests:
            # a check that broke is the grader's failure, whatever the submission did
            assert "please report this" not in t["output"], (self.name, t["output"])
        for part in self.graded_parts:
            assert self.failed(part) == set(lost.get(part, ())), (
                f"{part}: failed {sorted(self.failed(part))}, expected "
                f"{sorted(lost.get(part, ()))}\n{self.summary()}"
            )
        for t in self.tests:
            want = 0 if t["status"] == "failed" else t["max_score"]
            assert t["score"] == want, self.summary()
        got, out_of = self.score, self.max_score
        expected = out_of - sum(t["max_score"] for t in self.tests if t["status"] == "failed")
        assert got == expected, self.summary()


@dataclass
class Batch:
    kind: str
    folder: Path
    out: Path
    process: subprocess.Popen
    started: float
    limit: float
    names: list[str] = field(default_factory=list)
    parts: tuple = PARTS
    finished: float | None = None  # when the batch process exited (not when a test first waited)
    returncode: int | None = None

    def __post_init__(self):
        # A watcher notes the exit time as it happens: a test may ask for the batch minutes
        # after it finished (the files run in order), and its wall time must not include that.
        def watch():
            self.process.wait()
            self.finished = time.monotonic()

        threading.Thread(target=watch, daemon=True, name=f"{self.kind}-batch-watch").start()

    def wait(self):
        if self.returncode is None:
            try:
                self.returncode = self.process.wait(
                    timeout=max(1.0, self.started + self.limit - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"the {self.kind} batch did not finish within {self.limit} s")
            while self.finished is None:  # the watcher notes the exit time an instant later
                time.sleep(0.01)
        return self

    @property
    def wall_time(self) -> float:
        return self.wait().finished - self.started

    @property
    def stdout(self) -> str:
        return (self.out / "_stdout.txt").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.out / "_stderr.txt").read_text(errors="replace")

    def results(self) -> dict[str, Graded]:
        self.wait()
        found = {}
        for name in self.names:
            path = self.out / f"{name}.json"
            assert path.is_file(), (
                f"no results file for {name}; batch exit {self.returncode}\n{self.stderr[-3000:]}"
            )
            found[name] = Graded(name, json.loads(path.read_text()), self.parts)
        return found


def _start_batch(kind, specs, root: Path, extra_args=(), limit=MAIN_BATCH_LIMIT, parts=PARTS) -> Batch:
    folder = root / f"{kind}-notebooks"
    out = root / f"{kind}-results"
    folder.mkdir()
    out.mkdir()
    for name, spec in specs.items():
        make_notebook(folder, name, **spec)
    stdout = open(out / "_stdout.txt", "wb")
    stderr = open(out / "_stderr.txt", "wb")
    if parts != PARTS:
        extra_args = [*extra_args, *(a for p in parts for a in ("--part", p))]
    process = subprocess.Popen(
        grader_command(folder, "--out", out, *extra_args),
        cwd=REPO,
        env=grader_env(),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )
    stdout.close()
    stderr.close()
    return Batch(kind, folder, out, process, time.monotonic(), limit, sorted(specs), parts=parts)


def _collect(items, attribute) -> dict:
    specs: dict = {}
    for module in dict.fromkeys(getattr(item, "module", None) for item in items):
        for name, spec in (getattr(module, attribute, None) or {}).items():
            # A module may declare another's notebook again (to run alone), never differently.
            assert specs.get(name, spec) == spec, f"notebook name {name} declared twice"
            specs[name] = spec
    return specs


@pytest.fixture(scope="session", autouse=True)
def _batches(request, tmp_path_factory):
    """Start both batches at the beginning of the session, so they grade while other tests
    run; the fixtures below wait for them."""
    # GRADER_TESTS_OUT=DIR keeps the notebooks and results there, for a look afterwards.
    keep = os.environ.get("GRADER_TESTS_OUT")
    root = Path(keep) if keep else tmp_path_factory.mktemp("batches")
    if keep:
        import shutil

        root.mkdir(parents=True, exist_ok=True)
        for folder in [*root.glob("*-notebooks"), *root.glob("*-results")]:
            shutil.rmtree(folder)
    items = request.session.items
    batches = {}
    main = _collect(items, "NOTEBOOKS")
    if main:
        batches["main"] = _start_batch("main", main, root)
    hostile = _collect(items, "HOSTILE_NOTEBOOKS")
    if hostile:
        batches["hostile"] = _start_batch(
            "hostile", hostile, root, ("--timeout", HOSTILE_TIMEOUT), HOSTILE_BATCH_LIMIT, HOSTILE_PARTS
        )
    yield batches
    for batch in batches.values():
        if batch.process.poll() is None:
            batch.process.kill()
            batch.process.wait()


@pytest.fixture(scope="session")
def main_batch(_batches) -> Batch:
    return _batches["main"].wait()


@pytest.fixture(scope="session")
def graded(main_batch) -> dict[str, Graded]:
    return main_batch.results()


@pytest.fixture(scope="session")
def hostile_batch(_batches) -> Batch:
    return _batches["hostile"].wait()


@pytest.fixture(scope="session")
def graded_hostile(hostile_batch) -> dict[str, Graded]:
    return hostile_batch.results()
