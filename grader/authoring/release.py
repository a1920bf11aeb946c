"""`grade release NAME --out dist/`: what students receive, without the reference solution.

    dist/<notebook>.ipynb                     the starter notebook (student_template/NAME/)
    dist/pytorch_notebook_grader-<v>+<name>-py3-none-any.whl
                                              the engine, the assignment's description
                                              (assignment.toml), its public checks and their
                                              stored expectations: nothing else
    dist/STUDENTS.md                          how to install it and check a notebook

The wheel is built by pip (setuptools) from a staging copy of the source tree that holds only
those files: no reference/ folder, no hidden check files, no helper module of the assignment
(the public checks read everything from their stored expectations). Before writing anything
the release checks that the stored expectations are current, and afterwards that no line of
the reference module is anywhere in the wheel. Installed, the engine finds no reference and
runs the public checks alone (grader.public.expectations).
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from grader import __version__
from grader.public import store
from grader.editions.assignment import EDITION_FILE, FAMILY_FILE, SHARED_FOLDER
from grader.verbs import run_verb, verb_parser

DIST_NAME = "pytorch-notebook-grader"
# A reference line this short can appear anywhere (`super().__init__()`); longer ones cannot.
LEAK_MIN_CHARS = 24


def main(argv=None) -> int:
    p = verb_parser(
        "grade release",
        "Write the student bundle of an assignment: the starter notebook and a wheel with the public checks.",
        assignment="positional",
    )
    p.add_argument("--out", metavar="DIR", default="dist", help="output folder (default: dist)")
    return run_verb(p, argv, _release_command, expected=(ReleaseError,))


def _release_command(args) -> int:
    from grader.editions.assignment import load_assignment

    paths = release(load_assignment(args.assignment), Path(args.out))
    for path in paths:
        print(f"wrote {path}")
    return 0


class ReleaseError(Exception):
    pass


def release(assignment, out: Path) -> list[Path]:
    if not store.has_public_checks(assignment):
        raise ReleaseError(
            f"{assignment.name} has no public checks (assignments/{assignment.name}/public/test_*.py)"
        )
    if not store.is_current(assignment):
        raise ReleaseError(
            f"the public expectations of {assignment.name} are out of date or "
            f"missing: run `grade build-public {assignment.name}` first"
        )
    template = assignment.template_notebook
    if template is None:
        raise ReleaseError(
            f"no starter notebook for {assignment.name} (student_template/"
            f"{assignment.name}/{assignment.data.get('notebook', '?')})"
        )
    out.mkdir(parents=True, exist_ok=True)
    version = f"{__version__}+{re.sub(r'[^A-Za-z0-9]+', '.', assignment.name).strip('.')}"
    with tempfile.TemporaryDirectory(prefix="grader-release-") as tmp:
        staging = Path(tmp) / "src"
        stage(assignment, staging, version)
        for old in out.glob(f"{DIST_NAME.replace('-', '_')}-*.whl"):
            old.unlink()
        wheel = build_wheel(staging, out)
    leaks = find_leaks(assignment, wheel)
    if leaks:
        wheel.unlink()
        raise ReleaseError("the wheel would contain reference code, not released: " + "; ".join(leaks[:5]))
    notebook = out / template.name
    shutil.copyfile(template, notebook)
    readme = out / "STUDENTS.md"
    readme.write_text(student_readme(assignment, wheel.name, template.name), encoding="utf-8")
    return [notebook, wheel, readme]


def engine_packages(engine: Path) -> list[str]:
    """The engine package and its sub-packages, as dotted names."""
    found = sorted(p.parent.relative_to(engine.parent) for p in engine.rglob("__init__.py"))
    return [".".join(path.parts) for path in found if "__pycache__" not in path.parts]


def stage(assignment, staging: Path, version: str) -> None:
    """A source tree with only what students may have."""
    engine = Path(__file__).resolve().parent.parent  # the grader package
    shutil.copytree(engine, staging / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = staging / "assignments"
    target.mkdir(parents=True)
    (target / "__init__.py").write_text('"""Assignments: their descriptions and public checks."""\n')
    # The edition's description, and where its checks live (its family, or itself): only
    # the description and the public checks, never the hidden checks or their helpers.
    edition = target / assignment.name
    edition.mkdir()
    shutil.copyfile(assignment.edition_folder / EDITION_FILE, edition / EDITION_FILE)
    checks = target / assignment.folder.name
    checks.mkdir(exist_ok=True)
    if assignment.family:
        shutil.copyfile(assignment.folder / FAMILY_FILE, checks / FAMILY_FILE)
    shutil.copytree(
        store.public_folder(assignment),
        checks / store.PUBLIC_DIR,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
    )
    # Public check helpers several families share (assignments/shared/public/): as public as
    # the checks that import them.
    shared = assignment.folder.parent / SHARED_FOLDER / store.PUBLIC_DIR
    if shared.is_dir():
        shutil.copytree(
            shared,
            target / SHARED_FOLDER / store.PUBLIC_DIR,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
        )
    (staging / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68", "wheel"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    config = configparser.ConfigParser(interpolation=None)
    config["metadata"] = {
        "name": DIST_NAME,
        "version": version,
        "description": f"Self-check for {assignment.title} (public checks only)",
        "license": "MIT",
    }
    config["options"] = {
        "python_requires": ">=3.10",
        # Every room of the engine (grade report, class pages and all: students may use them).
        "packages": ", ".join([*engine_packages(engine), "grader_assignments"]),
        "package_dir": "\ngrader = grader\ngrader_assignments = assignments",
        "install_requires": "\n" + "\n".join(requirements()),
        "include_package_data": "False",
    }
    config["options.package_data"] = {
        "grader_assignments": "*/*.toml, */public/*.py, */public/*.json, */public/*.pt",
    }
    config["options.entry_points"] = {"console_scripts": "\ngrade = grader.cli:entry_point"}
    with open(staging / "setup.cfg", "w") as f:
        config.write(f)


def requirements() -> list[str]:
    """The engine's dependencies: from the source tree's setup.cfg, or from the installed
    distribution's metadata."""
    setup_cfg = Path(__file__).resolve().parents[2] / "setup.cfg"
    if setup_cfg.is_file():
        config = configparser.ConfigParser(interpolation=None)
        config.read(setup_cfg)
        lines = config.get("options", "install_requires", fallback="")
        return [line.strip() for line in lines.splitlines() if line.strip()]
    from importlib.metadata import requires

    return [r for r in (requires(DIST_NAME) or []) if "extra ==" not in r]


def build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel --no-deps` of a source tree into `out` (the student bundle here, the
    Gradescope zip in grader.authoring.gradescope): offline, with the installed setuptools, and with
    fixed file dates so that the same sources give the same wheel."""
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_NO_INPUT="1")
    with tempfile.TemporaryDirectory(prefix="grader-wheel-") as wheel_dir:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                wheel_dir,
                str(source),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=source,
        )
        wheels = list(Path(wheel_dir).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise ReleaseError(f"building the wheel failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        target = out / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return target


def reference_lines(assignment) -> list[str]:
    """The reference module's code lines long enough to be its own (comments left out), less
    those the starter notebook shows students anyway (a definition the handout provides)."""
    if not assignment.has_reference:
        return []
    path = assignment.module_path
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    own = {line for line in lines if len(line) >= LEAK_MIN_CHARS and not line.startswith("#")}
    return sorted(own - starter_lines(assignment))


def starter_lines(assignment) -> set[str]:
    """The stripped lines of the starter notebook's code cells."""
    import nbformat

    template = assignment.template_notebook
    if template is None:
        return set()
    nb = nbformat.read(str(template), as_version=4)
    return {line.strip() for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()}


def find_leaks(assignment, wheel: Path) -> list[str]:
    """Files of the wheel that are reference material, or hold a line of the reference module."""
    lines = reference_lines(assignment)
    hidden = {p.name for p in assignment.folder.glob("*.py")}
    leaks = []
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = name.rsplit("/", 1)[-1]
            if (
                name.startswith(("grader_reference/", "reference/"))
                or base == assignment.reference_module
                or (
                    name.startswith("grader_assignments/")
                    and base in hidden
                    and f"/{store.PUBLIC_DIR}/" not in name
                )
            ):
                leaks.append(f"{name} is not a public file")
                continue
            text = z.read(name).decode("utf-8", "replace")
            for line in lines:
                if line in text:
                    leaks.append(f"{name} contains the reference line {line!r}")
    return leaks


def student_readme(assignment, wheel: str, notebook: str) -> str:
    return f"""# Checking your {assignment.title} notebook before you submit

You received `{notebook}` (the starter notebook) and `{wheel}` (the checker). The checker
runs the *public* checks of the assignment on your code, with the same code and the same data
the real grading uses, so a public check that passes here passes there. The real grading also
runs hidden checks; the checker lists them (names and points) after each run. It needs no GPU
and no network, and it does not contain the solution.

## Install (once)

Colab (torch is already there): upload the wheel to the session's files, then in a cell

    !pip install {wheel}

Laptop (Python 3.10 or later; on a machine without a GPU, install the smaller CPU build of
torch first with `pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu`):

    pip install {wheel}

## Check

Inside the notebook, as its last cell, after running the cells with your code:

    from grader import check
    check()          # or check("A.1") for one part

From a terminal, on the saved notebook:

    grade {notebook}

Both print a table of checks, feedback for each failed one, and `Score: X / Y` over the
public checks.
""" + _files_section(assignment, notebook)


def _files_section(assignment, notebook: str) -> str:
    """For an edition graded from files besides the notebook: which, and how to check them."""
    from grader.engine.files import wanted_files

    specs = list(wanted_files(assignment).values())
    if not specs:
        return ""
    listed = "\n".join(f"- `{spec.name}`: {spec.description}" for spec in specs)
    return f"""
## The other files you hand in

Some parts are graded from files you edit besides the notebook:

{listed}

Hand them in together with `{notebook}`, as your course asks (on Gradescope: select all of
them in one upload; where they sit in a folder does not matter). In the notebook, `check()` looks for them in
the current folder and below it (in Colab: run it after `%cd` into the folder that holds them,
or pass `check(folder="...")`). From a terminal, check the folder that holds the notebook and
the files:

    grade my-submission/

A missing file costs the parts graded from it, and the feedback names it. Only the lines the
handout asks you to write are graded; other changes to these files are not run.
"""
