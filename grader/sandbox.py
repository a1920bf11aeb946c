"""Stage 3, sandbox: the parent's handle on the untrusted child process.

Children are forked from a multiprocessing forkserver that has preloaded torch, so a fresh
child costs tens of milliseconds instead of seconds. Each request has a wall-time limit; a
child that hangs is killed, one that dies is noticed through its exit code, and either way
only that request fails: the next request starts a fresh child and loads the submission again.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from . import wire
from .errors import StudentCodeError, StudentCrash, StudentTimeout

PRELOAD = ["torch", "torchvision", "grader.child"]


@dataclass
class Limits:
    request_seconds: float = 20.0  # wall time for one request
    boot_seconds: float = 20.0  # wall time for loading the submission
    memory_bytes: int = 3 * 2**30  # address space on top of what torch already maps
    cpu_seconds: int = 600  # CPU time over the child's whole life
    output_bytes: int = 64 * 1024  # student prints kept per child
    file_bytes: int = 64 * 2**20  # largest file the child may write
    threads: int = 1
    library_seconds: float = 120.0  # building trusted library objects (not student code)

    def to_config(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpu_seconds": self.cpu_seconds,
                "output_bytes": self.output_bytes, "file_bytes": self.file_bytes,
                "threads": self.threads}


def warm_up() -> None:
    """Start the forkserver now (it imports torch in its own process, in parallel with
    whatever the parent does next)."""
    multiprocessing.set_forkserver_preload(PRELOAD)
    from multiprocessing import forkserver
    with _main_module_hidden():
        forkserver.ensure_running()


@contextlib.contextmanager
def _main_module_hidden():
    """multiprocessing makes every new child import the parent's __main__ script (the
    `grade` entry point, pytest, a benchmark). The child needs none of it, and must not run
    it: show multiprocessing a bare __main__ while a process is being started."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


@dataclass
class BootReport:
    problems: list = field(default_factory=list)  # [{"index", "error"}] per failed statement
    names: list = field(default_factory=list)
    isolation: list = field(default_factory=list)
    fatal: dict = field(default_factory=dict)  # statement index -> why it was skipped


class Sandbox:
    def __init__(self, statements: list[dict], limits: Limits | None = None,
                 hidden_paths: list[str] | None = None):
        self.statements = statements
        self.limits = limits or Limits()
        self.hidden_paths = [str(Path(p).resolve()) for p in (hidden_paths or [])]
        self._ctx = multiprocessing.get_context("forkserver")
        self._process = None
        self._conn = None
        self._workdir = None
        self.boot: BootReport | None = None
        self.children_started = 0

    # -- lifecycle ------------------------------------------------------------------
    def _spawn(self) -> list:
        """Fork a fresh child from the warm server; return what isolation it put in place."""
        warm_up()
        self._workdir = tempfile.mkdtemp(prefix="grader-child-")
        os.chmod(self._workdir, 0o700)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        config = self.limits.to_config() | {"workdir": self._workdir,
                                           "hidden_paths": self.hidden_paths,
                                           "parent_pid": os.getpid()}
        from . import child
        self._process = self._ctx.Process(target=child.main, daemon=True,
                                          args=(child_conn, config, self.statements))
        with _main_module_hidden():
            self._process.start()
        child_conn.close()
        self._conn = parent_conn
        self.children_started += 1
        return self._receive(self.limits.boot_seconds, "starting the sandbox",
                             limit=self.limits.boot_seconds).get("hello", [])

    def _start(self) -> None:
        isolation = self._spawn()
        if self.boot is None:
            self.boot = BootReport(isolation=isolation)
        # Loading runs student code (class bodies, decorators): a statement that kills or
        # hangs the child is skipped from then on, and loading starts again without it.
        while True:
            try:
                report = self._request("boot", self.limits.boot_seconds,
                                       skip=sorted(self.boot.fatal), _what="loading the notebook")
                break
            except (StudentTimeout, StudentCrash) as exc:
                culprit = self._last_progress
                if culprit is None or culprit in self.boot.fatal:
                    raise
                self.boot.fatal[culprit] = str(exc)
                self._kill()
                self._spawn()
        self.boot.problems = report["problems"]
        self.boot.names = report["names"]

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def close(self) -> None:
        self._kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ensure_started(self) -> BootReport:
        if self._process is None:
            self._start()
        return self.boot

    # -- requests ---------------------------------------------------------------------
    def request(self, op: str, timeout: float | None = None, **payload):
        """Send one request; return its result or raise a StudentCodeError subclass."""
        if self._process is None:
            self._start()
        return self._request(op, timeout or self.limits.request_seconds, **payload)

    def _request(self, op, timeout, _what=None, **payload):
        self._last_progress = None
        op_text = _what or REQUEST_TEXT.get(op, op)
        try:
            self._conn.send_bytes(wire.encode({"op": op, **payload}))
        except (BrokenPipeError, OSError):
            raise self._died(op_text)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline - time.monotonic(), op_text, limit=timeout)
            if "progress" in reply:
                self._last_progress = reply["progress"]
                continue
            if reply.get("ok") is True:
                return reply.get("result")
            error = reply.get("error") or {}
            raise StudentCodeError(format_error(error))

    def _receive(self, timeout: float, what: str, limit: float | None = None) -> dict:
        try:
            ready = self._conn.poll(max(timeout, 0))
        except (OSError, EOFError):
            ready = True
        if not ready:
            self._kill()
            raise StudentTimeout(f"did not finish within {timeout_text(limit or timeout)} ({what}); "
                                 "an infinite loop or very slow code?")
        try:
            message = self._conn.recv_bytes(wire.MAX_MESSAGE_BYTES)
            reply = wire.decode(message)
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
            cause = {"SIGKILL": " (killed from outside the sandbox: the machine may be out of memory)",
                     "SIGXCPU": " (over the CPU-time limit)",
                     "SIGSEGV": " (segmentation fault)"}.get(name, "")
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
        if not self._workdir:
            return ""
        path = Path(self._workdir, "output.log")
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# How feedback names each request when it hangs or crashes.
REQUEST_TEXT = {
    "construct": "building the model", "forward": "running forward",
    "parameters": "listing the parameters", "load_layers": "loading the reference's weights",
    "call": "calling the function", "run_region": "running the driver cell",
    "build_trusted": "building the library model", "describe": "inspecting the model",
    "set_submodule": "preparing the model", "train": "training",
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
