"""One model of a grading's results; every output format is rendered from it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CheckResult:
    name: str
    part: str
    kind: str
    max_score: float
    score: float
    passed: bool
    output: str = ""
    visibility: str = "visible"
    hidden: bool = False  # a hidden check (not public: its inputs are never published)
    number: str = ""
    seconds: float = 0.0
    images: list = field(default_factory=list)  # (title, PNG bytes): for the HTML page only

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"


@dataclass
class GradingResult:
    submission: str
    assignment: str
    checks: list[CheckResult] = field(default_factory=list)
    execution_time: float = 0.0
    notes: list[str] = field(default_factory=list)  # about the whole submission (skipped cells)
    error: str | None = None  # set when the submission could not be graded at all
    device: str = "cpu"
    # The protections the sandbox put in place (grader.confine), for the instructor.
    isolation: list[str] = field(default_factory=list)
    # The secret seed of this grading's challenges (instructor side only; never shown to the
    # student: not in results.json's output).
    challenge_seed: int | None = None

    @property
    def isolation_line(self) -> str:
        return "isolation: " + (", ".join(self.isolation) if self.isolation else "none (no sandbox started)")

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.checks)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return 2
        return 0 if all(c.passed for c in self.checks) else 1

    def parts(self) -> dict[str, tuple[float, float]]:
        totals: dict[str, tuple[float, float]] = {}
        for c in self.checks:
            got, out_of = totals.get(c.part, (0.0, 0.0))
            totals[c.part] = (got + c.score, out_of + c.max_score)
        return totals
