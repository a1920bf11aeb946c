"""`grade gradescope-zip`: the zip unpacks into an /autograder-like tree where run_autograder
grades the submission into results/results.json (with this venv's python and the bundled
wheel, instead of running setup.sh)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import pytest

from bundles import run_autograder
from grading import grader_env, run_grader
from submissions import TEMPLATE_NOTEBOOK, make_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

GRADESCOPE_TEST_KEYS = {"name", "score", "max_score", "status", "output", "visibility", "number", "tags"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    """The zip, unpacked as Gradescope does (into ROOT/source), and its wheel installed into
    ROOT/site for this venv's python."""
    root = tmp_path_factory.mktemp("autograder")
    archive = root / "autograder.zip"
    options = ("--assignment", "pa2-w2021", "--out", archive, "--grade-arg=--no-train")
    proc = run_grader("gradescope-zip", *options, train=None, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        z.extractall(root / "source")
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
    wheels = [n for n in names if n.endswith(".whl")]
    assert {"setup.sh", "run_autograder", "README.md"} <= set(names) and len(wheels) == 1, names
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR, script
        os.chmod(root / "source" / script, 0o755)  # zipfile does not restore modes
    with zipfile.ZipFile(root / "source" / wheels[0]) as wheel:
        inside = set(wheel.namelist())
    for data in (
        "grader_assignments/pa2-w2021/assignment.toml",
        "grader_reference/pa2/solution.py",
        "grader_templates/pa2-w2021/a2-cnn.ipynb",
        "grader/cli.py",
    ):
        assert data in inside, data
    setup = (root / "source" / "setup.sh").read_text()
    assert "torch==2.14.1" in setup and "torchvision==0.29.1" in setup and wheels[0] in setup
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(root / "site"),
            str(root / "source" / wheels[0]),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (root / "submission").mkdir()
    return root


def test_run_autograder_grades_the_submission(autograder):
    submission = make_notebook(autograder / "submission", "my_work")
    (autograder / "submission" / "notes.py").write_text("x = 1\n")  # the notebook wins
    try:
        results = run_autograder(autograder, "--part D.2")
    finally:
        submission.unlink()
        (autograder / "submission" / "notes.py").unlink()
    assert {"score", "execution_time", "output", "tests"} <= set(results)
    assert results["tests"], results
    for test in results["tests"]:
        assert GRADESCOPE_TEST_KEYS <= set(test), test
        assert test["visibility"] in VISIBILITIES
        assert test["tags"][0] == "D.2" and test["tags"][1] != "training"
    assert results["score"] == sum(t["score"] for t in results["tests"])
    assert results["score"] == sum(t["max_score"] for t in results["tests"]), results
    # The wheel's grader graded it, not the checkout.
    located = subprocess.run(
        [sys.executable, "-c", "import grader; print(grader.__file__)"],
        cwd=autograder,
        env=grader_env(autograder / "site"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(autograder / "site") in located


def test_run_autograder_without_a_notebook_still_writes_results(autograder):
    results = run_autograder(autograder)
    assert results["score"] == 0 and results["tests"] == []
    assert "No notebook" in results["output"]


def test_run_autograder_with_a_broken_notebook(autograder):
    broken = autograder / "submission" / "a2-cnn.ipynb"
    broken.write_text("{ not json")
    try:
        results = run_autograder(autograder)
    finally:
        broken.unlink()
    assert results["score"] == 0
    assert "Cannot grade" in results["output"] and "not a valid notebook" in results["output"]


def test_hidden_checks_show_no_input_before_the_due_date(autograder):
    """A hidden check's inputs are never published: on Gradescope a student sees its name,
    points and pass/fail, and its message (inputs, counterexamples) only in a separate
    0-point entry from the due date on (the zip's default)."""
    submission = autograder / "submission" / "a2-cnn.ipynb"
    shutil.copy(TEMPLATE_NOTEBOOK, submission)
    try:
        results = run_autograder(autograder, "--part D.2")
    finally:
        submission.unlink()
    tests = results["tests"]
    details = [t for t in tests if t["name"].endswith(" (details)")]
    assert details, tests  # the template fails D.2's hidden check, with a counterexample
    for entry in details:
        assert entry["visibility"] == "after_due_date"
        assert entry["score"] == 0 and entry["max_score"] == 0
        summary = next(t for t in tests if t["name"] == entry["name"].removesuffix(" (details)"))
        assert summary["visibility"] == "visible" and summary["max_score"] > 0
        assert summary["output"] == "Details of this hidden check are shown after the due date."
        assert entry["output"] and entry["output"] != summary["output"]
    visible_text = "\n".join(t["output"] for t in tests if t["visibility"] == "visible")
    for detail in details:
        for line in detail["output"].splitlines():
            if line.strip() == "Try:":  # the label of a reproduction, in public messages too
                continue
            if "Try:" in line or "input" in line.lower() or "=" in line:
                assert line.strip() not in visible_text, line
    assert results["score"] == sum(t["score"] for t in tests)


SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")


@pytest.mark.skipif(
    os.geteuid() != 0, reason="Gradescope runs the autograder as root; the sandbox's own uid needs root"
)
@pytest.mark.skipif(
    not SYSTEM_PYTHON.exists(), reason=f"no {SYSTEM_PYTHON}: a system interpreter others can enter"
)
def test_without_landlock_root_only_secrets_still_grade(autograder):
    """Docker's seccomp profile on older engines refuses the Landlock calls. There setup.sh has
    left the reference and checks root-only, and the sandbox's uid cannot read them: a probe
    run as that uid shows it, which counts as file-system isolation. So the reference notebook
    gets full marks (not 0 for everyone), and a notebook that reads the reference gets nothing
    from it. Simulated here: a seccomp filter refusing Landlock, no CAP_SYS_ADMIN (capsh, as
    Docker), a system interpreter (a venv's under root's 0700 home needs a capability that
    would let the sandbox read everything) on this venv's packages."""
    root = Path(tempfile.mkdtemp(prefix="grader-gradescope-"))
    opened = []
    try:
        root.chmod(0o755)
        shutil.copytree(autograder / "source", root / "source")
        shutil.copytree(autograder / "site", root / "site")
        (root / "submission").mkdir()
        site = root / "site"
        for secret in [*site.glob("grader_*"), *site.glob("pytorch_notebook_grader-*")]:  # as setup.sh does
            subprocess.run(["chmod", "-R", "go-rwx", str(secret)], check=True)
        reference = site / "grader_reference" / "pa2" / "solution.py"
        reader = make_notebook(
            root / "submission",
            "reader",
            extra_cells=[
                "class PoolUpsampleNet(nn.Module):\n"
                "    def __init__(self, *args):\n"
                "        super().__init__()\n"
                f"        raise RuntimeError(open({str(reference)!r}).read()[:300])\n"
            ],
        )
        venv_site = sysconfig.get_paths()["purelib"]
        # This venv has the grader installed too (`make test`): its secrets root-only as well,
        # for the run (the probe found it readable otherwise, and rightly refused).
        for secret in [*Path(venv_site).glob("grader_*"), *Path(venv_site).glob("pytorch_notebook_grader-*")]:
            opened.append((secret, secret.stat().st_mode & 0o777))
            secret.chmod(0o700)
        env = grader_env(
            f"{site}:{venv_site}",
            AUTOGRADER_ROOT=str(root),
            GRADER_PYTHON=str(SYSTEM_PYTHON),
            GRADER_EXTRA_ARGS="--part A.1",
        )
        command = [
            sys.executable,
            str(Path(__file__).parent / "no_landlock.py"),
            "bash",
            str(root / "source" / "run_autograder"),
        ]
        if shutil.which("capsh"):
            command = ["capsh", "--drop=cap_sys_admin", "--", "-c", " ".join(map(shlex.quote, command))]

        def grade() -> dict:
            proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return json.loads((root / "results" / "results.json").read_text())

        results = grade()
        output = json.dumps(results)
        assert "own uid, secrets unreadable by it" in results["output"], results["output"]
        assert "landlock" not in results["output"].replace("no landlock", ""), results["output"]
        assert "def replace_head_and_freeze" not in output and "PermissionError" in output, output[:3000]
        reader.unlink()
        make_notebook(root / "submission", "a2-cnn")
        results = grade()
        assert results["tests"] and results["score"] == sum(t["max_score"] for t in results["tests"]), results
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for secret, mode in opened:
            secret.chmod(mode)
