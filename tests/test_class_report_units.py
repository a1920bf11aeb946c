"""The class report's rooms, in-process and torch-free: failure causes, the similarity flags on
small made-up regions, the page's escaping, `grade report` and `grade slurm` command lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from submissions import REPO

from grader.classreport import causes, page
from grader.classreport.build import ClassResults, report_data
from grader.classreport.similarity import (
    Given,
    SimilarityOptions,
    Snippet,
    evidence,
    fingerprints,
    normalise,
    pair_scores,
)
from grader.cli import main as grade
from grader.report.results import CheckResult, GradingResult


# -- causes ---------------------------------------------------------------------------------


def test_one_cause_for_messages_that_differ_only_in_what_varies_between_students():
    a = (
        "PoolUpsampleNet(kernel=3, num_filters=4, num_colours=24, num_in_channels=1): Layer 5, a Conv2d, "
        "has output channels 8 where the reference has 4. parametrised layer 5 in forward order: ..."
    )
    b = (
        "PoolUpsampleNet(kernel=5, num_filters=7, num_colours=5, num_in_channels=3): Layer 1, a Conv2d, "
        "has output channels 4 where the reference has 7; so the reference's weights do not fit"
    )
    assert (
        causes.cause_of(a)
        == causes.cause_of(b)
        == ("PoolUpsampleNet(...): Layer N, a Conv2d, has output channels N where the reference has N")
    )
    # where in the notebook, quoted names and shapes do not make another cause
    c = "RuntimeError: weight of size [7, 1, 3, 3], expected input[2, 3, 32, 32] (code cell 7, line 9)"
    d = "RuntimeError: weight of size [5, 6, 3, 3], expected input[3, 8, 32, 32] (code cell 11, line 25)"
    assert causes.cause_of(c) == causes.cause_of(d)
    assert causes.cause_of("NameError: name 'loss' is not defined") == causes.cause_of(
        "NameError: name 'iou' is not defined"
    )
    # the code to paste after Try: is no part of the cause
    assert (
        causes.cause_of("compute_iou_loss gives 0.4 here. Try:\npred = 1") == "compute_iou_loss gives N here"
    )


def test_different_causes_stay_apart():
    assert causes.cause_of("Layer 2, a Conv2d, has kernel 3 where the reference has 5") != causes.cause_of(
        "Layer 2, a Conv2d, has output channels 3 where the reference has 5"
    )


def test_examples_lose_the_students_name_and_paths():
    text = "alice__a2-cnn: /home/grader/in/alice__a2-cnn.ipynb raised in code cell 3"
    out = causes.anonymise(text, ["alice__a2-cnn"])
    assert "alice" not in out and "/home" not in out and "code cell 3" in out


# -- similarity -------------------------------------------------------------------------------

OPTIONS = SimilarityOptions(min_fingerprints=3, common_floor=100)
STARTER = Given.of([])
ORIGINAL = """
def loss(pred, gt, smooth=1e-6):
    probabilities = torch.softmax(pred, dim=1)
    flower = probabilities[:, 1]
    inter = (flower * gt).sum(dim=(1, 2))
    union = (flower + gt - flower * gt).sum(dim=(1, 2))
    ratio = (inter + smooth) / (union + smooth)
    return 1 - ratio.mean()
"""
INTER = "    inter = (flower * gt).sum(dim=(1, 2))\n"
UNION = "    union = (flower + gt - flower * gt).sum(dim=(1, 2))\n"
COPIES = {
    "renamed": ORIGINAL.replace("probabilities", "p")
    .replace("flower", "fg")
    .replace("inter", "i")
    .replace("union", "u")
    .replace("ratio", "r"),
    "reordered": ORIGINAL.replace(INTER + UNION, UNION + INTER),
    "commented": ORIGINAL.replace("):\n", '):\n    """Soft IoU, my own work."""\n', 1).replace(
        "dim=1)\n", "dim=1)  # probabilities per class\n"
    ),
    "dead code": ORIGINAL.replace(
        "    return", "    if False:\n        print(ratio)\n    unused = 3\n    return"
    ),
    "other literals": ORIGINAL.replace("1e-6", "1e-5").replace("dim=1", "dim=-3"),
}
INDEPENDENT = """
def loss(pred, gt, smooth=1e-6):
    fg = pred.softmax(1)[:, 1, :, :]
    gt = gt.float()
    overlap = torch.sum(fg * gt)
    total = torch.sum(fg) + torch.sum(gt) - overlap
    return 1.0 - (overlap + smooth) / (total + smooth)
"""


def scores(regions: dict[str, str], ignored: set[int] = frozenset()) -> dict:
    code = {name: normalise([Snippet(name, source)], STARTER, OPTIONS) for name, source in regions.items()}
    return pair_scores(evidence(code, set(ignored), OPTIONS), OPTIONS)


@pytest.mark.parametrize("kind", sorted(COPIES))
def test_a_disguised_copy_scores_above_the_threshold(kind):
    found = scores({"original": ORIGINAL, "copy": COPIES[kind]})
    assert found[("copy", "original")] >= OPTIONS.threshold, found


def test_an_independent_solution_scores_below_the_threshold():
    found = scores({"original": ORIGINAL, "other": INDEPENDENT})
    assert found[("original", "other")] < 0.5, found


def test_code_the_starter_or_reference_has_is_no_evidence():
    # Both students wrote exactly the reference: nothing of their own is left to compare.
    reference = normalise([Snippet("reference", ORIGINAL)], STARTER, OPTIONS).fingerprints
    assert scores({"a": ORIGINAL, "b": COPIES["renamed"]}, ignored=reference) == {}


def test_fingerprints_are_the_same_in_every_process():
    """Python's hash() is salted per process; the fingerprints must not be (scores would move)."""
    text = "V = torch.softmax(V, dim=NUM)[:, NUM]"
    code = (
        f"from grader.classreport.similarity import fingerprints; print(sorted(fingerprints({text!r}, 5, 4)))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2)
    }
    assert runs == {f"{sorted(fingerprints(text, 5, 4))}\n"}


def test_a_region_that_does_not_parse_is_still_compared_line_by_line():
    broken = ORIGINAL.replace("    return", '    print "py2"\n    return')
    found = scores({"original": ORIGINAL, "broken": broken})
    assert found[("broken", "original")] >= OPTIONS.threshold


def test_code_nested_too_deeply_to_walk_is_left_out_not_fatal():
    deep = "def f():\n    return " + "+".join(["1"] * 3000) + "\n"
    assert scores({"original": ORIGINAL, "deep": deep + ORIGINAL}) == {("deep", "original"): 1.0}


# -- the page ---------------------------------------------------------------------------------


def tiny_class() -> dict:
    hostile = '<script>alert("x")</script>'
    results = {
        hostile: GradingResult(
            hostile,
            "ed",
            [CheckResult("c <b>1</b>", "P.1", "shape", 1, 0, False, "Layer 1 is wrong </pre><script>")],
        ),
        "bob": GradingResult("bob", "ed", [CheckResult("c <b>1</b>", "P.1", "shape", 1, 1, True)]),
    }
    return report_data(ClassResults(results, [Path("out")]), ["P.1"], None)


def test_the_page_escapes_student_text_and_needs_no_network():
    text = page.render(tiny_class(), {})
    assert "<script>" not in text and "&lt;script&gt;" in text
    # nothing to fetch: no link, script or picture from elsewhere (SVG's xmlns names are no fetch)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text) and "<link" not in text
    assert text.count("<svg") == 2  # the histogram and the pass rates (no memory recorded here)


# -- command lines ---------------------------------------------------------------------------


def one_line_error(capsys, argv, fragment):
    assert grade(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_report_mistakes_are_one_line_exit_2(tmp_path, capsys):
    one_line_error(capsys, ["report", str(tmp_path / "nope")], "does not exist")
    one_line_error(capsys, ["report", str(tmp_path)], "no results files")
    (tmp_path / "a.json").write_text(json.dumps(GradingResult("a", "ed").to_dict()))
    one_line_error(capsys, ["report", str(tmp_path), "--ignore", "starter,teacher"], "unknown teacher")
    one_line_error(capsys, ["report", str(tmp_path), "--threshold", "3"], "between 0 and 1")


def test_slurm_writes_an_array_and_a_dependent_merge(tmp_path, capsys):
    submissions = tmp_path / "in"
    submissions.mkdir()
    (submissions / "a.ipynb").write_text("{}")
    out = tmp_path / "results"
    argv = [
        "slurm",
        str(submissions),
        "--out",
        str(out),
        "--tasks",
        "3",
        "--jobs",
        "2",
        "--grade-arg=--no-train",
    ]
    assert grade(argv) == 0
    script = (out / "slurm" / "grade.sbatch").read_text()
    assert "#SBATCH --array=0-2" in script and "#SBATCH --cpus-per-task=2" in script
    assert f"--out {out}/shards/$((K + 1))-of-$N --shard $((K + 1))/$N" in script and "--no-train" in script
    finish = (out / "slurm" / "finish.sbatch").read_text()
    assert " ".join(f"{out}/shards/{k}-of-3" for k in (1, 2, 3)) in finish
    assert f"grader.cli report {out}" in finish
    bash = subprocess.run(["bash", "-n", str(out / "slurm" / "grade.sbatch")], capture_output=True, text=True)
    assert bash.returncode == 0, bash.stderr
    assert "sbatch --dependency=afterok:$jobid --kill-on-invalid-dep=yes" in capsys.readouterr().out


def test_slurm_mistakes_are_one_line_exit_2(tmp_path, capsys):
    base = ["slurm", str(tmp_path), "--out", str(tmp_path / "r")]
    one_line_error(capsys, ["slurm", str(tmp_path / "nope"), "--out", "r", "--tasks", "2"], "does not exist")
    one_line_error(capsys, [*base, "--tasks", "0"], "at least 1")
    one_line_error(capsys, [*base, "--tasks", "2", "--grade-arg=--bogus"], "does not accept --bogus")
    one_line_error(capsys, [*base, "--tasks", "2", "--grade-arg=--shard=1/2"], "set --shard themselves")
    one_line_error(capsys, [*base, "--tasks", "2", "--array", "1"], "--array goes with --submit")


# -- memory per submission ------------------------------------------------------------------

GROW = """
def grow(mib):
    block = bytearray(mib * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)
"""


def peak_after_growing(mib: int) -> int:
    from grader.sandbox import Limits, Sandbox  # imports torch, so only here

    statements = [{"cell": 0, "lineno": 2, "source": GROW.strip() + "\n"}]
    with Sandbox(statements, Limits(request_seconds=30, boot_seconds=30)) as box:
        box.request("call", None, name="grow", args=[mib], kwargs={}, grad_wrt=[], source_pattern=None)
    return box.peak_memory_bytes


def test_the_sandbox_records_the_peak_memory_its_child_reached():
    small, large = peak_after_growing(1), peak_after_growing(300)
    assert small > 50 * 2**20  # a child holds at least the interpreter and what the server preloaded
    assert large - small > 250 * 2**20, (small, large)


def test_peak_memory_survives_the_results_file():
    result = GradingResult("a", "ed", peak_memory_bytes=123 * 2**20)
    assert GradingResult.from_dict(result.to_dict()).peak_memory_bytes == 123 * 2**20
