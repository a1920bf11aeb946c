"""`grade build-public NAME [--out DIR] [--check]`: compute an assignment's public
expectations from its reference solution (grader.public.expectations says how) and store them with the
lists of its public and hidden checks (grader.engine.checkrun lists them)."""

from __future__ import annotations

from pathlib import Path

from grader.engine.checkrun import list_checks
from grader.public.expectations import compute, points_text
from grader.public.store import differences, keep_stored, public_folder, read, roundtrip, write
from grader.verbs import run_verb, verb_parser


def compute_with_checks(assignment, reference) -> dict:
    data = compute(assignment, reference)
    data["checks"] = {
        "public": list_checks(assignment, public_checks=True),
        "hidden": list_checks(assignment, public_checks=False),
    }
    return data


# -- command line ----------------------------------------------------------------------------
def main(argv=None) -> int:
    """`grade build-public NAME [--out DIR] [--check]`."""
    p = verb_parser(
        "grade build-public",
        "Compute an assignment's public expectations from its reference solution and store them as data.",
        assignment="positional",
    )
    p.add_argument("--out", metavar="DIR", help="write here instead of assignments/NAME/public/")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the stored files differ from a fresh build",
    )
    return run_verb(p, argv, build_public, expected=(FileNotFoundError,))


def build_public(args) -> int:
    from grader.editions.assignment import load_assignment
    from grader.errors import UsageError

    assignment = load_assignment(args.assignment)
    reference = assignment.load_reference()
    if reference is None:
        raise UsageError(f"the reference solution of {assignment.name} is not installed")
    data = compute_with_checks(assignment, reference)
    folder = Path(args.out) if args.out else public_folder(assignment)
    if args.check:
        # Not byte equality: numbers may differ in their last digits on another machine
        # (see SAME_RTOL); the fingerprint (reference and cases) must match exactly.
        try:
            changed = differences(read(folder), roundtrip(data))
            why = f"differs at {', '.join(changed[:5])}"
        except (OSError, ValueError, RuntimeError) as exc:  # missing, broken JSON, bad archive
            changed, why = True, f"cannot read the stored files: {exc}"
        if changed:
            print(f"{folder}: OUT OF DATE ({why}): run grade build-public {assignment.name}")
        else:
            print(f"{folder}: up to date")
        return 1 if changed else 0
    try:
        data = keep_stored(read(folder), roundtrip(data))
    except (OSError, ValueError, RuntimeError):  # nothing stored yet, or unreadable: all fresh
        pass
    paths = write(data, folder)
    checks = data["checks"]
    print(
        f"Wrote {', '.join(str(p) for p in paths)}: {len(checks['public'])} public checks "
        f"({points_text(sum(c['points'] for c in checks['public']))}), {len(checks['hidden'])} "
        f"hidden ({points_text(sum(c['points'] for c in checks['hidden']))})."
    )
    return 0
