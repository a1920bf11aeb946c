"""One model of a grading's results; every output format is rendered from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from grader.report.timings import rounded

# Student text (messages, notes, file names, exception names) goes to terminals, CSV, JUnit,
# JSON and HTML. Control characters there can move a terminal's cursor, print a fake score,
# set its title or write the clipboard (ESC, OSC, CSI, BEL, C1 codes), hide text (carriage
# return) or reorder it (bidirectional overrides): each is shown as an escape instead.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
MAX_NOTES = 30  # notes kept per result; the rest are counted in one line
MAX_NOTE_CHARS = 4000  # the self-check's list of hidden checks is one note


def visible(text) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\u202e`); newlines
    and tabs are kept."""
    text = str(text)
    return _INVISIBLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def capped_notes(notes: list) -> list[str]:
    """At most MAX_NOTES notes of at most MAX_NOTE_CHARS each, and a line saying how many were
    left out."""
    shown = [str(n) if len(str(n)) <= MAX_NOTE_CHARS else str(n)[:MAX_NOTE_CHARS] + " ..." for n in notes]
    if len(shown) > MAX_NOTES:
        left = len(shown) - (MAX_NOTES - 1)
        shown = shown[: MAX_NOTES - 1] + [f"{left} more notes not shown"]
    return shown


def points(x: float) -> str:
    """Points as people read them: editions scale checks to fractions (0.5 over 6 checks),
    so at most three decimals."""
    return f"{round(x, 3):g}"


def display_name(title: str, part: str, subject: str | None = None) -> str:
    """How a check is named in reports: "A.1 UNet: its title"."""
    prefix = f"{part} {subject}".strip() if subject else str(part)
    return f"{prefix}: {title}" if prefix else title


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
    # (title, PNG bytes or a function that makes them): for the HTML page only
    images: list = field(default_factory=list)
    nodeid: str = ""  # the pytest item that ran it (not serialised)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"

    def shown(self) -> CheckResult:
        """This result as every writer shows it (grader.report.results.visible)."""
        return replace(
            self,
            name=visible(self.name),
            part=visible(self.part),
            kind=visible(self.kind),
            output=visible(self.output),
            visibility=visible(self.visibility),
            number=visible(self.number),
            images=[(visible(title), png) for title, png in self.images],
        )


@dataclass
class GradingResult:
    submission: str
    assignment: str
    checks: list[CheckResult] = field(default_factory=list)
    execution_time: float = 0.0
    notes: list[str] = field(default_factory=list)  # about the whole submission (skipped cells)
    error: str | None = None  # set when the submission could not be graded at all
    device: str = "cpu"
    # The protections the sandbox put in place (grader.sandbox.confine), for the instructor.
    isolation: list[str] = field(default_factory=list)
    # The secret seed of this grading's challenges (instructor side only; never shown to the
    # student: not in results.json's output).
    challenge_seed: int | None = None
    # The grading's time budget in seconds (grader.engine.budget), for the instructor.
    budget_seconds: float | None = None
    # The largest resident memory of the sandbox process that ran the submission's code, in
    # bytes (None: no sandbox started, or not measurable here).
    peak_memory_bytes: int | None = None
    # Seconds per stage of the pipeline ({"stages": {"load": ..., ...}}, grader.report.timings); each
    # check's own time is in its `seconds`.
    timings: dict = field(default_factory=dict)

    def shown(self) -> GradingResult:
        """This result as every writer shows it: student text with its control characters
        made visible (grader.report.results.visible), notes capped (capped_notes). Writers render
        this, never the raw result."""
        return replace(
            self,
            submission=visible(self.submission),
            assignment=visible(self.assignment),
            checks=[c.shown() for c in self.checks],
            notes=[visible(n) for n in capped_notes(self.notes)],
            error=None if self.error is None else visible(self.error),
            device=visible(self.device),
            isolation=[visible(i) for i in self.isolation],
        )

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

    @property
    def status(self) -> str:
        """ "error" (could not be graded), "complete" (every check passed) or "graded"."""
        if self.error is not None:
            return "error"
        return "complete" if all(c.passed for c in self.checks) else "graded"

    def parts(self) -> dict[str, tuple[float, float]]:
        totals: dict[str, tuple[float, float]] = {}
        for c in self.checks:
            got, out_of = totals.get(c.part, (0.0, 0.0))
            totals[c.part] = (got + c.score, out_of + c.max_score)
        return totals

    def mark_unusable(self, reason: str, catalog: list[dict]) -> None:
        """The submission cannot be graded at all: record why, and fail every check it would
        have been graded on (`catalog`: grader.engine.checkrun.collect_checks), so its score is out
        of the assignment's full points and pass rates count it."""
        self.error = reason
        self.checks = [
            CheckResult(
                name=c["name"],
                part=c["part"],
                kind=c["kind"],
                max_score=float(c["max_score"]),
                score=0.0,
                passed=False,
                output=NOT_GRADED,
                visibility=c.get("visibility", "visible"),
                number=str(c.get("number", "")),
            )
            for c in catalog
        ]

    @property
    def overview(self) -> str:
        """What concerns the whole submission (results.json's top-level `output`)."""
        lines = [f"Cannot grade: {self.error}"] if self.error else []
        lines += [f"note: {n}" for n in self.notes]
        if self.isolation:
            lines.append(self.isolation_line)
        return "\n".join(lines)

    # -- as data: what a batch stores per submission and a worker sends its scheduler ---------

    def to_dict(self) -> dict:
        """Gradescope's results.json schema (one entry per check, everything shown) plus a
        `grader` block holding the rest, so that from_dict gives the same result back
        (pictures aside; times rounded to milliseconds). grader.report.writers derives the files students
        see from this. Student text is made visible and notes capped (shown())."""
        self = self.shown()
        tests = [
            {
                "name": c.name,
                "score": c.score,
                "max_score": c.max_score,
                "status": c.status,
                "output": c.output,
                "visibility": c.visibility,
                "number": c.number,
                "tags": [c.part, c.kind],
            }
            for c in self.checks
        ]
        return {
            "score": self.score,
            "execution_time": round(self.execution_time, 3),
            "output": self.overview,
            "tests": tests,
            "grader": {
                "submission": self.submission,
                "assignment": self.assignment,
                "error": self.error,
                "notes": self.notes,
                "device": self.device,
                "isolation": self.isolation,
                "challenge_seed": self.challenge_seed,
                "budget_seconds": self.budget_seconds,
                "peak_memory_bytes": self.peak_memory_bytes,
                "hidden": [c.number for c in self.checks if c.hidden],
                "timings": rounded(
                    dict(self.timings, checks={c.number: c.seconds for c in self.checks if c.seconds})
                ),
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> GradingResult:
        """The result to_dict wrote (a batch's results file; keys it does not know are left)."""
        meta = data.get("grader") or {}
        hidden = set(meta.get("hidden") or [])
        timings = dict(meta.get("timings") or {})
        seconds = timings.pop("checks", None) or {}
        checks = []
        for t in data.get("tests") or []:
            tags = list(t.get("tags") or []) + ["", ""]
            number = str(t.get("number", ""))
            checks.append(
                CheckResult(
                    name=str(t["name"]),
                    part=str(tags[0]),
                    kind=str(tags[1]),
                    max_score=float(t["max_score"]),
                    score=float(t["score"]),
                    passed=t.get("status") == "passed",
                    output=str(t.get("output", "")),
                    visibility=str(t.get("visibility", "visible")),
                    hidden=number in hidden,
                    number=number,
                    seconds=float(seconds.get(number, 0.0)),
                )
            )
        loaded = cls(
            submission=str(meta.get("submission", "")),
            assignment=str(meta.get("assignment", "")),
            checks=checks,
            execution_time=float(data.get("execution_time") or 0.0),
            notes=[str(n) for n in meta.get("notes") or []],
            error=meta.get("error"),
            device=str(meta.get("device", "cpu")),
            isolation=list(meta.get("isolation") or []),
            challenge_seed=meta.get("challenge_seed"),
            budget_seconds=meta.get("budget_seconds"),
            peak_memory_bytes=meta.get("peak_memory_bytes"),
            timings=timings,
        )
        return loaded.shown()


# The message of each check of a submission that could not be graded at all.
NOT_GRADED = "Not graded: the submission could not be graded (the reason is at the top)."
