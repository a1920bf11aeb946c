"""`grade gradescope-zip`: build the autograder zip that Gradescope's "Autograder" upload takes.

    grade gradescope-zip --assignment pa2-w2021 --out autograder.zip [--grade-arg=--no-train]

The zip holds, at its root:

* `setup.sh`: run once by Gradescope (as root, on its Ubuntu image) when it builds the
  autograder image: installs python3, makes a venv in /autograder/venv, installs the pinned
  CPU build of torch and torchvision, then the bundled wheel of this package;
* `run_autograder`: run for every submission: grades the first notebook (else the first .py
  file) under /autograder/submission with `grade --json`, which writes Gradescope's
  results.json schema (per-test visibility included) to /autograder/results/results.json;
* the package as a wheel (`pip wheel --no-deps` of this source tree), with its data
  packages: the assignments' checks, the reference solutions and the student templates;
* `README.md`: the above, for whoever opens the zip.

For tests, run_autograder reads AUTOGRADER_ROOT (default /autograder), GRADER_PYTHON (default
/autograder/venv/bin/python) and GRADER_EXTRA_ARGS (appended to the baked-in grade arguments).
"""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from grader.engine.files import wanted_files
from grader.verbs import run_verb, verb_parser

PINS = Path("requirements", "pinned.txt")  # the one place torch and torchvision are pinned
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# What the wheel is built from: the package metadata and the folders setup.cfg maps.
SOURCE_ITEMS = [
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "grader",
    "assignments",
    "reference",
    "student_template",
]

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# It installs python3, a venv with the CPU build of torch, and this grader (the bundled wheel).
set -euxo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-pip python3-venv
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --upgrade pip
"$ROOT/venv/bin/python" -m pip install torch=={torch} torchvision=={torchvision} --index-url {index}
# Every other dependency at the version the zip was built and tested with.
"$ROOT/venv/bin/python" -m pip install -c "$HERE"/constraints.txt "$HERE"/{wheel}
"$ROOT/venv/bin/grade" --help > /dev/null
# No copy of the reference may stay where a submission could look: the wheel goes, and the
# installed reference, checks and templates are readable by root only (the grader runs as
# root; student code runs under its own uid, behind Landlock).
rm -f "$HERE"/*.whl
SITE="$("$ROOT/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
chmod -R go-rwx "$SITE"/grader_reference "$SITE"/grader_assignments "$SITE"/grader_templates \
  "$SITE"/pytorch_notebook_grader-*.dist-info
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission (as root; the grader drops the student's code to an
# unprivileged user in a sandbox). It grades the first .ipynb under submission/ (else the first
# .py) and writes results/results.json in Gradescope's schema; each test carries its own
# visibility, as the assignment's checks set it.
#   AUTOGRADER_ROOT    the /autograder tree (default /autograder)
#   GRADER_PYTHON      the python that has the grader installed (default $ROOT/venv/bin/python)
#   GRADER_EXTRA_ARGS  more arguments for `grade`, after the built-in ones
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{GRADER_PYTHON:-$ROOT/venv/bin/python}}"
ASSIGNMENT={assignment}
GRADE_ARGS=({grade_args})
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"

fallback() {{  # results.json when the grader could not write one; $1: the reason (no quotes)
  printf '{{"score": 0, "execution_time": 0, "output": "%s", "tests": []}}\\n' "$1" > "$RESULTS"
}}

found() {{ find "$ROOT/submission" -type f -name "$1" -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | LC_ALL=C sort; }}
# The assignment's notebook by name; else the only notebook; else the only .py file.
SUBMISSION="$(found {notebook} | head -n 1)"
if [ -z "$SUBMISSION" ]; then
  NOTEBOOKS="$(found '*.ipynb')"
  [ -n "$NOTEBOOKS" ] || NOTEBOOKS="$(found '*.py')"
  if [ -z "$NOTEBOOKS" ]; then
    fallback "No notebook (.ipynb) or Python file (.py) was found in the submission; expected {notebook}."
    exit 0
  elif [ "$(printf '%s' "$NOTEBOOKS" | grep -c .)" = 1 ]; then
    SUBMISSION="$NOTEBOOKS"
  else
    LISTED="$(found '*' | sed "s|^$ROOT/submission/||" | head -n 20 | tr '\n' ' ' | tr -d '"\\')"
    fallback "Several notebooks and no {notebook} in the submission: ${{LISTED}}; submit {notebook}."
    exit 0
  fi
fi
# An edition graded from files besides the notebook ({files}) gets the whole upload:
# the grader finds the notebook (this one) and the files in it, and names any that are missing.
if [ -n {files_quoted} ]; then
  SUBMISSION="$ROOT/submission"
fi
echo "Grading $SUBMISSION"
rm -f "$RESULTS"
# Run from an empty folder, so that `python -m` imports the installed grader and nothing else.
WORK="$(mktemp -d)"
cd "$WORK"
# shellcheck disable=SC2086
"$PYTHON" -m grader.cli "$SUBMISSION" --assignment "$ASSIGNMENT" --json "$RESULTS" --hidden-details {hidden_details} "${{GRADE_ARGS[@]}}" ${{GRADER_EXTRA_ARGS:-}}
STATUS=$?
cd / && rm -rf "$WORK"
# 0: all checks passed, 1: some failed, 2: the submission could not be used (results.json
# says why). Anything else, or no results file, is the grader's own failure.
if [ ! -s "$RESULTS" ]; then
  fallback "The autograder failed (exit status $STATUS) before writing results; please tell the course staff."
fi
exit 0
"""

README = """\
# Autograder for {assignment}

Built by `grade gradescope-zip` (pytorch-notebook-grader {version}). Upload this zip as a
Gradescope programming assignment's autograder (Ubuntu base image).

* `setup.sh`: installs python3, a venv in /autograder/venv with torch=={torch} and
  torchvision=={torchvision} (CPU builds, from {index}) and the grader: `{wheel}`.
* `run_autograder`: grades the first `.ipynb` in the submission (else the first `.py`) with
  `grade SUBMISSION --assignment {assignment} --json /autograder/results/results.json {grade_args}`.
{upload}
  Scores, feedback and each test's visibility come from the assignment's checks; a hidden
  check shows its name, points and pass/fail, and its message (inputs, counterexamples) in a
  separate 0-point "(details)" entry visible {hidden_details}.

Resources: give the autograder at least 2 CPUs and 6 GB of memory. Grading the reference
notebook with training peaks at 3.83 GiB resident summed over the grader's process tree (the
warm server, the grader with its own reference runs, the sandbox child; pages shared between
them counted twice, so an upper bound; measured on a 2-core x86_64 machine with
benchmarks/bench_memory.py). Gradescope's default of 768 MB is not enough.

Security: setup.sh deletes the wheel and leaves the installed reference and checks readable
by root only; student code runs in a sandbox (Landlock file-system allow-list, seccomp, its
own uid, cgroup limits): see the grader's docs/security.md. Each results.json says which
protections held.

Try it locally: unpack into a folder ROOT/source, put a notebook in ROOT/submission/, then run
`AUTOGRADER_ROOT=ROOT GRADER_PYTHON=python3 bash ROOT/source/run_autograder` with a python
that has the wheel installed; the results are in ROOT/results/results.json.
"""


def upload_text(notebook: str, files: list[str]) -> str:
    """What students upload, for the README (and for the course to paste into the assignment's
    description)."""
    if not files:
        return f"  Students upload their notebook, {notebook}.\n"
    names = ", ".join(f"`{name}`" for name in files)
    return (
        f"  Students upload {notebook} and {names} together (Gradescope's upload of several\n"
        "  files, or a zip of the folder holding them; folders inside it are fine). run_autograder\n"
        "  then grades the whole upload: the notebook's parts from the notebook, the other parts\n"
        "  from their files, each found by name and content wherever it is. A missing file costs\n"
        "  the parts graded from it, with a message naming it.\n"
    )


def source_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "setup.cfg").is_file():
        raise SystemExit(
            "grade gradescope-zip: run it from a source checkout of the grader "
            f"(no setup.cfg in {Path(__file__).resolve().parents[2]})"
        )
    return root


def pinned_version(name: str, root: Path | None = None) -> str:
    """The version requirements/pinned.txt pins `name` to (a `name==version` line)."""
    path = (root or source_root()) / PINS
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"grade gradescope-zip: cannot read {path}: {exc.strerror}")
    for line in lines:
        found = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if found and found[1].lower().replace("_", "-") == name:
            return found[2]
    raise SystemExit(f"grade gradescope-zip: {path} pins no version of {name}")


def engine_wheel(root: Path, target: Path) -> Path:
    """The grader's wheel, built (grader.authoring.release.build_wheel) from a clean copy of the source
    tree, so the build's scratch files never land in the checkout."""
    from grader.authoring.release import ReleaseError, build_wheel

    with tempfile.TemporaryDirectory(prefix="grader-wheel-") as tmp:
        copy = Path(tmp, "src")
        copy.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
        for item in SOURCE_ITEMS:
            source = root / item
            if source.is_dir():
                shutil.copytree(source, copy / item, ignore=ignore)
            elif source.is_file():
                shutil.copy2(source, copy / item)
        try:
            return build_wheel(copy, target)
        except ReleaseError as exc:
            raise SystemExit(f"grade gradescope-zip: {exc}")


def constraints() -> str:
    """The versions of every installed distribution (`pip freeze`) but torch's own family
    (setup.sh pins torch and takes the CPU builds) and this package: what the tests ran with."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    skip = ("torch", "torchvision", "triton", "nvidia-", "cuda-", "pytorch-notebook-grader")
    lines = [line for line in proc.stdout.splitlines() if "==" in line and not line.lower().startswith(skip)]
    return "# pip freeze of the environment that built this zip\n" + "\n".join(lines) + "\n"


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
    archive.writestr(info, data)


def script_values(assignment: str, grade_args: list[str], hidden_details: str, wheel: str) -> dict:
    """What run_autograder and the README are filled with (shell-quoted where the shell reads it)."""
    from grader.editions.assignment import load_assignment

    edition = load_assignment(assignment)
    files = [spec.name for spec in wanted_files(edition).values()]
    return dict(
        assignment=shlex.quote(assignment),
        grade_args=" ".join(shlex.quote(a) for a in grade_args),
        wheel=wheel,
        hidden_details=shlex.quote(hidden_details),
        notebook=shlex.quote(edition.notebook),
        files=", ".join(files) or "none",
        files_quoted=shlex.quote(" ".join(files)),
        upload=upload_text(edition.notebook, files),
    )


def build_zip(
    assignment: str,
    out: Path,
    grade_args: list[str],
    torch: str | None = None,
    torchvision: str | None = None,
    index: str = TORCH_INDEX,
    hidden_details: str = "after_due_date",
) -> Path:
    from grader import __version__

    root = source_root()
    torch = torch or pinned_version("torch", root)
    torchvision = torchvision or pinned_version("torchvision", root)
    with tempfile.TemporaryDirectory(prefix="grader-zip-") as tmp:
        wheel = engine_wheel(root, Path(tmp))
        values = script_values(assignment, grade_args, hidden_details, wheel.name)
        values.update(torch=torch, torchvision=torchvision, index=index, version=__version__)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            _add(archive, "setup.sh", SETUP_SH.format(**values).encode(), executable=True)
            _add(archive, "run_autograder", RUN_AUTOGRADER.format(**values).encode(), executable=True)
            _add(archive, wheel.name, wheel.read_bytes())
            _add(archive, "constraints.txt", constraints().encode())
            _add(archive, "README.md", README.format(**dict(values, assignment=assignment)).encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(out)
    return out


def main(argv: list[str]) -> int:
    p = verb_parser(
        "grade gradescope-zip", "Build Gradescope's autograder zip for an assignment.", assignment="option"
    )
    p.add_argument("--out", default="autograder.zip", help="the zip to write (default autograder.zip)")
    p.add_argument(
        "--grade-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument run_autograder passes to `grade` (repeatable), e.g. "
        "--grade-arg=--no-train or --grade-arg=--timeout=30",
    )
    p.add_argument(
        "--hidden-details",
        default="after_due_date",
        choices=["visible", "after_due_date", "after_published", "hidden"],
        help="when students see the messages and inputs of hidden checks (default "
        "after_due_date); before then only their names, points and pass/fail",
    )
    p.add_argument("--torch", help=f"torch version setup.sh installs (default: the pin in {PINS})")
    p.add_argument(
        "--torchvision", help=f"torchvision version setup.sh installs (default: the pin in {PINS})"
    )
    p.add_argument(
        "--index-url",
        default=TORCH_INDEX,
        help=f"where setup.sh gets torch (default: the CPU builds, {TORCH_INDEX})",
    )
    return run_verb(p, argv, gradescope_zip)


def gradescope_zip(args) -> int:
    from grader.editions.assignment import load_assignment

    assignment = load_assignment(args.assignment)
    out = build_zip(
        assignment.name,
        Path(args.out),
        args.grade_arg,
        args.torch,
        args.torchvision,
        args.index_url,
        args.hidden_details,
    )
    print(
        f"Wrote {out} (assignment {assignment.name}): setup.sh, run_autograder, the grader's wheel, README.md"
    )
    files = [spec.name for spec in wanted_files(assignment).values()]
    if files:
        print(
            f"Students upload {assignment.notebook} and {', '.join(files)} together (see the zip's README.md)."
        )
    return 0
