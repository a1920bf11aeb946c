"""What a batch writes and prints about the whole class, rendered from the submissions'
GradingResults: the gradebook, pass rates per check, JUnit XML, the printed summary."""

from __future__ import annotations

import csv
import io

from grader.report.results import GradingResult, points, visible

# A spreadsheet runs a cell that starts with one of these as a formula; submission names,
# error messages and check names come from students' files, so such text is quoted with a
# leading apostrophe (OWASP's advice against CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value) -> str:
    """A text cell for a CSV file that a spreadsheet will show as text, never run, with its
    control characters made visible."""
    text = visible(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def gradebook_csv(entries: dict[str, GradingResult], parts: list[str]) -> str:
    """One row per submission, sorted by name: its edition, score, out of, points per part
    (empty where its edition has no such part), status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["submission", "edition", "score", "max_score", *map(csv_text, parts), "status", "seconds", "error"]
    )
    for name in sorted(entries):
        result = entries[name]
        totals = result.parts()
        writer.writerow(
            [
                csv_text(name),
                csv_text(result.assignment),
                points(result.score),
                points(result.max_score),
                *(points(totals[p][0]) if p in totals else "" for p in parts),
                result.status,
                f"{result.execution_time:.2f}",
                csv_text(result.error or ""),
            ]
        )
    return buffer.getvalue()


def parts_seen(entries: dict[str, GradingResult]) -> list[str]:
    """The parts the results were graded on (for merged folders of unknown assignments)."""
    return sorted({c.part for result in entries.values() for c in result.checks})


def pass_rates(entries: dict[str, GradingResult], parts: list[str]) -> list[dict]:
    """Per check: how many submissions passed it out of how many were graded on it (an
    unusable submission fails every check it would have been graded on)."""
    order = {p: i for i, p in enumerate(parts)}
    stats: dict[tuple[str, str], dict] = {}
    for name in sorted(entries):
        for c in entries[name].checks:
            row = stats.setdefault(
                (c.name, c.part),
                {
                    "check": c.name,
                    "part": c.part,
                    "passed": 0,
                    "total": 0,
                    "_order": (order.get(c.part, len(order)), _number(c.number)),
                },
            )
            row["total"] += 1
            row["passed"] += bool(c.passed)
    rows = sorted(stats.values(), key=lambda r: r["_order"])
    for row in rows:
        row.pop("_order")
        row["rate"] = row["passed"] / row["total"] if row["total"] else 0.0
    return rows


def _number(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 10**6


def summary_csv(rates: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["check", "part", "passed", "total", "rate"])
    for r in rates:
        writer.writerow(
            [csv_text(r["check"]), csv_text(r["part"]), r["passed"], r["total"], f"{r['rate']:.3f}"]
        )
    return buffer.getvalue()


def junit_xml(entries: dict[str, GradingResult], suite_name: str) -> str:
    """One test case per check per submission: classname = submission, name = check; a failed
    check's feedback is the failure's text. An unusable submission fails every check it would
    have been graded on, with the reason."""
    from junit_xml import TestCase, TestSuite, to_xml_report_string

    suites = []
    for name in sorted(entries):
        result = entries[name].shown()
        name = visible(name)
        cases = []
        for c in result.checks or [None]:  # nothing known about the checks: one "grading" case
            case = TestCase(c.name if c else "grading", classname=name)
            if result.error:
                case.add_failure_info(
                    message=f"Cannot grade: {result.error}", output=f"Cannot grade: {result.error}"
                )
            elif c is not None and not c.passed:
                first = (c.output.strip().splitlines() or ["failed"])[0]
                case.add_failure_info(message=first[:200], output=c.output or "failed")
            cases.append(case)
        suites.append(TestSuite(f"{suite_name}: {name}", cases))
    return to_xml_report_string(suites, prettyprint=True)


def isolation_summary(entries: dict[str, GradingResult]) -> str:
    """The sandbox protections across the batch (each set with how many submissions had it)."""
    seen: dict[str, int] = {}
    for result in entries.values():
        key = result.isolation_line.removeprefix("isolation: ")
        seen[key] = seen.get(key, 0) + 1
    if len(seen) == 1:
        return f"isolation: {next(iter(seen))}"
    return "isolation: " + "; ".join(f"[{n}x] {k}" for k, n in seen.items())


def print_summary(rates: list[dict], entries: dict[str, GradingResult], plain: bool) -> None:
    graded = len(entries)
    errors = sum(1 for result in entries.values() if result.error)
    print(isolation_summary(entries))
    if plain:
        print("Pass rate per check:")
        for r in rates:
            print(f"  {r['rate']:7.1%}  {r['passed']:>4}/{r['total']:<4}  {r['part']:5} {r['check']}")
        print(f"{graded} submissions, {errors} could not be graded")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Pass rate per check", expand=False)
    table.add_column("Part")
    table.add_column("Check")
    table.add_column("Passed", justify="right")
    table.add_column("Rate", justify="right")
    for r in rates:  # names as Text: merged results files may hold anything, even "[/red]"
        table.add_row(Text(r["part"]), Text(r["check"]), f"{r['passed']}/{r['total']}", f"{r['rate']:.0%}")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"{graded} submissions, {errors} could not be graded")


def write_class_files(
    entries: dict[str, GradingResult], parts: list[str], out, suite: str, junit: str | None, plain: bool
) -> None:
    """The end of a batch or a merge: gradebook, summary, JUnit, and the printed summary."""
    from grader.report.writers import atomic_write

    atomic_write(out / "gradebook.csv", gradebook_csv(entries, parts))
    rates = pass_rates(entries, parts)
    atomic_write(out / "summary.csv", summary_csv(rates))
    if junit:
        atomic_write(junit, junit_xml(entries, suite))
    print_summary(rates, entries, plain)
