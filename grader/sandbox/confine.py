"""What the sandboxed child applies to itself, layer by layer, before any student code runs
(what the parent prepares and cleans up around it is in grader.sandbox.host).

Each layer is tried at run time and the child reports which ones held (docs/design.md, trust
model, rule 4). The layers, and where each one holds:

* Landlock (Linux >= 5.13, no privilege needed): the file-system allow-list. The child can
  read the Python runtime and the libraries it loaded, write only its own working directory,
  and execute nothing. From ABI 4 no TCP, from ABI 6 no signals and no abstract unix sockets
  outside its own domain.
* seccomp (no privilege needed): system calls sandboxed code never needs (ptrace, mount,
  bpf, keyctl, socket, namespaces, ...) fail with EPERM.
* an own uid per sandbox (root only, with or without CAP_SYS_ADMIN): everything the
  submission starts is found and killed by uid, RLIMIT_NPROC caps its processes; where
  Landlock is missing, a probe shows whether this uid can reach any secret path.
* a mount namespace (root with CAP_SYS_ADMIN, or with a user namespace): a size-capped tmpfs
  working folder, secret paths covered.
* namespaces: a network namespace when root has CAP_SYS_ADMIN; an ordinary user gets a user,
  PID, network and mount namespace where the kernel allows unprivileged ones (the child's
  process tree dies with it).

We call the kernel through ctypes: Landlock and seccomp each need three system calls and a
struct, and the PyPI bindings we looked at are thin, lightly maintained wrappers over the same
calls (pyseccomp also needs libseccomp's shared library at run time). See docs/security.md.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import stat
import struct

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
