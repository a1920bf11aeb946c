"""The session's two batches (tests/conftest.py starts them and hands them to the tests): the
notebooks the collected test modules declare, written into a folder and graded by one
`grade DIR --out OUT` subprocess per batch while the other tests run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grading import PARTS, Graded, grader_command, grader_env
from submissions import REPO, make_notebook

HOSTILE_TIMEOUT = 5  # --timeout of the hostile batch, seconds
HOSTILE_PARTS = ("A.1", "B.1", "C.1", "D.2")
MAIN_BATCH_LIMIT = 3600  # a generous timeout (a hung batch), not a speed bound: see benchmarks
HOSTILE_BATCH_LIMIT = 1800


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


def start_batch(kind, specs, root: Path, extra_args=(), limit=MAIN_BATCH_LIMIT, parts=PARTS) -> Batch:
    """Write the notebooks of `specs` ({name: make_notebook arguments}) into ROOT/KIND-notebooks
    and start grading them into ROOT/KIND-results; returns at once."""
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


def declared_notebooks(items, attribute) -> dict:
    """Every notebook the modules of the collected `items` declare in their global `attribute`
    (NOTEBOOKS or HOSTILE_NOTEBOOKS)."""
    specs: dict = {}
    for module in dict.fromkeys(getattr(item, "module", None) for item in items):
        for name, spec in (getattr(module, attribute, None) or {}).items():
            # A module may declare another's notebook again (to run alone), never differently.
            assert specs.get(name, spec) == spec, f"notebook name {name} declared twice"
            specs[name] = spec
    return specs


def output_root(tmp_path_factory) -> Path:
    """Where the batches write: a temporary folder, or GRADER_TESTS_OUT=DIR (kept, for a look
    afterwards; the previous run's batch folders there are removed)."""
    keep = os.environ.get("GRADER_TESTS_OUT")
    if not keep:
        return tmp_path_factory.mktemp("batches")
    root = Path(keep)
    root.mkdir(parents=True, exist_ok=True)
    for folder in [*root.glob("*-notebooks"), *root.glob("*-results")]:
        shutil.rmtree(folder)
    return root
