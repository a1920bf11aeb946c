"""Public checks and their stored expectations (grader.public.expectations, assignments/pa2/public/).

- `grade build-public` is deterministic (two builds give the same bytes) and the stored files
  are the ones the current reference gives;
- the public checks use only stored data and the submission proxy, never the reference;
- the points: public and hidden checks together keep every part's total;
- stale expectations: computed afresh for the instructor's grading, and no release.
check() inside a kernel is tested with the student bundle (tests/test_release.py).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from grading import grader_env, run_grader
from submissions import REPO

from grader.authoring.release import ReleaseError, release
from grader.editions.assignment import load_assignment
from grader.public import expectations as public
from grader.public import store
from grader.public.store import differences

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

ASSIGNMENT = "pa2-w2021"
FOLDER = REPO / "assignments" / "pa2"  # the family's checks, shared by its editions
PUBLIC = FOLDER / "public"
PART_TOTALS = {"A.1": 6, "B.1": 6, "C.1": 6, "D.1": 7, "D.2": 5}  # as before the public checks
STDLIB = {"contextlib", "functools", "math", "pathlib"}  # what a public check may import besides
W2022_TOTALS = {"W2022.D.1": 2, "W2022.D.2": 4}  # the YOLOv3 files (scaled to 2 + 2 by W2022)


def build_env() -> dict:
    return grader_env(PYTHONDONTWRITEBYTECODE="1")


def stored() -> dict:
    return json.loads((PUBLIC / "expected.json").read_text())


def build(out: Path) -> Path:
    proc = run_grader("build-public", ASSIGNMENT, "--out", out, train=None, env=build_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A `grade build-public` into a fresh folder."""
    return build(tmp_path_factory.mktemp("build"))


def test_build_is_byte_identical(fresh, tmp_path):
    """Built twice, the files are the same bytes. The committed files count as the first
    build when they were made on this machine (the same bytes); otherwise build again."""
    other = PUBLIC
    if any((fresh / n).read_bytes() != (PUBLIC / n).read_bytes() for n in ("expected.json", "tensors.pt")):
        other = build(tmp_path / "again")
    for name in ("expected.json", "tensors.pt"):
        assert (fresh / name).read_bytes() == (other / name).read_bytes(), name
    assert sorted(p.name for p in fresh.iterdir()) == ["expected.json", "tensors.pt"]
    text = (fresh / "expected.json").read_text()
    assert json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n" == text


def test_stored_expectations_are_those_of_the_current_reference(fresh):
    """The committed files match a fresh build: same fingerprint, same JSON and tensors, with
    numbers equal within store.SAME_RTOL / SAME_ATOL (another machine's CPU kernels and BLAS
    round differently; the checks compare at 1e-4, so that noise changes no verdict)."""
    rebuilt_json = json.loads((fresh / "expected.json").read_text())
    assert stored()["fingerprint"] == rebuilt_json["fingerprint"], (
        "the reference or the assignment changed: run `grade build-public pa2-w2021`"
    )
    assert store.differences(store.read(PUBLIC), store.read(fresh)) == []
    committed = torch.load(PUBLIC / "tensors.pt", weights_only=True)
    assert sorted(committed) == sorted(torch.load(fresh / "tensors.pt", weights_only=True))


def test_float_noise_is_not_a_difference_but_a_real_change_is():
    """The tolerance of the comparison above and of `grade build-public --check`."""
    seen_elsewhere = {"sketch": [-0.102950888, 3], "t": torch.tensor([1.0, 2.0]), "ok": True}
    assert (
        differences(
            seen_elsewhere, {"sketch": [-0.102952017, 3], "t": torch.tensor([1.0, 2.0000005]), "ok": True}
        )
        == []
    )
    assert differences(seen_elsewhere, {"sketch": [-0.1031, 3], "t": torch.tensor([1.0, 2.01]), "ok": 1}) == [
        "/ok",
        "/sketch/0",
        "/t",
    ]
    assert differences({"a": 1}, {"a": 1, "b": 2}) == ["/"]


def test_check_command_accepts_float_noise(tmp_path):
    """`grade build-public --check` on stored files whose numbers moved in their last digits,
    as a build on another CPU gives: still up to date."""
    copy = tmp_path / "public"
    shutil.copytree(PUBLIC, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))

    def nudge(value):  # every float moved by 2e-6 relative, as seen across CPUs
        if isinstance(value, dict):
            return {k: nudge(v) for k, v in value.items()}
        if isinstance(value, list):
            return [nudge(v) for v in value]
        return value * (1 + 2e-6) if isinstance(value, float) else value

    tree = json.loads((copy / "expected.json").read_text())
    (copy / "expected.json").write_text(json.dumps(nudge(tree), sort_keys=True, indent=1) + "\n")
    proc = run_grader(
        "build-public", ASSIGNMENT, "--check", "--out", copy, train=None, env=build_env(), timeout=300
    )
    assert proc.returncode == 0 and "up to date" in proc.stdout, proc.stdout + proc.stderr


def test_stored_data_is_plain_and_loads_safely():
    tensors = torch.load(PUBLIC / "tensors.pt", weights_only=True)
    assert isinstance(tensors, dict) and all(isinstance(t, torch.Tensor) for t in tensors.values())
    refs = []

    def walk(value):
        if isinstance(value, dict):
            if set(value) == {"$tensor"}:
                refs.append(value["$tensor"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or isinstance(value, (bool, int, float, str)), value

    data = stored()
    walk(data)
    assert sorted(refs) == sorted(tensors)
    cases = data["cases"]
    assert set(cases) == {"colour", "finetune", "iou", "w2022_yolo"}
    for name, model in cases["colour"].items():
        # Each hyper-parameter the handout lets vary for this model takes two values or more.
        allowed_kernels = {"PoolUpsampleNet": {3, 5}}.get(name, {3})
        for i, values in enumerate(zip(*(s["hp"] for s in model["settings"]))):
            assert len(set(values)) >= 2 or (i == 0 and set(values) == allowed_kernels), (name, i)
        assert {s["hp"][0] for s in model["settings"]} == allowed_kernels
        for setting in model["settings"]:
            assert setting["layers"] and setting["parameters"] > 0 and setting["output_shape"]
            assert all("path" not in rec for rec in setting["layers"])  # no reference names
        for case in model["equivalence"]:
            assert case["states"] and case["variants"]
            assert len(case["variants"]) == (4 if name == "UNet" else 1)  # torch.cat orders
    assert cases["finetune"]["trainable"] == ["classifier.4.weight", "classifier.4.bias"]
    assert cases["finetune"]["optimizer_parameters"] == ["classifier.4.weight", "classifier.4.bias"]
    iou = cases["iou"]
    assert set(iou["accepted"]) == {"whole batch", "per image"}
    probe = iou["probe"]["values"]
    assert abs(probe["whole batch"] - probe["per image"]) > 1e-3  # it tells the readings apart
    shapes = {(len(c["gt"][0]), len(c["gt"][0][0])) for c in iou["cases"]}
    assert any(h == 1 for h, _ in shapes) and any(w == 1 for _, w in shapes)


def test_public_checks_use_only_stored_expectations_and_the_submission():
    files = sorted(PUBLIC.glob("test_*.py"))
    assert [f.name for f in files] == [
        "test_public_colourization.py",
        "test_public_finetune.py",
        "test_public_iou_loss.py",
        "test_public_w2022_yolo.py",
    ]
    helpers = {p.stem for p in PUBLIC.glob("*.py") if not p.name.startswith("test_")}
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = {a.arg for a in node.args.args + node.args.kwonlyargs}
                assert "reference" not in params, f"{path.name}: {node.name} asks for the reference"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                for module in modules:
                    assert module.split(".")[0] in ("pytest", "torch", "grader") or module in STDLIB, (
                        path.name,
                        module,
                    )
            if isinstance(node, ast.Name):
                assert node.id != "reference", (path.name, node.id)
            # A helper must sit in public/ itself: nothing else of the family is shipped.
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "import_sibling":
                assert node.args[1].value in helpers, (path.name, ast.unparse(node))


def test_public_and_hidden_points_keep_every_part_total():
    checks = stored()["checks"]
    totals: dict[str, float] = {}
    for check in checks["public"] + checks["hidden"]:
        totals[check["part"]] = totals.get(check["part"], 0) + check["points"]
    assert totals == PART_TOTALS | W2022_TOTALS
    w2021 = [c for c in checks["public"] if c["part"] in PART_TOTALS]
    assert sum(c["points"] for c in w2021) == 21 and len(w2021) == 15
    names = [c["name"] for c in checks["public"] + checks["hidden"]]
    assert len(set(names)) == len(names)


def test_stale_expectations_are_recomputed_for_grading_and_block_a_release(tmp_path):
    """An assignment whose cases changed after the last build: the instructor's grading uses
    fresh expectations from the reference (and says so); `grade release` refuses."""
    real = load_assignment(ASSIGNMENT)
    folder = tmp_path / ASSIGNMENT
    shutil.copytree(FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(folder / "public_cases.py", "a") as f:
        f.write("\n# edited after the last build\n")
    copy = dataclasses.replace(real, folder=folder)
    assert store.is_current(real) and not store.is_current(copy)
    expectations = public.Expectations(copy, real.load_reference())
    cases = expectations.cases()
    assert expectations.notes and "out of date" in expectations.notes[0]
    assert "grade build-public pa2-w2021" in expectations.notes[0]
    assert cases["finetune"] == stored()["cases"]["finetune"]
    assert cases["iou"] == stored()["cases"]["iou"]
    with pytest.raises(ReleaseError, match="out of date"):
        release(copy, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()
    # Without a reference (a student's installation) the stored files are used as they are.
    student = public.Expectations(copy, None)
    assert student.cases()["iou"] == stored()["cases"]["iou"] and not student.notes
