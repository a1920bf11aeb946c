"""`grade slurm` against a real single-node Slurm (tests/slurm_cluster.py): a 40-submission
batch in 4 array tasks gives the gradebook of one `grade --jobs 2` run, and an array task
killed mid-way, submitted again, grades only what it had not finished.

Why this class is representative at a fraction of the cost: what Slurm changes is who grades
which submission (shards), in which process, and what survives a killed task; not how a
notebook is graded. So the 40 submissions are copies of 8 distinct notebooks (the reference,
the starter, four A.1 mistakes, two other correct styles: scores from 0 to full), graded on
part A.1 without the training checks, which still runs the sandbox, the reference and
hypothesis for every submission. Copies have distinct names, so the interleaved shards mix
outcomes. About 4 minutes on 2 cores: the single batch, 4 tasks two at a time, the
resubmitted task and the merge-and-report job.
"""

from __future__ import annotations

import csv
import os
import re
import time
from pathlib import Path

import pytest

from grading import grader_env, run_grader
from pa2_colourization_cases import (
    A1_MISSING_FINAL_CONV,
    A1_POOL_KERNEL_1,
    A1_RELU_BEFORE_BN,
    A1_WRONG_WIDTH,
    BIG_SEQUENTIAL,
    MODULE_LISTS,
)
from slurm_cluster import SlurmCluster, missing_reason
from submissions import TEMPLATE_NOTEBOOK, make_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

DISTINCT = {
    "reference": {},
    "starter": {"base": TEMPLATE_NOTEBOOK},
    "relu_before_bn": {"replace": {"PoolUpsampleNet": A1_RELU_BEFORE_BN}},
    "missing_final_conv": {"replace": {"PoolUpsampleNet": A1_MISSING_FINAL_CONV}},
    "wrong_width": {"replace": {"PoolUpsampleNet": A1_WRONG_WIDTH}},
    "pool_kernel_1": {"replace": {"PoolUpsampleNet": A1_POOL_KERNEL_1}},
    "big_sequential": {"replace": {"PoolUpsampleNet": BIG_SEQUENTIAL["PoolUpsampleNet"]}},
    "module_lists": {"replace": {"PoolUpsampleNet": MODULE_LISTS["PoolUpsampleNet"]}},
}
COPIES = 5  # 8 x 5 = 40 submissions
TASKS = 4
GRADE_ARGS = ("--part=A.1", "--no-train")
WAIT = 900  # seconds for any one stage before the test calls it hung


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_reason()
    if reason:
        if os.environ.get("GRADER_REQUIRE_SLURM") == "1":
            pytest.fail(f"{reason}; GRADER_REQUIRE_SLURM=1 requires it")
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.run("scancel", "--full", "--signal=KILL", "-u", "root", check=False)
    cluster.stop()


def make_class(folder: Path) -> list[Path]:
    folder.mkdir()
    made = []
    for name, spec in DISTINCT.items():
        first = make_notebook(folder, f"{name}_0", **spec)
        made.append(first)
        for k in range(1, COPIES):
            copy = folder / f"{name}_{k}.ipynb"
            copy.write_bytes(first.read_bytes())
            made.append(copy)
    return made


def gradebook(folder: Path) -> list[dict]:
    """The gradebook's rows without the seconds each submission took."""
    with open(folder / "gradebook.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def until(condition, what: str, cluster: SlurmCluster, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(
        f"{what} within {timeout:g} s\n{cluster.run('squeue', '-t', 'all', check=False)}\n{cluster.logs()}"
    )


def submit(cluster: SlurmCluster, submissions: Path, out: Path, *extra: str) -> tuple[str, str]:
    args = ["slurm", submissions, "--out", out, "--tasks", TASKS, "--submit", *extra]
    args += [f"--grade-arg={a}" for a in GRADE_ARGS]
    env = grader_env(SLURM_CONF=cluster.env["SLURM_CONF"])
    done = run_grader(*args, train=None, env=env, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    array = re.search(r"grading array job: (\d+)", done.stdout)[1]
    finish = re.search(r"finishing job: (\d+)", done.stdout)[1]
    return array, finish


def test_an_array_job_grades_like_one_batch_and_a_killed_task_resumes(cluster, tmp_path):
    submissions = tmp_path / "submissions"
    assert len(make_class(submissions)) == len(DISTINCT) * COPIES == 40
    started = time.monotonic()

    one = tmp_path / "one-batch"
    done = run_grader(submissions, "--out", one, "--jobs", 2, "--quiet", *GRADE_ARGS, timeout=WAIT)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = gradebook(one)
    assert len(expected) == 40 and len({row["score"] for row in expected}) >= 4, expected
    one_batch_seconds = time.monotonic() - started

    out = tmp_path / "results"
    array, finish = submit(cluster, submissions, out)
    # Kill task 1 (shard 2 of 4) once it has written two of its ten results: mid-way.
    shard = out / "shards" / f"2-of-{TASKS}"
    until(lambda: len(list(shard.glob("*.json"))) >= 2, "task 1 wrote no results", cluster)
    cluster.run("scancel", "--full", "--signal=KILL", f"{array}_1")
    until(
        lambda: (
            cluster.job_states(array).get(f"{array}_1") in ("CANCELLED", "FAILED")
            and cluster.job_states(finish).get(finish) == "CANCELLED"
        ),
        "the killed task and the finishing job it blocks were not cancelled",
        cluster,
    )
    kept = len(list(shard.glob("*.json")))
    assert 2 <= kept < 10, f"task 1 was not killed mid-way: {kept} results"
    others = [f"{array}_{k}" for k in (0, 2, 3)]
    until(
        lambda: all(cluster.job_states(array).get(t) == "COMPLETED" for t in others),
        "the other tasks did not complete",
        cluster,
    )
    assert not (out / "gradebook.csv").exists()  # nothing merged from an incomplete array

    # Submit the killed task again: it grades only what it had not finished, then the merge runs.
    again, finish = submit(cluster, submissions, out, "--array", "1")
    until(
        lambda: cluster.job_states(finish).get(finish) in ("COMPLETED", "FAILED", "CANCELLED"),
        "the finishing job did not end",
        cluster,
    )
    assert cluster.job_states(finish)[finish] == "COMPLETED", cluster.logs()
    log = (out / "slurm" / "logs" / f"grade-{again}_1.out").read_text()
    graded, reused = map(int, re.search(r"Graded (\d+) submissions \((\d+) up to date\)", log).groups())
    assert reused == kept and graded + reused == 10, log

    assert gradebook(out) == expected
    assert (out / "class-report.html").is_file() and (out / "class-report.json").is_file()
    print(f"one batch (--jobs 2): {one_batch_seconds:.0f} s; whole test: {time.monotonic() - started:.0f} s")
