"""Handing freed memory back to the system. glibc keeps what a process frees for its own
later use; a grading frees large models between checks (a fine-tuning model is a hundred MB),
and a process that kept them all would count them in its memory until it ends. Torch-free."""

from __future__ import annotations

import ctypes
import gc


def _malloc_trim():
    # The symbol among what the process has loaded already (libc), looked up on import: a
    # sandbox child may not read the loader's files later.
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Collect garbage cycles, then return the heap's free pages to the system."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
