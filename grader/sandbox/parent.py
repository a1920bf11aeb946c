"""The sandbox stage: the parent's handle on the untrusted child process.

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
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path

from grader.sandbox import confine, host, replies, server, wire
from grader.errors import BudgetSpent, StudentCodeError, StudentCrash, StudentTimeout


@dataclass
class Limits:
    request_seconds: float = 20.0  # wall time for one request
    boot_seconds: float = 20.0  # wall time for loading the submission
    memory_bytes: int = 3 * 2**30  # address space on top of what torch already maps
    cpu_seconds: int = 600  # CPU time over the child's whole life
    output_bytes: int = 64 * 1024  # student prints kept per child
    file_bytes: int = 64 * 2**20  # largest file the child may write
    workdir_bytes: int = 128 * 2**20  # everything the child may write, in all
    threads: int = 1
    processes: int = confine.MAX_PROCESSES  # processes at once, over the whole submission
    library_seconds: float = 120.0  # building trusted library objects (not student code)

    def to_config(self) -> dict:
        return {
            "memory_bytes": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "output_bytes": self.output_bytes,
            "file_bytes": self.file_bytes,
            "workdir_bytes": self.workdir_bytes,
            "threads": self.threads,
            "processes": self.processes,
        }


WORKDIR_CAPPED = "working folder capped"  # how the isolation line names the size limit
WATCH_SECONDS = 0.05

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
            host.remove_tree(entry.path)
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


# What a result must show for file-system isolation to count as in place (rule 4): Landlock's
# allow-list, or (where the kernel or Docker's seccomp refuses Landlock) the sandbox's own uid
# shown by a probe to be unable to read or enter any secret path.
FILE_SYSTEM_ISOLATION = ("landlock", confine.OWN_UID_SECRETS_UNREADABLE)


def has_file_system_isolation(isolation: list[str]) -> bool:
    return any(item.startswith(FILE_SYSTEM_ISOLATION) for item in isolation)


@functools.lru_cache(maxsize=8)
def _readable_roots(hidden: tuple) -> tuple:
    """(what the child may read, whether it keeps the right to enter a 0700 home, the secret
    paths its uid must not reach, those a mount namespace covers)."""
    roots = host.readable_roots(list(hidden))
    secrets = host.secret_paths(list(hidden))
    hide = host.paths_to_hide(list(dict.fromkeys(secrets + host.checkout_paths())), roots)
    return tuple(roots), host.needs_search_capability(roots), secrets, hide


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
        budget=None,
    ):
        self.statements = statements
        self.budget = budget  # the whole grading's (grader.engine.budget.Budget), or None
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
        self._launched = 0.0  # when launch_child forked the current child (time.monotonic)
        self.isolation: list[str] | None = None  # what the first child reported
        self.boot: BootReport | None = None
        self.children_started = 0
        self._group: str | None = None
        self._over_quota = False
        # The largest resident memory any child of this sandbox reached (the kernel's VmHWM,
        # pages shared with the warm server included): what the class report shows per
        # submission. 0 when it could not be read.
        self.peak_memory_bytes = 0

    # -- lifecycle ------------------------------------------------------------------
    def start_child(self) -> list[str]:
        """Fork a fresh child from the warm server (not yet loaded with the submission);
        return the protections it put in place."""
        self.launch_child()
        return self.await_child()

    def launch_child(self) -> None:
        """Fork a fresh child and return at once: it confines itself while the caller does
        other work (the pipeline prepares the checks meanwhile); await_child waits for it."""
        server.warm_up()
        readable, keep_search, secrets, hide = _readable_roots(tuple(self.hidden_paths))
        sweep_orphaned_workdirs()
        self._workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        os.chmod(self._workdir, 0o700)
        self._output = tempfile.TemporaryFile(prefix="grader-output-")
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        output_conn = connection.Connection(os.dup(self._output.fileno()), readable=False)
        if os.geteuid() == 0:
            self._cgroup = host.CgroupBox(
                f"grader-{os.getpid()}-{uuid.uuid4().hex[:12]}",
                self.limits.memory_bytes,
                self.limits.processes,
            )
        config = self.limits.to_config() | {
            "workdir": self._workdir,
            "readable": list(readable),
            "keep_search": keep_search,
            "secrets": list(secrets),
            "hide": list(hide),
            "listable": host.listable_folders(),
            "devices": host.device_files(self.device),
            "cgroup": self._cgroup,
        }
        from grader.sandbox import child

        self._process = self._ctx.Process(
            target=child.main, daemon=True, args=(child_conn, output_conn, config, self.statements)
        )
        self._process.authkey = os.urandom(32)  # not the grader's: nothing to authenticate with
        try:
            with server.handing_over(sandbox=True):
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
        self._over_quota = False
        self.children_started += 1
        self._launched = time.monotonic()

    def await_child(self) -> list[str]:
        """Wait for the child launch_child started to say which protections it put in place
        (raises StudentCodeError when it does not); return them."""
        deadline = self._launched + self.limits.library_seconds
        hello = self._receive(deadline, "starting the sandbox", limit=self.limits.library_seconds)
        isolation = replies.isolation(hello.get("hello"))
        if not any(item.startswith(WORKDIR_CAPPED) for item in isolation):
            # No mount namespace for a size-limited folder: the grader watches it instead.
            self._watch_workdir()
            isolation.append(
                f"{WORKDIR_CAPPED} at {self.limits.workdir_bytes // 2**20} MiB (watched by the grader)"
            )
        if self.isolation is None:
            self.isolation = isolation
        return isolation

    def _watch_workdir(self) -> None:
        """Stop the child (and everything of its uid) once its working folder holds more than
        the limit. Polled, so a fast writer may overshoot by what it writes in one interval."""
        process, folder, limit, uid = self._process, self._workdir, self.limits.workdir_bytes, self._uid

        def watch():
            while self._process is process:
                if host.folder_bytes(folder) > limit:
                    self._over_quota = True
                    with contextlib.suppress(OSError):
                        os.kill(process.pid, signal.SIGKILL)
                    if uid is not None:
                        host.kill_all_of_uid(uid)
                    return
                time.sleep(WATCH_SECONDS)

        threading.Thread(target=watch, daemon=True, name="grader-workdir-watch").start()

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
        problems = {}  # one per statement at most, however many the child lists
        listed = report.get("problems")
        for problem in listed if isinstance(listed, list) else []:
            if (
                isinstance(problem, dict)
                and isinstance(problem.get("index"), int)
                and 0 <= problem["index"] < len(self.statements)
                and problem["index"] not in problems
            ):
                problems[problem["index"]] = {
                    "index": problem["index"],
                    "error": replies.error_fields(problem.get("error")),
                }
            if len(problems) >= min(len(self.statements), replies.MAX_PROBLEMS):
                break
        listed = report.get("names")
        names = (
            [n for n in listed if isinstance(n, str) and len(n) <= 200] if isinstance(listed, list) else []
        )
        return sorted(problems.values(), key=lambda p: p["index"]), names[: replies.MAX_NAMES]

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
            host.kill_all_of_uid(self._uid)
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
            host.remove_tree(self._workdir)
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

    def use_group(self, group: str) -> None:
        """Requests from now on go to a child of `group`: a child that served another group
        is stopped first (the next request starts a fresh one, with a fresh working folder).
        The first child, which only said what protections held, serves the first group."""
        if self._group is not None and group != self._group and self._process is not None:
            self._kill()
        self._group = group

    @property
    def running(self) -> bool:
        """Whether a child is up with the submission loaded (a request would not start one)."""
        return self._booted and self._process is not None

    def ensure_started(self) -> BootReport:
        if not self._booted:
            self._start()
        return self.boot

    # -- requests ---------------------------------------------------------------------
    def request(self, op: str, timeout: float | None = None, **payload):
        """Send one request; return its result, checked against what the request can return
        (grader.sandbox.replies), or raise a StudentCodeError subclass."""
        if not self._booted:
            self._start()
        result = self._request(op, timeout or self.limits.request_seconds, **payload)
        try:
            replies.check(op, payload, result)
        except replies.Malformed as exc:
            self._kill()
            raise StudentCrash(
                f"the sandbox sent a malformed answer while {REQUEST_TEXT.get(op, op)} ({exc})"
            )
        return result

    def budget_spent_text(self, what: str) -> str:
        return (
            f"not run: the grading's time budget of {self.budget.text()} was spent before {what}; "
            "the submission is too slow (an earlier request took long, or every request took "
            "almost its limit)"
        )

    def _request(self, op, timeout, _what=None, **payload):
        self._last_progress = None
        op_text = _what or REQUEST_TEXT.get(op, op)
        max_bytes = replies.byte_limit(payload)
        if self.budget is not None:
            left = self.budget.left()
            if left <= 0:
                raise BudgetSpent(self.budget_spent_text(op_text))
            if left < timeout:  # a timeout now means the budget ran out
                try:
                    return self._send_and_wait(op, left, op_text, max_bytes, payload)
                except StudentTimeout:
                    raise BudgetSpent(
                        f"the grading's time budget of {self.budget.text()} ran out while {op_text}; "
                        "the submission is too slow"
                    )
        return self._send_and_wait(op, timeout, op_text, max_bytes, payload)

    def _send_and_wait(self, op, timeout, op_text, max_bytes, payload):
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
            reply = self._receive(deadline, op_text, limit=timeout, max_bytes=max_bytes)
            if "progress" in reply:
                progress = reply["progress"]
                if not (op == "boot" and isinstance(progress, int) and 0 <= progress < len(self.statements)):
                    self._kill()
                    raise StudentCrash("the sandbox sent a malformed answer")
                self._last_progress = progress
                continue
            if reply.get("ok") is True:
                return reply.get("result")
            raise StudentCodeError(format_error(replies.error_fields(reply.get("error"))))

    def _receive(
        self, deadline: float, what: str, limit: float, max_bytes: int = replies.BASE_REPLY_BYTES
    ) -> dict:
        try:
            message = wire.recv_frame(self._fd, deadline, max_bytes)
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
        if self._over_quota:
            reason = (
                f"its working folder grew past {self.limits.workdir_bytes // 2**20} MiB and the grader "
                "stopped it"
            )
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
    "layer_states": "reading the trained layers",
    "call_until_optimizer": "running train() until it builds its optimizer",
    "transplant": "running your code in the grader's harness",
    "forget": "freeing a check's objects",
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
