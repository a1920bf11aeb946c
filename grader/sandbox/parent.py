"""Stage 3, sandbox: the parent's handle on the untrusted child process.

Children are forked from a multiprocessing forkserver that has preloaded torch, so a fresh
child costs tens of milliseconds instead of seconds. Each request has a wall-time limit; a
child that hangs is killed, one that dies is noticed through its exit code, and either way
only that request fails: the next request starts a fresh child and loads the submission again.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import re
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path

from . import confine, wire
from ..errors import StudentCodeError, StudentCrash, StudentTimeout

PRELOAD = ["torch", "torchvision", "grader.sandbox.child"]


@dataclass
class Limits:
    request_seconds: float = 20.0  # wall time for one request
    boot_seconds: float = 20.0  # wall time for loading the submission
    memory_bytes: int = 3 * 2**30  # address space on top of what torch already maps
    cpu_seconds: int = 600  # CPU time over the child's whole life
    output_bytes: int = 64 * 1024  # student prints kept per child
    file_bytes: int = 64 * 2**20  # largest file the child may write
    threads: int = 1
    processes: int = confine.MAX_PROCESSES  # processes at once, over the whole submission
    library_seconds: float = 120.0  # building trusted library objects (not student code)

    def to_config(self) -> dict:
        return {
            "memory_bytes": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "output_bytes": self.output_bytes,
            "file_bytes": self.file_bytes,
            "threads": self.threads,
            "processes": self.processes,
        }


def warm_up() -> None:
    """Start the forkserver now (it imports torch in its own process, in parallel with
    whatever the parent does next). It starts with a minimal environment: a sandbox child's
    memory holds the environment its process was started with."""
    multiprocessing.set_forkserver_preload(PRELOAD)
    from multiprocessing import forkserver

    with confine.main_module_hidden(), confine.environment_swapped():
        forkserver.ensure_running()


# A child's working folder is named after the grading process that owns it: the child cannot
# remove its own folder (it may not write to the temporary folder), so when that process is
# killed before it cleans up, the next grading process removes the folder instead.
WORKDIR_PREFIX = "grader-child-"
_WORKDIR_NAME = re.compile(re.escape(WORKDIR_PREFIX) + r"(\d+)-[A-Za-z0-9_]+$")


@functools.cache  # once per process: a dead owner's folders do not come back
def sweep_orphaned_workdirs() -> int:
    """Remove the working folders whose owning process is gone; returns how many."""
    removed = 0
    folder = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _WORKDIR_NAME.match(entry.name)
            if not match or int(match[1]) == os.getpid() or _process_exists(int(match[1])):
                continue
            confine.remove_tree(entry.path)
            removed += not os.path.lexists(entry.path)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


# What a result must show for file-system isolation to count as in place (rule 4).
FILE_SYSTEM_ISOLATION = ("landlock",)


def has_file_system_isolation(isolation: list[str]) -> bool:
    return any(item.startswith(FILE_SYSTEM_ISOLATION) for item in isolation)


@functools.lru_cache(maxsize=8)
def _readable_roots(hidden: tuple) -> tuple:
    roots = confine.readable_roots(list(hidden))
    return tuple(roots), confine.needs_search_capability(roots)


@dataclass
class BootReport:
    problems: list = field(default_factory=list)  # [{"index", "error"}] per failed statement
    names: list = field(default_factory=list)
    isolation: list = field(default_factory=list)
    fatal: dict = field(default_factory=dict)  # statement index -> why it was skipped


class Sandbox:
    def __init__(
        self,
        statements: list[dict],
        limits: Limits | None = None,
        hidden_paths: list[str] | None = None,
        device: str = "cpu",
    ):
        self.statements = statements
        self.limits = limits or Limits()
        self.hidden_paths = [str(Path(p).resolve()) for p in (hidden_paths or [])]
        self.device = device
        self._ctx = multiprocessing.get_context("forkserver")
        self._process = None
        self._fd = None
        self._conn = None
        self._workdir = None
        self._output = None
        self._cgroup = None
        self._uid = None
        self._booted = False
        self._last_progress = None
        self.isolation: list[str] | None = None  # what the first child reported
        self.boot: BootReport | None = None
        self.children_started = 0
        # The largest resident memory any child of this sandbox reached (the kernel's VmHWM,
        # pages shared with the warm server included): what the class report shows per
        # submission. 0 when it could not be read.
        self.peak_memory_bytes = 0

    # -- lifecycle ------------------------------------------------------------------
    def start_child(self) -> list[str]:
        """Fork a fresh child from the warm server (not yet loaded with the submission);
        return the protections it put in place."""
        warm_up()
        readable, keep_search = _readable_roots(tuple(self.hidden_paths))
        sweep_orphaned_workdirs()
        self._workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        os.chmod(self._workdir, 0o700)
        self._output = tempfile.TemporaryFile(prefix="grader-output-")
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        output_conn = connection.Connection(os.dup(self._output.fileno()), readable=False)
        if os.geteuid() == 0:
            self._cgroup = confine.CgroupBox(
                f"grader-{os.getpid()}-{uuid.uuid4().hex[:12]}",
                self.limits.memory_bytes,
                self.limits.processes,
            )
        config = self.limits.to_config() | {
            "workdir": self._workdir,
            "readable": list(readable),
            "keep_search": keep_search,
            "listable": confine.listable_folders(),
            "devices": confine.device_files(self.device),
            "cgroup": self._cgroup,
        }
        from . import child

        self._process = self._ctx.Process(
            target=child.main, daemon=True, args=(child_conn, output_conn, config, self.statements)
        )
        try:
            with confine.main_module_hidden():
                self._process.start()
        finally:
            child_conn.close()
            output_conn.close()
        self._conn = parent_conn
        self._fd = parent_conn.fileno()
        os.set_blocking(self._fd, False)
        if os.geteuid() == 0:
            self._uid = confine.UID_BASE + self._process.pid
        self._booted = False
        self.children_started += 1
        deadline = time.monotonic() + self.limits.library_seconds
        hello = self._receive(deadline, "starting the sandbox", limit=self.limits.library_seconds)
        isolation = [str(item) for item in hello.get("hello", [])] if isinstance(hello, dict) else []
        if self.isolation is None:
            self.isolation = isolation
        return isolation

    def _start(self) -> None:
        if self._process is None:
            self.start_child()
        if self.boot is None:
            self.boot = BootReport(isolation=self.isolation or [])
        # Loading runs student code (class bodies, decorators): a statement that kills or
        # hangs the child is skipped from then on, and loading starts again without it.
        while True:
            try:
                report = self._request(
                    "boot",
                    self.limits.boot_seconds,
                    skip=sorted(self.boot.fatal),
                    _what="loading the notebook",
                )
                break
            except (StudentTimeout, StudentCrash) as exc:
                culprit = self._last_progress
                if culprit is None or culprit in self.boot.fatal:
                    raise
                self.boot.fatal[culprit] = str(exc)
                self._kill()
                self.start_child()
        self.boot.problems, self.boot.names = self._checked_boot_report(report)
        self._booted = True

    def _checked_boot_report(self, report) -> tuple[list, list]:
        """The child's account of loading, as far as it makes sense (a patched child can
        send anything: it must not break the parent)."""
        if not isinstance(report, dict):
            raise StudentCrash("the sandbox sent a malformed answer while loading the notebook")
        problems = []
        for problem in report.get("problems") or []:
            if (
                isinstance(problem, dict)
                and isinstance(problem.get("index"), int)
                and 0 <= problem["index"] < len(self.statements)
                and isinstance(problem.get("error"), dict)
            ):
                problems.append(
                    {
                        "index": problem["index"],
                        "error": {
                            k: str(v)[:500]
                            for k, v in problem["error"].items()
                            if k in ("type", "message", "where") and v is not None
                        },
                    }
                )
        names = [n for n in report.get("names") or [] if isinstance(n, str)]
        return problems, names

    def _kill(self) -> None:
        """Stop the child and everything it started; remove what it wrote."""
        if self._process is not None:
            self.peak_memory_bytes = max(self.peak_memory_bytes, _peak_resident_bytes(self._process.pid))
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
            self._process = None
        if self._cgroup is not None:
            self._cgroup.kill_and_remove()
            self._cgroup = None
        if self._uid is not None:
            confine.kill_all_of_uid(self._uid)
            self._uid = None
        if self._conn is not None:
            # Every process of the box holds the channel's other end: its closing says they
            # are gone (in a PID namespace the kernel kills them just after the process we
            # killed), so nothing writes while the working folder is removed.
            with contextlib.suppress(OSError, TimeoutError):
                wire.wait_closed(self._fd, deadline=time.monotonic() + 2)
            self._conn.close()
            self._conn = self._fd = None
        if self._workdir:
            confine.remove_tree(self._workdir)
            self._workdir = None
        if self._output is not None:
            self._output.close()
            self._output = None
        self._booted = False

    def close(self) -> None:
        self._kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ensure_started(self) -> BootReport:
        if not self._booted:
            self._start()
        return self.boot

    # -- requests ---------------------------------------------------------------------
    def request(self, op: str, timeout: float | None = None, **payload):
        """Send one request; return its result or raise a StudentCodeError subclass."""
        if not self._booted:
            self._start()
        return self._request(op, timeout or self.limits.request_seconds, **payload)

    def _request(self, op, timeout, _what=None, **payload):
        self._last_progress = None
        op_text = _what or REQUEST_TEXT.get(op, op)
        deadline = time.monotonic() + timeout
        try:
            wire.send_frame(self._fd, wire.encode({"op": op, **payload}), deadline)
        except TimeoutError:
            self._kill()
            raise StudentTimeout(
                f"did not take the request within {timeout_text(timeout)} "
                f"({op_text}); the process was stopped or stuck"
            )
        except (BrokenPipeError, OSError):
            raise self._died(op_text)
        while True:
            reply = self._receive(deadline, op_text, limit=timeout)
            if "progress" in reply:
                progress = reply["progress"]
                if not (op == "boot" and isinstance(progress, int) and 0 <= progress < len(self.statements)):
                    self._kill()
                    raise StudentCrash("the sandbox sent a malformed answer")
                self._last_progress = progress
                continue
            if reply.get("ok") is True:
                return reply.get("result")
            error = reply.get("error")
            raise StudentCodeError(format_error(error if isinstance(error, dict) else {}))

    def _receive(self, deadline: float, what: str, limit: float) -> dict:
        try:
            message = wire.recv_frame(self._fd, deadline)
            reply = wire.decode(message)
        except TimeoutError:
            self._kill()
            raise StudentTimeout(
                f"did not finish within {timeout_text(limit)} ({what}); an infinite loop or very slow code?"
            )
        except (EOFError, OSError):
            raise self._died(what)
        except wire.WireError as exc:
            self._kill()
            raise StudentCrash(f"the sandbox sent a malformed answer ({exc})")
        if not isinstance(reply, dict):
            self._kill()
            raise StudentCrash("the sandbox sent a malformed answer")
        return reply

    def _died(self, what: str) -> StudentCrash:
        process = self._process
        process.join(5)
        code = process.exitcode
        tail = self.output_tail(300)
        self._kill()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            cause = {
                "SIGKILL": " (killed from outside the sandbox: the machine may be out of memory)",
                "SIGXCPU": " (over the CPU-time limit)",
                "SIGSEGV": " (segmentation fault)",
            }.get(name, "")
            reason = f"the process was killed by {name}{cause}"
        else:
            reason = f"the process exited with status {code}"
        message = f"{reason} while {what}"
        if tail.strip():
            message += f"; last output: {tail.strip().splitlines()[-1][:200]}"
        crash = StudentCrash(message)
        crash.signal = signal.Signals(-code).name if code is not None and code < 0 else None
        return crash

    def output_tail(self, limit: int = 2000) -> str:
        """The end of what the child printed, read through the parent's own descriptor."""
        if self._output is None:
            return ""
        try:
            fd = self._output.fileno()
            size = os.fstat(fd).st_size
            return os.pread(fd, limit, max(0, size - limit)).decode("utf-8", "replace")
        except OSError:
            return ""


def _peak_resident_bytes(pid: int | None) -> int:
    """A live process's peak resident set (VmHWM in /proc/PID/status); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# How feedback names each request when it hangs or crashes.
REQUEST_TEXT = {
    "construct": "building the model",
    "forward": "running forward",
    "parameters": "listing the parameters",
    "load_layers": "loading the reference's weights",
    "call": "calling the function",
    "run_region": "running the driver cell",
    "build_trusted": "building the library model",
    "describe": "inspecting the model",
    "set_submodule": "preparing the model",
    "train": "training",
    "set_parameters": "setting the model's parameters",
    "get_parameters": "reading the parameters",
    "call_until_optimizer": "running train() until it builds its optimizer",
}


def timeout_text(seconds: float) -> str:
    return f"{round(seconds, 1):g} s"


def format_error(error: dict) -> str:
    text = error.get("type", "Error")
    if error.get("message"):
        text += f": {error['message']}"
    if error.get("where"):
        text += f" ({error['where']})"
    return text
