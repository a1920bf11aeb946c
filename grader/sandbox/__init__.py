"""Where student code runs: a child process forked from a warm server, boxed in by the OS,
that answers the grader's requests over a pipe.

    parent   the grader's handle on a child: start, requests with deadlines, close (Sandbox)
    child    the child's side: confine itself, load the submission, answer requests
    wire     the framing both sides speak (JSON and raw bytes; nothing is unpickled)
    confine  the OS layers: Landlock, seccomp, uids, namespaces, cgroups, rlimits

The child module imports torch; this package's front (below) does not.
"""

from .parent import Limits, Sandbox, format_error, has_file_system_isolation, warm_up

__all__ = ["Limits", "Sandbox", "format_error", "has_file_system_isolation", "warm_up"]
