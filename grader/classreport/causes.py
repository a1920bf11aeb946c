"""The cause a failed check's feedback names, so that a class's failures can be counted by
cause rather than by their exact text.

Feedback says the cause first (docs: "the cause first, then the evidence"): its first
sentence. What varies from one student to the next inside it is masked: the hyper-parameters
a counterexample was built with (`Net(kernel=3, ...)`), numbers, shapes, quoted names and
where in the notebook it happened. "Layer 5, a Conv2d, has output channels 8 where the
reference has 4" and "Layer 1, a Conv2d, has output channels 4 where the reference has 7"
are one cause: "Layer N, a Conv2d, has output channels N where the reference has N".
"""

from __future__ import annotations

import re

from grader.report.results import NOT_GRADED

# How the sandbox's messages say a request ran out of time (grader.sandbox.parent), and how a
# batch says a whole submission did (grader.batch.pool).
TIMEOUT_PHRASES = ("did not finish within", "did not take the request within")
SUBMISSION_TIMEOUT_PHRASE = "grading took longer than"

_CALL_PREFIX = re.compile(r"^([A-Za-z_][\w.]*)\(([^()]|\([^()]*\))*\)")
_WHERE = re.compile(r"\s*\((?:code cell|cell|In \[|starting |line )[^()]*(?:\([^()]*\)[^()]*)*\)")
_BACKTICKED = re.compile(r"`[^`]*`")
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[-+]?\d+)?(?!\w)")
_SENTENCE_END = re.compile(r"(?<=[\w)\]`'\"])(?:\.\s+|;\s+)")
# An explanation in parentheses after a space: "(the reference upsamples here ...)".
_REMARK = re.compile(r"\s+\((?:[^()]|\([^()]*\))*\)")


def first_line(output: str) -> str:
    """The message before any `Try:` code or counterexample lines."""
    text = output.strip().split("\nTry:", 1)[0]
    text = text.split(" Try:", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def cause_of(output: str) -> str:
    """The cause a check's feedback names, with what varies between students masked."""
    text = first_line(output)
    match = _CALL_PREFIX.match(text)
    if match:  # the counterexample's constructor call: which hyper-parameters does not matter
        text = f"{match[1]}(...)" + text[match.end() :]
    text = _WHERE.sub("", text)
    text = _SENTENCE_END.split(text, 1)[0]
    text = _REMARK.sub("", text)
    if text.count("(") > text.count(")"):  # a remark the sentence split cut short
        text = text[: text.rfind(" (")] if " (" in text else text
    text = _BACKTICKED.sub("`…`", text)
    text = _QUOTED.sub("'…'", text)
    for _ in range(3):  # nested brackets, innermost first
        text = _BRACKETED.sub("[…]", text)
    text = _NUMBER.sub("N", text)
    text = re.sub(r"\s+", " ", text).strip().rstrip(".:")
    return text or "failed (no message)"


def is_timeout(output: str) -> bool:
    return any(phrase in output for phrase in TIMEOUT_PHRASES)


def is_not_graded(output: str) -> bool:
    """The message every check of an unusable submission carries (counted as an error)."""
    return output.strip() == NOT_GRADED


def anonymise(text: str, names: list[str]) -> str:
    """`text` with the submission's names and file paths taken out, for an example shown to
    anyone reading the class report."""
    for name in sorted({n for n in names if n and len(n) > 2}, key=len, reverse=True):
        text = text.replace(name, "<student>")
    return re.sub(r"(?:/[^\s/'\"`()]+)+\.(?:ipynb|py)\b", "<notebook>", text)
