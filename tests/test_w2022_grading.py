"""W2022 Part D end to end (slow): folders graded by `grade` in subprocesses, student code in
the sandbox, on the instructor's side (hidden check and secret cases included).

One batch grades a class folder of mixed submissions: W2022 student folders in the tree's,
Gradescope's flat and a Colab clone's layout, one with a missing file, one that lies about its
requires_grad flags, a W2022 notebook handed in without its files, and a W2021 notebook. Then
one student folder is graded alone for its HTML page, and Gradescope's run_autograder grades
an upload of several files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

import yolo_files as y
from grading import grader_env, run_grader

from grader.authoring.gradescope import README, RUN_AUTOGRADER, script_values

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

# A loop that freezes nothing and then, in the sandbox, rewrites the requires_grad flags the
# grader's child reports so that they look right. The grader decides by what a gradient step
# does to the parameters, computed in its own process, so the lie earns nothing.
LYING_LOOP = """\
for k, v in model.named_parameters():
    pass
import sys
_child = sys.modules["grader.sandbox.child"].Child
if not getattr(_child, "_lies", False):
    _honest = _child.op_transplant

    def _lying(self, source, filename, entry, regions, args, kwargs):
        out = _honest(self, source, filename, entry, regions, args, kwargs)
        if entry == "freeze_step" and "result" in out:
            frozen = [f"model.{x}." for x in range(args[0])]
            out["result"]["flags"] = {n: not n.startswith(tuple(frozen)) for n in out["result"]["flags"]}
        return out

    _child.op_transplant, _child._lies = _lying, True
"""
EDITED_TARGETS = (
    "gain[3] - 1), gi.clamp_(0, gain[2] - 1)",
    "int(gain[3]) - 1), gi.clamp_(0, int(gain[2]) - 1)",
)
MISSING = "loss.py was not found in the submission"
STARTSWITH = "v.requires_grad = not any(k.startswith(x) for x in freeze)"


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    root = tmp_path_factory.mktemp("w2022")
    folder = root / "class"
    correct_loss = y.correct_loss_py().replace(*EDITED_TARGETS)  # an edit outside the regions
    y.w2022_folder(folder / "correct", train=y.correct_train_py(), loss=correct_loss)
    y.w2022_folder(folder / "starter", train=y.starter_train_py(), loss=y.starter_loss_py(), layout="flat")
    y.w2022_folder(
        folder / "colab",
        train=y.train_py(STARTSWITH),
        loss=y.loss_py(y.CORRECT_CRITERION, "lcls = lcls + self.BCEcls(ps[:, 5:], t)"),
        layout="colab",
    )
    y.w2022_folder(
        folder / "mistakes",
        train=y.train_py("v.requires_grad = int(k.split('.')[1]) > 9"),
        loss=y.loss_py("BCEcls = nn.BCEWithLogitsLoss()", y.CORRECT_UPDATE),
    )
    y.w2022_folder(folder / "liar", train=y.train_py(loop=LYING_LOOP), loss=y.correct_loss_py())
    y.w2022_folder(folder / "train_only", train=y.correct_train_py())
    shutil.copyfile(y.W2022_REFERENCE_NOTEBOOK, folder / "notebook_only.ipynb")
    # W2021's starter: its own Part D (DeepLabV3, in the notebook), failed fast
    shutil.copyfile(y.W2021_TEMPLATE_NOTEBOOK, folder / "w2021.ipynb")
    starter = y.w2022_folder(root / "handout", train=y.starter_train_py(), loss=y.starter_loss_py())
    out = root / "out"
    env = grader_env(PA2_YOLO_DIR=str(starter))
    parts = ("--part", "D.1", "--part", "D.2")
    proc = run_grader(folder, "--out", out, "--jobs", 2, "--quiet", *parts, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    with open(out / "gradebook.csv", newline="") as f:
        book = {row["submission"]: row for row in csv.DictReader(f)}
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in book}
    return {"folder": folder, "book": book, "results": results}


def checks_of(result, part):
    return [t for t in result["tests"] if t["tags"][0] == part]


def part_points(result, part) -> float:
    return round(sum(t["score"] for t in checks_of(result, part)), 6)


def test_each_submission_is_graded_as_its_edition_with_its_parts(classroom):
    book, results = classroom["book"], classroom["results"]
    assert sorted(book) == [
        "colab",
        "correct",
        "liar",
        "mistakes",
        "notebook_only",
        "starter",
        "train_only",
        "w2021",
    ]
    assert {n: r["edition"] for n, r in book.items()} == {
        **{n: "pa2-w2022" for n in book if n != "w2021"},
        "w2021": "pa2-w2021",
    }
    for name, result in results.items():
        assert result["grader"]["error"] is None, (name, result["grader"])
        assert {t["tags"][0] for t in result["tests"]} == {"D.1", "D.2"}, name
        titles = " ".join(t["name"] for t in result["tests"])
        # W2021's Part D is DeepLabV3 in the notebook; W2022's is the YOLOv3 files
        assert ("train.py" in titles) == (name != "w2021"), (name, titles)
        assert ("classifier" in titles) == (name == "w2021"), (name, titles)
    assert sum(t["max_score"] for t in results["w2021"]["tests"]) == 10  # W2021's own D points


@pytest.mark.parametrize(
    "name, d1, d2",
    [
        ("correct", 2, 2),
        ("colab", 2, 2),  # k.startswith(x); lcls = lcls + ...; files deep in a clone
        ("starter", 0, 0),
        ("mistakes", 1, 0.5),  # hard-codes model.9; no pos_weight (right only with cls_pw 1)
        ("liar", 0, 2),
        ("train_only", 2, 0),
        ("notebook_only", 0, 0),
    ],
)
def test_points_per_part(classroom, name, d1, d2):
    result = classroom["results"][name]
    summary = "\n".join(f"{t['name']}: {t['score']} {t['output'][:300]}" for t in result["tests"])
    assert (part_points(result, "D.1"), part_points(result, "D.2")) == (d1, d2), summary
    assert sum(t["max_score"] for t in result["tests"]) == 4


def test_a_missing_file_costs_its_part_and_names_it(classroom):
    results = classroom["results"]
    for test in checks_of(results["train_only"], "D.2"):
        first = test["output"].split("\n", 1)[0]
        assert first == "the statement defining `BCEcls` in `ComputeLoss.__init__`: " + MISSING, first
    for test in results["notebook_only"]["tests"]:
        assert "was not handed in: this submission is the notebook alone" in test["output"], test["output"]


def test_feedback_points_at_the_students_file_lines(classroom):
    result = classroom["results"]["mistakes"]
    train = (classroom["folder"] / "mistakes" / "train.py").read_text()
    loss = (classroom["folder"] / "mistakes" / "utils" / "loss.py").read_text()
    first = y.line_of(train, "for k, v in model.named_parameters")
    (other,) = [t for t in checks_of(result, "D.1") if t["score"] == 0]
    assert other["output"].startswith(
        f"train.py lines {first}-{first + 1}, with --freeze 3: the loop froze"
    ), other
    (values,) = [t for t in checks_of(result, "D.2") if "class loss (lcls)" in t["name"]]
    assert values["output"].startswith("BCEcls has no pos_weight"), values["output"]
    assert (
        f"# your utils/loss.py line {y.line_of(loss, 'BCEcls = nn.BCEWithLogitsLoss()')}:" in values["output"]
    )
    notes = notes_of(classroom["results"]["colab"])
    assert (
        "Graded from 2022/assets/assignments/pa2-q4-files/train.py: lines "
        f"{first}-{first + 1} (the loop `for k, v in model.named_parameters():` in `train`)" in notes
    )


def notes_of(result) -> str:
    return result["output"] + "\n" + "\n".join(result["grader"].get("notes", []))


def test_edits_outside_the_regions_are_reported_not_run(classroom):
    notes = notes_of(classroom["results"]["correct"])
    loss = (classroom["folder"] / "correct" / "utils" / "loss.py").read_text()
    line = y.line_of(loss, EDITED_TARGETS[1])
    assert f"utils/loss.py line {line} (`indices.append(" in notes, notes
    assert "differ from the handout's file and are not graded" in notes
    assert "train.py line" not in notes.split("Graded from train.py")[0]  # no edit outside its loop


def test_the_html_page_shows_the_files_parts(tmp_path):
    folder = y.w2022_folder(
        tmp_path / "s", train=y.train_py("v.requires_grad = False"), loss=y.correct_loss_py()
    )
    page, report = tmp_path / "page.html", tmp_path / "results.json"
    proc = run_grader(folder, "--part", "D.1", "--html", page, "--json", report, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Edition: pa2-w2022" in proc.stdout and "Parts: D.1 0/2" in proc.stdout
    html = page.read_text()
    assert "D.1" in html and "every parameter is frozen" in html and "train.py lines" in html
    assert {t["tags"][0] for t in json.loads(report.read_text())["tests"]} == {"D.1"}


def test_gradescope_grades_an_upload_of_several_files(tmp_path):
    """run_autograder, as `grade gradescope-zip --assignment pa2-w2022` writes it, on a flat
    upload (the notebook, train.py, loss.py) with a stray notebook; the grader is this
    checkout (instead of the wheel setup.sh installs)."""
    values = script_values("pa2-w2022", ["--no-train", "--part=D.1", "--part=D.2"], "after_due_date", "g.whl")
    script = tmp_path / "source" / "run_autograder"
    script.parent.mkdir()
    script.write_text(RUN_AUTOGRADER.format(**values))
    readme = README.format(
        **dict(values, assignment="pa2-w2022", torch="x", torchvision="x", index="x", version="x")
    )
    assert "Students upload a2-code.ipynb and `train.py`, `loss.py` together" in readme
    submission = y.w2022_folder(
        tmp_path / "submission", train=y.correct_train_py(), loss=y.correct_loss_py(), layout="flat"
    )
    shutil.copyfile(y.W2022_TEMPLATE_NOTEBOOK, submission / "a2-code-old.ipynb")
    env = grader_env(AUTOGRADER_ROOT=str(tmp_path), GRADER_PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Grading {tmp_path / 'submission'}" in proc.stdout
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 4, json.dumps(results, indent=1)[:3000]
    assert {t["tags"][0] for t in results["tests"]} == {"D.1", "D.2"}
    assert os.path.exists(tmp_path / "results" / "results.json")
