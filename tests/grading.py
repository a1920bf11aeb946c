"""Running `grade` in a subprocess as the tests do, and reading back the results file it writes.

    done = run_grader(notebook, "--part", "A.1", "--json", out)   # --no-train added
    done = run_grader("report", results, "--html", page, train=None)   # a verb that does not grade
    subprocess.Popen(grader_command(folder, "--out", out), cwd=REPO, env=grader_env())

Every `grade` the tests start grades this checkout (PYTHONPATH), not an installed copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from submissions import REPO

# The parts of W2021 (the session's main batch grades them all).
PARTS = ("A.1", "B.1", "C.1", "D.1", "D.2")

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


def grader_env(pythonpath: str | Path | None = REPO, **extra: str) -> dict[str, str]:
    """This process's environment for a child process: PYTHONPATH is `pythonpath` (this checkout
    unless told otherwise; None: no PYTHONPATH at all, as a student's own installation has),
    PYTEST_ADDOPTS is dropped (the grader runs its checks with pytest too), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env | extra


def grader_command(*args, train: bool | None = False) -> list[str]:
    """`python -m grader.cli ARGS`. A grading skips the training checks (--no-train: they are
    another suite's subject, about 100 s a notebook here) unless `train` is true or
    GRADER_TESTS_WITH_TRAINING is set; `train=None` adds nothing (`report`, `merge`, `release`
    and the other verbs that do not grade)."""
    words = [str(a) for a in args]
    if train is False and "--no-train" not in words and not os.environ.get("GRADER_TESTS_WITH_TRAINING"):
        words.append("--no-train")
    return [sys.executable, "-m", "grader.cli", *words]


def run_grader(*args, train: bool | None = False, **options) -> subprocess.CompletedProcess:
    """`grade ARGS` (grader_command) run to its end: from the checkout, in grader_env(), its
    output captured as text, within 600 s, unless `options` (subprocess.run's) say otherwise."""
    defaults = {"cwd": REPO, "env": grader_env(), "capture_output": True, "text": True, "timeout": 600}
    return subprocess.run(grader_command(*args, train=train), **(defaults | options))


def check_key(test: dict) -> str:
    for fragment, key in CHECK_KEYS.items():
        if fragment in test["name"]:
            return key
    return test["tags"][1]


@dataclass
class Graded:
    """One results file of a grading (Gradescope schema plus the `grader` block)."""

    name: str
    data: dict
    graded_parts: tuple = PARTS  # the parts the grading asked for

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
