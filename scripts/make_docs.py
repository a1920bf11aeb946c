"""Write the generated parts of the docs from the code (`make docs`; tests/test_docs.py fails
when they are stale):

* docs/cli.md: every `grade` command's --help, from the argparse parsers themselves;
* docs/architecture.md, between its GENERATED markers: the rooms of grader/ and which rooms
  each one imports (module level and inside functions), as a table and a Mermaid graph.

    python scripts/make_docs.py [--check]
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "grader"
BEGIN, END = "<!-- BEGIN GENERATED: rooms -->", "<!-- END GENERATED: rooms -->"


def room_of(module: str) -> str:
    """`grader.engine.load` -> `engine`; a top-level module is its own room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "grader"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("grader"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("grader")}
    return found


def rooms() -> dict[str, set[str]]:
    """Each room of grader/ and the rooms it imports."""
    modules = {module_of(p) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        here = room_of(module_of(path))
        graph.setdefault(here, set())
        for target in imports_of(path):
            if target in modules or target == "grader":
                other = room_of(target)
                if other != here:
                    graph[here].add(other)
    return graph


ROLES = {
    "grader": "the package front: `check()` for a student's notebook",
    "cli": "the `grade` command and its table of verbs",
    "verbs": "what every verb shares: its parser, a person's mistake as one line",
    "errors": "whose failure it is: the student's, a person's, the machine's",
    "engine": "the pipeline's stages (load, harvest, regions, files, sandbox, checks), the proxy checks call, budgets; what runs on both sides of the sandbox (layer traces, training loops)",
    "sandbox": "the untrusted child and the parent's handle on it: server, confine, host, wire, replies",
    "checks": "the check author's front (`from grader.checks import ...`), comparison, pictures",
    "editions": "assignment editions and families: their files, telling a notebook's edition",
    "public": "public checks' stored expectations and the secret challenges",
    "report": "the one results model and its writers (terminal, results.json, HTML)",
    "batch": "many submissions: discovery, the scheduler, the worker pool, stores, merge, Slurm",
    "classreport": "the instructor's class view: the page, causes, similarity flags",
    "student": "the student's side: `check()` in a kernel",
    "authoring": "the instructor's tools: master notebooks, the student bundle, Gradescope's zip",
}


def rooms_markdown() -> str:
    graph = rooms()
    lines = [BEGIN, "", "| room | what it holds | imports |", "|---|---|---|"]
    for room in sorted(graph, key=lambda r: (r != "grader", r)):
        uses = ", ".join(f"`{r}`" for r in sorted(graph[room])) or "-"
        lines.append(f"| `{room}` | {ROLES.get(room, '')} | {uses} |")
    lines += ["", "```mermaid", "graph LR"]
    for room in sorted(graph):
        for other in sorted(graph[room]):
            lines.append(f"    {room} --> {other}")
    lines += ["```", "", END]
    return "\n".join(lines)


def cli_markdown() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the same text everywhere
    sys.path.insert(0, str(REPO))
    from grader import cli

    sections = [
        "# The `grade` command",
        "",
        "Generated from the parsers by `make docs` (scripts/make_docs.py).",
        "",
    ]
    sections += ["## grade", "", "```", cli.build_parser().format_help().rstrip(), "```", ""]
    for verb in cli.SUBCOMMANDS:
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            cli.main([verb, "--help"])
        sections += [f"## grade {verb}", "", "```", text.getvalue().rstrip(), "```", ""]
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    architecture = REPO / "docs" / "architecture.md"
    text = architecture.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    wanted = {
        architecture: text[:start] + rooms_markdown() + text[end:],
        REPO / "docs" / "cli.md": cli_markdown() + "\n",
    }
    stale = [path for path, content in wanted.items() if not path.exists() or path.read_text() != content]
    if check:
        for path in stale:
            print(f"{path.relative_to(REPO)} is out of date: run `make docs`")
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
