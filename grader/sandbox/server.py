"""The warm server every sandbox child (and every batch worker) is forked from, and what the
trusted side hands to the processes it starts.

multiprocessing's forkserver and resource tracker start as `python -c "..."`, which puts the
working folder first on their import path, and every process started through the server is
given the parent's `sys.path`, `sys.argv`, working folder and authentication key. The working
folder is where an instructor runs `grade` (often a student's own folder), so a `torch.py` or a
`grader/` folder there would run as root before any box exists. Here:

* the server and the resource tracker start with `PYTHONSAFEPATH` (nothing from the working
  folder) and an import path made only of the engine's own folder and the absolute entries of
  the instructor's `PYTHONPATH` (`trusted_import_path`): the engine is imported from where the
  parent imported it, and nothing from the working folder;
* what a new process is told about its parent (`spawn.get_preparation_data`) is rewritten
  (`handing_over`): a sandbox child gets no import path, a neutral argv, no working folder and a
  fresh authentication key of its own; a trusted batch worker keeps the working folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import types
from multiprocessing import forkserver, resource_tracker, spawn

# What the warm server (and so every sandbox child, whose memory holds the environment its
# process was started with) may inherit from the grader: what the runtime needs, no secrets.
ENVIRONMENT_KEPT = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
    "HYPOTHESIS_STORAGE_DIRECTORY",  # the run's private cache folders (grader.cli.main), never
    "TORCHINDUCTOR_CACHE_DIR",  # the working folder or a shared one in /tmp
)
SANDBOX_ARGV = ["grader-sandbox"]

# What the warm server imports before forking children, so that no child pays it again: the
# libraries every child needs or nearly every notebook uses (matplotlib.pyplot takes half a
# second; torch._dynamo a second and a half, imported by the first torch optimizer a process
# builds or steps, in the student's training code and in the grader's), then the child's side
# of the engine. A module that is not installed is left out. First, grader.sandbox.ending
# sets how the server ends; last, grader.sandbox.warm hides what is imported by then from the
# garbage collector.
LIBRARIES = ["torch", "torchvision", "torch._dynamo", "matplotlib.pyplot"]


def preload(*engine: str) -> list[str]:
    """The server's preload list: what every sandbox child needs, then the `engine` modules a
    caller's processes need too (a batch worker's), in the order the server must import them."""
    return ["grader.sandbox.ending", *LIBRARIES, "grader.sandbox.child", *engine, "grader.sandbox.warm"]


PRELOAD = preload()


def minimal_environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k in ENVIRONMENT_KEPT or k.startswith("NVIDIA_")}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(extra)
    return env


def engine_root() -> str:
    """The folder holding the `grader` package this process imported."""
    import grader

    return os.path.dirname(os.path.dirname(os.path.realpath(grader.__file__)))


def trusted_import_path() -> list[str]:
    """Where a process of the grader's own may import from besides the standard library and
    site-packages: the engine's folder, then the absolute entries of `PYTHONPATH`. Empty and
    relative entries name the working folder, and so does the working folder itself (unless
    the engine lives there: a source checkout); all are left out."""
    working = os.path.realpath(os.getcwd())
    root = engine_root()
    found = [root]
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        if os.path.realpath(entry) == working and working != root:
            continue
        found.append(entry)
    return list(dict.fromkeys(found))


def exit_now(code: int) -> None:
    """Flush the standard streams and end this process without the interpreter's teardown:
    freeing every imported object one by one took 0.1 s in `grade` and 0.25 s in the warm
    server (torch's ~400,000 objects) after the report was out. Callers run the exit handlers
    they need first (grader.cli) or are the last one (grader/sandbox/ending.py)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`grade ... | head`): nothing more to say
            pass
    os._exit(code)


def forget_working_folder() -> None:
    """Drop the working folder from this process's own import path (`python -m grader.cli`
    puts it first), unless the engine was imported from there (a source checkout): modules the
    grader imports later must not come from a student's folder. The `grade` console script
    never had it there."""
    working = os.path.realpath(os.getcwd())
    if working == engine_root():
        return
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != working]


def trusted_environment(base: dict) -> dict:
    """`base` for a Python process the grader starts: no unsafe first entry on its import
    path (PYTHONSAFEPATH, Python >= 3.11) and PYTHONPATH = trusted_import_path()."""
    env = dict(base)
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(trusted_import_path())
    return env


# The recipes of the library objects the server builds before it forks (JSON), read and
# removed from its environment by grader.sandbox.warm; the last ones start() was given, so
# that a server started again builds them too.
PREBUILD_VARIABLE = "GRADER_PREBUILD_RECIPES"
_prebuild = "[]"


def server_environment() -> dict:
    """What the warm server starts with: the minimal environment, the trusted import path and
    the recipes to prebuild."""
    return trusted_environment(minimal_environment(**{PREBUILD_VARIABLE: _prebuild}))


@contextlib.contextmanager
def _environment(env: dict):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _neutral_folder():
    """Python 3.10 has no PYTHONSAFEPATH: `-c` puts the working folder first on the import
    path, so the server is started from an empty private folder instead (removed once the
    server runs: an import from it then finds nothing)."""
    if sys.version_info >= (3, 11):
        yield
        return
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="grader-server-") as empty:
        os.chdir(empty)
        try:
            yield
        finally:
            os.chdir(previous)


@contextlib.contextmanager
def main_module_hidden():
    """multiprocessing makes every new child import the parent's __main__ script (the
    `grade` entry point, pytest, a benchmark). The child needs none of it, and must not run
    it: show multiprocessing a bare __main__ while a process is being started."""
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real


def start(preload: list[str], prebuild: list[dict] | None = None) -> None:
    """Start multiprocessing's forkserver with `preload` imported (or a new one if it died),
    and the resource tracker before it, both with the minimal environment and the trusted
    import path. `prebuild`: recipes (grader.engine.recipes) the server builds before it
    forks anything (the installed assignments' [checks] prebuild, which the callers that know
    them pass: grader.editions.prebuild); None keeps the last ones given."""
    global _prebuild
    if prebuild is not None:
        _prebuild = json.dumps(prebuild)
    multiprocessing_preload(preload)
    with main_module_hidden(), _environment(server_environment()), _neutral_folder():
        resource_tracker.ensure_running()
        forkserver.ensure_running()


def warm_up(prebuild: list[dict] | None = None) -> None:
    """Start the forkserver now: it imports torch in its own process, in parallel with
    whatever the grader does next (its own torch import first). This module imports no torch,
    so `grade` can call this before anything heavy. `prebuild`: as for start()."""
    start(PRELOAD, prebuild)


def multiprocessing_preload(preload: list[str]) -> None:
    import multiprocessing

    multiprocessing.set_forkserver_preload(preload)


# -- what a started process is told about its parent ---------------------------------------------

_real_preparation_data = spawn.get_preparation_data


@contextlib.contextmanager
def handing_over(sandbox: bool):
    """While a process is started through the server: rewrite what it is told about the
    parent. A sandbox child (`sandbox=True`) keeps the server's own import path and working
    folder, sees a neutral argv and gets an authentication key of its own; a trusted worker
    keeps the parent's working folder and key. Neither is told to import the parent's main
    script."""

    def preparation_data(name):
        data = _real_preparation_data(name)
        for key in ("sys_path", "init_main_from_name", "init_main_from_path", "main_path"):
            data.pop(key, None)
        data["sys_argv"] = list(SANDBOX_ARGV) if sandbox else ["grader-worker"]
        if sandbox:
            data.pop("dir", None)
            data.pop("orig_dir", None)
            data["authkey"] = os.urandom(32)
        return data

    # Should the server have died, starting the process starts a new one: with the same
    # environment as start() gives it.
    with main_module_hidden(), _environment(server_environment()):
        spawn.get_preparation_data = preparation_data
        try:
            yield
        finally:
            spawn.get_preparation_data = _real_preparation_data
