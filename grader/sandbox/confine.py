"""What the operating system offers to box in the sandboxed child, layer by layer.

Each layer is tried at run time and the child reports which ones held (DESIGN.md, Trust
model, rule 4). The layers, and where each one holds:

* Landlock (Linux >= 5.13, no privilege needed): the file-system allow-list. The child can
  read the Python runtime and the libraries it loaded, write only its own working directory,
  and execute nothing. From ABI 4 no TCP, from ABI 6 no signals and no abstract unix sockets
  outside its own domain.
* seccomp (no privilege needed): system calls sandboxed code never needs (ptrace, mount,
  bpf, keyctl, socket, namespaces, ...) fail with EPERM.
* an own uid per sandbox (root only, with or without CAP_SYS_ADMIN): everything the
  submission starts is found and killed by uid, RLIMIT_NPROC caps its processes.
* cgroups (root, where /sys/fs/cgroup is writable): memory and process count summed over all
  the submission's processes, and a kill of the whole group.
* namespaces: a network namespace when root has CAP_SYS_ADMIN; an ordinary user gets a user,
  PID and network namespace where the kernel allows unprivileged ones (the child's process
  tree dies with it).

We call the kernel through ctypes: Landlock and seccomp each need three system calls and a
struct, and the PyPI bindings we looked at are thin, lightly maintained wrappers over the same
calls (pyseccomp also needs libseccomp's shared library at run time). See docs/security.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import platform
import signal
import stat
import struct
import sys
import sysconfig
import time

# -- shared helpers -------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 system call numbers (the only architecture whose seccomp table we ship; Landlock's
# numbers are the same on every architecture).
SYS = {
    "landlock_create_ruleset": 444,
    "landlock_add_rule": 445,
    "landlock_restrict_self": 446,
    "seccomp": 317,
    "capset": 126,
}

UID_BASE = 1_000_000  # sandbox uids are UID_BASE + the child's pid: unique while it lives
MAX_PROCESSES = 64  # per sandbox: RLIMIT_NPROC for its uid, pids.max for its cgroup

# Package folders that hold what a submission must never read: the reference solution, the
# hidden checks, the starter notebooks, and the distribution's record of them.
SECRET_NAMES = (
    "grader_reference",
    "grader_assignments",
    "grader_templates",
    "pytorch_notebook_grader",
    "__editable__",  # an editable install's finder and .pth name the checkout
)


def _syscall(name: str, *args) -> int:
    result = _libc.syscall(SYS[name], *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def _prctl(option: int, arg2: int = 0) -> int:
    result = _libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38


def is_x86_64() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


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
    return [
        s
        for s in secrets
        if not any(holds(os.path.realpath(s), r) or holds(r, os.path.realpath(s)) for r in real)
    ]


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


# -- Landlock -------------------------------------------------------------------------------

LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_TRUNCATE, LL_IOCTL_DEV = 1 << 14, 1 << 15
LL_NET_ALL = (1 << 0) | (1 << 1)  # bind and connect TCP
LL_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals


def landlock_abi() -> int:
    try:
        return _syscall("landlock_create_ruleset", None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, KeyError):
        return 0


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        rights |= 1 << 13  # refer
    if abi >= 3:
        rights |= LL_TRUNCATE
    if abi >= 5:
        rights |= LL_IOCTL_DEV
    return rights


class Landlock:
    """A ruleset built before privileges are dropped (rules hold open O_PATH descriptors, so
    folders that only root can enter work too) and enforced just before student code."""

    def __init__(self, read: list[str], write: list[str], devices: list[str], listable: list[str] = ()):
        self.abi = landlock_abi()
        if self.abi < 1:
            raise OSError(errno.ENOSYS, "Landlock is not available in this kernel")
        handled = _fs_rights(self.abi)
        attr = struct.pack(
            "<QQQ", handled, LL_NET_ALL if self.abi >= 4 else 0, LL_SCOPE_ALL if self.abi >= 6 else 0
        )
        size = 24 if self.abi >= 6 else 16 if self.abi >= 4 else 8
        buf = ctypes.create_string_buffer(attr[:size], size)
        self.fd = _syscall("landlock_create_ruleset", buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
        file_rights = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (handled & (LL_TRUNCATE | LL_IOCTL_DEV))
        read_rights = LL_READ_FILE | LL_READ_DIR
        for path in listable:
            self._allow(path, LL_READ_DIR)
        for path in read:
            self._allow(path, read_rights)
        for path in write:
            self._allow(path, handled & ~LL_EXECUTE)
        for path in ["/dev/null", *devices]:
            self._allow(
                path, (LL_READ_FILE | LL_WRITE_FILE | LL_READ_DIR | (handled & LL_IOCTL_DEV)), file_rights
            )

    def _allow(self, path: str, rights: int, file_rights: int | None = None) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # gone since the list was made: nothing to allow
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                # rights that only make sense on folders are refused on a file
                rights &= (
                    file_rights
                    if file_rights is not None
                    else LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV
                )
            attr = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
            _syscall("landlock_add_rule", self.fd, 1, attr, 0)
        finally:
            os.close(fd)

    def enforce(self) -> str:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _syscall("landlock_restrict_self", self.fd, 0)
        os.close(self.fd)
        extras = []
        if self.abi >= 4:
            extras.append("no TCP")
        if self.abi >= 6:
            extras.append("signals and abstract sockets scoped")
        return f"landlock ABI {self.abi} (file-system allow-list{', ' if extras else ''}{', '.join(extras)})"


# -- seccomp ----------------------------------------------------------------------------------

# x86_64 numbers of the system calls sandboxed code never needs. socket() is refused
# outright (socketpair() still works, for multiprocessing pipes): no network of any family,
# no unix socket to connect anywhere.
SECCOMP_DENIED_X86_64 = {
    "ptrace": 101,
    "syslog": 103,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "acct": 163,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "socket": 41,
}
SYS_CLONE, SYS_CLONE3 = 56, 435
CLONE_NEW_ANY = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def _seccomp_program() -> bytes:
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    deny = _bpf(RET, _RET_ERRNO | errno.EPERM)
    prog = [
        _bpf(LD, 4),
        _bpf(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        deny,  # other ABIs (i386, x32)
        _bpf(LD, 0),
        _bpf(JGE, 0x40000000, 0, 1),
        deny,
    ]
    for nr in sorted(SECCOMP_DENIED_X86_64.values()):
        prog += [_bpf(JEQ, nr, 0, 1), deny]
    # clone3 hides its flags in memory: answer ENOSYS and the C library falls back to clone
    prog += [_bpf(JEQ, SYS_CLONE3, 0, 1), _bpf(RET, _RET_ERRNO | errno.ENOSYS)]
    prog += [_bpf(JEQ, SYS_CLONE, 0, 3), _bpf(LD, 16), _bpf(JSET, CLONE_NEW_ANY, 0, 1), deny]
    prog.append(_bpf(RET, _RET_ALLOW))
    return b"".join(prog)


def install_seccomp() -> str:
    if not is_x86_64():
        raise OSError(errno.ENOSYS, f"no seccomp table for {platform.machine()}")
    program = _seccomp_program()
    filt = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("<HxxxxxxQ", len(program) // 8, ctypes.addressof(filt))
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # SECCOMP_SET_MODE_FILTER with TSYNC: every thread of the process gets the filter
    _syscall("seccomp", 1, 1, fprog_buf)
    return "seccomp (no sockets, ptrace, mount, namespaces)"


# -- users and capabilities ------------------------------------------------------------------

CAP_DAC_READ_SEARCH = 2


def set_capabilities(keep: int = 0) -> None:
    """Effective and permitted capabilities: only the bits in `keep`."""
    header = struct.pack("<Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = struct.pack("<6I", keep, keep, 0, 0, 0, 0)
    _syscall("capset", ctypes.create_string_buffer(header, 8), ctypes.create_string_buffer(data, 24))


def become_sandbox_user(uid: int, keep_search: bool) -> None:
    """Drop from root to the sandbox's own uid (and gid), keeping at most the capability to
    read and enter folders (see needs_search_capability)."""
    _prctl(PR_SET_KEEPCAPS, 1 if keep_search else 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    set_capabilities(1 << CAP_DAC_READ_SEARCH if keep_search else 0)


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


# -- a private view of the file system (mount namespace) -------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
CLONE_NEWNS = 0x20000


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    encode = lambda v: v.encode() if v is not None else None  # noqa: E731
    if _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def private_mounts(
    workdir: str, size: int, uid: int, hide: list[str], new_namespace: bool = True
) -> list[str]:
    """In a mount namespace of the child's own (made here, or already made with a user
    namespace): the working folder becomes a tmpfs of `size` bytes owned by `uid`, so what the
    submission writes has a total, and every path in `hide` is covered (an empty read-only
    tmpfs over a folder, /dev/null over a file), so not even stat() tells its size. Needs
    CAP_SYS_ADMIN (root) or a user namespace."""
    if new_namespace and not unshare(CLONE_NEWNS):
        err = ctypes.get_errno()
        raise OSError(err, f"no mount namespace: {os.strerror(err)}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount(
        "grader-work", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0700,uid={uid},gid={uid}"
    )
    covered = 0
    for path in hide:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
                _mount("grader-hidden", path, "tmpfs", flags, "size=4k,mode=000")
            elif os.path.isfile(path) and not os.path.islink(path):
                _mount("/dev/null", path, None, MS_BIND, None)
            else:
                continue
            covered += 1
        except OSError:
            pass
    return [
        f"working folder capped at {size // 2**20} MiB (its own tmpfs)",
        f"{covered} secret paths hidden (mount namespace)",
    ]


# What the isolation line says when the sandbox's own uid is what keeps the secrets out.
OWN_UID_SECRETS_UNREADABLE = "own uid, secrets unreadable by it"


def readable_secret(secrets: list[str]) -> str | None:
    """Run as the sandbox's uid before any student code: the first of `secrets` this uid can
    read or enter, or None (where Landlock is missing, file permissions are then what keeps
    them out: Gradescope's setup.sh leaves them root-only)."""
    for path in secrets:
        try:
            is_dir = os.path.isdir(path)
        except OSError:
            continue
        if os.access(path, os.R_OK) or (is_dir and os.access(path, os.X_OK)):
            return path
    return None


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


# -- namespaces -----------------------------------------------------------------------------

CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000


def unshare(flags: int) -> bool:
    return _libc.unshare(ctypes.c_int(flags)) == 0


def enter_user_pid_namespace() -> bool:
    """For an ordinary user: a new user, PID, network and mount namespace. Returns True in the
    process that goes on to serve (PID 2 of the new namespace; PID 1 is a small reaper whose
    end makes the kernel kill everything the submission started). The process that called
    this waits and ends as the server ended (never returns). Returns False, changing
    nothing, where the kernel refuses unprivileged namespaces."""
    uid, gid = os.getuid(), os.getgid()
    if not unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS):
        return False
    for file, text in (
        ("/proc/self/uid_map", f"{uid} {uid} 1"),
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/gid_map", f"{gid} {gid} 1"),
    ):
        with open(file, "w") as f:
            f.write(text)
    status_r, status_w = os.pipe()
    reaper = os.fork()
    if reaper == 0:
        os.close(status_r)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        server = os.fork()
        if server == 0:
            os.close(status_w)
            return True
        # PID 1 ignores signals it has no handler for, so it must not be the server (a
        # student's own SIGKILL would do nothing): it only passes the server's end on.
        status = _wait_for(server)
        os.write(status_w, struct.pack("<i", status))
        os._exit(0)
    os.close(status_w)
    status = _wait_for(reaper)
    reported = os.read(status_r, 4)
    if len(reported) == 4:
        (status,) = struct.unpack("<i", reported)
    _end_as(status)


def _wait_for(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 70 << 8


def _end_as(status: int):
    """End this process the way a child ended (exit status or signal), so the grader sees
    the real cause."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


# -- the sandbox's working directory ----------------------------------------------------------


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
