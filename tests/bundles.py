"""What the tests of the bundles we hand out share (tests/test_release.py, tests/test_gradescope.py,
tests/test_myconv_bundles.py): a student's fresh environment with a release's wheel installed,
and Gradescope's run_autograder on an unpacked zip.

A student's environment is a venv made with --without-pip that sees this environment's
packages (torch, ...) through a .pth file, minus this grader itself, so nothing of the source
tree (reference/, hidden checks) can be imported there; the wheel is installed with --no-deps.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from grading import grader_env
from submissions import REPO


def clean_env() -> dict[str, str]:
    """The environment of a student's commands: nothing of this checkout on the path, and no
    .pyc files written (the bundle is checked file by file)."""
    return grader_env(pythonpath=None, PYTHONDONTWRITEBYTECODE="1")


def install_student_env(root: Path, wheel: Path) -> StudentEnv:
    """A venv in ROOT/venv on this environment's packages but this grader, with `wheel`
    installed into it."""
    base = root / "base-site"  # this environment's packages, without this grader
    base.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if re.match(r"(grader|pytorch_notebook_grader|__editable__)", entry.name) or (
            entry.suffix == ".pth" and str(REPO) in entry.read_text(errors="replace")
        ):
            continue
        (base / entry.name).symlink_to(entry)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_base_packages.pth").write_text(f"import site; site.addsitedir({str(base)!r})\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return StudentEnv(root, venv)


class StudentEnv:
    def __init__(self, root: Path, venv: Path):
        self.root, self.venv = root, venv
        self.work = root / "work"
        self.work.mkdir()

    def run(self, *args, timeout=600) -> subprocess.CompletedProcess:
        """A command of the venv (bin/grade, bin/python), run outside the source tree."""
        return self.start(*args).wait(timeout)

    def start(self, *args) -> Run:
        return Run(self, *args)


class Run:
    """A command of the student's venv started in the background; wait() gives its
    CompletedProcess (stdout and stderr together)."""

    def __init__(self, student: StudentEnv, program: str, *args):
        self.args = (program, *map(str, args))
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [student.venv / "bin" / program, *self.args[1:]],
            cwd=student.work,
            env=clean_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def wait(self, timeout=900) -> subprocess.CompletedProcess:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self.log.seek(0)
        return subprocess.CompletedProcess(self.args, code, self.log.read(), "")


def run_autograder(root: Path, extra: str = "") -> dict:
    """Gradescope's run_autograder of the zip unpacked into ROOT/source, with its wheel installed
    into ROOT/site for this venv's python (instead of running setup.sh): the submission in
    ROOT/submission is graded into ROOT/results/results.json, which is returned."""
    env = grader_env(
        root / "site",
        AUTOGRADER_ROOT=str(root),
        GRADER_PYTHON=sys.executable,
        GRADER_EXTRA_ARGS=extra,
    )
    proc = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((root / "results" / "results.json").read_text())
