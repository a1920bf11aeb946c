"""Which installed edition a submission belongs to, from what the notebook says about itself.

Each edition's `[detect]` table lists signs (regular expressions) of two strengths:

    header = [...]   the edition's own version or release-date lines: one edition's header
                     decides, two editions' headers in one notebook are a conflict
    signs  = [...]   weaker evidence weighed against the other editions': part headings,
                     definitions only that edition has, headings it lacks (`absent = true`)

A sign looks in the markdown cells (`markdown = 'regex'`), the code cells (`code = ...`), or
for a top-level `def`/`class` of that name (`defines = 'name|other'`); `means` says in words
what it found, for the one line that tells the person why this edition was chosen.

Students delete or edit header cells, so the weaker signs decide when no header is left; when
the evidence is equal for two editions, nothing is guessed: the person is asked to choose
(EditionUnclear). A notebook with nothing that tells (NoEditionFound), or that cannot be read,
is graded as its family's `default_edition` by `grade NB` (grader.editions.assignment.for_submission)
and as the batch's most common edition in a batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from grader.errors import AssignmentError, UsageError

SIGN_KEYS = {"markdown", "code", "defines", "weight", "absent", "means"}
WHERE_KEYS = ("markdown", "code", "defines")


class EditionUnclear(UsageError):
    """Two editions fit the notebook equally well (or it has two editions' headers)."""

    def __init__(self, candidates: list[str], message: str):
        super().__init__(message)
        self.candidates = candidates


class NoEditionFound(UsageError):
    """Nothing in the notebook tells an edition (no header, no heading left)."""


@dataclass(frozen=True)
class Sign:
    where: str  # "markdown", "code" or "defines"
    pattern: re.Pattern
    weight: float = 1.0
    absent: bool = False  # the sign is that the pattern is NOT there
    means: str = ""

    def found(self, text: dict[str, str]) -> bool:
        return bool(self.pattern.search(text[self.where])) != self.absent

    def describe(self) -> str:
        return self.means or f"{self.where} matching {self.pattern.pattern!r}"


@dataclass(frozen=True)
class EditionSigns:
    header: tuple[Sign, ...] = ()
    signs: tuple[Sign, ...] = ()


@dataclass(frozen=True)
class Detection:
    name: str
    reason: str
    note: str = ""  # for the result, when the edition had to be chosen for the notebook

    def line(self) -> str:
        return f"Edition: {self.name} ({self.reason}; --assignment chooses another)"


def parse_signs(path: Path, table: dict) -> EditionSigns:
    """An edition's [detect] table, checked: a mistake names the file and the key."""
    unknown = sorted(set(table) - {"header", "signs"})
    if unknown:
        raise AssignmentError(f"{path}: unknown key {unknown[0]!r} in [detect] (known: header, signs)")
    groups = {}
    for group in ("header", "signs"):
        entries = table.get(group, [])
        if not isinstance(entries, list):
            raise AssignmentError(f"{path}: [detect] {group} must be a list of signs")
        groups[group] = tuple(_sign(path, f"[detect] {group} {i}", e) for i, e in enumerate(entries, 1))
    return EditionSigns(**groups)


def _sign(path: Path, where: str, entry) -> Sign:
    if not isinstance(entry, dict):
        raise AssignmentError(f"{path}: {where} must be a table like {{ markdown = '...' }}")
    unknown = sorted(set(entry) - SIGN_KEYS)
    if unknown:
        raise AssignmentError(
            f"{path}: unknown key {unknown[0]!r} in {where} (known: {', '.join(sorted(SIGN_KEYS))})"
        )
    kinds = [k for k in WHERE_KEYS if k in entry]
    if len(kinds) != 1:
        raise AssignmentError(f"{path}: {where} needs exactly one of markdown, code, defines")
    kind = kinds[0]
    pattern = str(entry[kind])
    if kind == "defines":
        pattern = rf"(?m)^(?:class|def)\s+(?:{pattern})\b"
        kind = "code"
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise AssignmentError(f"{path}: {where}: not a valid regular expression ({exc})")
    weight = entry.get("weight", 1)
    if not isinstance(weight, (int, float)):
        raise AssignmentError(f"{path}: {where}: weight must be a number")
    return Sign(kind, compiled, float(weight), bool(entry.get("absent", False)), str(entry.get("means", "")))


def notebook_text(loaded) -> dict[str, str]:
    """The markdown and the code of a loaded submission (grader.engine.load), joined per kind."""
    return {"markdown": loaded.markdown, "code": "\n".join(cell.source for cell in loaded.cells)}


def detect(loaded, editions: list) -> Detection:
    """The edition (of `editions`, loaded Assignments) that a loaded submission belongs to,
    and why."""
    if len(editions) == 1:
        return Detection(editions[0].name, "the only installed edition")
    if isinstance(loaded, (str, Path)):  # a path: read it as grading does
        from grader.engine.files import notebook_of
        from grader.engine.load import load_submission

        loaded = load_submission(notebook_of(Path(loaded)))
    path = loaded.path
    text = notebook_text(loaded)
    headed = {a.name: [s for s in a.detect.header if s.found(text)] for a in editions}
    headed = {name: found for name, found in headed.items() if found}
    if len(headed) == 1:
        ((name, found),) = headed.items()
        return Detection(name, "; ".join(s.describe() for s in found))
    if len(headed) > 1:
        names = sorted(headed)
        raise EditionUnclear(
            names,
            f"{path}: the notebook has the headers of {' and '.join(names)} "
            f"({'; '.join(headed[n][0].describe() for n in names)}): choose one with --assignment",
        )
    scores = {}
    for a in editions:
        present = [s for s in a.detect.signs if not s.absent and s.found(text)]
        # A missing heading only counts for an edition something else points to: an empty
        # notebook lacks every heading and is no edition's.
        missing = [s for s in a.detect.signs if s.absent and s.found(text)] if present else []
        scores[a.name] = (sum(s.weight for s in present + missing), present + missing)
    best = max(score for score, _ in scores.values())
    top = sorted(name for name, (score, _) in scores.items() if score == best)
    if best <= 0:
        raise NoEditionFound(
            f"{path}: no edition's header or headings found: "
            f"choose one with --assignment ({', '.join(sorted(scores))})"
        )
    if len(top) > 1:
        raise EditionUnclear(
            top, f"{path}: fits {' and '.join(top)} equally (no header): choose one with --assignment"
        )
    found = scores[top[0]][1]
    return Detection(top[0], "no header; " + "; ".join(s.describe() for s in found if s.weight > 0))
