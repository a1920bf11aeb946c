"""The PA2 family's editions as the tests know them: their names, the parts each handout gives
(with the family task and points of each), and their notebooks (tests/test_editions.py,
tests/test_editions_grading.py)."""

from __future__ import annotations

from pathlib import Path

from grader.editions.assignment import load_assignment

EDITIONS = ["pa2-w2021", "pa2-w2022", "pa2-w2023", "pa2-f2024", "pa2-w2025"]
OTHERS = EDITIONS[1:]
# What each edition's handout gives: part id -> (family task, points; None = the checks' own).
LETTERED = {"A.1": ("A.1", None), "B.1": ("B.1", None), "C.1": ("C.1", None)}
PARTS = {
    "pa2-w2021": {**LETTERED, "D.1": ("D.1", None), "D.2": ("D.2", None)},
    "pa2-w2022": {**LETTERED, "D.1": ("W2022.D.1", 2), "D.2": ("W2022.D.2", 2)},
    "pa2-w2023": {"4.1": ("A.1", 0.5), "5.1": ("B.1", 0.5), "6.1": ("C.1", 0.5)},
    "pa2-f2024": {"4.1": ("A.1", 0.5), "5.1": ("B.1", 0.5)},
    "pa2-w2025": {"4.1": ("A.1", 8), "5.1": ("B.1", 4)},
}  # fmt: skip


def edition(name):
    return load_assignment(name)


def reference_notebook(name) -> Path:
    a = edition(name)
    return a.reference_folder / a.notebook


def template_notebook(name) -> Path:
    return edition(name).template_notebook


# Tasks graded from files handed in besides the notebook (W2022's YOLOv3 train.py and
# utils/loss.py): a notebook alone fails them, saying so (tests/test_w2022_*.py grade folders).
FILE_TASKS = {"W2022.D.1", "W2022.D.2"}


def tasks_of(name) -> set[str]:
    return {task for task, _ in PARTS[name].values()}
