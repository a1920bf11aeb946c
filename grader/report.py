"""Writers: each renders the one GradingResult model to a format."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .results import GradingResult


def terminal(result: GradingResult, console=None, verbose: bool = True) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    console.print(f"[bold]{result.submission}[/bold]  ({result.assignment}, device {result.device})")
    if result.error:
        console.print(f"[red]Cannot grade:[/red] {result.error}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
    if result.checks:
        table = Table(show_lines=False, expand=False)
        table.add_column("#", justify="right")
        table.add_column("Check")
        table.add_column("Kind")
        table.add_column("Points", justify="right")
        table.add_column("Result")
        for c in result.checks:
            status = "[green]pass[/green]" if c.passed else "[red]FAIL[/red]"
            table.add_row(c.number, c.name, c.kind, f"{fmt(c.score)}/{fmt(c.max_score)}", status)
        console.print(table)
        failed = [c for c in result.checks if not c.passed]
        if failed and verbose:
            console.print("[bold]Feedback[/bold]")
            for c in failed:
                console.print(f"[red]{c.number}. {c.name}[/red]", soft_wrap=True)
                for line in c.output.splitlines():
                    console.print(f"   {line}", soft_wrap=True, markup=False)
        parts = "  ".join(f"{part} {fmt(got)}/{fmt(out)}" for part, (got, out) in result.parts().items())
        console.print(f"Parts: {parts}")
    console.print(f"Score: {fmt(result.score)} / {fmt(result.max_score)}")


def to_gradescope_dict(result: GradingResult) -> dict:
    """Gradescope's results.json schema."""
    output = "\n".join([f"Cannot grade: {result.error}"] if result.error else [])
    if result.notes:
        output += ("\n" if output else "") + "\n".join(f"note: {n}" for n in result.notes)
    return {
        "score": result.score,
        "execution_time": round(result.execution_time, 3),
        "output": output,
        "tests": [{
            "name": c.name, "score": c.score, "max_score": c.max_score, "status": c.status,
            "output": c.output, "visibility": c.visibility, "number": c.number,
            "tags": [c.part, c.kind],
        } for c in result.checks],
    }


def write_json(result: GradingResult, path: str | Path) -> None:
    atomic_write(path, json.dumps(to_gradescope_dict(result), indent=2) + "\n")


def atomic_write(path: str | Path, text: str) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fmt(x: float) -> str:
    return f"{x:g}"
