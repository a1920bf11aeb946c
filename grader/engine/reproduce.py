"""Feedback a student can act on: every counterexample comes with code to paste into the
notebook that shows it (build the model with the failing hyper-parameters, make the input,
print what came out next to what was expected).

A check adds the code to its own assertion message with `with_reproduction`, or wraps the
requests that may crash in `reproducible(code)`, so that a crash of the student's code carries
the same code. The plugin (grader.engine.plugin) puts hypothesis's smallest failing input before the
code, so the code stays the last thing in the message, ready to copy.
"""

from __future__ import annotations

import contextlib

from grader.errors import MissingDefinition, StudentCodeError

MARKER = "Try:\n"  # what starts the code; the code runs to the end of the message


def with_reproduction(message: str, code: str) -> str:
    """`message`, then the code that reproduces it."""
    return f"{message}\n{MARKER}{code.strip()}"


@contextlib.contextmanager
def reproducible(code: str):
    """A failure of the student's code inside (not a missing definition: there is nothing to
    run) is raised again with `code` to reproduce it."""
    try:
        yield
    except MissingDefinition:
        raise
    except StudentCodeError as exc:
        if MARKER in str(exc):
            raise
        raise type(exc)(with_reproduction(str(exc), code)) from None


def place_before_reproduction(message: str, line: str) -> str:
    """`line` added to `message`, before its reproduction code if it has some."""
    at = message.find(MARKER)
    if at < 0:
        return f"{message}\n{line}"
    return f"{message[:at].rstrip()}\n{line}\n{message[at:]}"
