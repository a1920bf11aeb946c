"""Where the installed assignments, references and student templates are: a module of its
own, imported by the warm server's start (grader/editions/prebuild.py) before anything heavy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_ROOT_PACKAGES = {
    "assignments": "grader_assignments",
    "reference": "grader_reference",
    "student_template": "grader_templates",
}


def data_root(kind: str) -> Path | None:
    """The folder holding every edition's `kind` (assignments, reference, student_template)."""
    checkout = Path(__file__).resolve().parents[2] / kind  # a source checkout
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec(_ROOT_PACKAGES[kind])
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return None
