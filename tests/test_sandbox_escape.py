"""Student code trying to get out of its box: reading what it must not, hanging the parent,
leaving processes or files behind, reaching other sandboxes. Each test drives a real sandbox
child (grader.sandbox) with hostile code and asserts the rule of docs/design.md's trust model it
attacks: no secret reaches the parent, the parent returns within its deadline (bounds are
stated per test), nothing of the sandbox is left afterwards.

These run in every mode the trust model names: CI runs this file as root, as root without
CAP_SYS_ADMIN (capsh) and as an ordinary user (scripts/test_modes.sh).
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sandboxes import box, call
from submissions import REPO

from grader.engine.budget import Budget
from grader.errors import BudgetSpent, StudentCodeError, StudentCrash, StudentTimeout
from grader.sandbox import confine, server

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

REFERENCE = REPO / "reference" / "pa2" / "solution.py"
IS_ROOT = os.geteuid() == 0


def leftover_named(tag: str) -> list[int]:
    """Processes whose name (comm, set by the hostile code with prctl) is `tag`."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == tag:
                found.append(int(pid))
        except OSError:
            pass
    return found


def gone_within(tag: str, seconds: float) -> list[int]:
    """The processes named `tag` still alive after waiting up to `seconds` for them to go."""
    deadline = time.monotonic() + seconds
    while leftover_named(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return leftover_named(tag)


NAME_SELF = """
import ctypes
def name_self(tag):
    ctypes.CDLL(None).prctl(15, tag.encode(), 0, 0, 0)
"""


# -- confidentiality ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    """A secret in a world-readable file outside the allow-list, a root-only one, and the
    reference's own text (one distinctive line)."""
    marker = "SECRET-" + secrets.token_hex(8)
    folder = Path(tempfile.mkdtemp(prefix="grader-planted-"))
    folder.chmod(0o755)
    open_file = folder / "notes.txt"
    open_file.write_text(marker)
    open_file.chmod(0o644)
    closed_file = folder / "root-only.txt"
    closed_file.write_text(marker)
    closed_file.chmod(0o600)
    reference_line = next(
        line.strip()
        for line in REFERENCE.read_text().splitlines()
        if "def compute_iou_loss" in line or "class UNet" in line
    )
    yield {
        "marker": marker,
        "paths": [str(open_file), str(closed_file)],
        "folder": str(folder),
        "reference_line": reference_line,
    }
    for path in (open_file, closed_file):
        path.unlink()
    os.rmdir(folder)


STEAL = r'''
import glob, os, subprocess, sys
def steal(paths):
    """Every way we know to read files: direct, through the checkout found from the engine,
    git, other copies; returns whatever it got."""
    got = []
    import grader
    checkout = os.path.dirname(os.path.dirname(grader.__file__))
    candidates = list(paths) + [
        os.path.join(checkout, "reference", "pa2", "solution.py"),
        os.path.join(checkout, "examples", "submission.ipynb"),
        os.path.join(checkout, "reference", "pa2-w2021", "a2-cnn.ipynb"),
        os.path.join(checkout, ".git", "HEAD"),
        "/etc/passwd", "/proc/1/environ", "/proc/self/environ",
    ]
    for site in sys.path:
        candidates += glob.glob(os.path.join(site, "grader_reference", "*", "*.py"))
        candidates += glob.glob(os.path.join(site, "grader_assignments", "*", "*.py"))
    for path in candidates:
        try:
            with open(path, errors="replace") as f:
                got.append(f.read())
        except OSError:
            pass
    for command in (["git", "-C", checkout, "show", "HEAD:reference/pa2/solution.py"],
                    ["cat", paths[0]], ["/bin/sh", "-c", "cat " + paths[0]]):
        try:
            got.append(subprocess.run(command, capture_output=True, text=True, timeout=5).stdout)
        except Exception:
            pass
    try:
        got.append(repr(os.listdir(checkout)))
    except OSError:
        pass
    return "\n".join(got)
'''


def test_no_copy_of_the_reference_or_other_file_can_be_read(planted):
    with box(STEAL) as sandbox:
        stolen = call(sandbox, "steal", planted["paths"])
        assert planted["marker"] not in stolen
        assert planted["reference_line"] not in stolen
        assert "root:" not in stolen  # /etc/passwd
        assert not any(i.startswith("no landlock") for i in sandbox.boot.isolation)


def test_a_symlink_at_the_old_output_path_leaks_nothing(planted):
    """The parent reads the child's output through its own descriptor, never by path."""
    source = (
        "import os\n"
        "def plant(target):\n"
        "    os.symlink(target, 'output.log')\n"
        "    os.mkfifo('output.fifo')\n"
        "    raise RuntimeError('look at my output')\n"
    )
    with box(source) as sandbox:
        with pytest.raises(StudentCodeError) as info:
            call(sandbox, "plant", planted["paths"][1])
        assert planted["marker"] not in str(info.value)
        assert planted["marker"] not in sandbox.output_tail()


def test_only_a_minimal_environment_reaches_the_child(monkeypatch):
    marker = "ENV-" + secrets.token_hex(8)
    monkeypatch.setenv("GRADER_TEST_TOKEN", marker)
    source = "import os\ndef env():\n    return repr(sorted(os.environ))\n"
    with box(source) as sandbox:
        names = ast.literal_eval(call(sandbox, "env"))
    assert "GRADER_TEST_TOKEN" not in names
    assert set(names) <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "MPLCONFIGDIR",
        "LANG",
        *server.ENVIRONMENT_KEPT,
    }


def test_the_child_learns_nothing_of_the_grading_process():
    """Not the instructor's command line (which holds the secret seed on a --seed replay), not
    multiprocessing's authentication key, not an editable install's finder naming the
    checkout; not even the size of the reference (stat) where a mount namespace can hide it."""
    source = (
        "import os, sys, multiprocessing\n"
        "def learn(path):\n"
        "    try:\n"
        "        size = os.stat(path).st_size\n"
        "    except OSError as exc:\n"
        "        size = type(exc).__name__\n"
        "    return repr((sys.argv, bytes(multiprocessing.current_process().authkey).hex(),\n"
        "                 [type(f).__module__ for f in sys.meta_path],\n"
        "                 [p for p in sys.path if '__editable__' in p],\n"
        "                 [m for m in sys.modules if m.startswith('__editable__')], size))\n"
    )
    with box(source) as sandbox:
        argv, key, finders, paths, modules, size = ast.literal_eval(call(sandbox, "learn", str(REFERENCE)))
        isolation = sandbox.ensure_started().isolation
    assert argv == ["grader-sandbox"] and not set(argv) & set(sys.argv[1:]), argv
    assert key != bytes(multiprocessing.current_process().authkey).hex()
    assert not [f for f in finders if "__editable__" in f] and not paths and not modules
    if any("hidden (mount namespace)" in item for item in isolation):
        assert size in ("FileNotFoundError", "PermissionError"), size
    else:  # no mount namespace here (root without CAP_SYS_ADMIN): the line says so
        assert any(item.startswith("no mount namespace") for item in isolation), isolation


def test_no_inherited_descriptor_but_the_channel():
    source = (
        "import os, stat\n"
        "def descriptors():\n"
        "    found = []\n"
        "    for fd in range(3, 1024):\n"
        "        try:\n"
        "            found.append((fd, stat.S_ISSOCK(os.fstat(fd).st_mode)))\n"
        "        except OSError:\n"
        "            pass\n"
        "    return repr(found)\n"
    )
    with box(source) as sandbox:
        found = ast.literal_eval(call(sandbox, "descriptors"))
    assert len(found) == 1 and found[0][1], found  # the socket to the parent, nothing else


# -- availability: the parent never blocks --------------------------------------------------------

FIND_CHANNEL = """
import os, stat, time
def channel():
    return next(fd for fd in range(3, 1024) if _is_socket(fd))
def _is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
"""


def test_a_partial_frame_then_sleep_costs_one_time_limit():
    source = FIND_CHANNEL + (
        "def half_then_sleep():\n"
        "    os.write(channel(), (1000).to_bytes(8, 'little') + b'{\"pay')\n"
        "    time.sleep(600)\n"
    )
    with box(source, request_seconds=2) as sandbox:
        sandbox.ensure_started()
        started = time.monotonic()
        with pytest.raises(StudentTimeout):
            call(sandbox, "half_then_sleep")
        assert time.monotonic() - started < 2 + 3  # the limit, plus killing and cleaning up
        assert call(sandbox, "channel") >= 3  # a fresh child answers


def test_a_stopped_child_cannot_block_a_large_request():
    import torch

    source = (
        "import os, signal, threading, time\n"
        "def stop_soon():\n"
        "    def stop():\n"
        "        time.sleep(0.3)\n"
        "        os.kill(os.getpid(), signal.SIGSTOP)\n"
        "    threading.Thread(target=stop).start()\n"
        "    return 'soon'\n"
        "def echo(x):\n"
        "    return x.shape\n"
    )
    with box(source, request_seconds=2) as sandbox:
        assert call(sandbox, "stop_soon") == "soon"
        time.sleep(1.0)
        started = time.monotonic()
        # A stopped child and a request far larger than a socket's buffer (a training batch).
        with pytest.raises(StudentTimeout):
            sandbox.request("call", 2, name="echo", args=[torch.zeros(64, 3, 128, 128)], kwargs={})
        assert time.monotonic() - started < 2 + 3


def test_a_bogus_progress_report_is_a_crash_not_an_internal_error():
    source = FIND_CHANNEL + (
        "def lie():\n"
        "    import json\n"
        "    header = json.dumps({'payload': {'progress': 10**9}, 'tensors': []}).encode()\n"
        "    body = len(header).to_bytes(8, 'little') + header\n"
        "    os.write(channel(), len(body).to_bytes(8, 'little') + body)\n"
        "    time.sleep(600)\n"
    )
    with box(source, request_seconds=3) as sandbox:
        with pytest.raises(StudentCrash, match="malformed"):
            call(sandbox, "lie")


# -- one submission, one box: nothing left behind ---------------------------------------------------


def test_a_double_forked_setsid_grandchild_does_not_outlive_its_grading():
    tag = "gl" + secrets.token_hex(6)
    source = NAME_SELF + (
        "import os, time\n"
        "def escape(tag):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            name_self(tag)\n"
        "            time.sleep(3600)\n"
        "        os._exit(0)\n"
        "    time.sleep(0.5)\n"
        "    return 'escaped'\n"
    )
    with box(source) as sandbox:
        assert call(sandbox, "escape", tag) == "escaped"
        assert leftover_named(tag), "the grandchild should be running while the grading lasts"
    assert not gone_within(tag, 5)


def test_process_count_is_capped_and_none_survive():
    tag = "gp" + secrets.token_hex(6)
    source = NAME_SELF + (
        "import os, time\n"
        "def sleepers(tag, n):\n"
        "    made = 0\n"
        "    for _ in range(n):\n"
        "        try:\n"
        "            pid = os.fork()\n"
        "        except OSError:\n"
        "            break\n"
        "        if pid == 0:\n"
        "            name_self(tag)\n"
        "            time.sleep(3600)\n"
        "            os._exit(0)\n"
        "        made += 1\n"
        "    return made\n"
    )
    with box(source) as sandbox:
        made = call(sandbox, "sleepers", tag, 150)
        if IS_ROOT:  # RLIMIT_NPROC on the sandbox's own uid, pids.max on its cgroup
            assert made < confine.MAX_PROCESSES
    assert not gone_within(tag, 5)


def test_a_deep_tree_in_the_working_folder_is_removed():
    source = (
        "import os\n"
        "def deep(n):\n"
        "    for _ in range(n):\n"
        "        os.mkdir('d')\n"
        "        os.chdir('d')\n"
        "    open('f', 'w').write('x')\n"
        "    os.mkdir('locked', 0)\n"
        "    return 'deep'\n"
    )
    with box(source) as sandbox:
        call(sandbox, "deep", 3000, timeout=20)
        workdir = sandbox._workdir
    assert not os.path.exists(workdir)


def test_nothing_is_written_outside_the_working_folder():
    name = "grader-escape-" + secrets.token_hex(6)
    source = (
        "import os\n"
        "def scatter(name):\n"
        "    wrote = []\n"
        "    for folder in ('/tmp', '/dev/shm', '/var/tmp', os.path.expanduser('~'), '..'):\n"
        "        try:\n"
        "            with open(os.path.join(folder, name), 'w') as f:\n"
        "                f.write('x' * 1000)\n"
        "            wrote.append(folder)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return repr(wrote)\n"
    )
    with box(source) as sandbox:
        wrote = ast.literal_eval(call(sandbox, "scatter", name))
    assert all("grader-child-" in folder for folder in wrote), wrote  # only HOME, the workdir
    for folder in ("/tmp", "/dev/shm", "/var/tmp", os.path.expanduser("~")):
        assert not os.path.exists(os.path.join(folder, name)), folder


def test_another_sandbox_cannot_be_signalled_or_written():
    tag = "gv" + secrets.token_hex(6)
    victim_source = NAME_SELF + "import time\ndef wait(tag):\n    name_self(tag)\n    return 1\n"
    attacker_source = (
        "import os, signal\n"
        "def attack(pid, workdir):\n"
        "    done = []\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGSTOP)\n"
        "        done.append('signalled')\n"
        "    except OSError:\n"
        "        pass\n"
        "    try:\n"
        "        open(os.path.join(workdir, 'planted'), 'w').write('x')\n"
        "        done.append('wrote')\n"
        "    except OSError:\n"
        "        pass\n"
        "    return repr(done)\n"
    )
    with box(victim_source) as victim, box(attacker_source) as attacker:
        call(victim, "wait", tag)
        done = ast.literal_eval(call(attacker, "attack", victim._process.pid, victim._workdir))
        assert done == [], done
        assert call(victim, "wait", tag) == 1  # not stopped


def test_every_result_names_the_protections_that_held():
    with box("x = 1\n") as sandbox:
        isolation = sandbox.ensure_started().isolation
    assert any(i.startswith("landlock") for i in isolation), isolation
    assert any(i.startswith("seccomp") for i in isolation), isolation
    if IS_ROOT:
        assert "own uid" in isolation


def test_memory_is_capped_over_all_the_submissions_processes():
    """Five processes each under the per-process limit must not add up past the submission's
    memory (cgroup, where the grader can make one: root). Everywhere: the grader survives and
    nothing is left."""
    tag = "gm" + secrets.token_hex(6)
    source = NAME_SELF + (
        "import os, time\n"
        "def hog(tag, megabytes, count):\n"
        "    pids = []\n"
        "    for _ in range(count):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            name_self(tag)\n"
        "            try:\n"
        "                block = b'x' * (megabytes * 2**20)\n"
        "            except MemoryError:\n"
        "                os._exit(1)\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        pids.append(pid)\n"
        "    time.sleep(4)\n"
        "    alive = [p for p in pids if os.waitpid(p, os.WNOHANG) == (0, 0)]\n"
        "    return len(alive)\n"
    )
    limit_mib = 600
    with box(source, memory_bytes=limit_mib * 2**20, request_seconds=30) as sandbox:
        alive = call(sandbox, "hog", tag, 250, 5)
        held = any(i.startswith("cgroup limits (memory") for i in sandbox.boot.isolation)
        if held:
            assert alive * 250 <= limit_mib, alive  # the rest were stopped by the group's limit
    assert not gone_within(tag, 5)


def test_working_folder_of_a_killed_grader_is_removed_by_the_next():
    """A grading process SIGKILLed mid-request cannot clean up, and its child may not write to
    the temporary folder: the next grading process removes the orphaned working folder (and
    leaves the folders of live graders alone)."""
    script = (
        "import os, signal, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from sandboxes import box, call\n"
        'sandbox = box(\'import os\\ndef fill():\\n    os.makedirs("a/b/c")\\n'
        '    open("a/b/c/f", "w").write("x")\\n    return "ok"\\n\').__enter__()\n'
        "call(sandbox, 'fill')\n"
        "print(sandbox._workdir, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    orphan = Path(proc.stdout.strip())
    # (Its files are on disk only where the working folder is not a tmpfs of its own.)
    assert orphan.name.startswith("grader-child-") and orphan.is_dir()
    from grader.sandbox import parent

    parent.sweep_orphaned_workdirs.cache_clear()
    with box("def f():\n    return 1\n") as sandbox:
        assert call(sandbox, "f") == 1
        alive = Path(sandbox._workdir)
        parent.sweep_orphaned_workdirs.cache_clear()
        parent.sweep_orphaned_workdirs()
        assert alive.is_dir()  # ours, and we are alive
    assert not orphan.exists()


def test_the_working_folder_has_a_total():
    """Files each under the per-file limit still cannot fill the disk: the working folder is a
    tmpfs of its own where a mount namespace is allowed, else the grader watches it."""
    source = (
        "import os\n"
        "def fill():\n"
        "    written = 0\n"
        "    try:\n"
        "        for i in range(5):\n"
        "            with open(f'part{i}', 'wb') as f:\n"
        "                for _ in range(60):\n"
        "                    f.write(b'x' * 2**20)\n"
        "                    written += 2**20\n"
        "    except OSError as exc:\n"
        "        return f'{written} {type(exc).__name__}'\n"
        "    return str(written)\n"
    )
    started = time.monotonic()
    with box(source, request_seconds=30) as sandbox:
        limit = sandbox.limits.workdir_bytes
        try:
            written = int(call(sandbox, "fill").split()[0])
        except StudentCrash as exc:
            assert "working folder grew past" in str(exc), exc
            written = None
        isolation = sandbox.ensure_started().isolation
    assert any(item.startswith("working folder capped") for item in isolation), isolation
    if written is not None:  # the tmpfs said "no space left"
        assert written <= limit, written
    assert time.monotonic() - started < 60


def test_a_slow_child_ends_within_the_gradings_budget():
    """Every request answered just under its limit: the grading's one budget ends it."""
    source = "import time\ndef slow():\n    time.sleep(1.5)\n    return 'late'\n"
    sandbox = box(source, request_seconds=2)
    sandbox.budget = Budget(seconds=6, started=time.monotonic())
    started = time.monotonic()
    answered, stopped = 0, None
    with sandbox:
        sandbox.ensure_started()
        for _ in range(20):
            try:
                call(sandbox, "slow")
                answered += 1
            except BudgetSpent as exc:
                stopped = str(exc)
                break
    assert stopped is not None and "too slow" in stopped, stopped
    assert answered <= 4 and time.monotonic() - started < 6 + 3
