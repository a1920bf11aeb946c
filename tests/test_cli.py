"""`grade PATH` as a user runs it: exit status, the final `Score: X / Y` line, --json written
even when the submission cannot be used. Each run is a real subprocess (about 8-15 s: torch is
imported twice, by the grader and by its sandbox server), so all of them start together and
each test reads its own run."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_notebook

from grading import run_grader
from submissions import TEMPLATE_NOTEBOOK, as_python_file, read_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    json_path: Path | None

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def results(self) -> dict:
        return json.loads(self.json_path.read_text())


def prepare(folder: Path) -> dict[str, list]:
    """The submissions, and the arguments each run gets."""
    as_python_file(read_notebook(), folder / "a2-cnn.py")
    (folder / "template.ipynb").write_bytes(TEMPLATE_NOTEBOOK.read_bytes())
    (folder / "broken.ipynb").write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')
    (folder / "v3.ipynb").write_text(
        json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []})
    )
    nbformat.write(new_notebook(), str(folder / "empty.ipynb"))
    # Student-controlled text that rich would read as markup, in a path (".../x[/yellow]
    # :smile:.ipynb": a folder "x[" holding "yellow] :smile:.ipynb") and in a note.
    markup_dir = folder / "x["
    markup_dir.mkdir()
    (markup_dir / "yellow] :smile:.ipynb").write_text(
        '{"nbformat": 4, "cells": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    damaged_cells(folder / "damaged.ipynb")
    runs = {
        "python_file": [folder / "a2-cnn.py"],
        "template": [folder / "template.ipynb"],
        "missing": [folder / "does-not-exist.ipynb"],
        "broken_json": [folder / "broken.ipynb"],
        "v3": [folder / "v3.ipynb"],
        "empty": [folder / "empty.ipynb"],
        "markup_path": [markup_dir / "yellow] :smile:.ipynb"],
        "damaged_cells": [folder / "damaged.ipynb", "--part", "D.2"],
    }
    return {name: [*args, "--json", folder / f"{name}.json"] for name, args in runs.items()} | {
        "bad_option": [folder / "a2-cnn.py", "--frobnicate"]
    }


DAMAGED_NOTES = [
    "its source is a number, not text (the notebook file is damaged)",
    "its source is null, not text (the notebook file is damaged)",
    "line 1: the text is not valid Unicode (a lone surrogate, U+D800)",
    "too deeply nested or too complex for Python to parse",
    "raised ValueError: [/yellow] :smile: [bold]",
]


def damaged_cells(path: Path) -> Path:
    """The reference notebook plus cells that once crashed the grader: sources that are not
    text, a lone surrogate, a 200,000-term sum, and an error message that looks like markup."""
    data = json.loads(json.dumps(read_notebook()))
    extra = [
        7,
        None,
        "s = 'SURROGATE'\n",
        "x = " + "+".join(["1"] * 200_000) + "\n",
        "class Bad:\n    raise ValueError('[/yellow] :smile: [bold]')\n",
    ]
    data["cells"] += [
        {
            "cell_type": "code",
            "id": f"extra{i}",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": source,
        }
        for i, source in enumerate(extra)
    ]
    path.write_text(json.dumps(data).replace("SURROGATE", "\\ud800"))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    folder = tmp_path_factory.mktemp("cli")
    plan = prepare(folder)

    def run(args):
        proc = run_grader(*args, stdin=subprocess.DEVNULL)
        json_path = Path(args[args.index("--json") + 1]) if "--json" in args else None
        return Run(proc.returncode, proc.stdout, proc.stderr, json_path)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run, args) for name, args in plan.items()}
        return {name: future.result() for name, future in futures.items()}


def test_full_marks_exit_0(runs):
    run = runs["python_file"]  # the reference notebook as a .py file with `# %%` cells
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.last_line == "Score: 25 / 25"
    data = run.results()
    assert data["score"] == 25 and len(data["tests"]) == 19
    assert {tuple(t["tags"]) for t in data["tests"]} >= {("A.1", "equivalence"), ("D.2", "loss")}
    assert "Parts: A.1 5/5  B.1 5/5  C.1 5/5  D.1 6/6  D.2 4/4" in run.stdout


def test_some_checks_failed_exit_1(runs):
    run = runs["template"]
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.last_line == "Score: 0 / 25"
    assert run.results()["score"] == 0
    where = "code cell 7 (starting `class PoolUpsampleNet(nn.Module):`)"  # as Jupyter counts cells
    assert f"`PoolUpsampleNet` is in {where}, which does not parse" in run.stdout


@pytest.mark.parametrize(
    "name, reason",
    [
        ("broken_json", "not a valid notebook: broken JSON at line 1"),
        ("v3", "notebook format v3 is not supported"),
        ("empty", "the submission has no code"),
    ],
)
def test_unusable_submission_exit_2_with_reason_and_results_file(runs, name, reason):
    run = runs[name]
    assert run.returncode == 2, run.stdout + run.stderr
    # Out of the full points: every check it would have been graded on fails, for one reason.
    assert run.last_line == "Score: 0 / 25"
    assert "Traceback" not in run.stdout + run.stderr
    data = run.results()
    assert data["score"] == 0 and sum(t["max_score"] for t in data["tests"]) == 25
    assert {(t["status"], t["score"]) for t in data["tests"]} == {("failed", 0)}
    assert all(t["output"].startswith("Not graded") for t in data["tests"])
    assert data["output"].startswith("Cannot grade: ") and reason in data["output"]
    assert "\n" not in data["output"].strip()


def test_a_path_that_does_not_exist_is_the_persons_mistake(runs):
    """Not a student's result: one line, exit status 2, no results file."""
    run = runs["missing"]
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().endswith("does-not-exist.ipynb: no such file or folder")
    assert len(run.stderr.strip().splitlines()) == 1 and not run.stdout.strip()
    with pytest.raises(FileNotFoundError):
        run.results()


@pytest.mark.parametrize("name", ["broken_json", "v3", "empty"])
def test_unusable_submission_reason_is_one_line_in_the_terminal(runs, name):
    # DESIGN: exit 2 "with a one-line reason". Captured by CI (no terminal), the output must
    # not be wrapped at 80 columns in the middle of the reason.
    reason = runs[name].results()["output"]
    assert reason in runs[name].stdout.splitlines(), runs[name].stdout


def test_bad_command_line_exit_2(runs):
    run = runs["bad_option"]
    assert run.returncode == 2
    assert "unrecognized arguments: --frobnicate" in run.stderr
    assert "Traceback" not in run.stderr


def test_markup_in_a_path_is_printed_as_text(runs):
    # rich used to read "[/yellow]" in the file name as a closing tag: MarkupError, exit 1.
    run = runs["markup_path"]
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.last_line == "Score: 0 / 25"
    reason = run.results()["output"].splitlines()[0]
    assert reason.endswith(
        "x[/yellow] :smile:.ipynb: the notebook cannot be read: its JSON is nested too deeply"
    )
    assert reason in run.stdout.splitlines(), run.stdout


def test_damaged_cells_cost_only_themselves_with_one_note_each(runs):
    run = runs["damaged_cells"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.last_line == "Score: 4 / 4"
    notes = [line for line in run.stdout.splitlines() if line.startswith("note: ")]
    for expected in DAMAGED_NOTES:
        assert sum(expected in line for line in notes) == 1, (expected, notes)
    assert all(line in run.results()["output"].splitlines() for line in notes)
