"""The generated parts of the docs (scripts/make_docs.py: the CLI reference and the map of
grader/'s rooms) are what the code gives today, and the project's docs stand alone."""

from __future__ import annotations

import subprocess
import sys

from submissions import REPO


def test_generated_docs_are_current():
    proc = subprocess.run(
        [sys.executable, "scripts/make_docs.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_project_points_at_nothing_outside_it():
    """A clone holds all a maintainer needs: no file refers to the workspace beside it."""
    found = []
    for path in REPO.rglob("*"):
        if not path.is_file() or {".git", ".venv", "build", "__pycache__"} & set(path.parts):
            continue
        if (
            path.suffix not in {".py", ".md", ".toml", ".cfg", ".sh", ".yml", ".txt"}
            and path.name != "Makefile"
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if any(outside in text for outside in ("../" + "shared/", "/work/" + "shared")):
            found.append(str(path.relative_to(REPO)))
    assert not found, found
