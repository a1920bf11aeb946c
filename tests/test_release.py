"""The student bundle (`grade release`): it holds no reference code, and installed into a fresh
environment it checks notebooks with the public checks alone, giving each public check the
verdict the instructor's grading gives it.

The fresh environment is a venv that sees this environment's packages but not this grader
(tests/bundles.py). The instructor's side is the session batch of conftest.py (NOTEBOOKS
below).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from bundles import Run, StudentEnv, install_student_env
from grading import grader_env, run_grader
from submissions import REFERENCE_NOTEBOOK, REFERENCE_SOLUTION, REPO, TEMPLATE_NOTEBOOK, make_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

ASSIGNMENT = "pa2-w2021"
FAMILY = "pa2"  # where the edition's checks and public files live
PUBLIC = REPO / "assignments" / FAMILY / "public"

# --------------------------------------------------------------------------------------
# Mutants of the reference notebook, and the public checks each must fail
# --------------------------------------------------------------------------------------
CONV_TRANSPOSE_NO_FINAL = """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        def down(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=2, padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU())
        def up(cin, cout):
            return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=1,
                                                    output_padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU())
        self.encoder = nn.Sequential(down(num_in_channels, num_filters),
                                     down(num_filters, 2 * num_filters))
        self.decoder = nn.Sequential(up(2 * num_filters, num_filters),
                                     up(num_filters, num_colours))

    def forward(self, x):
        return self.decoder(self.encoder(x))
"""
UNET_NO_INPUT_SKIP = """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.c1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=1)
        self.b1 = nn.BatchNorm2d(num_filters)
        self.c2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=1)
        self.b2 = nn.BatchNorm2d(2 * num_filters)
        self.t1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2, padding=1,
                                     output_padding=1)
        self.b3 = nn.BatchNorm2d(num_filters)
        self.t2 = nn.ConvTranspose2d(2 * num_filters, num_colours, kernel, stride=2, padding=1,
                                     output_padding=1)
        self.b4 = nn.BatchNorm2d(num_colours)
        self.out = nn.Conv2d(num_colours, num_colours, kernel, padding=1)

    def forward(self, x):
        a = F.relu(self.b1(self.c1(x)))
        b = F.relu(self.b2(self.c2(a)))
        c = F.relu(self.b3(self.t1(b)))
        d = F.relu(self.b4(self.t2(torch.cat([c, a], 1))))
        return self.out(d)
"""
REFERENCE_BLOCK = (
    "                resample,\n                nn.BatchNorm2d(cout),\n                nn.ReLU(),\n"
)
RELU_FIRST_BLOCK = (
    "                resample,\n                nn.ReLU(),\n                nn.BatchNorm2d(cout),\n"
)
HEAD = "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)"
LOSS = "loss = 1 - (intersection + SMOOTH) / (union + SMOOTH)"

LAYERS, PARAMS, SAME = (
    "Conv, transposed conv and batch-norm layers",
    "Number of parameters",
    "Same outputs as the reference",
)
MUTANTS = {
    # name: (make_notebook edits, {part: fragments of the names of the public checks that fail})
    "public_relu_before_bn": ({"substitute": {REFERENCE_BLOCK: RELU_FIRST_BLOCK}}, {"A.1": {SAME}}),
    "public_no_final_conv": (
        {"replace": {"ConvTransposeNet": CONV_TRANSPOSE_NO_FINAL}},
        {"B.1": {LAYERS, PARAMS, SAME}},
    ),
    "public_unet_no_input_skip": ({"replace": {"UNet": UNET_NO_INPUT_SKIP}}, {"C.1": {LAYERS, PARAMS, SAME}}),
    "public_head_21_classes": (
        {"substitute": {HEAD: HEAD.replace("256, 2,", "256, 21,")}},
        {"D.1": {"classifier[4] becomes", "'out' has shape"}},
    ),
    "public_iou_not_loss": ({"substitute": {LOSS: LOSS.replace("1 - ", "")}}, {"D.2": {"Loss values match"}}),
}
# Graded on the instructor's side by conftest's session batch (reference installed).
NOTEBOOKS = {
    "public_reference": {},
    "public_template": {"base": TEMPLATE_NOTEBOOK},
    **{name: edits for name, (edits, _) in MUTANTS.items()},
}


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = grader_env(PYTHONDONTWRITEBYTECODE="1")
    proc = run_grader("release", ASSIGNMENT, "--out", out, train=None, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(folder)
    return folder


@pytest.fixture(scope="module")
def student(wheel, tmp_path_factory) -> StudentEnv:
    return install_student_env(tmp_path_factory.mktemp("student"), wheel)


@pytest.fixture(scope="module")
def student_runs(student) -> dict[str, Run]:
    """Everything the student's side runs, started together so that they overlap with each
    other and with the instructor's batch: `grade` on a folder of every notebook, `grade` on
    the reference notebook, and check() in simulated kernels (tests/kernel_check.py)."""
    folder = student.root / "notebooks"
    folder.mkdir()
    for name, spec in NOTEBOOKS.items():
        make_notebook(folder if name != "public_reference" else student.root, name, **spec)
    return {
        "batch": student.start("grade", folder, "--out", student.root / "results", "--quiet"),
        "reference": student.start(
            "grade", student.root / "public_reference.ipynb", "--json", student.root / "reference.json"
        ),
        "kernel": student.start(
            "python",
            Path(__file__).with_name("kernel_check.py"),
            *(
                student.root / f"{n}.ipynb" if n == "public_reference" else folder / f"{n}.ipynb"
                for n in KERNEL_NOTEBOOKS
            ),
        ),
    }


@pytest.fixture(scope="module")
def student_batch(student, student_runs) -> dict[str, dict]:
    """Every notebook of NOTEBOOKS graded by the student's `grade`: the reference alone (its
    printed output is tested too), the others in one batch."""
    proc = student_runs["batch"].wait()
    student_runs["reference"].wait()
    results = {}
    for name in NOTEBOOKS:
        path = student.root / ("reference.json" if name == "public_reference" else f"results/{name}.json")
        assert path.is_file(), f"no results for {name}\n{proc.stdout[-3000:]}"
        results[name] = json.loads(path.read_text())
    return results


@pytest.fixture(scope="module")
def kernel_report(student_runs) -> tuple[dict, str]:
    proc = student_runs["kernel"].wait()
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads(proc.stdout.split("REPORT ", 1)[1]), proc.stdout


# The W2021 bundle's tasks (the family also has W2022's YOLOv3 tasks, graded from files).
W2021_TASKS = {"A.1", "B.1", "C.1", "D.1", "D.2"}


def stored_checks(kind: str) -> list[dict]:
    """The family's stored public or hidden checks of the tasks W2021 grades."""
    checks = json.loads((PUBLIC / "expected.json").read_text())["checks"][kind]
    return [c for c in checks if c["part"] in W2021_TASKS]


def public_names() -> list[str]:
    return [c["name"] for c in stored_checks("public")]


def verdicts(tests: list[dict], names) -> dict[str, str]:
    return {t["name"]: t["status"] for t in tests if t["name"] in set(names)}


# --------------------------------------------------------------------------------------
# What the bundle holds
# --------------------------------------------------------------------------------------
def student_region_lines() -> list[str]:
    """The code lines between the `YOUR CODE GOES HERE` / `Code goes here` markers of the
    reference solution (more than punctuation)."""
    found, inside = set(), False
    for line in REFERENCE_SOLUTION.read_text().splitlines():
        text = line.strip()
        if "YOUR CODE GOES HERE" in text or "Code goes here" in text:
            inside = True
        elif inside and re.fullmatch(r"#{10,}", text):
            inside = False
        elif inside and text and not text.startswith("#") and re.search(r"[A-Za-z]", text):
            found.add(text)
    return sorted(found)


def readable_texts(path: Path) -> list[str]:
    """A file's text, and for JSON files (notebooks) the text of every string in it too."""
    raw = path.read_bytes().decode("latin-1")
    texts = [raw]
    if path.suffix in (".json", ".ipynb"):
        strings = []

        def walk(value):
            if isinstance(value, str):
                strings.append(value)
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(json.loads(raw))
        texts.append("".join(strings))
        texts.append("\n".join(strings))
    return texts


def test_bundle_is_the_template_a_wheel_and_instructions(dist, wheel):
    assert sorted(p.name for p in dist.iterdir()) == sorted(["a2-cnn.ipynb", wheel.name, "STUDENTS.md"])
    assert (dist / "a2-cnn.ipynb").read_bytes() == TEMPLATE_NOTEBOOK.read_bytes()
    readme = (dist / "STUDENTS.md").read_text()
    for command in (f"pip install {wheel.name}", "from grader import check", "grade a2-cnn.ipynb"):
        assert command in readme


def test_wheel_holds_the_engine_and_only_public_files(unpacked):
    files = sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file())
    assignment_files = [f for f in files if f.startswith("grader_assignments/")]
    assert sorted(assignment_files) == sorted(
        [
            "grader_assignments/__init__.py",
            f"grader_assignments/{ASSIGNMENT}/assignment.toml",
            f"grader_assignments/{FAMILY}/family.toml",
            # public check helpers several families share (the fine-tuning checks)
            *(
                f"grader_assignments/shared/public/{p.name}"
                for p in (REPO / "assignments" / "shared" / "public").glob("*.py")
            ),
            *(
                f"grader_assignments/{FAMILY}/public/{p.name}"
                for p in PUBLIC.iterdir()
                if p.is_file() and not p.name.startswith(".")
            ),
        ]
    ), assignment_files
    tops = {f.split("/")[0] for f in files}
    assert tops == {"grader", "grader_assignments", next(t for t in tops if t.endswith(".dist-info"))}
    engine = {"grader/cli.py", "grader/student/selfcheck.py", "grader/sandbox/child.py"}
    assert engine <= set(files)


def test_bundle_holds_no_reference_code(dist, unpacked):
    files = [p for p in unpacked.rglob("*") if p.is_file()] + [
        p for p in dist.iterdir() if p.suffix != ".whl"
    ]
    names = {p.name for p in files}
    # No reference module, no hidden check, no helper the hidden checks use.
    hidden = {p.name for p in (REPO / "assignments" / FAMILY).glob("*.py")}
    assert not names & ({REFERENCE_SOLUTION.name} | hidden), names & ({REFERENCE_SOLUTION.name} | hidden)
    assert not [p for p in unpacked.rglob("*") if "reference" in p.name], "a reference package"
    lines = student_region_lines()
    assert len(lines) > 40, lines  # the markers were found
    texts = {p: readable_texts(p) for p in files}
    leaks = [
        (line, str(p))
        for line in lines
        for p, variants in texts.items()
        if any(line in text for text in variants)
    ]
    assert not leaks, leaks[:10]
    # The grep finds such a line where one is: the reference notebook has all of them.
    reference_texts = readable_texts(REFERENCE_NOTEBOOK)
    assert all(any(line in t for t in reference_texts) for line in lines)


# --------------------------------------------------------------------------------------
# The student's side
# --------------------------------------------------------------------------------------
def test_installed_bundle_has_no_reference(student, student_runs):
    proc = student.run(
        "python",
        "-c",
        "import importlib.util as u, grader, grader.editions.assignment as a;"
        "print(grader.__file__); print(u.find_spec('grader_reference'));"
        f"print(a.load_assignment('{ASSIGNMENT}').load_reference())",
    )
    assert proc.returncode == 0, proc.stderr
    where, spec, reference = proc.stdout.split("\n")[:3]
    assert str(student.venv) in where and str(REPO) not in where
    assert spec == "None" and reference == "None"


def test_self_check_of_the_reference_passes_every_public_check(student, student_runs):
    proc = student_runs["reference"].wait()
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = proc.stdout
    assert "No reference solution is installed here, so only the public checks ran" in out
    assert out.rstrip().splitlines()[-1] == "Score: 21 / 21"
    data = json.loads((student.root / "reference.json").read_text())
    assert [t["name"] for t in data["tests"]] == public_names()
    assert all(t["status"] == "passed" and t["visibility"] == "visible" for t in data["tests"])
    # The hidden checks are listed by name and points, and the total adds up to the grade's.
    hidden = stored_checks("hidden")
    assert hidden and all(c["name"] in out for c in hidden)
    assert sum(c["points"] for c in hidden) + data["score"] == 30


def test_self_check_of_the_template_fails_every_public_check_clearly(student_batch):
    tests = student_batch["public_template"]["tests"]
    assert [t["name"] for t in tests] == public_names()
    for t in tests:
        assert t["status"] == "failed" and t["score"] == 0, t
        text = t["output"].strip().split("\nTry:\n", 1)[0]  # then, maybe, code to reproduce it
        assert text and "\n" not in text and "please report this" not in text, t
    by_name = {t["name"]: t["output"] for t in tests}
    by_part = {t["tags"][0]: t["output"] for t in tests}
    where = "code cell 7 (starting `class PoolUpsampleNet(nn.Module):`)"
    assert by_part["A.1"].startswith(f"`PoolUpsampleNet` is in {where}, which does not parse")
    head = next(n for n in by_name if "classifier[4] becomes" in n)
    assert "not the 21 of the pretrained head" in by_name[head]
    assert "name 'loss' is not defined" in by_part["D.2"]


@pytest.mark.parametrize("name", ["public_reference", "public_template", *MUTANTS])
def test_student_and_instructor_agree_on_every_public_check(student_batch, graded, name):
    names = public_names()
    mine = verdicts(student_batch[name]["tests"], names)
    theirs = verdicts(graded[name].tests, names)
    assert list(mine) == names and set(theirs) == set(names)
    assert mine == theirs, {n: (mine[n], theirs[n]) for n in names if mine[n] != theirs[n]}
    # Same feedback too: the same code on the same data.
    outputs = {t["name"]: t["output"] for t in graded[name].tests}
    for t in student_batch[name]["tests"]:
        assert t["output"] == outputs[t["name"]], t["name"]


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_fails_exactly_the_public_checks_that_see_it(student_batch, name):
    _, expected = MUTANTS[name]
    failed = {(t["tags"][0], t["name"]) for t in student_batch[name]["tests"] if t["status"] == "failed"}
    want = {
        (part, n)
        for part, fragments in expected.items()
        for n in public_names()
        if n.startswith(part) and any(f in n for f in fragments)
    }
    assert failed == want


# --------------------------------------------------------------------------------------
# check() inside a notebook's kernel
# --------------------------------------------------------------------------------------
KERNEL_NOTEBOOKS = ["public_reference", "public_head_21_classes"]


def test_check_inside_the_kernel_matches_the_grading(kernel_report, student_batch, graded, student):
    report, stdout = kernel_report
    public = public_names()
    for name in KERNEL_NOTEBOOKS:
        got = next(v for k, v in report.items() if k.endswith(f"/{name}.ipynb"))
        assert got["error"] is None, got
        assert "only the public checks ran" in got["notes"][0]
        mine = verdicts(got["tests"], public)
        assert list(mine) == public
        assert (
            mine == verdicts(graded[name].tests, public) == verdicts(student_batch[name]["tests"], public)
        ), name
        outputs = {t["name"]: t["output"] for t in student_batch[name]["tests"]}
        assert all(t["output"] == outputs[t["name"]] for t in got["tests"]), name
    # The printed feedback is the grade command's table.
    assert "Score: 21 / 21" in stdout and "Score: 19 / 21" in stdout


def test_check_of_some_parts_in_a_kernel_that_misses_things(kernel_report):
    """check("D.2") on a kernel that defines only a wrong loss: the D.2 public checks run with
    the grading's feedback; D.1 says how to find a driver cell that was never run; A.1 says
    the class is not defined in this kernel. The kernel's random state is kept."""
    report, stdout = kernel_report
    assert report["same random state"]
    d2 = {t["name"]: t for t in report["D.2 only"]["tests"]}
    assert list(d2) == [n for n in public_names() if n.startswith("D.2")]
    values = next(t for n, t in d2.items() if "Loss values match" in n)
    assert values["status"] == "failed" and "(IoU whole batch)" in values["output"]
    assert re.search(r"Try:\n *pred = torch.tensor", values["output"]), values["output"]
    assert d2["D.2: Gradients flow from the loss back to the logits"]["status"] == "passed"
    assert "Score: 1 / 3" in stdout
    tests = report["D.1 and A.1"]["tests"]
    assert {t["part"] for t in tests} == {"A.1", "D.1"} and len(tests) == 7
    assert all(t["status"] == "failed" for t in tests)
    driver = [t["output"] for t in tests if "Driver cell" in t["name"]]
    assert driver and all("was not found" in o and "check(notebook=" in o for o in driver)
    assert all(
        "`PoolUpsampleNet` is not defined in this kernel" in t["output"] for t in tests if t["part"] == "A.1"
    )
