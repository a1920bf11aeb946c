"""Trust, end to end, through the real `grade` command (docs/design.md, trust model, rules 2, 3 and
7): hidden inputs never reach a visible check's message; a slow child ends with the
grading's budget; a machine that cannot isolate the file system records nothing for any
student; a person's typo is one line and exit status 2."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading import grader_command, grader_env
from submissions import REPO, make_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

NO_LANDLOCK = [sys.executable, str(Path(__file__).parent / "no_landlock.py")]
HAVE_CAPSH = shutil.which("capsh") is not None


def readable_by_others(path: Path) -> bool:
    """Whether a user neither owning `path` nor in its group can read it: the sandbox's own uid
    can read the reference only then (a checkout cloned into a mode-700 folder, as `mktemp -d`
    makes, hides it from that uid, and the grader rightly counts that as isolation)."""
    path = path.resolve()
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents) and bool(
        path.stat().st_mode & stat.S_IROTH
    )


# B.1's class reports, in its error message, every setting PoolUpsampleNet was built with in
# this child: a child that served A.1's hidden checks would list their secret settings.
RECORDER = (
    "SEEN = set()\n\n\n"
    "class PoolUpsampleNet(PoolUpsampleNet):\n"
    "    def __init__(self, *args, **kwargs):\n"
    "        SEEN.add(tuple(args))\n"
    "        super().__init__(*args, **kwargs)\n\n\n"
    "class ConvTransposeNet(nn.Module):\n"
    "    def __init__(self, *args):\n"
    "        super().__init__()\n"
    "        raise RuntimeError('seen ' + repr(sorted(SEEN)))\n"
)
PUBLIC_SETTINGS = {(3, 4, 24, 1), (3, 7, 5, 3), (5, 5, 7, 1)}  # pa2.fixed_settings("PoolUpsampleNet")


def run(args, cwd=REPO, timeout=600, wrapper=(), no_sys_admin=False):
    command = [*wrapper, *grader_command(*args)]
    if no_sys_admin:  # as in Docker: no mount namespace to hide the checkout behind
        command = ["capsh", "--drop=cap_sys_admin", "--", "-c", " ".join(map(shlex.quote, command))]
    return subprocess.run(
        command,
        cwd=cwd,
        env=grader_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_hidden_inputs_reach_no_visible_message(tmp_path):
    make_notebook(tmp_path, "recorder", extra_cells=[RECORDER])
    out = tmp_path / "student.json"
    proc = run([tmp_path / "recorder.ipynb", "--part", "A.1", "--part", "B.1", "--json", out,
                "--hidden-details", "after_due_date"])  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    tests = json.loads(out.read_text())["tests"]
    visible = [t for t in tests if t["visibility"] == "visible" and t["tags"][0] == "B.1"]
    seen = set()
    for test in visible:
        for found in re.findall(r"seen (\[.*?\])", test["output"]):
            seen |= {tuple(hp) for hp in ast.literal_eval(found)}
    assert seen, [t["output"][:200] for t in visible]  # the recorder did run in the public child
    assert seen <= PUBLIC_SETTINGS, f"hidden settings leaked into visible feedback: {seen - PUBLIC_SETTINGS}"


def test_a_slow_child_ends_within_the_gradings_budget(tmp_path):
    slow = (
        "import time\n\n\n"
        "class PoolUpsampleNet(PoolUpsampleNet):\n"
        "    def forward(self, x):\n"
        "        time.sleep(1.8)\n"
        "        return super().forward(x)\n"
    )
    make_notebook(tmp_path, "slow", extra_cells=[slow])
    out = tmp_path / "slow.json"
    started = time.monotonic()
    proc = run([tmp_path / "slow.ipynb", "--part", "A.1", "--timeout", "2", "--budget", "20", "--json", out])
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert took < 20 + 25, took  # the budget, plus starting up and the parent's own work
    outputs = [t["output"] for t in json.loads(out.read_text())["tests"] if t["status"] == "failed"]
    assert any("too slow" in o for o in outputs), outputs


@pytest.mark.skipif(os.geteuid() != 0 or not HAVE_CAPSH, reason="needs root and capsh (libcap2-bin)")
@pytest.mark.skipif(
    not readable_by_others(REPO / "reference" / "pa2" / "solution.py"),
    reason="the checkout is not readable by other users (a mode-700 folder above it): no sandbox "
    "uid can read the reference there, so there is no unsafe machine to refuse",
)
def test_no_file_system_isolation_records_nothing_for_any_student(tmp_path):
    """Instructor grading on a kernel without Landlock and without CAP_SYS_ADMIN (no mount
    namespace), where the sandbox's uid could still read the reference (this checkout is
    world-readable): every grading is refused, nothing is stored, the batch says so and exits
    2; once allowed, the same command grades them. (Where a mount namespace hides the secrets,
    the uid probe rightly counts that as isolation: tests/test_gradescope.py.)"""
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("alice", "bob"):
        make_notebook(folder, name)
    results = tmp_path / "results"
    args = [folder, "--out", results, "--part", "A.1", "--no-train", "--quiet"]
    refused = run(args, wrapper=NO_LANDLOCK, no_sys_admin=True)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to grade" in refused.stderr and "nothing recorded" in refused.stderr, refused.stderr
    assert not list(results.glob("*.json")), sorted(p.name for p in results.iterdir())
    single = run([folder / "alice.ipynb", "--part", "A.1", "--no-train", "--json", tmp_path / "one.json"],
                 wrapper=NO_LANDLOCK, no_sys_admin=True)  # fmt: skip
    assert single.returncode == 2 and "refusing to grade" in single.stderr, single.stdout + single.stderr
    assert "Score:" not in single.stdout
    allowed = run([*args, "--allow-unsafe-sandbox"], wrapper=NO_LANDLOCK, no_sys_admin=True)
    assert allowed.returncode in (0, 1, 2), allowed.stderr
    assert {p.stem for p in results.glob("*.json")} == {"alice", "bob"}, allowed.stdout + allowed.stderr
    for path in results.glob("*.json"):
        assert any("WARNING" in note for note in json.loads(path.read_text())["grader"]["notes"])


def test_a_typo_is_the_persons_mistake(tmp_path):
    """A path that does not exist (a verb mistyped) is one line and exit status 2: nothing is
    graded and nothing is written, not even the output folder."""
    for args in (["reprot", "results/"], ["missing.ipynb", "--json", "out.json"]):
        proc = run(args, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "no such file or folder" in proc.stderr
        assert not list(tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
