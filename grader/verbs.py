"""What every `grade` verb shares: how it parses its command line and how it fails. A verb
is a `main(argv) -> int` (listed in grader.cli.SUBCOMMANDS) that builds its parser with
`verb_parser` and runs its body through `run_verb`."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from grader.errors import MachineError, SubmissionError, UsageError


def verb_parser(prog: str, description: str, assignment: str | None = None) -> argparse.ArgumentParser:
    """A parser for `prog`. `assignment`: "positional" (grade release NAME) or "option"
    (--assignment NAME; needed where several editions are installed) adds the assignment's name."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if assignment == "positional":
        parser.add_argument(
            "assignment", help="assignment edition (a folder of assignments/ with an assignment.toml)"
        )
    elif assignment == "option":
        parser.add_argument(
            "--assignment", help="assignment edition (may be left out where only one is installed)"
        )
    return parser


def parse_or_status(parser: argparse.ArgumentParser, argv) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status argparse chose (2 for a bad command line,
    with its message already printed; 0 after --help)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0


def run_verb(
    parser: argparse.ArgumentParser,
    argv,
    body: Callable[[argparse.Namespace], int],
    expected: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse `argv` and run `body(args)`. A SubmissionError (or one of `expected`) is a
    person's mistake, not the grader's: one line on stderr naming the verb, exit status 2."""
    args = parse_or_status(parser, argv)
    if isinstance(args, int):
        return args
    try:
        return body(args)
    except (UsageError, SubmissionError, MachineError, *expected) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
