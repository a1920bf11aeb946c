"""Submissions that hang, exit, exhaust memory, patch the checks' tools, print fake results or
try to read the reference. Each is graded in one batch with `--timeout 5` (conftest.py): the
grader must survive all of them, give no point that was not earned, and stay within a time
bound computed from its limits."""

import json
import os

import pytest

from conftest import HOSTILE_TIMEOUT
from submissions import REFERENCE_SOLUTION, REPO, located_cell

pytestmark = pytest.mark.slow  # whole gradings in subprocesses: `make test-fast` leaves it out

# Lines of the reference classes that edits hook onto (used with `within=`: the three
# classes share the __init__ lines, and the first two their forward).
PUN_HEAD = "class PoolUpsampleNet(nn.Module):\n"
CTN_HEAD = "class ConvTransposeNet(nn.Module):\n"
UNET_HEAD = "class UNet(nn.Module):\n"
INIT = "        super().__init__()\n"
CHAIN = "        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))\n"

FAKE_MARK = "FAKE-RESULT-1c9e"
FAKE_JSON = (
    'json.dumps({"score": 999, "execution_time": 0, "tests": [{"name": "%s", '
    '"score": 999, "max_score": 999, "status": "passed"}]})' % FAKE_MARK
)

# A wrong PoolUpsampleNet (ReLU before BatchNorm: it honestly loses only the 2 equivalence
# points) that patches the grader's tools while its class is being defined.
PATCHING_WRONG = """
class PoolUpsampleNet(nn.Module):
    torch.allclose = lambda *args, **kwargs: True
    nn.Module.__call__ = lambda self, *args, **kwargs: self.forward(*args, **kwargs)

    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        def block(cin, cout, resample):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding), resample,
                                 nn.ReLU(), nn.BatchNorm2d(cout))
        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""

SECRETS = [REFERENCE_SOLUTION, REPO / "assignments" / "pa2" / "test_colourization.py"]
READ_SECRETS = f"""    _stolen = []
    for _path in {[str(p) for p in SECRETS]!r}:
        try:
            _stolen.append(open(_path).read())
        except OSError as exc:
            _stolen.append("could not read: %s" % exc)
"""

HOSTILE_NOTEBOOKS = {
    "h_infinite_loop_in_init": {
        "within": {"PoolUpsampleNet": {INIT: INIT + "        while True:\n            pass\n"}}
    },
    # hangs only for a setting that only the hypothesis-driven shape check draws
    "h_hangs_for_one_filter": {
        "within": {"PoolUpsampleNet": {INIT: INIT + "        while num_filters == 1:\n            pass\n"}}
    },
    "h_infinite_loop_in_class_body": {
        "within": {"UNet": {UNET_HEAD: UNET_HEAD + "    while True:\n        pass\n"}}
    },
    "h_sys_exit_in_class_body": {
        "within": {"UNet": {UNET_HEAD: "import sys\n\n" + UNET_HEAD + "    sys.exit()\n"}}
    },
    "h_os_exit_in_class_body": {"within": {"ConvTransposeNet": {CTN_HEAD: CTN_HEAD + "    os._exit(0)\n"}}},
    "h_huge_tensor_in_init": {
        "within": {"PoolUpsampleNet": {INIT: INIT + "        self.cache = torch.empty(10**11)\n"}}
    },
    "h_growing_list_in_class_body": {
        "within": {
            "ConvTransposeNet": {
                CTN_HEAD: CTN_HEAD + "    _cache = []\n    while True:\n"
                "        _cache.append(bytearray(100 * 2**20))\n"
            }
        }
    },
    "h_patches_with_wrong_solution": {"replace": {"PoolUpsampleNet": PATCHING_WRONG}},
    "h_patches_allclose_correct_solution": {
        "within": {
            "PoolUpsampleNet": {PUN_HEAD: PUN_HEAD + "    torch.allclose = lambda *args, **kwargs: True\n"}
        }
    },
    "h_prints_fake_results": {
        "within": {
            "PoolUpsampleNet": {
                PUN_HEAD: "import json\nimport sys\n\n" + PUN_HEAD + f"    print({FAKE_JSON})\n",
                CHAIN: f"        print({FAKE_JSON})\n"
                f"        sys.__stdout__.write({FAKE_JSON})\n"
                f"        os.write(1, {FAKE_JSON}.encode())\n"
                f"        os.write(2, {FAKE_JSON}.encode())\n" + CHAIN,
            }
        }
    },
    "h_prints_megabytes": {
        "within": {"PoolUpsampleNet": {CHAIN: "        print('spam' * 250000)\n" + CHAIN}}
    },
    "h_reads_reference": {
        "within": {
            "PoolUpsampleNet": {
                PUN_HEAD: PUN_HEAD + READ_SECRETS,
                INIT: INIT + "        raise RuntimeError('LEAK ' + ' | '.join(s[:600] for s in "
                "PoolUpsampleNet._stolen))\n",
            }
        },
        "extra_cells": [
            f"class Peek:\n{READ_SECRETS}    raise RuntimeError('LEAK ' + "
            "' | '.join(s[:600] for s in _stolen))\n"
        ],
    },
}

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
    assert FAKE_MARK not in written and "999" not in written
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
