"""`grade PATH`: grade one submission and print the table; see --help."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grade", description="Grade a PyTorch assignment notebook.")
    p.add_argument("path", help="the submission: a .ipynb notebook or a .py file")
    p.add_argument("--assignment", help="assignment edition (default: the only one installed)")
    p.add_argument("--json", metavar="FILE", help="write Gradescope's results.json here")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where training checks run (default: auto = CUDA when present)")
    p.add_argument("--timeout", type=float, help="wall-time limit per request, seconds")
    p.add_argument("--quiet", action="store_true", help="print only the score line")
    return p


def main(argv=None) -> int:
    # Start the warm sandbox server first: it imports torch in its own process while this
    # one imports torch, pytest and hypothesis.
    from .sandbox import warm_up
    warm_up()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    from .assignment import load_assignment
    from .engine import Options, grade
    from .errors import SubmissionError
    from .report import terminal, write_json
    from .results import GradingResult

    result = None
    try:
        assignment = load_assignment(args.assignment)
        options = Options(device=resolve_device(args.device))
        if args.timeout:
            options.limits.request_seconds = args.timeout
        result = grade(args.path, assignment, options)
    except SubmissionError as exc:
        result = GradingResult(submission=args.path, assignment=args.assignment or "?",
                               error=str(exc))
    except Exception as exc:  # the grader itself broke: still write a results file
        result = GradingResult(submission=args.path, assignment=args.assignment or "?",
                               error=f"internal error in the grader: {type(exc).__name__}: {exc}")
    finally:
        if args.json and result is not None:
            write_json(result, args.json)
    if args.quiet:
        print(f"Score: {result.score:g} / {result.max_score:g}")
    else:
        terminal(result)
    return result.exit_code


def resolve_device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
