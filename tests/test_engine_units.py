"""In-process unit tests of the engine's torch-free rooms: the results model and its writers,
the batch's discovery, store and class outputs, regions, layer comparison and the verbs'
command-line helper. Each runs in milliseconds; the end-to-end files (marked slow) show the
same behaviour through `grade`."""

from __future__ import annotations

import csv
import json
import os
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import settings

from grader.editions.assignment import load_assignment
from grader.batch.discover import expand_paths, result_names
from grader.batch.outputs import gradebook_csv, isolation_summary, junit_xml, pass_rates
from grader.batch.store import fingerprint, read_results, stamp_of, sweep_temporary_files, write_results
from grader.checks.compare import first_layer_difference
from grader.errors import SubmissionError
from grader.engine.checkrun import _pytest_quietly
from grader.engine.load import Cell
from grader.engine.plugin import GradingPlugin
from grader.engine.regions import RegionNotFound, RegionSpec, extract_region
from grader.public import store
from grader.report.writers import WITHHELD, to_gradescope_dict, to_html
from grader.report.results import NOT_GRADED, CheckResult, GradingResult
from grader.verbs import run_verb, verb_parser

CATALOG = [
    {"name": "A shape", "part": "A.1", "kind": "shape", "max_score": 2.0, "number": "1"},
    {"name": "A params", "part": "A.1", "kind": "params", "max_score": 1.0, "number": "2"},
    {"name": "D loss", "part": "D.2", "kind": "loss", "max_score": 3.0, "number": "3"},
]


def graded(passed: tuple[bool, bool, bool], **fields) -> GradingResult:
    checks = [
        CheckResult(
            name=c["name"],
            part=c["part"],
            kind=c["kind"],
            max_score=c["max_score"],
            score=c["max_score"] if ok else 0.0,
            passed=ok,
            number=c["number"],
            output="" if ok else f"{c['name']} is wrong\nsecond line",
            hidden=c["part"] == "D.2",
        )
        for c, ok in zip(CATALOG, passed)
    ]
    return GradingResult(submission="s.ipynb", assignment="pa2-w2021", checks=checks, **fields)


# -- the results model --------------------------------------------------------------------------


def test_results_round_trip_through_data():
    result = graded(
        (True, False, False),
        notes=["cell 3 skipped"],
        device="cuda",
        isolation=["landlock ABI 7"],
        challenge_seed=1234,
        execution_time=1.5,
    )
    data = json.loads(json.dumps(result.to_dict()))  # what a batch stores and a worker sends
    back = GradingResult.from_dict(data)
    assert back == result
    assert data["score"] == 2 and data["execution_time"] == 1.5
    assert [t["tags"] for t in data["tests"]] == [["A.1", "shape"], ["A.1", "params"], ["D.2", "loss"]]


def test_unusable_submission_fails_every_check_out_of_the_full_points():
    result = GradingResult(submission="s.ipynb", assignment="pa2-w2021")
    result.mark_unusable("not a valid notebook", CATALOG)
    assert (result.score, result.max_score, result.status, result.exit_code) == (0, 6, "error", 2)
    assert {c.output for c in result.checks} == {NOT_GRADED}
    assert GradingResult.from_dict(result.to_dict()) == result


def test_students_results_file_withholds_hidden_details_and_the_seed():
    result = graded((True, True, False), challenge_seed=99)
    instructor = to_gradescope_dict(result)
    assert "grader" not in instructor and "99" not in json.dumps(instructor)
    assert [t["name"] for t in instructor["tests"]] == ["A shape", "A params", "D loss"]
    student = to_gradescope_dict(result, hidden_details="after_due_date")
    loss, details = student["tests"][2:]
    assert (loss["output"], loss["max_score"], loss["visibility"]) == (WITHHELD, 3.0, "visible")
    assert (details["name"], details["max_score"], details["visibility"]) == (
        "D loss (details)",
        0,
        "after_due_date",
    )
    assert details["output"] == result.checks[2].output and student["score"] == 3


# -- batch: discovery, store, class outputs -----------------------------------------------------


def test_discovery_lists_submissions_and_names_them_uniquely(tmp_path):
    for path in (
        "a/x.ipynb",
        "b/x.ipynb",
        "c/y.py",
        "c/.ipynb_checkpoints/y-checkpoint.ipynb",
        "c/notes.txt",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}")
    found = expand_paths([str(tmp_path)])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/x.ipynb", "b/x.ipynb", "c/y.py"]
    assert sorted(result_names(found).values()) == ["a__x", "b__x", "y"]
    assert expand_paths([str(tmp_path / "*" / "y.py")]) == [tmp_path / "c" / "y.py"]


def test_store_stamps_what_a_result_was_graded_from(tmp_path):
    assignment = load_assignment("pa2-w2021")
    submission = tmp_path / "s.py"
    submission.write_text("x = 1\n")
    stamp = fingerprint(submission, assignment, {"no_train": True})
    assert stamp == fingerprint(submission, assignment, {"no_train": True})
    assert stamp != fingerprint(submission, assignment, {"no_train": False})
    submission.write_text("x = 2\n")
    assert stamp != fingerprint(submission, assignment, {"no_train": True})

    result = graded((True, False, True))
    write_results(tmp_path / "s.json", result, stamp)
    data = read_results(tmp_path / "s.json")
    assert stamp_of(data) == stamp and GradingResult.from_dict(data) == result
    (tmp_path / "junk.json").write_text('{"score": 1}')
    (tmp_path / ".s.json.abcd1234").write_text("half")
    assert read_results(tmp_path / "junk.json") is None
    sweep_temporary_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["junk.json", "s.json", "s.py"]


def test_class_outputs_count_an_unusable_submission_as_failing():
    unusable = GradingResult(submission="u", assignment="pa2-w2021", isolation=["landlock"])
    unusable.mark_unusable("=broken", CATALOG)
    entries = {
        "good": graded((True, True, True), isolation=["landlock"]),
        "half": graded((True, False, False), isolation=["landlock"]),
        "bad": unusable,
    }
    rows = list(csv.DictReader(gradebook_csv(entries, ["A.1", "D.2"]).splitlines()))
    assert [
        (r["submission"], r["score"], r["max_score"], r["A.1"], r["D.2"], r["status"], r["error"])
        for r in rows
    ] == [
        ("bad", "0", "6", "0", "0", "error", "'=broken"),
        ("good", "6", "6", "3", "3", "complete", ""),
        ("half", "2", "6", "2", "0", "graded", ""),
    ]
    rates = pass_rates(entries, ["A.1", "D.2"])
    assert [(r["check"], r["passed"], r["total"]) for r in rates] == [
        ("A shape", 2, 3),
        ("A params", 1, 3),
        ("D loss", 1, 3),
    ]
    cases = ET.fromstring(junit_xml(entries, "pa2")).findall(".//testcase")
    failures = {(c.get("classname"), c.get("name")): c.find("failure") for c in cases}
    assert len(failures) == 9 and failures[("good", "A shape")] is None
    assert failures[("half", "D loss")].get("message") == "D loss is wrong"
    assert failures[("bad", "A shape")].get("message") == "Cannot grade: =broken"
    assert isolation_summary(entries) == "isolation: landlock"
    entries["bad"].isolation = []
    assert isolation_summary(entries) == "isolation: [2x] landlock; [1x] none (no sandbox started)"


# -- regions, layer comparison, verbs -----------------------------------------------------------


def test_region_found_by_what_the_cell_does():
    cells = (
        Cell(0, "import torch\n"),
        Cell(1, "args = AttrDict()\nmodel = build()\nmodel.head = 3\ntrain(args, model)\n"),
        Cell(2, "def train(args, model):\n    pass\n"),
    )
    spec = RegionSpec.from_dict(
        "driver",
        {
            "cell_patterns": [r"train\(args, model\)"],
            "drop_calls": ["train", "AttrDict"],
            "description": "the driver cell",
        },
    )
    kept = extract_region(cells, spec)
    assert [s.source for s in kept] == ["model = build()\n", "model.head = 3\n"]
    assert {s.cell for s in kept} == {1}
    with pytest.raises(RegionNotFound, match="the driver cell was not found"):
        extract_region(cells[:1], spec)


def conv(cin, cout, kernel=3, out=(1, 8, 16, 16), kind="Conv2d", path="c"):
    return {
        "type": kind,
        "path": path,
        "out_shape": list(out),
        "config": {
            "in_channels": cin,
            "out_channels": cout,
            "kernel_size": [kernel, kernel],
            "stride": [1, 1],
        },
    }


def test_layer_difference_names_the_cause_before_the_evidence():
    reference = [conv(1, 8, path="a"), conv(8, 4, kind="ConvTranspose2d", out=(1, 4, 32, 32), path="b")]
    assert first_layer_difference([conv(1, 8, path="x"), dict(reference[1], path="y")], reference) is None

    # A Conv2d (with an Upsample) where the handout has a transposed convolution.
    upsampled = [conv(1, 8, path="x"), conv(8, 4, out=(1, 4, 32, 32), path="y")]
    message = first_layer_difference(upsampled, reference)
    assert message.startswith("Layer 2 is a Conv2d where the reference has a ConvTranspose2d (")
    assert message.endswith(
        "parametrised layer 2 in forward order: expected ConvTranspose2d(8->4, kernel 3) -> output "
        "[1, 4, 32, 32], found Conv2d(8->4, kernel 3) -> output [1, 4, 32, 32]"
    )
    # Other channels, another kernel.
    message = first_layer_difference([conv(1, 16, kernel=5, path="x")], reference[:1])
    assert message.startswith(
        "Layer 1, a Conv2d, has output channels 16 where the reference has 8 and kernel 5 "
    )
    # A missing layer, an extra one, the same layer run twice.
    assert first_layer_difference(reference[:1], reference).startswith(
        "Layer 2, a ConvTranspose2d, is missing: your forward calls 1 parametrised layers, the reference 2"
    )
    assert first_layer_difference(reference + [conv(4, 4, path="z")], reference).startswith(
        "Your forward calls an extra layer 3, a Conv2d, after the reference's 2"
    )
    twice = [conv(1, 8, path="a"), conv(1, 8, path="a")]
    assert first_layer_difference(twice, [conv(1, 8), conv(1, 8)]).startswith(
        "Layer 2 runs `a` a second time (it is also layer 1); the reference calls a layer of its own here"
    )
    # A BatchNorm left out, one added, two layers swapped.
    bn = {"type": "BatchNorm2d", "path": "n", "out_shape": [1, 8, 16, 16], "config": {"num_features": 8}}
    with_bn = [conv(1, 8, path="a"), bn, conv(8, 4, path="b")]
    assert first_layer_difference([conv(1, 8, path="a"), conv(8, 4, path="b")], with_bn).startswith(
        "Layer 2 of the reference, a BatchNorm2d, is missing: your layer 2 is a Conv2d, which the "
        "reference calls next"
    )
    assert first_layer_difference([bn, conv(1, 8, path="a"), bn], [conv(1, 8), bn]).startswith(
        "Layers 1 and 2 come in the other order: you call a BatchNorm2d then a Conv2d"
    )
    assert first_layer_difference([conv(1, 8, path="a"), bn, bn], [conv(1, 8), bn]).startswith(
        "Layer 3 runs `n` a second time (it is also layer 2); the reference calls no layer here"
    )
    # Fewer input channels than the reference, by what an earlier layer outputs: a skip.
    unet = [conv(1, 4, path="a"), conv(4, 4, path="b"), conv(8, 2, path="c")]
    no_skip = [conv(1, 4, path="a"), conv(4, 4, path="b"), conv(4, 2, path="c")]
    assert first_layer_difference(no_skip, unet).startswith(
        "Layer 3, a Conv2d, has input channels 4 where the reference has 8 (the reference "
        "concatenates 4 channels here, as many as layer 1's output or layer 2's output: a skip "
        "connection?)"
    )
    # Same type and channels, another output size: the stride, padding or resampling.
    message = first_layer_difference([conv(1, 8, out=(1, 8, 32, 32))], reference[:1])
    assert message.startswith(
        "Layer 1, a Conv2d, gives an output of shape [1, 8, 32, 32] where the reference's is"
    )


def test_verbs_fail_in_one_line_with_status_2(capsys):
    parser = verb_parser("grade thing", "Do a thing.", assignment="positional")

    def body(args):
        raise SubmissionError(f"unknown assignment {args.assignment!r}")

    assert run_verb(parser, ["nope"], body) == 2
    assert capsys.readouterr().err == "grade thing: unknown assignment 'nope'\n"
    assert run_verb(parser, [], body) == 2  # argparse's own message: the argument is missing
    assert "required: assignment" in capsys.readouterr().err
    assert run_verb(parser, ["--help"], body) == 0
    assert run_verb(parser, ["x"], lambda args: 0) == 0


# -- the checks plugin: what a check author writes, turned into results --------------------------

CHECKS_FILE = """
import pytest
from hypothesis import example, given, strategies as st
from grader.checks import reproducible
from grader.errors import MissingDefinition, StudentCodeError


@pytest.mark.grade(part="D.2", kind="loss", points=2)
def test_passes(submission, feedback):
    "A check that passes"
    feedback("a note for the student")


@pytest.mark.grade(part="A.1", kind="shape", points=3)
def test_student_code_failed(submission):
    raise StudentCodeError("your forward() returned [2, 3], expected [2, 4]")


@pytest.mark.grade(part="A.1", kind="params")
@given(n=st.integers(0, 1000))
def test_property(submission, n):
    "A property with a counterexample"
    assert n < 10, f"{n} is too big"


@pytest.mark.grade(part="A.1", kind="layers")
def test_broken_check(submission):
    return {}["missing"]


@pytest.mark.grade(part="A.1", kind="equivalence")
@given(n=st.integers(0, 1000))
def test_crash_with_reproduction(submission, n):
    "A crash of student code on a drawn input"
    with reproducible(f"net = Net({n})\\nnet(x)"):
        if n >= 7:
            raise StudentCodeError("RuntimeError: shapes do not match" + " (details)" * 400)


@pytest.mark.grade(part="A.1", kind="equivalence")
@example(n=3, colour=True)
@given(n=st.integers(0, 2), colour=st.booleans())
def test_explicit_example(submission, n, colour):
    "An input every grading tries"
    assert not colour or n < 3, "colour input breaks it"


@pytest.mark.grade(part="A.1", kind="equivalence")
def test_missing_definition_has_nothing_to_reproduce(submission):
    with reproducible("Net()"):
        raise MissingDefinition("`Net` is not defined anywhere in the submission")
"""


def test_plugin_turns_checks_into_results_in_the_assignments_order(tmp_path):
    (tmp_path / "test_checks.py").write_text(CHECKS_FILE)
    settings.register_profile("students-own", max_examples=3)
    settings.load_profile("students-own")
    try:
        submission = type(
            "Submission",
            (),
            {
                "current_check": None,
                "budget_spent": lambda self: None,
                "use_child_for": lambda self, hidden: None,
            },
        )()
        plugin = GradingPlugin(submission, None, load_assignment("pa2-w2021"), "cpu")
        _pytest_quietly([str(tmp_path), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)], [plugin])
        assert settings.get_current_profile_name() == "students-own"  # given back after grading
    finally:
        settings.load_profile("default")
    by_name = {c.name: c for c in plugin.results}
    # Part order of the assignment (A.1 before D.2), file order within a part; numbered so.
    assert [c.name for c in plugin.results] == [
        "A.1: student code failed",
        "A.1: A property with a counterexample",
        "A.1: broken check",
        "A.1: A crash of student code on a drawn input",
        "A.1: An input every grading tries",
        "A.1: missing definition has nothing to reproduce",
        "D.2: A check that passes",
    ]
    assert [c.number for c in plugin.results] == ["1", "2", "3", "4", "5", "6", "7"]
    # A crash carries the code that reproduces it, after the shrunk input, whole even when
    # the message is cut to size; a missing definition has no code to run.
    crash = by_name["A.1: A crash of student code on a drawn input"].output
    assert crash.startswith("RuntimeError: shapes do not match (details)") and " ...\n" in crash
    assert crash.endswith("\nSmallest failing input: n = 7\nTry:\nnet = Net(7)\nnet(x)"), crash
    assert len(crash) < 1600
    missing = by_name["A.1: missing definition has nothing to reproduce"].output
    assert missing == "`Net` is not defined anywhere in the submission"
    passed = by_name["D.2: A check that passes"]
    assert (passed.passed, passed.score, passed.max_score, passed.output) == (
        True,
        2.0,
        2.0,
        "a note for the student",
    )
    failed = by_name["A.1: student code failed"]
    assert (failed.passed, failed.score, failed.output) == (
        False,
        0.0,
        "your forward() returned [2, 3], expected [2, 4]",
    )
    shrunk = by_name["A.1: A property with a counterexample"].output
    assert shrunk == "10 is too big\nSmallest failing input: n = 10"
    # An explicit example (@example) is the input as written, not shrunk: named as such.
    explicit = by_name["A.1: An input every grading tries"].output
    assert explicit == "colour input breaks it\nFailing input: n = 3, colour = True", explicit
    broken = by_name["A.1: broken check"].output
    assert broken.startswith("the check itself failed (KeyError") and "please report this" in broken


def test_stored_expectations_match_the_assignment_code():
    """Fast guard (the full comparison is tests/test_public.py): any edit of the reference or
    of the assignment's helper modules, even a reformatting, needs `grade build-public`."""
    assert store.is_current(load_assignment("pa2-w2021")), "run `grade build-public pa2-w2021`"


# -- what the parent takes from a child (grader.sandbox.replies) ----------------------------------


def test_a_training_report_may_hold_only_the_predictions_its_request_can_give():
    import torch

    from grader.sandbox import replies

    inputs, targets = torch.zeros(16, 1, 32, 32), torch.zeros(16, 32, 32, dtype=torch.long)
    payload = {"inputs": inputs, "targets": targets, "steps": 3}
    honest = {
        "losses": [3.0, 2.0, 1.0],
        "changed": ["w"],
        "unchanged": [],
        "requires_grad": {"w": True},
        "predictions": torch.zeros(4, 32, 32, dtype=torch.uint8),
        "seconds": 0.5,
        "device": "cpu",
    }
    replies.check("train", payload, honest)
    for forged, why in (
        ({"predictions": torch.zeros(2000, 1, 1, dtype=torch.uint8)}, "shape"),
        ({"predictions": torch.zeros(4, 4096, 4096, dtype=torch.uint8)}, "shape"),
        ({"predictions": torch.zeros(4, 32, 32)}, "not integer"),
        ({"losses": [1.0] * 9000}, "more than 3"),
        ({"requires_grad": {"w": "yes"}}, "true/false"),
        ({"seconds": float("nan")}, "duration"),
        ({"extra": 1}, "fields"),
    ):
        with pytest.raises(replies.Malformed, match=why):
            replies.check("train", payload, honest | forged)
    with pytest.raises(replies.Malformed, match="no answer is expected"):
        replies.check("op_nobody_sent", {}, {})
    # A frame may be as large as the request needs, never unboundedly more.
    assert replies.byte_limit(payload) == replies.BASE_REPLY_BYTES + 64 * (
        16 * 32 * 32 * 4 + 16 * 32 * 32 * 8
    )
    assert replies.byte_limit({"x": torch.zeros(2**28)}) == replies.MAX_REPLY_BYTES


def test_a_wrong_but_honest_forward_output_reaches_the_checks_and_a_flood_does_not():
    import torch

    from grader.sandbox import replies

    payload = {"x": torch.zeros(1, 1, 32, 32), "trace": False}
    # PoolUpsampleNet with pooling kernel 1: two upsamplings make 16 times the pixels, a shape
    # mistake the checks report as such, never a malformed answer
    replies.check("forward", payload, {"output": torch.zeros(1, 2, 128, 128), "layers": None})
    replies.check("forward", payload, {"output": torch.zeros(4, 9, 128, 128), "layers": None})
    with pytest.raises(replies.Malformed, match="elements, more than"):
        replies.check("forward", payload, {"output": torch.zeros(3000, 3000), "layers": None})
    with pytest.raises(replies.Malformed, match="nobody asked for"):
        replies.check("forward", payload, {"output": torch.zeros(1, 2, 32, 32), "layers": []})


def test_student_text_reaches_every_writer_with_its_control_characters_visible():
    nasty = "\x1b]0;owned\x07\x1b[2J\rScore: 30 / 30\u202e\x9b"
    result = GradingResult(
        submission=f"{nasty}.ipynb",
        assignment="pa2-w2021",
        checks=[CheckResult(nasty, "A.1", "shape", 1.0, 0.0, False, output=nasty)],
        notes=[nasty] * 40,
    )
    written = [
        json.dumps(result.to_dict(), ensure_ascii=False),
        gradebook_csv({nasty: result}, ["A.1"]),
        junit_xml({nasty: result}, "suite"),
        to_html(result),
    ]
    for text in written:
        text = text.replace("\r\n", "\n")  # the CSV writer's own line ends
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), text[:300]
    assert "\\x1b]0;owned" in written[0]
    shown = result.shown()
    assert len(shown.notes) == 30 and shown.notes[-1] == "11 more notes not shown"
