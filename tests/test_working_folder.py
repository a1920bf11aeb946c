"""The folder `grade` runs from never supplies code (docs/design.md, trust model, rule 6).

An instructor grades a student's folder from inside it (`cd submission_42 && grade .`), and
`make example` grades from the checkout. Modules planted there (`typing_extensions.py`, which
torch imports; a `grader/` package, as students hold the grader's wheel; `multiprocessing/`,
which the forkserver and resource tracker start with) must be imported by no process of the
grader: each writes a marker file if it is ever imported. The engine here is a copy outside the
checkout run through a console-script-like launcher, as an installed `grade` is, so that a child
importing the checkout's engine instead of the parent's shows (Landlock then refuses its lazy
imports and the training check fails: the `make example` defect).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grading import grader_env
from submissions import REFERENCE_NOTEBOOK, REPO

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

SHADOWS = {
    "typing_extensions.py": "",
    "rich.py": "",
    "junit_xml.py": "",
    "grader/__init__.py": "",
    "grader/sandbox/__init__.py": "",
    "grader/sandbox/child.py": "",
    "multiprocessing/__init__.py": "",
}


def shadow_source(marker_dir: Path, name: str) -> str:
    return (
        "import os\n"
        f"open(os.path.join({str(marker_dir)!r}, {name.replace('/', '.')!r} + '-' + str(os.getpid())), 'w')"
        ".close()\n"
        "raise ImportError('a module planted in the working folder was imported')\n"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A copy of the engine and its data folders outside the checkout, and a launcher that
    starts `grade` the way the console script does (its own folder first on the path)."""
    root = tmp_path_factory.mktemp("installed")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("grader", "assignments", "reference", "student_template"):
        shutil.copytree(REPO / folder, root / "engine" / folder, ignore=ignore)
    (root / "bin").mkdir()
    (root / "bin" / "grade").write_text("from grader.cli import entry_point\n\nentry_point()\n")
    return root


def run_grade(installed: Path, cwd: Path, *args, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    extra = {"TMPDIR": str(tmpdir)} if tmpdir else {}
    return subprocess.run(
        [sys.executable, str(installed / "bin" / "grade"), *map(str, args)],
        cwd=cwd,
        env=grader_env(installed / "engine", **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def plant(folder: Path, markers: Path) -> None:
    for name in SHADOWS:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(shadow_source(markers, name))


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("submission_42")
    markers = tmp_path_factory.mktemp("markers")
    shutil.copy(REFERENCE_NOTEBOOK, folder / "a2-cnn.ipynb")
    plant(folder, markers)
    return folder, markers


def score(path: Path) -> tuple[float, dict]:
    data = json.loads(path.read_text())
    return data["score"], {t["name"]: t["status"] for t in data["tests"]}


def test_one_grading_from_a_students_folder_imports_nothing_from_it(installed, planted, tmp_path):
    folder, markers = planted
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    inside = run_grade(
        installed, folder, "a2-cnn.ipynb", "--part", "A.1", "--json", tmp_path / "in.json", tmpdir=temporary
    )
    assert inside.returncode in (0, 1), inside.stdout + inside.stderr
    assert not list(markers.iterdir()), f"imported from the working folder: {sorted(os.listdir(markers))}"
    # nothing left behind in the temporary folder either (the sandbox's, hypothesis's cache)
    assert not list(temporary.iterdir()), sorted(os.listdir(temporary))
    # The same notebook graded from an empty folder: the same verdicts (the training check
    # included: it imports the engine lazily in the child).
    empty = tmp_path / "empty"
    empty.mkdir()
    outside = run_grade(installed, empty, folder / "a2-cnn.ipynb", "--part", "A.1", "--json", "out.json")
    assert outside.returncode == 0, outside.stdout + outside.stderr
    assert score(tmp_path / "in.json") == score(empty / "out.json")
    assert inside.returncode == 0, inside.stdout


def test_a_batch_from_a_students_folder_imports_nothing_from_it(installed, planted, tmp_path):
    folder, markers = planted
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(REFERENCE_NOTEBOOK, other / "second.ipynb")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    proc = run_grade(
        installed, folder, "a2-cnn.ipynb", other / "second.ipynb", "--out", tmp_path / "results",
        "--jobs", "2", "--part", "A.1", "--no-train", "--quiet", tmpdir=temporary,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(markers.iterdir()), f"imported from the working folder: {sorted(os.listdir(markers))}"
    assert not list(temporary.iterdir()), sorted(os.listdir(temporary))
    for name in ("a2-cnn", "second"):
        data = json.loads((tmp_path / "results" / f"{name}.json").read_text())
        assert data["grader"]["error"] is None and all(t["status"] == "passed" for t in data["tests"])


def test_the_example_graded_from_the_checkout_as_from_anywhere(installed, tmp_path):
    """`make example` runs the installed `grade` from the checkout, whose own grader/ must not
    be what the sandbox imports."""
    example = REPO / "examples" / "submission.ipynb"
    args = ("--part", "C.1", "--json")
    from_checkout = run_grade(installed, REPO, example, *args, tmp_path / "checkout.json")
    elsewhere = run_grade(installed, tmp_path, example, *args, tmp_path / "elsewhere.json")
    assert from_checkout.returncode in (0, 1) and elsewhere.returncode in (0, 1), from_checkout.stderr
    assert score(tmp_path / "checkout.json") == score(tmp_path / "elsewhere.json")
    assert "Permission denied" not in (tmp_path / "checkout.json").read_text()
