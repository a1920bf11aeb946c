"""`pip install .` (not editable) gives a `grade` command that finds its assignments,
reference and template outside the source tree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from submissions import REFERENCE_NOTEBOOK

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]


def test_installed_grade_runs_outside_the_checkout(tmp_path):
    grade = Path(sys.executable).parent / "grade"
    assert grade.exists(), "the package is not installed in this environment: run `make test`"
    notebook = tmp_path / "submission.ipynb"
    notebook.write_bytes(REFERENCE_NOTEBOOK.read_bytes())
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [str(grade), str(notebook), "--part", "D.2", "--no-train", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "Score: 4 / 4"
    # It graded with the installed copy, not the checkout next to the tests.
    located = subprocess.run(
        [sys.executable, "-c", "import grader.editions.assignment as a; print(a.data_root('assignments'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "site-packages" in located, located
    assert json.loads(out.read_text())["score"] == 4
