"""The checks stage, inside pytest: run an assignment's checks, which are plain pytest tests.

An instructor writes a check as a test function with a marker and fixtures:

    @pytest.mark.grade(part="A.1", kind="shape", points=1)
    @given(batch=st.integers(1, 4))
    def test_output_shape(submission, reference, batch):
        "Output shape"
        ...

Fixtures: `submission` (the proxy on the sandboxed student code), `reference` (the reference
solution module, or None), `expected` (the assignment's stored expectations, for public checks
that must run without the reference, plus the secret challenges on the instructor's side: see
grader.public.expectations), `secret` (the grading's secret seed, None on a student's side), `assignment`,
`device`. Hypothesis runs derandomized, so a grading is the same on every run and machine.
Any exception becomes a failed check with a message (a failing student is data, not a
crash); the grader's own errors are marked as such.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from grader.errors import BudgetSpent, MissingDefinition, StudentCodeError
from grader.engine.reproduce import MARKER, place_before_reproduction
from grader.report.results import CheckResult, display_name

settings.register_profile(
    "grading",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=12,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)

MAX_MESSAGE = 1500
NOTES = pytest.StashKey[list]()
IMAGES = pytest.StashKey[list]()
MARKS = pytest.StashKey[dict]()


class Feedback:
    def __init__(self, notes: list, images: list):
        self._notes, self._images = notes, images

    def __call__(self, text: str) -> None:
        self._notes.append(text)

    def image(self, title: str, png) -> None:
        """`png`: PNG bytes, or a function that makes them, called only when a page shows the
        picture (grade --html): a matplotlib figure takes most of a second to render."""
        self._images.append((title, png))


class GradingPlugin:
    def __init__(
        self,
        submission,
        reference,
        assignment,
        device: str,
        select=None,
        expected=None,
        secret: int | None = None,
        all_tasks: bool = False,
    ):
        self._submission = submission
        self._secret = secret
        self._expected = expected  # the stored expectations, or a callable that loads them
        self._reference = reference
        self._assignment = assignment
        self._device = device
        self._select = select  # optional predicate on the merged marker kwargs
        # A family's checks as the edition reports them (its part ids and points), unless
        # every task of the family is wanted as it is (what `grade build-public` stores).
        self._all_tasks = all_tasks
        self.results: list[CheckResult] = []
        self._started: dict[str, float] = {}
        self.expectations_seconds = 0.0
        self._report_order: dict[str, int] = {}
        self.collection_errors: list[str] = []
        self._previous_profile = "default"

    # -- fixtures ---------------------------------------------------------------------
    @pytest.fixture(scope="session")
    def submission(self):
        return self._submission

    @pytest.fixture(scope="session")
    def reference(self):
        return self._reference

    @pytest.fixture(scope="session")
    def expected(self):
        """What the public checks compare with (grader.public.expectations): computed from the reference
        once, stored as data in the assignment's public/ folder."""
        if self._expected is None:
            raise RuntimeError(
                "this check needs the assignment's stored expectations "
                "(public/expected.json), and none are installed"
            )
        if callable(self._expected):
            started = time.perf_counter()
            self._expected = self._expected()
            # Stored files read, secret challenges computed: a cost of the grading, not of the
            # check that happened to ask first.
            self.expectations_seconds = time.perf_counter() - started
            self._started = {k: v + self.expectations_seconds for k, v in self._started.items()}
        return self._expected

    @pytest.fixture(scope="session")
    def secret(self):
        """This grading's secret seed (instructor side; None on a student's): for inputs the
        child cannot know in advance, e.g. held-out data a trained model is judged on."""
        return self._secret

    @pytest.fixture(scope="session")
    def assignment(self):
        return self._assignment

    @pytest.fixture(scope="session")
    def device(self):
        return self._device

    @pytest.fixture
    def feedback(self, request):
        """feedback("...") tells the student something even when the check passes;
        feedback.image(title, png) adds a picture to the HTML page (PNG bytes, or a function
        that makes them)."""
        return Feedback(request.node.stash.setdefault(NOTES, []), request.node.stash.setdefault(IMAGES, []))

    # -- hooks ------------------------------------------------------------------------
    def pytest_configure(self, config):
        config.addinivalue_line("markers", "grade(part, kind, points, visibility): a graded check")
        # Hypothesis's profile is global: a self-check inside a student's kernel gives back the
        # one the student had (their own @given tests keep their settings).
        self._previous_profile = settings.get_current_profile_name()
        settings.load_profile("grading")

    def pytest_unconfigure(self, config):
        settings.load_profile(self._previous_profile)

    def marks(self, item) -> dict | None:
        """The check's `grade` marks for this grading; None: the edition has not its task."""
        if MARKS not in item.stash:
            raw = grade_marks(item)
            use_raw = self._all_tasks or self._assignment is None
            item.stash[MARKS] = raw if use_raw else self._assignment.edition_marks(raw)
        return item.stash[MARKS]

    def pytest_collection_modifyitems(self, items):
        kept = [
            item
            for item in items
            if self.marks(item) is not None and (self._select is None or self._select(self.marks(item)))
        ]
        # Report part by part, in the edition's order; file order within a part. Listing the
        # whole family (the stored check lists every edition shares) goes by task name.
        if self._all_tasks:
            kept.sort(key=lambda item: str(self.marks(item).get("part", "")))
        else:
            order = {part.id: i for i, part in enumerate(getattr(self._assignment, "parts", []))}
            kept.sort(key=lambda item: order.get(self.marks(item).get("part"), len(order)))
        self._report_order = {item.nodeid: i for i, item in enumerate(kept)}
        # Run the public checks first, then the hidden ones in a child process of their own
        # (pytest_runtest_setup): a child that records what it is asked cannot quote a hidden
        # check's inputs in a visible check's message. Results are reported in `kept`'s order.
        if self._submission is not None:
            kept.sort(key=lambda item: not _is_public_check(item))
        items[:] = kept

    def ordered_results(self) -> list[CheckResult]:
        """The results in report order (part by part), numbered 1, 2, ..."""
        ordered = sorted(
            self.results, key=lambda r: self._report_order.get(r.nodeid, len(self._report_order))
        )
        for number, result in enumerate(ordered, 1):
            result.number = str(number)
        return ordered

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {report.longreprtext[-2000:]}")

    def pytest_runtest_setup(self, item):
        self._started[item.nodeid] = time.perf_counter()
        self._submission.current_check = item.nodeid
        hidden = not _is_public_check(item)
        spent = self._submission.budget_spent()
        if spent:
            raise BudgetSpent(spent)
        self._submission.use_child_for(hidden=hidden)
        # On the instructor's side a hidden check's hypothesis inputs come from the grading's
        # secret seed, not from the check's source: they are not the same on every run.
        function = getattr(item, "function", None)
        if hidden and self._secret is not None and getattr(function, "is_hypothesis_test", False):
            digest = hashlib.blake2b(f"{self._secret}:{item.nodeid}".encode(), digest_size=8).digest()
            function._hypothesis_internal_use_seed = int.from_bytes(digest, "big")

    def pytest_runtest_teardown(self, item):
        finished = getattr(self._submission, "check_finished", None)  # a proxy may have none
        if finished is not None:
            finished()
        function = getattr(item, "function", None)
        if getattr(function, "is_hypothesis_test", False):
            function._hypothesis_internal_use_seed = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            marks = self.marks(item)
            passed = report.passed
            message = "" if passed else failure_message(call.excinfo, set(item.fixturenames))
            notes = item.stash.get(NOTES, [])
            message = "\n".join(notes + ([message] if message else []))
            points = float(marks.get("points", 1))
            self.results.append(
                CheckResult(
                    name=check_name(item, marks),
                    part=str(marks.get("part", "")),
                    kind=str(marks.get("kind", "")),
                    max_score=points,
                    score=points if passed else 0.0,
                    passed=passed,
                    output=message,
                    visibility=str(marks.get("visibility", "visible")),
                    hidden=not _is_public_check(item),
                    number=str(len(self.results) + 1),
                    nodeid=item.nodeid,
                    seconds=time.perf_counter() - self._started.get(item.nodeid, time.perf_counter()),
                    images=list(item.stash.get(IMAGES, [])),
                )
            )


def _is_public_check(item) -> bool:
    """Public checks live in the assignment's public/ folder (grader.public.expectations)."""
    from grader.public.store import PUBLIC_DIR

    return Path(str(item.path)).parent.name == PUBLIC_DIR


def grade_marks(item) -> dict:
    """The `grade` markers of a test merged: a parametrize mark's part and the function's
    kind and points combine; the closest marker wins."""
    merged: dict = {}
    for mark in reversed(list(item.iter_markers("grade"))):
        merged.update(mark.kwargs)
    return merged


def check_title(item) -> str:
    """The check's own title: its docstring's first line, or its function's name."""
    doc = (item.function.__doc__ or "").strip().splitlines()
    return doc[0] if doc else item.originalname.removeprefix("test_").replace("_", " ")


def check_name(item, marks: dict | None = None) -> str:
    marks = grade_marks(item) if marks is None else marks
    return display_name(check_title(item), marks.get("part", ""), marks.get("subject"))


def failure_message(excinfo, fixtures: set[str] = frozenset()) -> str:
    if excinfo is None:
        return "failed"
    exc = excinfo.value
    # Hypothesis raises a group when it finds several distinct failures: report the first.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, StudentCodeError):
        text = str(exc)
    elif isinstance(exc, AssertionError):
        text = _assertion_text(str(exc))
    elif isinstance(exc, pytest.skip.Exception):
        text = f"skipped: {exc}"
    else:
        text = f"the check itself failed ({type(exc).__name__}: {exc}); please report this"
    text = shorten(text)
    notes = getattr(exc, "__notes__", []) or getattr(excinfo.value, "__notes__", [])
    drawn = failing_input(notes, fixtures)
    if drawn and not isinstance(exc, MissingDefinition):
        # An explicit example (@example) is not shrunk: it is the input, not the smallest one.
        explicit = any(note.startswith(_EXPLICIT) for note in notes)
        heading = "Failing input: " if explicit else "Smallest failing input: "
        text = place_before_reproduction(text, heading + drawn[:300])
    return text


def shorten(text: str) -> str:
    """At most about MAX_MESSAGE characters; the reproduction code is kept whole (a cut
    snippet cannot be pasted), the explanation before it is cut instead."""
    if len(text) <= MAX_MESSAGE:
        return text
    head, marker, code = text.partition(MARKER)
    room = max(300, MAX_MESSAGE - len(marker) - len(code))
    if len(head) > room:
        head = head[:room] + (" ...\n" if marker else " ...")
    return head + marker + code


def _assertion_text(raw: str) -> str:
    """The assertion's own message. pytest's rewriting appends the failed expression after
    "\nassert " and indents the message's later lines by two spaces; undo both, so code
    in a message (a snippet to paste) keeps its indentation."""
    message = raw.split("\nassert ")[0].rstrip()
    first, *rest = message.split("\n")
    if rest and all(line.startswith("  ") or not line for line in rest):
        rest = [line[2:] for line in rest]
    return "\n".join([first, *rest]).strip() or "assertion failed"


_EXPLICIT = "Failing explicit example"  # hypothesis's note on a failed @example
_DRAW = re.compile(r"^Draw \d+(?: \(([^)]*)\))?: (.*)$", re.S)


def failing_input(notes: list[str], fixtures: set[str] = frozenset()) -> str:
    """Hypothesis's notes on the shrunk example, as `name = value` pairs (fixtures left out)."""
    pairs = []
    for note in notes:
        match = _DRAW.match(note)
        if match:
            pairs.append(f"{match.group(1) or 'value'} = {match.group(2).strip()}")
        elif note.startswith(("Falsifying example", "Failing test case", _EXPLICIT)):
            body = note.split("(", 1)[1].rsplit(")", 1)[0] if "(" in note else ""
            for part in body.split(",\n"):
                part = part.strip().rstrip(",")
                name = part.split("=", 1)[0].strip()
                if part and name not in fixtures and name != "self" and not part.startswith("data="):
                    pairs.append(part.replace("=", " = ", 1))
    return ", ".join(pairs)
