"""Writers: each renders the one GradingResult model to a format."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from grader.report.results import GradingResult, points


def terminal(result: GradingResult, console=None, verbose: bool = True, timings: bool = False) -> None:
    """The table of checks, feedback for each failure (`verbose`), and with `timings` each
    check's seconds and where the grading's time went (grade --verbose)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Paths, notes, messages and check names may hold student-controlled text: it goes in as
    # Text, never inside a markup string, where "[/yellow]" in a file name raises MarkupError
    # and ":smile:" becomes an emoji.
    console = console or Console(highlight=False)
    result = result.shown()
    console.print(
        Text.assemble((result.submission, "bold"), f"  ({result.assignment}, device {result.device})"),
        soft_wrap=True,
    )
    if result.error:
        console.print(Text.assemble(("Cannot grade:", "red"), " ", result.error), soft_wrap=True)
    for note in result.notes:
        console.print(Text.assemble(("note:", "yellow"), " ", note), soft_wrap=True)
    if result.checks and result.error is None:  # unusable: every check failed for one reason
        table = Table(show_lines=False, expand=False)
        table.add_column("#", justify="right")
        table.add_column("Check")
        table.add_column("Kind")
        table.add_column("Points", justify="right")
        table.add_column("Result")
        if timings:
            table.add_column("s", justify="right")
        for c in result.checks:
            status = Text("pass", style="green") if c.passed else Text("FAIL", style="red")
            row = [
                Text(c.number),
                Text(c.name),
                Text(c.kind),
                f"{points(c.score)}/{points(c.max_score)}",
                status,
            ]
            table.add_row(*row, *([f"{c.seconds:.2f}"] if timings else []))
        console.print(table)
        failed = [c for c in result.checks if not c.passed]
        if failed and verbose:
            console.print(Text("Feedback", style="bold"))
            for c in failed:
                console.print(Text(f"{c.number}. {c.name}", style="red"), soft_wrap=True)
                for line in c.output.splitlines():
                    console.print(Text(f"   {line}"), soft_wrap=True)
        parts = "  ".join(
            f"{part} {points(got)}/{points(out)}" for part, (got, out) in result.parts().items()
        )
        console.print(Text(f"Parts: {parts}"))
    if result.isolation:  # no sandbox started: no student code ran
        console.print(Text(result.isolation_line, style="dim"), soft_wrap=True)
    if result.challenge_seed is not None:  # the terminal is the instructor's; results.json is not
        console.print(
            Text(
                f"challenge seed: {result.challenge_seed} (replay with --seed {result.challenge_seed})",
                style="dim",
            ),
            soft_wrap=True,
        )
    if timings:
        from grader.report.timings import lines

        for line in lines(result):
            console.print(Text(line, style="dim"), soft_wrap=True)
    console.print(Text(f"Score: {points(result.score)} / {points(result.max_score)}"))


WITHHELD = "Details of this hidden check are shown after the due date."


def to_gradescope_dict(result: GradingResult, hidden_details: str | None = None) -> dict:
    """Gradescope's results.json schema. `hidden_details` (a visibility) is for a results
    file students see (Gradescope): a Gradescope test shows all its output or none, so each
    hidden check becomes two entries, its name, points and pass/fail visible with no message,
    and a 0-point "(details)" entry with the message, shown from `hidden_details` on. Its
    inputs and counterexamples never show before then. None (the instructor's --json): one
    entry per check with everything."""
    data = result.to_dict()
    del data["grader"]
    if hidden_details is None:
        return data
    tests = []
    for c, entry in zip(result.checks, data["tests"]):
        if c.hidden and c.output:
            details = dict(
                entry,
                name=f"{c.name} (details)",
                score=0,
                max_score=0,
                visibility=hidden_details,
                number=f"{c.number}.1",
            )
            tests += [dict(entry, output=WITHHELD), details]
        else:
            tests.append(entry)
    return dict(data, tests=tests)


def write_json(result: GradingResult, path: str | Path, hidden_details: str | None = None) -> None:
    atomic_write(path, json.dumps(to_gradescope_dict(result, hidden_details), indent=2) + "\n")


def atomic_write(path: str | Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_html(result: GradingResult) -> str:
    """A self-contained page (pictures inlined as data URIs) a student can open offline."""
    import base64
    import html

    def esc(text) -> str:
        return html.escape(str(text))

    result = result.shown()

    rows = []
    for c in result.checks:
        pictures = "".join(
            f'<figure><img alt="{esc(title)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}"><figcaption>{esc(title)}</figcaption></figure>'
            for title, png in ((t, p() if callable(p) else p) for t, p in c.images)
        )
        message = f"<pre>{esc(c.output)}</pre>" if c.output else ""
        rows.append(
            f'<section class="check {c.status}"><h3><span class="badge">{c.status}</span> '
            f"{esc(c.number)}. {esc(c.name)} <small>{esc(c.kind)} &middot; "
            f"{points(c.score)}/{points(c.max_score)}</small></h3>{message}{pictures}</section>"
        )
    parts = "".join(
        f"<li>{esc(p)}: {points(got)} / {points(out)}</li>" for p, (got, out) in result.parts().items()
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    error = f'<p class="error">Cannot grade: {esc(result.error)}</p>' if result.error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Feedback: {esc(result.submission)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
.score {{ font-size: 1.6rem; font-weight: bold; }}
.check {{ border-left: 6px solid #999; padding: .2rem 1rem; margin: 1rem 0; background: #fafafa; }}
.check.passed {{ border-color: #2a9d4b; }} .check.failed {{ border-color: #d1372b; }}
.badge {{ font-size: .75rem; text-transform: uppercase; padding: .1rem .4rem; border-radius: .3rem; color: white; }}
.passed .badge {{ background: #2a9d4b; }} .failed .badge {{ background: #d1372b; }}
small {{ color: #666; font-weight: normal; }} pre {{ white-space: pre-wrap; background: #fff; padding: .5rem; }}
figure {{ margin: .5rem 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }} .error {{ color: #d1372b; }}
</style></head><body>
<h1>Feedback for {esc(result.submission)}</h1>
<p>{esc(result.assignment)} &middot; device {esc(result.device)} &middot; graded in {result.execution_time:.1f} s</p>
<p class="score">Score: {points(result.score)} / {points(result.max_score)}</p>{error}
<ul>{parts}</ul>{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Checks</h2>
{"".join(rows)}
</body></html>
"""


def write_html(result: GradingResult, path: str | Path) -> None:
    atomic_write(path, to_html(result))
