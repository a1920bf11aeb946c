"""A.1 PoolUpsampleNet, B.1 ConvTransposeNet, C.1 UNet: the reference, the starter, real
mistakes (each must cost points in its own part only, in the checks that can see it, with
feedback that names the cause) and correct solutions written in other styles (full marks).
The notebooks are in tests/pa2_colourization_cases.py.

Every notebook here is graded once, in the session's batch (see conftest.py)."""

import csv

import pytest

from pa2_colourization_cases import COLOURIZATION_NOTEBOOKS, CORRECT_STYLES, MUTANTS, UNET_PY2_PRINT
from submissions import TEMPLATE_NOTEBOOK, located_cell

from grader.editions.assignment import available, load_assignment

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

NOTEBOOKS = COLOURIZATION_NOTEBOOKS

# Every installed edition's part ids (gradebook columns).
ALL_PART_IDS = {p.id for name in available() for p in load_assignment(name).parts}


def test_reference_gets_full_marks(graded):
    result = graded["reference"]
    result.expect()
    assert result.parts() == {"A.1": (5, 5), "B.1": (5, 5), "C.1": (5, 5), "D.1": (6, 6), "D.2": (4, 4)}, (
        result.summary()
    )
    assert result.score == 25
    assert result.notes == [], result.summary()


def test_template_gets_nothing_with_a_one_line_reason_per_check(graded):
    result = graded["template"]
    assert result.error is None
    assert result.score == 0 and result.max_score == 25, result.summary()
    assert all(t["status"] == "failed" for t in result.tests), result.summary()
    for t in result.tests:
        # One line of reason; then only the input hypothesis failed on, and the code that
        # reproduces a crash (after "Try:").
        explanation = t["output"].strip().split("\nTry:\n", 1)[0]
        reason, *more = explanation.splitlines()
        assert reason.strip(), t
        assert all(line.startswith(("Smallest failing input: ", "Failing input: ")) for line in more), t
        assert "please report this" not in t["output"], t  # a student error, not the grader's
    for part, name, number in (
        ("A.1", "PoolUpsampleNet", 7),
        ("B.1", "ConvTransposeNet", 9),
        ("C.1", "UNet", 11),
    ):
        # Counted among code cells, as Jupyter and Colab show them, with the cell's first line.
        where = f"code cell {number} (starting `class {name}(nn.Module):`)"
        assert located_cell(TEMPLATE_NOTEBOOK, f"class {name}(").where == where
        for t in result.part_tests(part):
            assert t["output"].startswith(f"`{name}` is in {where}, which does not parse"), t
            assert "SyntaxError" in t["output"]
    assert "21" in result.feedback("D.1", "head")
    assert "still trainable" in result.feedback("D.1", "frozen")
    assert "no parameters at all" in result.feedback("D.1", "optimizer")
    assert "name 'loss' is not defined" in result.feedback("D.2", "values")


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mistake_costs_only_its_part(graded, mutant):
    result = graded[mutant.name]
    result.expect({mutant.part: mutant.lost})
    for kind, phrases in mutant.feedback.items():
        text = result.feedback(mutant.part, kind)
        for phrase in phrases:
            assert phrase in text, f"{mutant.name} {kind}: {phrase!r} not in\n{text}"


def test_mutants_cover_every_colourization_part_and_check_kind():
    covered = {(m.part, kind) for m in MUTANTS for kind in m.lost}
    for part in ("A.1", "B.1", "C.1"):
        for kind in ("layers", "params", "equivalence", "shape"):
            assert (part, kind) in covered, (part, kind)


@pytest.mark.parametrize("name", sorted(CORRECT_STYLES))
def test_correct_solution_in_another_style_gets_full_marks(graded, name):
    graded[name].expect()
    assert graded[name].score == 25


def test_broken_unet_cell_costs_only_unet_and_names_cell_and_line(graded, main_batch):
    result = graded["broken_unet_cell"]
    result.expect({"C.1": {"shape", "layers", "params", "equivalence"}})
    path = main_batch.folder / "broken_unet_cell.ipynb"
    cell = located_cell(path, "class UNet")
    line = cell.source.splitlines().index(UNET_PY2_PRINT) + 1
    for t in result.part_tests("C.1"):
        assert t["output"].startswith(
            f"`UNet` is in {cell.where}, which does not parse: line {line}: SyntaxError"
        ), t["output"]
    assert any(f"{cell.where} skipped: line {line}" in n for n in result.notes), result.notes


def test_every_result_file_follows_the_gradescope_schema(graded):
    # The main batch holds other editions' notebooks too (tests/test_editions_grading.py).
    part_ids = {name: {p.id for p in load_assignment(name).parts} for name in available()}
    for result in graded.values():
        data = result.data
        assert set(data) >= {"score", "execution_time", "output", "tests"}, result.name
        for number, t in enumerate(data["tests"], 1):
            assert set(t) >= {
                "name",
                "score",
                "max_score",
                "status",
                "output",
                "visibility",
                "number",
                "tags",
            }, t
            assert t["status"] in ("passed", "failed")
            assert t["tags"][0] in part_ids[data["grader"]["assignment"]]  # the edition's own ids
            assert t["tags"][1] in (
                "shape",
                "layers",
                "params",
                "equivalence",
                "freezing",
                "loss",
                "training",
                "load",
            )
            assert 0 <= t["score"] <= t["max_score"]
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))


def test_gradebook_has_a_row_per_notebook_with_part_totals(graded, main_batch):
    rows = list(csv.DictReader((main_batch.out / "gradebook.csv").read_text().splitlines()))
    assert {r["submission"] for r in rows} == set(graded)
    for row in rows:
        result = graded[row["submission"]]
        assert row["edition"] == result.data["grader"]["assignment"]
        # Points are written with at most three decimals (editions scale checks to fractions).
        assert float(row["score"]) == pytest.approx(result.score, abs=5e-4)
        ids = {t["tags"][0] for t in result.tests}
        for part in (c for c in row if c in ALL_PART_IDS):
            got = sum(t["score"] for t in result.part_tests(part))
            assert (float(row[part]) == pytest.approx(got, abs=5e-4)) if part in ids else row[part] == "", (
                row,
                part,
            )
    assert main_batch.returncode in (0, 1), main_batch.stderr[-2000:]


def test_real_notebook_noise_costs_nothing(graded, main_batch):
    result = graded["noise"]
    result.expect()
    assert result.score == 25
    # The Python 2 cell is reported and skipped; the failed Colab import is not even a note
    # (nothing the student can act on: the grader does not install google.colab).
    where = located_cell(main_batch.folder / "noise.ipynb", 'print "done"').where
    assert f"{where} skipped: line 3: SyntaxError" in "\n".join(result.notes), result.notes
    assert not any("google" in n for n in result.notes), result.notes


def test_crash_on_a_generated_example_names_the_input(graded):
    # DESIGN: feedback gives "the smallest failing input found (hypothesis shrinks it)". A crash
    # carries no hyper-parameters of its own: without that line the student cannot tell that
    # num_in_channels=3 broke UNet. (Every grading tries colour input among its explicit
    # examples, so the failing input is that one, named by the handout's argument names.)
    text = graded["c1_grey_channel_hardcoded"].feedback("C.1", "shape")
    assert "\nFailing input: kernel = 3, " in text and "num_in_channels = 3" in text, text
