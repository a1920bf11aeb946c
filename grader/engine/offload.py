"""The grader's own heavy computations, run in a trusted process of their own while the checks
go on.

Some checks compare the child's work with the grader's own run of the same work (a
fine-tuning run reproduced from the secret seed). Run in the grading process, such a run
costs that process the import of the libraries it needs (torchvision: a second and a half),
its memory, and a core the checks then wait for. `submit(function, *args)` runs it instead in
a helper process forked from the sandbox's warm server, which has imported those libraries
already (their pages are shared with it), and returns a future at once: a check that starts
the grader's runs early (a session fixture) finds them done when it needs them.

The helper is trusted like the grading process: it is never confined, student code never
runs in it, and it talks to nothing but the grading process (a pipe; pickled messages both
ways, as between any two of the grader's own processes). `function` is a module-level
function of a file (an assignment's helper module, as `import_sibling` loads it); arguments
are plain data, tensors, or modules loaded from a file (the reference solution), which the
helper loads from the same file under the same name. The helper keeps its modules, so their
caches (per secret seed) serve every grading of the process (a batch worker's). If no helper
can start, the function runs in a thread of this process instead, as before.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import importlib.util
import itertools
import multiprocessing
import sys
import threading
import traceback
import types

from grader.engine.memory import release_free_memory

_lock = threading.Lock()
_helper: _Helper | None = None


def submit(function, *args) -> concurrent.futures.Future:
    """Run `function(*args)` in the helper process; its result (or its exception, as a
    RuntimeError with the helper's traceback) through the returned future."""
    global _helper
    with _lock:
        if _helper is None or not _helper.alive():
            _helper = _Helper.start()
        helper = _helper
    if helper is None:
        return _in_thread(function, *args)
    return helper.submit(function, *args)


def stop(wait: bool = True) -> None:
    """Stop the helper, after the work it was given (`wait`) or at once; the next submit
    starts a new one."""
    global _helper
    with _lock:
        helper, _helper = _helper, None
    if helper is not None:
        helper.stop(wait)


def _stop_at_exit() -> None:
    """At the process's end the helper is stopped at once (what it still has queued is not
    wanted) and its results' thread ends while the interpreter still runs: freeing a tensor
    from that thread during the interpreter's shutdown takes the GIL, which then ends the
    thread inside torch's destructor, and the process aborted ("terminate called without an
    active exception", exit status 134) after printing its results, in 5 of 90 W2022
    gradings."""
    stop(wait=False)


atexit.register(_stop_at_exit)


_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="grader-offload")


def _in_thread(function, *args) -> concurrent.futures.Future:
    return _THREAD.submit(function, *args)


# -- what crosses the pipe ------------------------------------------------------------------------
def _outgoing(value):
    """Modules loaded from a file become (name, file); functions (module name, file, name)."""
    if isinstance(value, types.ModuleType):
        return ("$module", value.__name__, value.__file__)
    if isinstance(value, (list, tuple)):
        return type(value)(_outgoing(v) for v in value)
    if isinstance(value, dict):
        return {k: _outgoing(v) for k, v in value.items()}
    return value


def _incoming(value):
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "$module":
        return _module(value[1], value[2])
    if isinstance(value, (list, tuple)):
        return type(value)(_incoming(v) for v in value)
    if isinstance(value, dict):
        return {k: _incoming(v) for k, v in value.items()}
    return value


def _module(name: str, file: str):
    """The module `name` loaded from `file` (once per process)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- the helper's side ------------------------------------------------------------------------------
def _serve(conn) -> None:
    import torch

    # One thread: the helper works beside the sandbox child and the grading process, and
    # torch's threads waiting on each other in a process that shares its cores are slower.
    torch.set_num_threads(1)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        number, (module_name, file, name), args = job
        try:
            result = ("ok", getattr(_module(module_name, file), name)(*_incoming(args)))
        except BaseException:
            result = ("error", traceback.format_exc(limit=8)[-3000:])
        try:
            conn.send((number, *result))
        except Exception:  # a result that cannot be pickled: say so instead
            conn.send((number, "error", traceback.format_exc(limit=3)[-3000:]))
        del result
        release_free_memory()  # a run's model is garbage now


# -- the grader's side ------------------------------------------------------------------------------
class _Helper:
    def __init__(self, process, conn):
        self.process, self.conn = process, conn
        self._numbers = itertools.count()
        self._futures: dict[int, concurrent.futures.Future] = {}
        self._send_lock = threading.Lock()
        self._receiver = threading.Thread(target=self._receive, daemon=True, name="grader-offload-results")
        self._receiver.start()

    @classmethod
    def start(cls) -> _Helper | None:
        from grader.editions.prebuild import prebuild_recipes
        from grader.sandbox import server

        try:
            server.warm_up(prebuild_recipes())  # already running in a grading: `grade` started it
            context = multiprocessing.get_context("forkserver")
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(target=_serve, args=(theirs,), daemon=True, name="grader-offload")
            with server.handing_over(sandbox=False):
                process.start()
            theirs.close()
        except Exception:  # no warm server here: the caller runs the work in a thread
            return None
        return cls(process, mine)

    def alive(self) -> bool:
        return self.process.is_alive()

    def submit(self, function, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        number = next(self._numbers)
        self._futures[number] = future
        target = (function.__module__, sys.modules[function.__module__].__file__, function.__name__)
        try:
            with self._send_lock:
                self.conn.send((number, target, _outgoing(args)))
        except Exception as exc:
            self._futures.pop(number, None)
            future.set_exception(RuntimeError(f"the grader's helper process is gone ({exc})"))
        return future

    def _receive(self) -> None:
        while True:
            try:
                number, status, value = self.conn.recv()
            except (EOFError, OSError):
                break
            future = self._futures.pop(number, None)
            if future is not None and status == "ok":
                future.set_result(value)
            elif future is not None:
                future.set_exception(RuntimeError(f"the grader's helper process failed:\n{value}"))
            del future, value  # this thread keeps no result (tensors) alive: see _stop_at_exit
        for future in list(self._futures.values()):  # the helper died: nothing more comes
            future.set_exception(RuntimeError("the grader's helper process ended"))
        self._futures.clear()

    def stop(self, wait: bool = True) -> None:
        """End the helper: after the work it was given (`wait`), or at once."""
        if wait:
            with contextlib.suppress(Exception):
                with self._send_lock:
                    self.conn.send(None)
            self.process.join(5)
        with contextlib.suppress(Exception):
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
        self._receiver.join(5)  # it sees the pipe close and ends
        with contextlib.suppress(Exception):
            self.conn.close()
