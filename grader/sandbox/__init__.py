"""Where student code runs: a child process forked from a warm server, boxed in by the OS,
that answers the grader's requests over a pipe.

    parent   the grader's handle on a child: start, requests with deadlines, close (Sandbox)
    child    the child's side: confine itself, load the submission, answer requests
    wire     the framing both sides speak (JSON and raw bytes; nothing is unpickled)
    confine  what the child applies to itself: Landlock, seccomp, its uid, namespaces, mounts
    host     what the parent prepares and cleans up: the allow-list, cgroups, leftovers
    server   the warm forkserver and what a started process is told of its parent
    replies  what the parent accepts from a child, checked against each request

The front below re-exports names lazily: `wire` (and so `parent`) imports torch, and the batch
scheduler, which must not, imports `grader.sandbox.server` through this package; `warm_up`
comes from `server`, so that `grade` starts the server before its own torch import.
"""

__all__ = ["Limits", "Sandbox", "format_error", "has_file_system_isolation", "warm_up"]


def __getattr__(name: str):
    if name == "warm_up":
        from grader.sandbox import server

        return server.warm_up
    if name in __all__:
        from grader.sandbox import parent

        return getattr(parent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
