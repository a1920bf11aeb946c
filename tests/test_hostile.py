"""Submissions that hang, exit, exhaust memory, patch the checks' tools, print fake results or
try to read the reference (tests/hostile_cases.py). Each is graded in one batch with
`--timeout 5` (conftest.py): the grader must survive all of them, give no point that was not
earned, and stay within a time bound computed from its limits."""

import json
import os
import re

import pytest

from batches import HOSTILE_TIMEOUT
from hostile_cases import FAKE_MARK, HOSTILE_CASES, SECRETS
from submissions import located_cell

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

HOSTILE_NOTEBOOKS = HOSTILE_CASES

ALL_CHECKS = {"shape", "layers", "params", "equivalence"}


def test_grader_survives_every_hostile_notebook(graded_hostile, hostile_batch):
    assert hostile_batch.returncode in (0, 1), hostile_batch.stderr[-3000:]
    assert set(graded_hostile) == set(HOSTILE_NOTEBOOKS)
    for result in graded_hostile.values():
        assert result.error is None, result.summary()
        for t in result.tests:
            # a failure of the check itself is the grader's, not the student's
            assert "please report this" not in t["output"], (result.name, t["output"])
    rows = (hostile_batch.out / "gradebook.csv").read_text().splitlines()
    assert len(rows) == 1 + len(HOSTILE_NOTEBOOKS)


def test_every_hostile_grading_ends_within_its_budget(graded_hostile):
    """Whatever a notebook does, its grading ends with its time budget (grader.engine.budget: at
    least 180 s); how fast gradings are is measured by the benchmarks, not here."""
    for result in graded_hostile.values():
        budget = result.data["grader"]["budget_seconds"]
        assert budget and result.execution_time < budget + 30, result.summary()


def test_infinite_loop_in_init_costs_only_a1_and_at_most_two_time_limits(graded_hostile):
    result = graded_hostile["h_infinite_loop_in_init"]
    result.expect({"A.1": ALL_CHECKS})
    outputs = [t["output"] for t in result.part_tests("A.1")]
    assert all(f"did not finish within {HOSTILE_TIMEOUT} s" in o for o in outputs), outputs
    assert all("PoolUpsampleNet(" in o for o in outputs), outputs
    # A hang is remembered per arguments, and after two hangs for the class: at most two
    # checks waited out the limit; the others were told at once.
    assert sum("as in an earlier check" in o for o in outputs) >= len(outputs) - 2, outputs


def test_hang_on_one_setting_costs_only_the_check_that_draws_it(graded_hostile):
    # The fixed settings of the layer, parameter and equivalence checks never hang; the shape
    # check's generated hyper-parameters reach num_filters=1. The failure must read as a time
    # limit (not an error of the check itself), and cost only that check.
    result = graded_hostile["h_hangs_for_one_filter"]
    result.expect({"A.1": {"shape"}})
    output = result.feedback("A.1", "shape")
    assert f"did not finish within {HOSTILE_TIMEOUT} s" in output, output
    assert "num_filters=1" in output or "(3, 1," in output or "(5, 1," in output, output


def test_infinite_loop_in_class_body_costs_only_c1(graded_hostile, hostile_batch):
    result = graded_hostile["h_infinite_loop_in_class_body"]
    result.expect({"C.1": ALL_CHECKS})
    where = located_cell(hostile_batch.folder / "h_infinite_loop_in_class_body.ipynb", "class UNet").where
    for t in result.part_tests("C.1"):
        assert t["output"].startswith(
            f"`UNet` was skipped: running its definition ({where}, line 1) did not finish within"
        ), t["output"]
    assert any(f"{where}, line 1 skipped" in n for n in result.notes), result.notes


def test_sys_exit_in_class_body_costs_only_c1(graded_hostile):
    result = graded_hostile["h_sys_exit_in_class_body"]
    result.expect({"C.1": ALL_CHECKS})
    for t in result.part_tests("C.1"):
        assert "`UNet` could not be defined" in t["output"], t["output"]
        assert "SystemExit: the code called exit(None)" in t["output"], t["output"]


def test_os_exit_in_class_body_costs_only_b1(graded_hostile):
    result = graded_hostile["h_os_exit_in_class_body"]
    result.expect({"B.1": ALL_CHECKS})
    for t in result.part_tests("B.1"):
        assert "`ConvTransposeNet` was skipped" in t["output"], t["output"]
        assert "exited with status 0" in t["output"], t["output"]


def test_huge_tensor_in_init_costs_only_a1(graded_hostile):
    result = graded_hostile["h_huge_tensor_in_init"]
    result.expect({"A.1": ALL_CHECKS})
    for t in result.part_tests("A.1"):
        assert "RuntimeError" in t["output"] and "allocate" in t["output"], t["output"]


def test_growing_list_in_class_body_costs_only_b1(graded_hostile):
    result = graded_hostile["h_growing_list_in_class_body"]
    result.expect({"B.1": ALL_CHECKS})
    # The child touches 3 GiB before the limit stops it: usually a MemoryError; on a busy
    # machine the zeroing of the pages can outlast the 5 s load limit instead.
    for t in result.part_tests("B.1"):
        # Located as the student finds the cell: its number among code cells and first line.
        where = "code cell 9 (starting `class ConvTransposeNet(nn.Module):`), line 1"
        assert t["output"].startswith(
            (
                f"`ConvTransposeNet` could not be defined ({where}): MemoryError",
                f"`ConvTransposeNet` was skipped: running its definition ({where}) did not finish within",
            )
        ), t["output"]


def test_patched_tools_do_not_rescue_a_wrong_solution(graded_hostile):
    result = graded_hostile["h_patches_with_wrong_solution"]
    assert result.error is None
    a1 = {t["tags"][1]: t for t in result.part_tests("A.1")}
    assert a1["equivalence"]["status"] == "failed", result.summary()
    # Unpatched, this solution loses the 2 equivalence points; the patches blind the layer
    # tracing in every model of the notebook, so it can only lose more.
    assert result.score <= result.max_score - 2, result.summary()
    assert result.failed("D.2") == set(), result.summary()


def test_patching_allclose_keeps_earned_marks(graded_hostile):
    result = graded_hostile["h_patches_allclose_correct_solution"]
    result.expect()
    assert result.score == result.max_score == 19  # A.1-C.1 and D.2


def test_fake_results_printed_by_student_code_go_nowhere(graded_hostile, hostile_batch):
    result = graded_hostile["h_prints_fake_results"]
    result.expect()
    assert result.score == result.max_score == 19
    written = (hostile_batch.out / "h_prints_fake_results.json").read_text()
    # The fake's scores (999) as numbers of their own: the digits turn up by chance inside the
    # secret seed, a time or a memory size (a seed of 119205336899921 failed this test).
    assert FAKE_MARK not in written and not re.search(r"(?<![\d.])999(?![\d.])", written)
    assert FAKE_MARK not in hostile_batch.stdout + hostile_batch.stderr
    for path in hostile_batch.out.rglob("*"):
        if path.is_file():
            assert FAKE_MARK not in path.read_text(errors="replace"), path


def test_megabytes_of_output_are_dropped(graded_hostile, hostile_batch):
    result = graded_hostile["h_prints_megabytes"]
    result.expect()
    assert result.score == result.max_score == 19
    assert (hostile_batch.out / "h_prints_megabytes.json").stat().st_size < 100_000
    assert "spamspam" not in hostile_batch.stdout + hostile_batch.stderr


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the reference is hidden from the child only when the grader runs as root"
)
def test_reference_cannot_be_read_from_the_sandbox(graded_hostile, hostile_batch):
    result = graded_hostile["h_reads_reference"]
    result.expect({"A.1": ALL_CHECKS})
    feedback = result.feedback("A.1", "shape")
    # the attempt was made, and failed
    assert "LEAK could not read:" in feedback, feedback
    # every file the batch wrote: results, gradebook, logs
    everything = "".join(p.read_text(errors="replace") for p in hostile_batch.out.rglob("*") if p.is_file())
    known = (hostile_batch.folder / "h_reads_reference.ipynb").read_text()
    for secret in SECRETS:
        lines = {ln.strip() for ln in secret.read_text().splitlines()}
        # distinctive lines the student does not already have in the notebook
        lines = {ln for ln in lines if len(ln) > 25 and json.dumps(ln)[1:-1] not in known}
        assert len(lines) > 10, secret
        for line in lines:
            assert line not in everything, f"{secret.name} leaked: {line}"
