"""Find an assignment edition and read its description (`assignment.toml`).

An assignment is three folders with the same name: `assignments/<name>/` (its description
and its checks, as pytest files), `reference/<name>/` (the reference solution, used only by
the trusted parent) and `student_template/<name>/` (the starter notebook). They are found
next to the `grader` package in a source checkout, or as the installed packages
`grader_assignments`, `grader_reference` and `grader_templates`.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SubmissionError
from .regions import RegionSpec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

_ROOT_PACKAGES = {
    "assignments": "grader_assignments",
    "reference": "grader_reference",
    "student_template": "grader_templates",
}


def data_root(kind: str) -> Path | None:
    """The folder holding every edition's `kind` (assignments, reference, student_template)."""
    checkout = Path(__file__).resolve().parent.parent / kind
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec(_ROOT_PACKAGES[kind])
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return None


def available() -> list[str]:
    root = data_root("assignments")
    if root is None:
        return []
    return sorted(p.parent.name for p in root.glob("*/assignment.toml"))


@dataclass
class Part:
    id: str
    title: str


@dataclass
class Assignment:
    name: str
    title: str
    folder: Path
    parts: list[Part]
    regions: dict[str, RegionSpec]
    limits: dict
    pure_calls: tuple[str, ...]
    reference_module: str
    data: dict = field(default_factory=dict)  # everything else, for the checks

    @property
    def reference_folder(self) -> Path | None:
        root = data_root("reference")
        folder = root / self.name if root else None
        return folder if folder and folder.is_dir() else None

    @property
    def template_notebook(self) -> Path | None:
        root = data_root("student_template")
        path = root / self.name / self.data.get("notebook", "") if root else None
        return path if path and path.is_file() else None

    def load_reference(self):
        """Import the reference solution (parent only); None when it is not installed."""
        folder = self.reference_folder
        if folder is None or not (folder / self.reference_module).is_file():
            return None
        name = f"_grader_reference_{self.name.replace('-', '_')}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, folder / self.reference_module)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    def part_title(self, part_id: str) -> str:
        return next((p.title for p in self.parts if p.id == part_id), part_id)


def load_assignment(name: str | None = None) -> Assignment:
    names = available()
    if name is None:
        if len(names) != 1:
            raise SubmissionError(f"choose an assignment with --assignment ({', '.join(names)})")
        name = names[0]
    if name not in names:
        raise SubmissionError(f"unknown assignment {name!r}; installed: {', '.join(names) or 'none'}")
    folder = data_root("assignments") / name
    with open(folder / "assignment.toml", "rb") as f:
        data = tomllib.load(f)
    return Assignment(
        name=name,
        title=data.get("title", name),
        folder=folder,
        parts=[Part(p["id"], p["title"]) for p in data.get("parts", [])],
        regions={k: RegionSpec.from_dict(k, v) for k, v in data.get("regions", {}).items()},
        limits=data.get("limits", {}),
        pure_calls=tuple(data.get("harvest", {}).get("pure_calls", ())),
        reference_module=data.get("reference_module", "solution.py"),
        data=data,
    )


def import_sibling(file: str, name: str):
    """Import `name`.py from the folder of `file` (an assignment's shared helpers), without
    putting that folder on sys.path."""
    path = Path(file).resolve().parent / f"{name}.py"
    key = f"_grader_sibling_{abs(hash(str(path)))}_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
