"""Parallel batch grading: a pool of worker processes forked from the warm server.

Who runs where:

    grade DIR --out OUT --jobs N          the scheduler: never imports torch
      +-- forkserver (torch, torchvision, grader.engine.pipeline, pytest, hypothesis preloaded)
            +-- worker 1 .. N             trusted graders, each runs grader.engine.pipeline.grade
            +-- sandbox child per worker  untrusted student code (forked by the same server)

The scheduler starts the multiprocessing forkserver with everything a grading needs already
imported, then starts each worker *through that server*: a worker is a fork of a process that
has imported torch, so it begins in tens of milliseconds instead of seconds, and a worker that
dies is replaced just as cheaply. A forkserver child would normally start a forkserver of its
own the first time it starts a process (one more torch import per worker); a worker instead
keeps using the server it came from (`_reuse_server`), so its sandbox children are its
siblings and the whole batch imports torch exactly once.

Workers talk to the scheduler over a pipe, in JSON: one task at a time (no prefetch, so a slow
submission never holds others back), one results dict back. The scheduler writes every file;
a worker writes nothing in the output folder but its log (`OUT/.logs/worker-<slot>.log`).

What can go wrong, and what the scheduler does:

* a worker dies (killed, out of memory, a bug): the submission is tried once more in a fresh
  worker; a second death records an error result for it;
* a worker takes longer than `submission_timeout` on one submission: it is stopped (its
  sandbox child with it) and the submission gets an error result;
* the forkserver dies (a student's code can signal its parent when the grader does not run as
  root): the scheduler starts a new server, the workers that lost theirs exit, and their
  submissions are graded again by fresh workers.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import connection, forkserver
from pathlib import Path

from grader.editions.prebuild import prebuild_recipes
from grader.sandbox import server

# Imported once by the forkserver: grader.sandbox.server.PRELOAD (the sandbox children need
# it) plus what a worker needs to grade.
SERVER_PRELOAD = server.preload(
    # Not nbconvert (the load stage's IPython translation, a fifth of a second): a standalone
    # grading gets the notebook as `grade` read it, and a batch worker imports it once.
    "grader.engine.pipeline",
    "grader.engine.plugin",
    "grader.engine.checkrun",
    "grader.batch.pool",
    "pytest",
    "hypothesis",
)

MAX_ATTEMPTS = 2  # a submission whose worker died is graded once more, then recorded as an error
START_FAILURES_ALLOWED = 3  # workers dying before they are ready: the grader itself is broken
START_SECONDS = 600  # a worker not ready by then (importing, listing the checks) is stopped


def start_server() -> None:
    """Start the forkserver with SERVER_PRELOAD (or start a new one if it died), with nothing
    from the working folder on its import path (grader.sandbox.server), and the library objects
    the assignments ask for built once, for every worker and child ([checks] prebuild)."""
    server.start(SERVER_PRELOAD, prebuild_recipes())


# -- the worker ---------------------------------------------------------------------------------

_server_lost = False


def _reuse_server() -> None:
    """Use the forkserver this worker was forked from for its own sandbox children.

    A forkserver child inherits the server's socket address and holds an `alive` pipe end, but
    not the server's pid, so multiprocessing would start a second server on first use. Patch
    ensure_running (the module alias and the method) to keep the inherited one, and notice
    when connecting to it fails: that means the server died and this worker must give up.
    """
    inherited = forkserver._forkserver
    if inherited._forkserver_address is None or inherited._forkserver_alive_fd is None:
        return  # not started by a forkserver: the normal behaviour is right

    from multiprocessing import resource_tracker

    def ensure_running():
        resource_tracker.ensure_running()

    real_connect = inherited.connect_to_new_process

    def connect_to_new_process(fds):
        global _server_lost
        try:
            return real_connect(fds)
        except OSError:
            _server_lost = True
            raise

    saved = (inherited.__dict__.copy(), forkserver.ensure_running, forkserver.connect_to_new_process)
    inherited.ensure_running = ensure_running
    inherited.connect_to_new_process = connect_to_new_process
    forkserver.ensure_running = ensure_running
    forkserver.connect_to_new_process = connect_to_new_process
    # This leans on multiprocessing's internals: check that a process can be started this
    # way, and fall back to a server of this worker's own (one more torch import) if not.
    global _server_lost
    try:
        probe = multiprocessing.get_context("forkserver").Process(target=os.getpid)
        with server.handing_over(sandbox=True):
            probe.start()
        probe.join(30)
        works = probe.exitcode == 0
    except Exception:
        works = False
    if not works:
        inherited.__dict__.clear()
        inherited.__dict__.update(saved[0])
        inherited._forkserver_address = inherited._forkserver_alive_fd = None
        forkserver.ensure_running, forkserver.connect_to_new_process = saved[1], saved[2]
        print("cannot reuse the scheduler's forkserver; this worker starts its own", flush=True)
    _server_lost = False


def _stop_worker(signum, frame):
    """SIGTERM from the scheduler (the submission took too long): take the sandbox child
    along, then go."""
    for child in multiprocessing.active_children():
        with contextlib.suppress(Exception):
            child.kill()
    os._exit(128 + signum)


def _send(conn, message: dict) -> None:
    conn.send_bytes(json.dumps(message).encode())


def worker_main(conn, setup: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    signal.signal(signal.SIGTERM, _stop_worker)
    # The server this worker was forked from started with a minimal environment (sandbox
    # children are forked from it too); a worker is trusted and gets the scheduler's.
    os.environ.update(setup.get("environ", {}))
    log = os.open(setup["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    _reuse_server()

    import torch

    from grader.editions.assignment import load_assignment
    from grader.engine.checkrun import collect_checks
    from grader.engine.pipeline import grade
    from grader.errors import MachineError, UnsafeSandbox

    torch.set_num_threads(setup["threads"])
    options = setup["options"].resolved()
    # The sandbox child: one thread per job.
    options = dataclasses.replace(options, limit_overrides=options.limit_overrides | {"threads": 1})
    # Every edition the batch grades (a class can hand in several): its reference loaded, and
    # the checks it runs, which an unusable submission of that edition fails.
    catalogs = {}
    for name in setup["assignments"]:
        assignment = load_assignment(name)
        assignment.load_reference()
        catalogs[name] = collect_checks(assignment, options)
    _send(conn, {"hello": os.getpid(), "catalogs": catalogs})
    crash_on = os.environ.get("GRADER_BATCH_CRASH_ON")  # fault injection for the tests
    while True:
        try:
            task = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if task is None:
            return
        print(f"[{time.strftime('%H:%M:%S')}] grading {task['name']} ({task['path']})", flush=True)
        if crash_on and crash_on == task["name"]:
            os._exit(70)
        assignment = load_assignment(task["assignment"])
        try:
            result = grade(task["path"], assignment, options)
        except (MachineError, Exception) as exc:
            # The machine's or the grader's failure, not the student's: nothing is recorded
            # for this submission; the scheduler tries it again or leaves it ungraded.
            reason = (
                str(exc)
                if isinstance(exc, MachineError)
                else f"internal error in the grader: {type(exc).__name__}: {exc}"
            )
            if _server_lost:
                _send(conn, {"id": task["id"], "server_lost": True})
                return
            _send(
                conn, {"id": task["id"], "machine_failure": reason, "refused": isinstance(exc, UnsafeSandbox)}
            )
            continue
        if task.get("note"):
            result.notes.insert(0, task["note"])
        if _server_lost:
            _send(conn, {"id": task["id"], "server_lost": True})
            return
        _send(conn, {"id": task["id"], "result": result.to_dict()})


# -- one grading, standalone ----------------------------------------------------------------------
def run_in_worker(function, *args) -> int | None:
    """`function(*args)` (a module-level function that returns an exit status) in one trusted
    process forked from the warm server, as a batch worker is: it keeps that server for its
    own sandbox children and the grader's helper, so a standalone `grade` holds torch once, in
    the server, and not a second time in a grading process of its own (about 220 MiB less at
    the peak, in the same time). Its output goes where this process's goes. Returns its exit
    status (negative: the signal that ended it); None when it could not start, and the caller
    grades in its own process instead."""
    start_server()
    process = multiprocessing.get_context("forkserver").Process(
        target=_standalone_main,
        args=(server.trusted_environment(dict(os.environ)), function, args),
        daemon=False,  # it starts processes of its own (its sandbox children)
        name="grader",
    )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        with server.handing_over(sandbox=False):
            process.start()
    except (OSError, EOFError):
        return None
    try:
        process.join()
    except KeyboardInterrupt:  # Ctrl-C reached the grading too (same process group)
        process.join(5)
        if process.is_alive():
            process.kill()
        raise
    return process.exitcode


def _standalone_main(environ: dict, function, args) -> None:
    # The server started with a minimal environment; the grading is trusted and gets its caller's.
    os.environ.update(environ)
    _reuse_server()
    code = 2
    try:
        code = function(*args)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the grader broke: exit status 2, never 1 (checks failed)
        print(f"grade: internal error in the grader: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        from grader.engine import offload

        offload.stop(wait=False)  # the grader's helper, before this process ends
    sys.exit(code)


# -- the scheduler ------------------------------------------------------------------------------


@dataclass
class Task:
    id: int
    name: str
    path: str
    assignment: str  # the edition it is graded as
    note: str = ""  # why that edition, when it had to be guessed
    attempts: int = 0
    deaths: list = field(default_factory=list)


@dataclass
class _Worker:
    slot: int
    process: object
    conn: object
    ready: bool = False
    task: Task | None = None
    started: float = 0.0


class PoolError(RuntimeError):
    """The pool cannot grade at all (workers die before they are ready)."""


class Refused(PoolError):
    """This machine must not grade (instructor grading without file-system isolation)."""


def worker_threads(jobs: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


def run_pool(
    tasks: list[Task],
    setup: dict,
    jobs: int,
    on_result,
    submission_timeout: float | None = None,
    log_dir: Path | None = None,
    on_ungraded=None,
) -> None:
    """Grade `tasks` with `jobs` workers. `on_result(task, result)` receives each
    GradingResult as it arrives, including those of submissions that ran past the submission
    timeout (they fail every check of the catalog the first worker listed). A submission the
    machine or the grader could not grade (a worker died twice, the sandbox could not start,
    the grader broke) is the machine's failure, not the student's: `on_ungraded(task, why)`
    gets it and nothing is recorded. Refused raises when this machine must not grade at all
    (no file-system isolation)."""
    from grader.report.results import GradingResult

    if not tasks:
        return
    start_server()
    ctx = multiprocessing.get_context("forkserver")
    log_dir = Path(log_dir or ".")
    log_dir.mkdir(parents=True, exist_ok=True)
    pending = collections.deque(tasks)
    workers: list[_Worker] = []
    start_failures = 0
    catalogs: dict[str, list[dict]] = {}  # per edition, the checks a grading runs (from workers)

    def spawn(slot: int) -> _Worker:
        # A worker is trusted and gets the scheduler's environment, but the Python processes
        # it may start (multiprocessing's resource tracker) import nothing from the working folder.
        environ = server.trusted_environment(dict(os.environ))
        config = dict(setup, log=str((log_dir / f"worker-{slot}.log").absolute()), environ=environ)
        problem = None
        for _ in range(40):
            # A server that has just died can still look alive for a moment (its exit is
            # not yet reapable): start_server() notices a dead one and starts another.
            start_server()
            parent_conn, child_conn = ctx.Pipe(duplex=True)
            # Not a daemon: a worker starts processes of its own (its sandbox children).
            process = ctx.Process(
                target=worker_main, args=(child_conn, config), daemon=False, name=f"grader-worker-{slot}"
            )
            try:
                with server.handing_over(sandbox=False):
                    process.start()
            except (OSError, EOFError) as exc:
                problem = exc
                parent_conn.close()
                child_conn.close()
                time.sleep(0.25)
                continue
            child_conn.close()
            return _Worker(slot, process, parent_conn, started=time.monotonic())
        raise PoolError(f"cannot start a grading process: {type(problem).__name__}: {problem}")

    def stop(worker: _Worker, grace: float = 5.0) -> None:
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(grace)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        if worker.process.exitcode == 255:
            # Exit statuses come through the server: 255 means the server died, and the
            # worker may well be alive, orphaned. Stop it (and, on SIGTERM, its sandbox child).
            with contextlib.suppress(OSError):
                os.kill(worker.process.pid, signal.SIGTERM)
                time.sleep(0.5)
                os.kill(worker.process.pid, signal.SIGKILL)

    def log_tail(worker: _Worker) -> str:
        try:
            lines = Path(log_dir / f"worker-{worker.slot}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-15:])

    def lost(worker: _Worker, why: str, retry: bool) -> None:
        """The worker is gone (or being replaced) while grading worker.task."""
        task, worker.task = worker.task, None
        if task is None:
            return
        task.attempts += 1
        task.deaths.append(why)
        if retry and task.attempts < MAX_ATTEMPTS:
            pending.appendleft(task)
        elif retry:  # the machine's or the grader's failure, twice: left ungraded
            if on_ungraded is not None:
                on_ungraded(task, "; ".join(dict.fromkeys(task.deaths)))
        else:  # ran past the submission timeout: the student's (too slow)
            failed = GradingResult(submission=task.path, assignment=task.assignment)
            failed.mark_unusable(
                "could not be graded: " + "; ".join(dict.fromkeys(task.deaths)),
                catalogs.get(task.assignment, []),
            )
            if task.note:
                failed.notes.insert(0, task.note)
            on_result(task, failed)

    try:
        for slot in range(min(jobs, len(pending))):
            workers.append(spawn(slot))
        while pending or any(w.task for w in workers):
            for w in workers:
                if w.ready and w.task is None and pending:
                    w.task = pending.popleft()
                    w.started = time.monotonic()
                    try:
                        task = w.task
                        _send(
                            w.conn,
                            {
                                "id": task.id,
                                "name": task.name,
                                "path": task.path,
                                "assignment": task.assignment,
                                "note": task.note,
                            },
                        )
                    except OSError:
                        pass  # it died: its sentinel says so below
            waitables = [w.conn for w in workers] + [w.process.sentinel for w in workers]
            ready = set(connection.wait(waitables, timeout=1.0))
            for index, w in enumerate(workers):
                replace = False
                if w.conn in ready:
                    while True:
                        try:
                            if not w.conn.poll():
                                break
                            message = json.loads(w.conn.recv_bytes())
                        except (EOFError, OSError, ValueError):
                            break
                        if "hello" in message:
                            w.ready = True
                            start_failures = 0
                            catalogs.update(message.get("catalogs") or {})
                        elif message.get("server_lost"):
                            start_server()  # a new server; this worker exits by itself
                            lost(w, "the grader's process server died", retry=True)
                            replace = True
                        elif (
                            w.task is not None
                            and message.get("id") == w.task.id
                            and "machine_failure" in message
                        ):
                            why = str(message["machine_failure"])
                            if message.get("refused"):
                                raise Refused(why)
                            lost(w, why, retry=True)
                        elif w.task is not None and message.get("id") == w.task.id:
                            task, w.task = w.task, None
                            on_result(task, GradingResult.from_dict(message["result"]))
                if (
                    not replace
                    and w.task is not None
                    and submission_timeout
                    and time.monotonic() - w.started > submission_timeout
                ):
                    stop(w)
                    lost(w, f"grading took longer than {submission_timeout:g} s and was stopped", retry=False)
                    replace = True
                if not replace and not w.ready and time.monotonic() - w.started > START_SECONDS:
                    stop(w)  # counted as a start failure just below
                if not replace and not w.process.is_alive():
                    w.process.join(1)
                    code = w.process.exitcode
                    if not w.ready:
                        start_failures += 1
                        if start_failures > START_FAILURES_ALLOWED:
                            raise PoolError(
                                "grading workers die before they are ready "
                                f"(exit status {code}); last log lines:\n{log_tail(w)}"
                            )
                    lost(w, f"the grading process died ({describe_exit(code)})", retry=True)
                    replace = True
                if replace:
                    stop(w, grace=1.0)
                    if pending or any(x.task for x in workers):
                        workers[index] = spawn(w.slot)
                    else:
                        workers[index] = None
            workers = [w for w in workers if w is not None]
            if pending and not workers:
                workers.append(spawn(0))
    finally:
        for w in workers:
            with contextlib.suppress(OSError):
                w.conn.send_bytes(b"null")
        deadline = time.monotonic() + 10
        for w in workers:
            w.process.join(max(0.1, deadline - time.monotonic()))
            stop(w, grace=1.0)


def describe_exit(code) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (probably out of memory)" if name == "SIGKILL" else "")
    return f"exit status {code}"
