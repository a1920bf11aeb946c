"""What the parent (and a batch's pool) prepares and cleans up around a sandbox child: the
file-system allow-list the child is given (what it may read and list, which secret paths it
must not reach, which a mount namespace can cover), the devices it may use, the cgroups that
cap a submission's processes, and afterwards: killing what a sandbox uid left running,
measuring and removing its working folder. What the child applies to itself is in
grader.sandbox.confine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import stat
import sys
import sysconfig
import time

from .confine import SECRET_NAMES

# -- the file-system allow-list (computed in the parent, applied in the child) --------------


def listable_folders() -> list[str]:
    """Folders whose names the child may list (not read): the standard library and the
    site-packages folders. Python's importer lists a folder on sys.path before it opens a
    module in it; a listing of names shows no source."""
    paths = sysconfig.get_paths()
    folders = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    folders |= {p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")}
    return sorted(f for f in folders if os.path.isdir(f))


def readable_roots(hidden: list[str]) -> list[str]:
    """Files and folders the child may read: the standard library, each installed
    distribution except ours, the engine package, and the folders of the shared libraries
    this process has loaded. Whole site-packages folders are never allowed: that is where a
    copy of the reference is installed. `hidden` (resolved paths) are left out wherever met."""
    import grader

    hidden = [os.path.realpath(h) for h in hidden]
    roots: list[str] = []

    def secret(path: str) -> bool:
        real = os.path.realpath(path)
        name = os.path.basename(real)
        return (
            name.startswith(SECRET_NAMES)
            or name.startswith(".")
            or any(real == h or real.startswith(h + os.sep) or h.startswith(real + os.sep) for h in hidden)
        )

    def add_entries(folder: str, skip: tuple = ()) -> None:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return
        for name in names:
            path = os.path.join(folder, name)
            if name not in skip and not secret(path):
                roots.append(path)

    site_dirs = {p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")}
    paths = sysconfig.get_paths()
    site_dirs |= {paths["purelib"], paths["platlib"]}
    for stdlib in {paths["stdlib"], paths["platstdlib"]}:
        add_entries(stdlib, skip=("site-packages", "dist-packages"))
    for site in sorted(site_dirs):
        add_entries(site)
    roots.append(os.path.dirname(os.path.realpath(grader.__file__)))
    for folder in _loaded_library_folders():
        if not secret(folder) and not any(folder == r or folder.startswith(r + os.sep) for r in roots):
            roots.append(folder)
    for path in (
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/dev/urandom",
        "/dev/random",
        "/dev/zero",
        "/sys/devices/system/cpu",
        "/proc/cpuinfo",
        "/proc/meminfo",
    ):
        if os.path.exists(path):
            roots.append(path)
    return list(dict.fromkeys(roots))


def _site_dirs() -> set[str]:
    paths = sysconfig.get_paths()
    found = {p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")}
    return found | {paths["purelib"], paths["platlib"]}


def secret_paths(hidden: list[str]) -> list[str]:
    """What a submission must never read, as far as the grader knows it: `hidden` (the
    assignment's checks and reference) and the grader's installed data packages (beside the
    engine or in a site-packages folder)."""
    from grader.sandbox.server import engine_root

    found = [os.path.realpath(h) for h in hidden]
    for folder in sorted(_site_dirs() | {engine_root()}):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found += [os.path.join(folder, n) for n in names if n.startswith(SECRET_NAMES)]
    return list(dict.fromkeys(p for p in found if os.path.lexists(p)))


def checkout_paths() -> list[str]:
    """When the engine runs from a source checkout: everything of that checkout but the engine
    package itself (.git, build/, the reference folder, other copies), which nothing of the
    child needs to see."""
    from grader.sandbox.server import engine_root

    root = engine_root()
    if root in {os.path.realpath(s) for s in _site_dirs()} or not os.path.isdir(os.path.join(root, ".git")):
        return []
    return [os.path.join(root, n) for n in sorted(os.listdir(root)) if n != "grader"]


def paths_to_hide(secrets: list[str], readable: list[str]) -> list[str]:
    """The secret paths a mount namespace can cover without hiding anything the child must
    read (a checkout's own virtual environment holds torch)."""

    def holds(outer: str, inner: str) -> bool:
        return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)

    real = [os.path.realpath(r) for r in readable]
    hidden = []
    for secret in secrets:
        resolved = os.path.realpath(secret)  # once per secret, not once per readable path
        if not any(holds(resolved, r) or holds(r, resolved) for r in real):
            hidden.append(secret)
    return hidden


def _loaded_library_folders() -> list[str]:
    """Shared libraries this process has mapped: the system's library folders whole (later
    dlopen()s look there), elsewhere only the files themselves (pyenv's lib/ folder, which
    holds libpython, also holds a site-packages)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    path = parts[5].strip()
                    folder = os.path.dirname(path)
                    system = folder.startswith(("/usr/lib/", "/lib/", "/usr/lib64", "/lib64"))
                    found.append(folder if system else path)
    except OSError:
        pass
    return list(dict.fromkeys(found))


def device_files(device: str) -> list[str]:
    """Devices the child reads and writes besides /dev/null (the GPU's, for CUDA)."""
    if device != "cuda":
        return []
    return [os.path.join("/dev", n) for n in sorted(os.listdir("/dev")) if n.startswith("nvidia")] + [
        p for p in ("/dev/dri",) if os.path.exists(p)
    ]


def needs_search_capability(roots: list[str]) -> bool:
    """Whether some allowed root lies under a folder others cannot enter (pyenv as root keeps
    the interpreter in a 0700 home): the sandbox's own uid then keeps CAP_DAC_READ_SEARCH,
    which Landlock still confines to the allow-list."""
    for root in roots:
        path = os.path.dirname(os.path.realpath(root))
        while path and path != "/":
            try:
                if not os.stat(path).st_mode & stat.S_IXOTH:
                    return True
            except OSError:
                break
            path = os.path.dirname(path)
    return False


# -- a sandbox uid's processes ------------------------------------------------------------


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    found.append(int(name))
            except OSError:
                pass
    return found


def kill_all_of_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (a sandbox's leftovers). kill(-1) from a process of
    that uid reaches exactly that uid's processes, all at once, so a process that forks
    cannot outrun it; RLIMIT_NPROC bounds how many rounds a fork bomb needs."""
    import subprocess

    for _ in range(100):
        if not processes_of_uid(uid):
            return
        subprocess.run(
            ["kill", "-9", "-1"],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        time.sleep(0.005)


# -- cgroups (root) ---------------------------------------------------------------------------

CGROUP_ROOT = "/sys/fs/cgroup"


class CgroupBox:
    """One cgroup per sandbox in each hierarchy that can hold a limit or kill a group: the
    unified (v2) one, or v1's `memory` and `pids`. Made by the parent; the child joins it
    before any student code runs."""

    def __init__(self, name: str, memory_bytes: int, processes: int):
        self.dirs: list[str] = []
        self.held: list[str] = []
        for folder, files in self._hierarchies(memory_bytes, processes):
            path = os.path.join(folder, name)
            try:
                os.mkdir(path, 0o700)
            except OSError:
                continue
            self.dirs.append(path)
            for file, value in files.items():
                try:
                    with open(os.path.join(path, file), "w") as f:
                        f.write(str(value))
                    self.held.append(file)
                except OSError:
                    pass

    @staticmethod
    def _hierarchies(memory_bytes, processes):
        unified = next(
            (
                p
                for p in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "unified"))
                if os.path.exists(os.path.join(p, "cgroup.procs"))
                and os.path.exists(os.path.join(p, "cgroup.controllers"))
            ),
            None,
        )
        if unified:
            try:
                controllers = open(os.path.join(unified, "cgroup.subtree_control")).read().split()
            except OSError:
                controllers = []
            files = {}
            if "memory" in controllers and memory_bytes:
                files["memory.max"] = memory_bytes
                files["memory.swap.max"] = 0
            if "pids" in controllers:
                files["pids.max"] = processes
            yield unified, files
        if os.path.isdir(os.path.join(CGROUP_ROOT, "memory")) and memory_bytes:
            yield os.path.join(CGROUP_ROOT, "memory"), {"memory.limit_in_bytes": memory_bytes}
        if os.path.isdir(os.path.join(CGROUP_ROOT, "pids")):
            yield os.path.join(CGROUP_ROOT, "pids"), {"pids.max": processes}

    def join(self) -> list[str]:
        """In the child: move this process into every group; returns what holds."""
        joined = []
        for path in self.dirs:
            try:
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
                joined.append(path)
            except OSError:
                pass
        self.dirs = joined
        return self.describe()

    def describe(self) -> list[str]:
        if not self.dirs:
            return []
        held = sorted({"memory" if f.startswith("memory") else "processes" for f in self.held})
        return [f"cgroup limits ({', '.join(held)})" if held else "cgroup"]

    def kill_and_remove(self) -> None:
        for path in self.dirs:
            kill_file = os.path.join(path, "cgroup.kill")
            if os.path.exists(kill_file):
                try:
                    with open(kill_file, "w") as f:
                        f.write("1")
                except OSError:
                    pass
            for _ in range(200):
                try:
                    pids = [int(p) for p in open(os.path.join(path, "cgroup.procs")).read().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.01)
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


# -- the sandbox's working folder ---------------------------------------------------------


def folder_bytes(path: str, most_entries: int = 200_000) -> int:
    """Bytes a folder's files take (allocated blocks), without following links; a folder of
    more entries than `most_entries` counts as too large."""
    total, seen = 0, 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > most_entries:
                return 1 << 62
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    return total


def remove_tree(path: str) -> None:
    """Remove a folder the child filled, however deep and whatever modes it set. No
    recursion, and never more than two descriptors open or one name per path: every
    subfolder found is first moved up to the top level, so the tree is never deeper than 2."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        top = os.open(path, flags)
    except FileNotFoundError:
        return
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    counter = itertools.count()
    pending = [None]  # folders to empty, by their name under top (None: top itself)
    emptied = []
    while pending:
        name = pending.pop()
        if name is None:
            fd = os.dup(top)
        else:
            with contextlib.suppress(OSError, NotImplementedError):
                os.chmod(name, 0o700, dir_fd=top, follow_symlinks=False)
            try:
                fd = os.open(name, flags, dir_fd=top)
            except OSError:
                continue
            emptied.append(name)
        try:
            entries = list(os.scandir(fd))
        except OSError:
            entries = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir:
                with contextlib.suppress(OSError):
                    os.unlink(entry.name, dir_fd=fd)
            elif name is None:
                pending.append(entry.name)
            else:
                flat = f".flat-{next(counter)}"
                with contextlib.suppress(OSError, NotImplementedError):  # moving a folder needs write access
                    os.chmod(entry.name, 0o700, dir_fd=fd, follow_symlinks=False)
                try:
                    os.rename(entry.name, flat, src_dir_fd=fd, dst_dir_fd=top)
                    pending.append(flat)
                except OSError:
                    pass
        os.close(fd)
    for name in reversed(emptied):
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=top)
    os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(path)
