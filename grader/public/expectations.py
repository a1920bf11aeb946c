"""Public checks: the checks a student can run before the deadline, without the reference.

An assignment keeps them in `assignments/<name>/public/`, as pytest files like any other
check, with one difference: they never use the `reference` fixture. What they compare with was
computed from the reference once, by the assignment's own `public_cases.py` (its `build(
reference, assignment)` says WHAT to compute), and stored as data next to them:

    public/expected.json   everything but tensors (sorted keys, fixed formatting)
    public/tensors.pt      the tensors, a flat {key: tensor} written by torch.save and read
                           back only with torch.load(weights_only=True)

`grade build-public NAME` (grader.public.build) writes both: this module computes them
(grader.public.store keeps them on disk) and serves them to a grading. The same build twice
gives the same bytes. The checks get the data through the `expected` fixture.

The instructor's grading runs the public checks and the hidden ones (the other check files);
a student's installation (`grade release`) has no reference and no hidden checks, and the
engine then runs the public checks alone, on the same data, so the verdict of a public check
is the same on both sides. The list of hidden checks (names and points, never their inputs)
is stored too, so a student can be told what the real grading adds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from grader.public.store import (
    EXPECTED_FILE,
    FORMAT,
    cases_file,
    fingerprint,
    has_public_checks,
    public_folder,
    read_once,
    roundtrip,
)


# -- computing -------------------------------------------------------------------------------
def compute(assignment, reference, challenge_seed: int | None = None) -> dict:
    """Run the assignment's `build(reference, assignment)` deterministically (seeded, one
    thread) and wrap its result (grader.public.build adds the lists of checks).
    With `challenge_seed`, `build(reference, assignment, seed=...)` makes the secret cases
    instead (see Expectations)."""
    import torch

    path = cases_file(assignment)
    if not path.is_file():
        raise FileNotFoundError(
            f"{assignment.name} has no {path.name} saying what its public checks compare with"
        )
    name = f"_grader_public_cases_{assignment.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        if challenge_seed is None:
            cases = module.build(reference, assignment)
        else:
            cases = module.build(reference, assignment, seed=challenge_seed)
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(state)
    data = {
        "format": FORMAT,
        # The checks' folder: a family's stored files serve every edition of it alike.
        "assignment": assignment.folder.name,
        "fingerprint": fingerprint(assignment),
        "cases": cases,
        "generated_by": "grade build-public",
    }
    return data


# -- grading ---------------------------------------------------------------------------------
class Expectations:
    """The stored expectations, loaded when a check first asks. With the reference installed
    and the stored files out of date (the reference or the cases changed since the last
    `grade build-public`), they are computed afresh from the reference, with a note.

    Secret challenges (trust model, rule 2): the stored cases are public, so a submission
    could answer them from a lookup table. On the instructor side, `challenge_seed` (drawn by
    the grading from os.urandom) makes the assignment's `build(..., seed=...)` draw fresh
    inputs and weights of the same kinds, computed here from the reference; every list of
    cases gets them appended, so a public check passes only if it passes on both. A student's
    side has no reference and no seed: the stored cases alone, with the same verdict for
    honest code."""

    def __init__(self, assignment, reference=None, challenge_seed: int | None = None):
        self.assignment = assignment
        self.reference = reference
        self.challenge_seed = challenge_seed
        self.notes: list[str] = []
        self.seconds = 0.0  # spent computing them ahead of the checks (grader.engine.checkrun)
        self._data: dict | None = None
        self._cases: dict | None = None

    def data(self) -> dict:
        if self._data is None:
            folder = public_folder(self.assignment)
            stored = read_once(folder) if (folder / EXPECTED_FILE).is_file() else None
            if self.reference is not None and (
                stored is None or stored.get("fingerprint") != fingerprint(self.assignment)
            ):
                self.notes.append(
                    f"the public expectations in {folder} are out of date or missing: they were "
                    "computed from the reference for this grading; run `grade build-public "
                    f"{self.assignment.name}` to store them for students"
                )
                stored = roundtrip(compute(self.assignment, self.reference))
            if stored is None:
                raise RuntimeError(f"no stored expectations in {folder}")
            self._data = stored
        return self._data

    def cases(self) -> dict:
        if self._cases is None:
            cases = self.data()["cases"]
            if self.reference is not None and self.challenge_seed is not None:
                fresh = _challenge_cases(self.assignment, self.reference, self.challenge_seed)
                cases = with_challenges(cases, fresh)
            self._cases = cases
        return self._cases

    def stored_checks(self) -> dict:
        """{"public": [...], "hidden": [...]} from the stored files (empty when unreadable)."""
        try:
            tree = json.loads((public_folder(self.assignment) / EXPECTED_FILE).read_text())
            return tree.get("checks") or {}
        except (OSError, ValueError):
            return {}


_CHALLENGES: dict = {}


def _challenge_cases(assignment, reference, seed: int) -> dict:
    """The secret cases of one seed, computed once per process: a batch shares one seed, so
    its workers pay for them once (the checks only read them; the child gets copies)."""
    key = (assignment.name, id(reference), seed)
    if key not in _CHALLENGES:
        _CHALLENGES.clear()  # a new seed: the old cases are not needed again
        _CHALLENGES[key] = roundtrip(compute(assignment, reference, challenge_seed=seed))["cases"]
    return _CHALLENGES[key]


def with_challenges(stored, fresh):
    """`stored` with every list that `fresh` also has extended by fresh's items (stored ones
    first, so a failure on them reads as on a student's side), and fresh's keys that stored
    lacks added (kinds of cases only the instructor's side has)."""
    if isinstance(stored, dict) and isinstance(fresh, dict):
        merged = {k: with_challenges(v, fresh[k]) if k in fresh else v for k, v in stored.items()}
        merged.update({k: v for k, v in fresh.items() if k not in stored})
        return merged
    if isinstance(stored, list) and isinstance(fresh, list):
        return stored + fresh
    return stored


def public_only(assignment, options) -> bool:
    """Whether a grading with these options runs the public checks alone: asked for, or no
    reference solution installed (a student's installation)."""
    return bool(getattr(options, "public_only", False)) or not assignment.has_reference


def check_targets(assignment, public_only: bool) -> list[Path]:
    from grader.errors import UsageError

    if not public_only:
        return assignment.check_folders
    if not has_public_checks(assignment):
        raise UsageError(
            f"the reference solution of {assignment.name} is not installed and "
            "the assignment has no public checks to run without it"
        )
    return [public_folder(assignment)]


def public_only_note(expectations: Expectations, ran: list) -> str:
    """What a student's run says: only public checks ran; which hidden ones the real grading
    adds (names and points only)."""
    points = sum(c.max_score for c in ran)
    lines = [
        f"No reference solution is installed here, so only the public checks ran "
        f"({len(ran)} checks, {points_text(points)})."
    ]
    hidden = expectations.stored_checks().get("hidden")
    if hidden:
        hidden = edition_view(expectations.assignment, hidden)
    if hidden:
        total = sum(c["points"] for c in hidden)
        lines.append(
            f"The real grading also runs {len(hidden)} hidden checks worth "
            f"{points_text(total)} (their inputs are not published):"
        )
        lines += [f"  - {c['name']} ({c['kind']}, {points_text(c['points'])})" for c in hidden]
    elif hidden is not None:
        lines.append("The real grading runs no other checks.")
    return "\n".join(lines)


def edition_view(assignment, stored: list[dict]) -> list[dict]:
    """Stored check entries (the family's tasks and the checks' own points) as this edition
    names and scores them; the checks of tasks it does not grade left out."""
    from grader.report.results import display_name

    out = []
    for entry in stored:
        marks = assignment.edition_marks({"part": entry["part"], "points": entry["points"]})
        if marks is None:
            continue
        title = entry.get("title")
        name = display_name(title, marks["part"], entry.get("subject")) if title else entry["name"]
        out.append(dict(entry, name=name, part=marks["part"], points=marks["points"]))
    return out


def points_text(x) -> str:
    from grader.report.results import points

    return f"{points(x)} point{'' if x == 1 else 's'}"
