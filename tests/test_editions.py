"""Editions of one assignment family (grader.editions.assignment, grader.editions.detect): the PA2 editions
W2021, W2022, W2023, F2024 and W2025 share W2021's checks and differ in part ids, titles,
points and which parts exist (tests/pa2_editions.py).

tests/test_editions_grading.py grades the editions' notebooks.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from grading import run_grader
from pa2_editions import EDITIONS, PARTS, edition, reference_notebook, template_notebook
from submissions import REPO, read_notebook
from grader.editions.assignment import (
    AssignmentError,
    available,
    for_submission,
    load_assignment,
    read_edition,
)
from grader.editions.detect import EditionUnclear, detect


# -- the editions as data -------------------------------------------------------------------
def test_every_edition_is_installed_with_its_handouts_parts_and_points():
    # (the MyConv2d family's editions: tests/test_myconv_family.py)
    assert [n for n in available() if load_assignment(n).family == "pa2"] == sorted(EDITIONS)
    for name in EDITIONS:
        a = edition(name)
        assert {p.id: (p.task, p.points) for p in a.parts} == PARTS[name], name
        assert a.folder.name == "pa2" and a.module_path == REPO / "reference" / "pa2" / "solution.py"
        assert reference_notebook(name).is_file() and template_notebook(name) is not None, name


@pytest.mark.parametrize("name", ["pa2-w2023", "pa2-w2025"])
def test_scaled_points_of_a_part_add_up_to_the_handouts(name):
    a = edition(name)
    stored = json.loads((a.folder / "public" / "expected.json").read_text())["checks"]
    for part in a.parts:
        weights = [c["points"] for key in ("public", "hidden") for c in stored[key] if c["part"] == part.task]
        scaled = [a.edition_marks({"part": part.task, "points": w})["points"] for w in weights]
        assert sum(scaled) == pytest.approx(part.points), (name, part)
    assert a.edition_marks({"part": "D.1", "points": 1}) is None  # no Part D in this edition


@pytest.fixture
def family_copy(tmp_path):
    """A copy of the PA2 family and one edition, to break its description on purpose."""
    root = tmp_path / "assignments"
    shutil.copytree(REPO / "assignments" / "pa2", root / "pa2", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "assignments" / "pa2-w2023", root / "pa2-w2023")
    return root / "pa2-w2023"


@pytest.mark.parametrize(
    "edit, message",
    [
        (("notebook =", "notebok ="), "unknown key 'notebok' in the edition"),
        (
            ('points = 0.5 },\n  { id = "5.1"', 'pints = 0.5 },\n  { id = "5.1"'),
            "unknown key 'pints' in [[parts]] 1",
        ),
        (('task = "A.1", ', ""), "[[parts]] 1 (4.1) has no 'task'"),
        (('task = "C.1"', 'task = "Z.9"'), "part 6.1 is task 'Z.9', which no check of pa2 grades"),
        (("signs = [", "sings = ["), "unknown key 'sings' in [detect]"),
        (
            ("markdown = '(?m)^#+\\s*6", "markdown = '(?m)^#+\\s*(6"),
            "[detect] signs 1: not a valid regular expression",
        ),
        (('id = "5.1"', 'id = "4.1"'), "two parts have the id '4.1'"),
        (("points = 0.5 }", 'points = "half" }'), "points must be a number"),
    ],
    ids=[
        "edition-key",
        "part-key",
        "no-task",
        "unknown-task",
        "detect-key",
        "bad-regex",
        "same-id",
        "points",
    ],
)
def test_a_mistake_in_an_edition_file_names_the_file_and_the_key(family_copy, edit, message):
    path = family_copy / "assignment.toml"
    text = path.read_text()
    old, new = edit
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(AssignmentError) as caught:
        read_edition(family_copy)
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_edition_without_parts_or_with_an_unknown_family_is_refused(family_copy):
    path = family_copy / "assignment.toml"
    text = path.read_text()
    path.write_text(text[: text.index("parts = [")])
    with pytest.raises(AssignmentError, match="no \\[\\[parts\\]\\]"):
        read_edition(family_copy)
    path.write_text(text.replace('family = "pa2"', 'family = "pa9"'))
    with pytest.raises(AssignmentError, match="family 'pa9' has no"):
        read_edition(family_copy)


# -- detection ------------------------------------------------------------------------------
def installed():
    return [edition(n) for n in EDITIONS]


def write(nb, path: Path) -> Path:
    nbformat.write(nb, str(path))
    return path


def without_header(nb):
    """The notebook with its first markdown cell (title, version, release date) deleted."""
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")
    del nb.cells[first]
    return nb


@pytest.mark.parametrize("name", EDITIONS)
@pytest.mark.parametrize("which", ["reference", "template"])
def test_each_editions_notebooks_are_detected(name, which, tmp_path):
    path = reference_notebook(name) if which == "reference" else template_notebook(name)
    found = detect(path, installed())
    assert found.name == name and found.reason and not found.reason.startswith("no header"), found
    # A student deleted the header cell: the part headings still tell.
    headless = detect(write(without_header(read_notebook(path)), tmp_path / "headless.ipynb"), installed())
    assert headless.name == name and headless.reason.startswith("no header"), headless


@pytest.mark.parametrize("name", EDITIONS)
def test_an_edited_header_still_tells_the_edition(name, tmp_path):
    nb = read_notebook(template_notebook(name))
    header = next(c for c in nb.cells if c.cell_type == "markdown")
    header.source = "My name: Student X, student number 1234\n\n" + header.source.replace("Due", "Was due")
    assert detect(write(nb, tmp_path / "edited.ipynb"), installed()).name == name


def test_two_editions_headers_in_one_notebook_are_not_guessed(tmp_path):
    nb = read_notebook(reference_notebook("pa2-w2021"))
    w2023 = next(c for c in read_notebook(template_notebook("pa2-w2023")).cells if c.cell_type == "markdown")
    w2023.id = "w2023-header"
    nb.cells.insert(1, w2023)
    path = write(nb, tmp_path / "mixed.ipynb")
    with pytest.raises(EditionUnclear, match="pa2-w2021 and pa2-w2023"):
        detect(path, installed())
    # --assignment decides.
    assert detect(path, [edition("pa2-w2023")]).name == "pa2-w2023"


@pytest.mark.slow  # `grade` in a subprocess
def test_grade_says_in_one_line_that_two_editions_headers_are_unclear(tmp_path):
    nb = read_notebook(reference_notebook("pa2-w2021"))
    w2023 = next(c for c in read_notebook(template_notebook("pa2-w2023")).cells if c.cell_type == "markdown")
    w2023.id = "w2023-header"
    nb.cells.insert(1, w2023)
    path = write(nb, tmp_path / "mixed.ipynb")
    # The command says so in one line and exits 2, grading nothing.
    run = run_grader(path, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "pa2-w2021 and pa2-w2023" in run.stdout + run.stderr


def test_a_w2021_notebook_saved_by_colab_with_outputs_is_w2021(tmp_path):
    nb = read_notebook(reference_notebook("pa2-w2021"))
    nb.metadata["colab"] = {"provenance": [], "collapsed_sections": []}
    nb.metadata["accelerator"] = "GPU"
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "name": "python3"}
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        cell.execution_count = count
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="Epoch [1/25], Loss: 2.3184, Time (s): 4\n"),
            nbformat.v4.new_output(
                "execute_result", data={"text/plain": "# Part B: 4.1 [8pt] YOLO"}, execution_count=count
            ),
        ]
    found = detect(write(nb, tmp_path / "colab.ipynb"), installed())
    assert found.name == "pa2-w2021", found
    # Outputs are not the notebook's own text: they do not decide, even without a header.
    headless = detect(write(without_header(nb), tmp_path / "colab-headless.ipynb"), installed())
    assert headless.name == "pa2-w2021", headless


def test_one_installed_edition_needs_no_detection(tmp_path):
    path = tmp_path / "anything.ipynb"
    path.write_text("not even json")
    assert detect(path, [edition("pa2-w2023")]).name == "pa2-w2023"


def test_dataclass_copies_keep_the_edition(tmp_path):
    """Tests and tools copy an Assignment with dataclasses.replace: its paths still work."""
    a = edition("pa2-w2023")
    copy = dataclasses.replace(a, folder=tmp_path)
    assert copy.module_path == a.module_path and copy.notebook == "a2-code.ipynb"


def test_an_unreadable_notebook_is_reported_against_the_familys_default_edition(tmp_path):
    """Nothing tells its edition; the family's default (W2021) reports it, so the grading
    still fails every check it would have run (0 out of the full points, tests/test_cli.py)."""
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    chosen, why, _ = for_submission(path)
    assert chosen.name == "pa2-w2021" and "cannot be read" in why.reason
    # Two editions' headers are a conflict, not an unreadable file: no default then.
    nb = read_notebook(reference_notebook("pa2-w2023"))
    nb.cells.insert(
        0, next(c for c in read_notebook(reference_notebook("pa2-w2021")).cells if c.cell_type == "markdown")
    )
    nb.cells[0].id = "w2021-header"
    with pytest.raises(EditionUnclear):
        for_submission(write(nb, tmp_path / "mixed.ipynb"))
