"""Batch grading of a whole class (`grade DIR --out OUT --jobs 2`): results, gradebook, pass
rates, JUnit, a run killed with SIGKILL and resumed, shards and `grade merge`.

One folder of 24 submissions (the reference, the template, mutants made by editing the
reference's source text, and hostile ones) is graded once with --jobs 2 (the `full` fixture);
the kill-and-resume test grades shard 1/2 of it again, and merged with the full run's results
for shard 2/2 it must give the full run's gradebook. To stay short, every run grades parts A.1 and
D.2 without training checks, with --timeout 5.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from grading import grader_command, grader_env, run_grader
from submissions import REPO, TEMPLATE_NOTEBOOK, as_python_file, make_notebook, read_notebook

from grader.batch import pool
from grader.batch.discover import parse_shard, shard
from grader.batch.outputs import csv_text, gradebook_csv, summary_csv
from grader.batch.store import OutputLock
from grader.engine.options import Options
from grader.report.results import GradingResult

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

ARGS = ("--part", "A.1", "--part", "D.2", "--no-train", "--timeout", "5")
VICTIM = "victim_worker_dies"  # its worker is made to die (GRADER_BATCH_CRASH_ON)

BLOCK = "                nn.BatchNorm2d(cout),\n                nn.ReLU(),\n"
FORWARD = "return self.final(self.up2(self.up1(self.down2(self.down1(x)))))"
PROB = "prob = torch.softmax(pred, dim=1)[:, 1]"
LOSS = "loss = 1 - (intersection + SMOOTH) / (union + SMOOTH)"

# name: make_notebook arguments; "part" says which part the edit breaks.
MUTANTS = {
    "a1_no_final_conv": (
        "A.1",
        {"substitute": {FORWARD: "return self.up2(self.up1(self.down2(self.down1(x))))"}},
    ),
    "a1_relu_before_bn": (
        "A.1",
        {"substitute": {BLOCK: "                nn.ReLU(),\n                nn.BatchNorm2d(cout),\n"}},
    ),
    "a1_no_batchnorm": ("A.1", {"substitute": {BLOCK: "                nn.ReLU(),\n"}}),
    "a1_avgpool": ("A.1", {"substitute": {"nn.MaxPool2d(2)": "nn.AvgPool2d(2)"}}),
    "a1_triple_filters": ("A.1", {"substitute": {"2 * num_filters": "3 * num_filters"}}),
    "a1_no_padding": ("A.1", {"substitute": {"padding = kernel // 2": "padding = 0"}}),
    "d2_sigmoid": ("D.2", {"substitute": {PROB: "prob = torch.sigmoid(pred[:, 1])"}}),
    "d2_background_channel": ("D.2", {"substitute": {PROB: "prob = torch.softmax(pred, dim=1)[:, 0]"}}),
    "d2_returns_iou": ("D.2", {"substitute": {LOSS: "loss = (intersection + SMOOTH) / (union + SMOOTH)"}}),
    "d2_squared": (
        "D.2",
        {"substitute": {LOSS: "loss = (1 - (intersection + SMOOTH) / (union + SMOOTH)) ** 2"}},
    ),
}
# Hostile submissions: what each must not do to the batch, and what its results must say.
HOSTILE = {
    "hostile_infinite_init": {
        "substitute": {
            "padding = kernel // 2": "padding = kernel // 2\n        while True:\n            pass"
        }
    },
    "hostile_exit_in_class_body": {"extra_cells": ["import os\nclass Boom:\n    os._exit(3)\n"]},
    "hostile_huge_print": {"extra_cells": ["class Loud:\n    print('spam ' * 3_000_000)\n"]},
    "hostile_memory_hog": {"substitute": {FORWARD: "torch.ones(2**40)\n        " + FORWARD}},
    "hostile_exit_in_forward": {"substitute": {FORWARD: "import os; os._exit(9)\n        " + FORWARD}},
}


def crash_env() -> dict:
    """grader_env(), and the victim's worker made to die."""
    return grader_env(GRADER_BATCH_CRASH_ON=VICTIM)


def make_class(folder: Path) -> list[str]:
    folder.mkdir()
    make_notebook(folder, "reference")
    make_notebook(folder, VICTIM)
    (folder / "template.ipynb").write_bytes(TEMPLATE_NOTEBOOK.read_bytes())
    as_python_file(read_notebook(), folder / "reference_as_script.py")
    for name, (_, spec) in MUTANTS.items():
        make_notebook(folder, name, **spec)
    for name, spec in HOSTILE.items():
        make_notebook(folder, name, **spec)
    (folder / "hostile_broken_json.ipynb").write_text('{"cells": [{"cell_type": "code", ')
    (folder / "hostile_syntax_garbage.py").write_text("def broken(:\n    return )\n")
    nbformat.write(nbformat.v4.new_notebook(), str(folder / "empty_notebook.ipynb"))
    sub = folder / "late"
    sub.mkdir()  # the same file name in a subfolder: results named apart
    make_notebook(sub, "reference")
    names = [p.stem for p in folder.glob("*") if p.is_file()] + ["late__reference"]
    names = ["folder__reference" if n == "reference" else n for n in names]
    return sorted(names)


def run(*args, timeout=600) -> subprocess.CompletedProcess:
    """`grade ARGS` as given (ARGS says --no-train where it grades)."""
    return run_grader(*args, train=None, env=crash_env(), timeout=timeout)


def results(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def gradebook(out: Path, drop=("seconds",)) -> dict[str, dict]:
    rows = csv.DictReader((out / "gradebook.csv").read_text().splitlines())
    return {r["submission"]: {k: v for k, v in r.items() if k not in drop} for r in rows}


def by_part(data: dict) -> dict[str, float]:
    totals: dict[str, float] = {}
    for t in data["tests"]:
        totals[t["tags"][0]] = totals.get(t["tags"][0], 0) + t["score"]
    return totals


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("class")
    names = make_class(root / "folder")
    return root / "folder", names


@pytest.fixture(scope="module")
def full(folder, tmp_path_factory):
    """The whole class, graded with two jobs."""
    path, names = folder
    out = tmp_path_factory.mktemp("full")
    junit = out.parent / f"{out.name}-junit.xml"
    started = time.monotonic()
    proc = run(path, "--out", out, "--jobs", 2, "--junit", junit, "--quiet", *ARGS)
    return {"out": out, "proc": proc, "names": names, "junit": junit, "seconds": time.monotonic() - started}


def graded(names) -> list[str]:
    """The submissions a batch records: all but the one whose grading process dies twice (the
    machine's failure, not the student's: left ungraded, nothing recorded)."""
    return [n for n in names if n != VICTIM]


def test_full_batch(full):
    proc, out, names = full["proc"], full["out"], graded(full["names"])
    # Exit status 2: one submission could not be graded on this machine, and the summary says so.
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{VICTIM}: the grading process died" in proc.stderr and "nothing recorded" in proc.stderr
    assert len(names) >= 20
    found = results(out)
    assert sorted(found) == names, proc.stdout[-2000:]
    book = gradebook(out)
    assert sorted(book) == names
    reference = found["folder__reference"]
    assert reference["grader"]["error"] is None
    assert reference["score"] == sum(t["max_score"] for t in reference["tests"])
    points = by_part({"tests": [dict(t, score=t["max_score"]) for t in reference["tests"]]})
    assert set(points) == {"A.1", "D.2"}
    total = sum(points.values())
    for name, row in book.items():
        data = found[name]
        assert float(row["score"]) == data["score"], name
        # An unusable submission is out of the assignment's total too, not 0.
        assert float(row["max_score"]) == total, (name, row)
        for part in ("A.1", "D.2"):
            assert float(row[part]) == by_part(data).get(part, 0), (name, part)
    for name in ("folder__reference", "late__reference", "reference_as_script"):
        assert book[name]["status"] == "complete", (name, book[name])
    # Mutants lose points in the part they break, and only there.
    for name, (part, _) in MUTANTS.items():
        got = by_part(found[name])
        assert found[name]["grader"]["error"] is None, name
        assert got[part] < points[part], (name, got)
        other = ({"A.1", "D.2"} - {part}).pop()
        assert got[other] == points[other], (name, got, found[name]["tests"])
    assert book["template"]["status"] == "graded" and float(book["template"]["score"]) < total


def test_hostile_submissions_get_results_that_say_what_happened(full):
    found, book = results(full["out"]), gradebook(full["out"])
    points = by_part({"tests": [dict(t, score=t["max_score"]) for t in found["folder__reference"]["tests"]]})

    def failed_outputs(name, part):
        return " ".join(
            t["output"] for t in found[name]["tests"] if t["tags"][0] == part and t["status"] == "failed"
        )

    assert "not a valid notebook" in found["hostile_broken_json"]["grader"]["error"]
    assert book["hostile_broken_json"]["status"] == "error"
    assert found["empty_notebook"]["grader"]["error"]
    # The hang costs A.1 (each request stopped after --timeout 5 s), not D.2.
    hang = found["hostile_infinite_init"]
    assert by_part(hang) == {"A.1": 0, "D.2": points["D.2"]}, hang["tests"]
    assert "did not finish within 5 s" in failed_outputs("hostile_infinite_init", "A.1")
    # os._exit in a class body: that statement is skipped, the rest is graded in full.
    exiting = found["hostile_exit_in_class_body"]
    assert exiting["score"] == sum(points.values()), exiting
    assert any("skipped" in n for n in exiting["grader"]["notes"]), exiting["grader"]["notes"]
    # Megabytes of output do not reach the results.
    assert found["hostile_huge_print"]["score"] == sum(points.values())
    assert (full["out"] / "hostile_huge_print.json").stat().st_size < 200_000
    assert by_part(found["hostile_memory_hog"])["A.1"] < points["A.1"]
    assert by_part(found["hostile_memory_hog"])["D.2"] == points["D.2"]
    assert by_part(found["hostile_exit_in_forward"])["A.1"] < points["A.1"]
    assert by_part(found["hostile_exit_in_forward"])["D.2"] == points["D.2"]
    # A grading process that dies is replaced; its submission is tried again and then left
    # ungraded: the machine's failure is never recorded as the student's result.
    assert VICTIM not in found and VICTIM not in book
    assert f"{VICTIM}: not graded" in full["proc"].stdout


def test_batch_scores_equal_single_runs(full, folder, tmp_path):
    path, _ = folder
    found = results(full["out"])
    for name in ("a1_relu_before_bn", "hostile_infinite_init"):  # ~15 s each
        file = path / f"{name}.ipynb"
        single = tmp_path / f"{name}.json"
        proc = run(file, "--json", single, "--quiet", *ARGS, timeout=300)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        alone = json.loads(single.read_text())
        assert alone["score"] == found[name]["score"], name
        assert [(t["name"], t["status"]) for t in alone["tests"]] == [
            (t["name"], t["status"]) for t in found[name]["tests"]
        ], name


def test_summary_and_junit(full):
    out, names = full["out"], graded(full["names"])
    found = results(out)
    rows = list(csv.DictReader((out / "summary.csv").read_text().splitlines()))
    assert list(rows[0]) == ["check", "part", "passed", "total", "rate"]
    checks = [t["name"] for t in found["folder__reference"]["tests"]]
    assert [r["check"] for r in rows] == checks
    for r in rows:
        passed = sum(
            1
            for d in found.values()
            for t in d["tests"]
            if t["name"] == r["check"] and t["status"] == "passed"
        )
        assert int(r["passed"]) == passed and int(r["total"]) == len(names), r
        assert float(r["rate"]) == pytest.approx(passed / len(names), abs=1e-3)
    assert "Pass rate per check" in full["proc"].stdout
    root = ET.parse(full["junit"]).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(checks) * len(names)
    assert {c.get("classname") for c in cases} == set(names)
    for c in cases:
        data = found[c.get("classname")]
        status = {t["name"]: t for t in data["tests"]}
        failure = c.find("failure")
        if data["grader"]["error"]:
            assert failure is not None and "Cannot grade" in failure.get("message")
        elif status[c.get("name")]["status"] == "failed":
            assert failure is not None and failure.text.strip() == status[c.get("name")]["output"].strip()
        else:
            assert failure is None


@pytest.fixture(scope="module")
def killed(full, folder, tmp_path_factory):
    """Shard 1/2 of the class, SIGKILLed (the whole process group) once a few results exist,
    then run again with the same command."""
    path, names = folder
    out = tmp_path_factory.mktemp("shard1")
    command = grader_command(path, "--out", out, "--jobs", 2, "--shard", "1/2", "--quiet", *ARGS, train=None)
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=crash_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while len(list(out.glob("*.json"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.json")}
    resumed = subprocess.run(command, cwd=REPO, env=crash_env(), capture_output=True, text=True, timeout=600)
    return {"out": out, "before": before, "resumed": resumed, "shard": sorted(names)[0::2]}


def test_killed_batch_resumes_without_regrading(full, killed):
    out, before, resumed = killed["out"], killed["before"], killed["resumed"]
    shard = graded(killed["shard"])
    assert 3 <= len(before) < len(shard), "the batch finished before it could be killed"
    for name, (_, data) in before.items():
        json.loads(data)  # whole files only
    assert resumed.returncode == (2 if VICTIM in killed["shard"] else 0), (
        resumed.stdout[-3000:] + resumed.stderr[-3000:]
    )
    # Only the rest was graded: the finished files were not written again.
    assert f"({len(before)} up to date)" in resumed.stdout, resumed.stdout[-2000:]

    for name, (mtime, data) in before.items():
        assert (out / name).stat().st_mtime_ns == mtime and (out / name).read_bytes() == data, name
    assert not [
        p.name for p in out.iterdir() if p.name.startswith(".") and p.is_file() and p.name != ".lock"
    ], "a half-written file was left behind"
    assert sorted(results(out)) == shard
    full_book = gradebook(full["out"])
    assert gradebook(out) == {n: full_book[n] for n in shard}


def test_shards_merge_into_the_full_gradebook(full, folder, killed, tmp_path):
    """Shard 1/2 as graded (killed and resumed) by the test above, shard 2/2's results taken
    from the full run: `grade merge` gives the full run's gradebook and pass rates."""
    names = graded(folder[1])
    shard2 = tmp_path / "shard2"
    shard2.mkdir()
    for name in graded(sorted(folder[1])[1::2]):
        (shard2 / f"{name}.json").write_bytes((full["out"] / f"{name}.json").read_bytes())
    merged = tmp_path / "merged"
    junit = tmp_path / "merged.xml"
    proc = run("merge", killed["out"], shard2, "--out", merged, "--junit", junit, "--quiet", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(results(merged)) == names
    assert gradebook(merged) == gradebook(full["out"])
    assert (merged / "summary.csv").read_text() == (full["out"] / "summary.csv").read_text()
    assert len(ET.parse(junit).getroot().findall(".//testcase")) == len(
        ET.parse(full["junit"]).getroot().findall(".//testcase")
    )
    assert run("merge", tmp_path / "missing", "--out", merged).returncode == 2


def test_shard_slices_are_disjoint_and_cover_everything():
    names = [f"s{i:02d}" for i in range(23)][::-1]
    slices = [shard(names, f"{i}/4") for i in range(1, 5)]
    assert sorted(n for s in slices for n in s) == sorted(names)
    assert all(abs(len(s) - len(names) / 4) < 1 for s in slices)
    assert shard(names, None) == sorted(names)
    for bad in ("0/2", "3/2", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_scheduler_does_not_import_torch():
    """The batch scheduler stays light: torch is imported once, by the warm server; and `grade`
    starts that server before anything imports torch in its own process."""
    code = (
        "import sys, grader.cli, grader.batch.scheduler, grader.batch.pool, grader.authoring.gradescope; "
        "from grader.sandbox import warm_up; "  # `grade` starts the server before its own torch import
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
    from grader.sandbox import server

    assert set(server.PRELOAD) <= set(pool.SERVER_PRELOAD)


def test_second_batch_on_the_same_folder_is_refused(tmp_path):
    with OutputLock(tmp_path):
        proc = run(TEMPLATE_NOTEBOOK, "--out", tmp_path, timeout=60)
    assert proc.returncode == 2 and "another batch" in proc.stderr


def test_links_folders_and_formula_names_in_a_class_folder(tmp_path):
    """A linked submission is recorded under the link's name, a folder named like a notebook
    gets a row saying it cannot be read, and names a spreadsheet would run as formulas are
    quoted in the CSV files."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "target_name.py").write_text("X = 1\n")
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / "linked.py").symlink_to(elsewhere / "target_name.py")
    (folder / "not_a_file.ipynb").mkdir()
    for name in ("=HYPERLINK(1)", "+1", "-1", "@SUM(1)"):
        (folder / f"{name}.py").write_text("X = 1\n")
    out = tmp_path / "out"
    proc = run(folder, "--out", out, "--quiet", "--part", "D.2", "--no-train", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    book = gradebook(out)
    assert sorted(book) == ["'+1", "'-1", "'=HYPERLINK(1)", "'@SUM(1)", "linked", "not_a_file"]
    assert results(out)["linked"]["grader"]["submission"].endswith("class/linked.py")
    row = book["not_a_file"]
    assert row["status"] == "error" and row["error"].endswith(
        "not_a_file.ipynb: cannot be read: it is a directory, not a notebook or .py file"
    )
    assert (out / "=HYPERLINK(1).json").is_file()  # file names stay as they are


def test_every_csv_quotes_text_that_a_spreadsheet_would_run():
    assert [csv_text(t) for t in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx", "a=1", "", 3)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@A1",
        "'\tx",
        "\\rx",  # a carriage return is shown as an escape (grader.report.results.visible): no formula
        "a=1",
        "",
        "3",
    ]
    rows = list(
        csv.reader(
            summary_csv(
                [{"check": "=evil()", "part": "@p", "passed": 0, "total": 1, "rate": 0.0}]
            ).splitlines()
        )
    )
    assert rows[1][:2] == ["'=evil()", "'@p"]
    bad = GradingResult(submission="x", assignment="a", error="-cmd|' /C calc'!A0")
    rows = list(csv.reader(gradebook_csv({"=x": bad}, []).splitlines()))
    assert rows[1][0] == "'=x" and rows[1][-1] == "'-cmd|' /C calc'!A0"


def test_options_are_plain_data_and_stamp_what_changes_a_grading():
    args = SimpleNamespace(
        device="cpu",
        timeout=5,
        part=["D.2", "A.1", "D.2"],
        no_train=True,
        public_only=False,
        allow_unsafe_sandbox=False,
        seed=7,
    )
    options = Options.from_args(args)
    assert pickle.loads(pickle.dumps(options)) == options  # sent as is to the pool's workers
    assert options.selects({"part": "D.2", "kind": "unit"})
    assert not options.selects({"part": "D.2", "kind": "training"})
    assert not options.selects({"part": "B.1", "kind": "unit"})
    assert Options().selects({"part": "B.1", "kind": "training"})
    assert not Options(kinds=("training",)).selects({"part": "B.1", "kind": "unit"})
    # The seed is drawn per grading: replaying one must not regrade a batch.
    assert Options.from_args(SimpleNamespace(**(vars(args) | {"seed": None}))).stamp() == options.stamp()
    public_only = Options.from_args(SimpleNamespace(**(vars(args) | {"public_only": True})))
    assert public_only.stamp() != options.stamp()
    assert options.stamp()["parts"] == ["A.1", "D.2"]


def test_public_only_batch_then_full_batch_regrades_everything(tmp_path):
    submissions = tmp_path / "class"
    submissions.mkdir()
    make_notebook(submissions, "reference")
    out = tmp_path / "out"
    fast = ("--part", "D.2", "--no-train", "--quiet")
    public = run(submissions, "--out", out, "--public-only", *fast, timeout=300)
    assert public.returncode == 0, public.stdout[-2000:] + public.stderr[-2000:]
    public_stamp = results(out)["reference"]["grader"]["stamp"]
    assert public_stamp["options"]["public_only"] is True
    full = run(submissions, "--out", out, *fast, timeout=300)
    assert full.returncode == 0, full.stdout[-2000:] + full.stderr[-2000:]
    assert "(0 up to date)" in full.stdout, full.stdout[-2000:]
    assert results(out)["reference"]["grader"]["stamp"]["options"]["public_only"] is False
