"""The MyConv2d editions' student bundles (`grade release`), self-check inside a kernel
(`check()`) and Gradescope zips: the wheel holds only public files (the shared fine-tuning
checks and the handout's MyConv2d included, no other reference code), and installed alone it
grades the reference with every public check passed and the template with none. Slow."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from bundles import install_student_env, run_autograder
from grading import grader_env, run_grader
from myconv_cases import W2019_REFERENCE, W2019_TEMPLATE, W2020_REFERENCE, W2020_TEMPLATE
from submissions import REPO

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

FAMILY = REPO / "assignments" / "pa2-myconv"
EDITIONS = {
    # edition: (reference, template, public points, hidden points without training)
    "pa2-w2020": (W2020_REFERENCE, W2020_TEMPLATE, 16, 2),
    "pa2-w2019": (W2019_REFERENCE, W2019_TEMPLATE, 10, 4),
}

# A kernel that ran the notebook's cells (its `In` history has the driver cell), then check().
KERNEL = """
import json, sys
from grader.engine.harvest import harvest
from grader.engine.load import load_submission
from grader.sandbox.child import _compile
import grader.student.selfcheck as selfcheck
loaded = load_submission(sys.argv[1])
ns = {"__name__": "__main__", "__builtins__": __builtins__}
for st in harvest(loaded).statements:
    exec(_compile(st.source, st.cell, st.lineno), ns)
ns["In"] = [""] + [cell.source for cell in loaded.cells]
exec("from grader import check\\ncheck()", ns)
r = selfcheck.last_result
print("REPORT " + json.dumps({"error": r.error, "tests": [[c.name, c.status] for c in r.checks]}))
"""


@pytest.fixture(scope="module", params=list(EDITIONS))
def bundle(request, tmp_path_factory):
    """The edition's release, unpacked, and installed into a venv without this source tree."""
    edition = request.param
    root = tmp_path_factory.mktemp(edition)
    env = grader_env(PYTHONDONTWRITEBYTECODE="1")
    proc = run_grader("release", edition, "--out", root / "dist", train=None, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (root / "dist").glob("*.whl")
    return edition, root, wheel, install_student_env(root, wheel)


def test_the_wheel_holds_only_public_files(bundle):
    edition, root, wheel, _ = bundle
    with zipfile.ZipFile(wheel) as z:
        files = sorted(n for n in z.namelist() if n.startswith("grader_assignments/"))
        texts = {n: z.read(n).decode("utf-8", "replace") for n in z.namelist()}
    public = [
        f"grader_assignments/pa2-myconv/public/{p.name}" for p in (FAMILY / "public").iterdir() if p.is_file()
    ]
    assert files == sorted(
        [
            "grader_assignments/__init__.py",
            f"grader_assignments/{edition}/assignment.toml",
            "grader_assignments/pa2-myconv/family.toml",
            "grader_assignments/shared/public/finetune_checks.py",
            *public,
        ]
    ), files
    # The reference's own lines (the answers, ColourNet, the wrappers) are nowhere; the
    # handout's MyConv2d, which the starter shows, is in family.toml.
    solution = (REPO / "reference" / "pa2-myconv" / "solution.py").read_text()
    for line in ("class ColourNet(nn.Module):", "def replace_head_and_freeze(model):"):
        assert line in solution and not any(line in t for t in texts.values()), line
    assert "class MyConv2d(nn.Module):" in texts["grader_assignments/pa2-myconv/family.toml"]


def test_installed_alone_it_grades_the_reference_and_the_template(bundle):
    edition, root, _, student = bundle
    reference, template, public_points, _ = EDITIONS[edition]
    for path, score in ((reference, public_points), (template, 0)):
        out = root / f"{path.parent.name}.json"
        proc = student.run("grade", path, "--json", out)
        data = json.loads(out.read_text())
        assert data["score"] == score and sum(t["max_score"] for t in data["tests"]) == public_points, (
            proc.stdout[-3000:]
        )
        assert "only the public checks ran" in proc.stdout and "hidden checks worth" in proc.stdout


def test_check_inside_the_kernel_passes_every_public_check_of_the_reference(bundle):
    edition, root, _, student = bundle
    reference, _, public_points, _ = EDITIONS[edition]
    script = root / "kernel.py"
    script.write_text(KERNEL)
    proc = student.run("python", script, reference)
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = json.loads(proc.stdout.split("REPORT ", 1)[1])
    assert report["error"] is None and report["tests"], report
    assert all(status == "passed" for _, status in report["tests"]), report
    assert f"Score: {public_points} / {public_points}" in proc.stdout


def test_gradescope_zip_grades_the_edition(bundle, tmp_path):
    edition, *_ = bundle
    reference, _, public_points, hidden = EDITIONS[edition]
    archive = tmp_path / "autograder.zip"
    options = ("--assignment", edition, "--out", archive, "--grade-arg=--no-train")
    run_grader("gradescope-zip", *options, train=None, check=True, timeout=300)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "source")
        (wheel,) = [n for n in z.namelist() if n.endswith(".whl")]
    assert f"ASSIGNMENT={edition}" in (tmp_path / "source" / "run_autograder").read_text()
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target"]
    subprocess.run([*install, tmp_path / "site", tmp_path / "source" / wheel], check=True, timeout=300)
    (tmp_path / "submission").mkdir()
    # a student's copy, under the edition's file name
    (tmp_path / "submission" / reference.name).write_bytes(reference.read_bytes())
    results = run_autograder(tmp_path)
    assert results["score"] == public_points + hidden, results["output"]
