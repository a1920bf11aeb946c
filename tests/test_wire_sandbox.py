"""Unit tests of the trust boundary: grader.wire (what the parent reads from the child) and
grader.sandbox (limits, fresh children, privileges, network)."""

import ast
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from sandboxes import call, statements
from submissions import REPO

from grader.engine.harvest import Harvest, Statement
from grader.errors import StudentCodeError, StudentCrash, StudentTimeout
from grader.sandbox import Limits, Sandbox, wire
from grader.sandbox.confine import UID_BASE

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="isolation that needs root")


# --------------------------------------------------------------------------------------
# wire
# --------------------------------------------------------------------------------------
def raw(header, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


TENSORS = {
    "float32": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
    "float64": torch.tensor([1e-300, -2.5], dtype=torch.float64),
    "float16": torch.tensor([0.5, -1.0], dtype=torch.float16),
    "bfloat16": torch.tensor([[3.0]], dtype=torch.bfloat16),
    "int64": torch.tensor([2**62, -1]),
    "int32": torch.tensor([7], dtype=torch.int32),
    "int16": torch.tensor([-3], dtype=torch.int16),
    "int8": torch.tensor([-128, 127], dtype=torch.int8),
    "uint8": torch.tensor([0, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "0-dim": torch.tensor(3.25),
    "0-dim int": torch.tensor(5),
    "empty": torch.empty(0, 3),
    "empty long": torch.empty(2, 0, dtype=torch.long),
    "transposed": torch.arange(12.0).reshape(3, 4).t(),
    "needs grad": torch.ones(2, requires_grad=True) * 2,
}


@pytest.mark.parametrize("name", TENSORS)
def test_tensors_round_trip_with_dtype_shape_and_values(name):
    original = TENSORS[name]
    back = wire.decode(wire.encode({"t": original}))["t"]
    assert back.dtype == original.dtype and back.shape == original.shape
    assert torch.equal(back, original.detach())
    assert not back.requires_grad


def test_nested_payload_round_trips():
    payload = {
        "ok": True,
        "result": {
            "layers": [{"shape": [1, 2], "value": TENSORS["0-dim"]}, None],
            "names": ["a", "b"],
            "count": 3,
            "x": 1.5,
            "inf": float("inf"),
            "ninf": float("-inf"),
        },
    }
    back = wire.decode(wire.encode(payload))
    assert back["result"]["layers"][0]["value"].item() == 3.25
    assert back["result"]["inf"] == math.inf and back["result"]["ninf"] == -math.inf
    assert {k: v for k, v in back["result"].items() if k != "layers"} == {
        k: v for k, v in payload["result"].items() if k != "layers"
    }
    assert math.isnan(wire.decode(wire.encode([float("nan")]))[0])


def test_decoded_tensor_owns_its_memory():
    message = bytearray(wire.encode({"t": torch.ones(4)}))
    tensor = wire.decode(bytes(message))["t"]
    tensor += 1  # writable, and not a view of the message
    assert torch.equal(tensor, torch.full((4,), 2.0))


F32 = {"dtype": "float32", "shape": [2], "nbytes": 8}


@pytest.mark.parametrize(
    "message, reason",
    [
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{**F32, "dtype": "complex64"}]}, b"\0" * 8),
            "bad tensor description",
        ),
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{**F32, "dtype": "object"}]}, b"\0" * 8),
            "bad tensor description",
        ),
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{"dtype": "float32", "shape": [2]}]}, b"\0" * 8),
            "bad tensor description",
        ),
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{**F32, "nbytes": 4}]}, b"\0" * 4),
            "does not match its shape",
        ),
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{**F32, "shape": [3]}]}, b"\0" * 8),
            "does not match its shape",
        ),
        (raw({"payload": {"$tensor": 0}, "tensors": [F32]}, b"\0" * 6), "does not match its shape"),
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{**F32, "shape": [-2, -1]}]}, b"\0" * 8),
            "bad tensor shape",
        ),
        (
            raw({"payload": {"$tensor": 0}, "tensors": [{**F32, "shape": [1] * 9 + [2]}]}, b"\0" * 8),
            "bad tensor shape",
        ),
        (raw({"payload": {"$tensor": 1}, "tensors": [F32]}, b"\0" * 8), "bad tensor reference"),
        (raw({"payload": {"$tensor": -1}, "tensors": [F32]}, b"\0" * 8), "bad tensor reference"),
        (raw({"payload": [{"$tensor": "0"}], "tensors": [F32]}, b"\0" * 8), "bad tensor reference"),
        (raw({"payload": {"$tensor": 0}, "tensors": []}), "bad tensor reference"),
        (raw({"payload": 1, "tensors": [F32]}, b"\0" * 9), "trailing bytes"),
        (wire.encode({"ok": True}) + b"\0", "trailing bytes"),
        (b"\x01\x02", "truncated"),
        (struct.pack("<Q", 10**6) + b"{}", "bad header length"),
        (struct.pack("<Q", 5) + b"{nope", "unreadable header"),
        (raw({"payload": 1}), "unreadable header"),
        (raw([1, 2]), "unreadable header"),
    ],
)
def test_malformed_messages_raise_wire_error(message, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(message)


@pytest.mark.parametrize(
    "header",
    [
        {"payload": {"$float": "not a number"}, "tensors": []},
        {"payload": {"$float": [1]}, "tensors": []},
        {"payload": 1, "tensors": 5},
    ],
)
def test_every_malformed_message_is_a_wire_error(header):
    # The sandbox turns WireError into "the sandbox sent a malformed answer"; anything else
    # escapes as an error of the check itself ("please report this").
    with pytest.raises(wire.WireError):
        wire.decode(raw(header))


# --------------------------------------------------------------------------------------
# sandbox
# --------------------------------------------------------------------------------------
CHILD_CODE = """
import os
import socket
import time


def hang():
    while True:
        pass


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def answer():
    return 41 + 1


def die():
    os._exit(3)


def identity():
    return repr((os.getuid(), os.geteuid(), os.getgid(), os.getgroups()))


def network():
    try:
        names = [name for _, name in socket.if_nameindex()]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:  # seccomp refuses socket() itself
        return repr(([], type(exc).__name__ + ": " + str(exc)))
    s.settimeout(3)
    try:
        s.connect(("1.1.1.1", 53))
        outcome = "connected"
    except OSError as exc:
        outcome = type(exc).__name__ + ": " + str(exc)
    finally:
        s.close()
    return repr((names, outcome))


def read(path):
    with open(path) as f:
        return f.read()


def stdin():
    import sys
    return sys.stdin.read()


def torch_settings(change=False):
    import torch
    if change:
        torch.set_num_threads(5)  # as W2020's handout train() does
        torch.autograd.set_detect_anomaly(True)
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
    return repr((torch.get_num_threads(), torch.is_anomaly_enabled(), torch.is_grad_enabled(),
                 str(torch.get_default_dtype())))
"""
REQUEST_SECONDS = 2.0


@pytest.fixture
def sandbox():
    box = Sandbox(statements(CHILD_CODE), Limits(request_seconds=REQUEST_SECONDS, boot_seconds=30))
    yield box
    box.close()


def test_a_hanging_request_is_killed_at_its_limit_and_the_next_gets_a_fresh_child(sandbox):
    assert call(sandbox, "answer") == 42
    assert sandbox.children_started == 1
    started = time.monotonic()
    with pytest.raises(StudentTimeout, match=r"did not finish within 2 s \(calling the function\)"):
        call(sandbox, "hang")
    elapsed = time.monotonic() - started
    assert REQUEST_SECONDS - 0.1 <= elapsed < REQUEST_SECONDS + 2, elapsed
    assert call(sandbox, "answer") == 42
    assert sandbox.children_started == 2
    # a per-request limit overrides the default, both ways
    assert call(sandbox, "sleep_then", 3, "slow but allowed", timeout=6) == "slow but allowed"
    with pytest.raises(StudentTimeout, match="within 0.5 s"):
        call(sandbox, "sleep_then", 3, "too slow", timeout=0.5)


def test_a_child_that_dies_fails_one_request(sandbox):
    with pytest.raises(StudentCrash, match="exited with status 3"):
        call(sandbox, "die")
    assert call(sandbox, "answer") == 42
    assert sandbox.children_started == 2


def test_student_exceptions_are_one_line_errors_with_the_cell_line(sandbox):
    with pytest.raises(StudentCodeError) as info:
        call(sandbox, "read", "/nonexistent/file")
    assert str(info.value).startswith("FileNotFoundError: [Errno 2] No such file or directory")
    line = CHILD_CODE.splitlines().index("    with open(path) as f:") + 1
    assert str(info.value).endswith(f"(code cell 1, line {line})"), str(info.value)
    assert not isinstance(info.value, (StudentTimeout, StudentCrash))
    assert sandbox.children_started == 1  # an exception does not cost the child


def test_stdin_is_closed(sandbox):
    assert call(sandbox, "stdin") == ""


def test_torch_settings_student_code_changes_hold_for_its_own_request_only(sandbox):
    sandboxs = (1, False, False, "torch.float32")  # one thread: Limits.threads; a call runs without grad
    assert ast.literal_eval(call(sandbox, "torch_settings")) == sandboxs
    assert ast.literal_eval(call(sandbox, "torch_settings", True)) == (5, True, False, "torch.float64")
    assert ast.literal_eval(call(sandbox, "torch_settings")) == sandboxs
    assert sandbox.children_started == 1


@ROOT_ONLY
def test_child_runs_as_its_own_uid_when_the_grader_is_root(sandbox):
    uid, euid, gid, groups = ast.literal_eval(call(sandbox, "identity"))
    assert uid == euid == gid == UID_BASE + sandbox._process.pid and groups == []
    assert "own uid" in sandbox.boot.isolation


def test_child_has_no_network(sandbox):
    names, outcome = ast.literal_eval(call(sandbox, "network"))
    assert set(names) <= {"lo"}, names
    assert outcome != "connected" and "timed out" not in outcome, outcome
    assert any(i.startswith("seccomp") for i in sandbox.ensure_started().isolation)


def test_files_outside_the_allow_list_cannot_be_read():
    """World-readable files are out of reach whether or not they are named as hidden: the
    child sees an allow-list, not the file system minus some folders."""
    top = Path(tempfile.mkdtemp(prefix="grader-test-"))
    try:
        secret_dir = top / "reference"
        secret_dir.mkdir()
        (secret_dir / "solution.py").write_text("THE ANSWER")
        for path in (top, secret_dir):
            path.chmod(0o755)
        (secret_dir / "solution.py").chmod(0o644)
        for hidden in ([str(secret_dir)], []):
            with Sandbox(
                statements(CHILD_CODE), Limits(request_seconds=5, boot_seconds=30), hidden_paths=hidden
            ) as box:
                # Landlock refuses it (PermissionError), or a mount namespace hides it.
                with pytest.raises(StudentCodeError, match="PermissionError|FileNotFoundError"):
                    call(box, "read", str(secret_dir / "solution.py"))
                for other in ("/etc/passwd", str(Path(__file__).resolve())):
                    with pytest.raises(StudentCodeError, match="PermissionError|FileNotFoundError"):
                        call(box, "read", other)
                assert any(i.startswith("landlock") for i in box.boot.isolation)
    finally:
        shutil.rmtree(top)


def test_a_definition_that_hangs_while_loading_is_skipped(tmp_path):
    source = (
        "def before():\n    return 1\n\nclass Slow:\n    while True:\n        pass\n\n"
        "def after():\n    return 2\n"
    )
    with Sandbox(statements(source), Limits(request_seconds=5, boot_seconds=2)) as box:
        assert call(box, "after") == 2
        assert call(box, "before") == 1
        assert list(box.boot.fatal) == [1]
        assert "did not finish within 2 s (loading the notebook)" in box.boot.fatal[1]
        with pytest.raises(StudentCodeError, match="name 'Slow' is not defined"):
            call(box, "Slow")


def test_timeout_message_names_the_limit():
    # The message is built from the time left at the last poll, rounded to whole seconds:
    # a 1.5 s limit is reported as "1 s".
    with Sandbox(statements(CHILD_CODE), Limits(request_seconds=1.5, boot_seconds=30)) as box:
        with pytest.raises(StudentTimeout) as info:
            call(box, "hang")
    assert "did not finish within 1.5 s" in str(info.value), str(info.value)


def test_trusted_model_building_is_not_charged_to_the_student():
    # D.1's checks have the child build DeepLabV3-ResNet101 (trusted library code, about 0.6 s
    # on an idle core, over 5 s on a busy machine) within the student's per-request limit.
    # A correct notebook then loses D.1 when the machine is busy or --timeout is short.
    from grader.engine.proxy import Submission

    with Sandbox(statements(CHILD_CODE), Limits(request_seconds=0.1, boot_seconds=30)) as box:
        submission = Submission(Harvest(), box, {}, {})
        model = submission.build_trusted(
            "torchvision.models.segmentation:deeplabv3_resnet101",
            weights=None,
            weights_backbone=None,
            aux_loss=True,
        )
        assert model.describe("classifier.4")["type"] == "Conv2d"


ORPHAN_SCRIPT = """
import sys
from grader.sandbox import Sandbox, Limits
box = Sandbox([{"cell": 0, "lineno": 1, "source": "def spin():\\n    while True: pass\\n"}],
              Limits(request_seconds=300))
box.ensure_started()
print(box._process.pid, flush=True)
box.request("call", name="spin", args=[], kwargs={})
"""


@pytest.mark.slow  # a fresh interpreter that imports torch and starts its own warm server
def test_a_child_stuck_in_student_code_exits_when_its_grader_is_killed(tmp_path):
    """A batch worker killed outright (OOM killer, SIGKILL) must not leave its sandbox child
    spinning until the CPU-time limit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    child = int(proc.stdout.readline())
    time.sleep(1.0)  # the child is now inside spin()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.25)
    alive = Path(f"/proc/{child}").exists()
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the sandbox child outlived its grader"


def test_a_child_killed_from_outside_is_retried_once_on_a_fresh_child():
    """An outside SIGKILL (the OOM killer on a busy machine) must not cost points; code that
    SIGKILLs itself every time still fails."""
    from grader.engine.proxy import Submission

    source = (
        "import os, signal, time\n"
        "def slow():\n"
        "    time.sleep(1.5)\n"
        "    return 42\n"
        "def always():\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    statements = [Statement(0, 1, source, ("os", "signal", "time", "slow", "always"))]
    with Sandbox([st.to_wire() for st in statements], Limits(request_seconds=20)) as box:
        submission = Submission(Harvest(statements=statements), box, {}, {})
        box.ensure_started()
        first = box._process.pid
        threading.Timer(0.5, os.kill, (first, signal.SIGKILL)).start()
        assert submission.call("slow")["output"] == 42
        assert box.children_started == 2
        with pytest.raises(StudentCrash, match="SIGKILL"):
            submission.call("always")
