"""`grade merge OUT1 OUT2 ... --out MERGED`: join the outputs of several shards (or batches)
into one folder with one gradebook."""

from __future__ import annotations

import sys
from pathlib import Path

from grader.report.writers import atomic_write
from grader.report.results import GradingResult, visible
from grader.verbs import run_verb, verb_parser
from grader.batch.outputs import parts_seen, write_class_files
from grader.batch.store import read_results


def main(argv: list[str]) -> int:
    p = verb_parser("grade merge", "Join batch outputs (e.g. shards) into one gradebook.")
    p.add_argument("dirs", nargs="+", metavar="OUT", help="output folders of `grade ... --out`")
    p.add_argument(
        "--out",
        required=True,
        metavar="MERGED",
        help="write MERGED/<name>.json, gradebook.csv and summary.csv here",
    )
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML file")
    p.add_argument("--quiet", action="store_true", help="plain-text summary")
    return run_verb(p, argv, merge)


def merge(args) -> int:
    out = Path(args.out)
    found: dict[str, tuple[Path, dict]] = {}
    for folder in map(Path, args.dirs):
        if not folder.is_dir():
            print(f"grade merge: {folder} is not a folder", file=sys.stderr)
            return 2
        for path in sorted(folder.glob("*.json")):
            data = read_results(path)
            if data is None:
                continue
            if path.stem in found and found[path.stem][1] != data:
                print(
                    visible(f"grade merge: {path.stem} is in more than one folder; keeping {path}"),
                    file=sys.stderr,
                )
            found[path.stem] = (path, data)
    if not found:
        print("grade merge: no results files found in " + " ".join(args.dirs), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, GradingResult] = {}
    for name, (path, data) in found.items():
        target = out / f"{name}.json"
        if path.resolve() != target.resolve():
            atomic_write(target, path.read_text())
        entries[name] = GradingResult.from_dict(data)
    assignments = {result.assignment for result in entries.values()}
    suite = ", ".join(sorted(a for a in assignments if a)) or "grading"
    write_class_files(entries, _parts_of(assignments, entries), out, suite, args.junit, plain=args.quiet)
    print(
        f"Merged {len(entries)} results from {len(args.dirs)} folders into {out}/ "
        f"(gradebook: {out / 'gradebook.csv'})"
    )
    return 0


def _parts_of(assignments: set, entries: dict[str, GradingResult]) -> list[str]:
    """The gradebook's part columns: the editions' own, in order (when they are installed
    here), else every part found in the results."""
    from grader.editions.assignment import load_assignment
    from grader.errors import UsageError

    try:
        editions = [load_assignment(name) for name in sorted(a for a in assignments if a)]
    except UsageError:
        return parts_seen(entries)
    return list(dict.fromkeys(p.id for a in editions for p in a.parts)) or parts_seen(entries)
