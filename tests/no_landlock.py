"""Run a command on a "kernel without Landlock": a seccomp filter makes the three Landlock
system calls fail, as Docker's seccomp profile does on older engines (and as a kernel without
Landlock answers). Everything the command starts inherits the filter.

    python tests/no_landlock.py COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

LANDLOCK_CALLS = (444, 445, 446)  # x86_64: create_ruleset, add_rule, restrict_self
AUDIT_ARCH_X86_64 = 0xC000003E


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def refuse_landlock() -> None:
    load, jump_equal, ret = 0x20, 0x15, 0x06
    allow, fail = 0x7FFF0000, 0x00050000 | errno.ENOSYS
    program = [_bpf(load, 4), _bpf(jump_equal, AUDIT_ARCH_X86_64, 1, 0), _bpf(ret, allow), _bpf(load, 0)]
    for number in LANDLOCK_CALLS:
        program += [_bpf(jump_equal, number, 0, 1), _bpf(ret, fail)]
    program.append(_bpf(ret, allow))
    code = b"".join(program)
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = ctypes.create_string_buffer(
        struct.pack("<HxxxxxxQ", len(code) // 8, ctypes.addressof(buffer)), 16
    )
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl")
    if libc.syscall(317, 1, 0, fprog) != 0:  # seccomp(SECCOMP_SET_MODE_FILTER)
        raise OSError(ctypes.get_errno(), "seccomp")


if __name__ == "__main__":
    refuse_landlock()
    os.execvp(sys.argv[1], sys.argv[1:])
